"""Ed25519 identities and key files."""

import json
import os
import stat

import pytest

from node.core.crypto import Identity, parse_id, verify
from node.home.keys import KeyFileError, is_encrypted, key_file_id, load_key_file, write_key_file


def test_sign_and_verify():
    ident = Identity.from_seed(bytes(range(32)))
    sig = ident.sign(b"hello")
    assert verify(ident.public_key, b"hello", sig)
    assert not verify(ident.public_key, b"hellO", sig)
    assert not verify(Identity.generate().public_key, b"hello", sig)
    assert not verify(ident.public_key, b"hello", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not verify(ident.public_key[:31], b"hello", sig)


def test_id_is_hex_public_key():
    ident = Identity.generate()
    assert ident.id == ident.public_key.hex()
    assert parse_id(ident.id) == ident.public_key
    for bad in ["zz", "ab" * 31, ""]:
        with pytest.raises(ValueError):
            parse_id(bad)
    assert ident.id[:16] in repr(ident) and ident.seed.hex() not in repr(ident)


def test_plain_key_file(tmp_path):
    path = tmp_path / "a.key"
    ident = Identity.generate()
    write_key_file(path, ident)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert key_file_id(path) == ident.id
    assert load_key_file(path).public_key == ident.public_key
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(path, Identity.generate())
    assert load_key_file(path).id == ident.id  # untouched


def test_encrypted_key_file(tmp_path):
    path = tmp_path / "b.key"
    ident = Identity.generate()
    write_key_file(path, ident, "correct horse")
    assert is_encrypted(path)
    assert ident.seed.hex() not in path.read_text()
    assert key_file_id(path) == ident.id
    with pytest.raises(KeyFileError, match="passphrase is needed"):
        load_key_file(path)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key_file(path, "wrong")
    assert load_key_file(path, "correct horse").seed == ident.seed


def test_damaged_key_files(tmp_path):
    missing = tmp_path / "none.key"
    with pytest.raises(KeyFileError, match="not found"):
        load_key_file(missing)
    junk = tmp_path / "junk.key"
    junk.write_text("hello")
    with pytest.raises(KeyFileError, match="not a MedLedger key file"):
        load_key_file(junk)
    ident = Identity.generate()
    good = tmp_path / "good.key"
    write_key_file(good, ident)
    doc = json.loads(good.read_text())
    doc["id"] = Identity.generate().id
    tampered = tmp_path / "tampered.key"
    tampered.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="does not match"):
        load_key_file(tampered)
