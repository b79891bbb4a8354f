"""Identity key files.

A key file is a small JSON document holding an Ed25519 seed, either in the clear (hex) or
encrypted with a passphrase: the passphrase is stretched with Argon2id (PyNaCl's
`nacl.pwhash.argon2id`) and the seed sealed with SecretBox. Files are created with mode 0600
and never overwritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from node.core.crypto import Identity

KEY_FILE_VERSION = 1
FORMAT = "medledger-ed25519"


class KeyFileError(Exception):
    """A key file is missing, malformed, or its passphrase is wrong (the user's to fix)."""


def _kdf(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase.encode("utf-8"), salt, opslimit=opslimit, memlimit=memlimit
    )


def encode_key_file(identity: Identity, passphrase: str | None = None) -> bytes:
    """The JSON bytes of a key file for `identity`, encrypted when a passphrase is given."""
    doc: dict[str, object] = {"format": FORMAT, "version": KEY_FILE_VERSION, "id": identity.id}
    if passphrase:
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        ops = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
        mem = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
        box = nacl.secret.SecretBox(_kdf(passphrase, salt, ops, mem))
        doc["encryption"] = {
            "kdf": "argon2id",
            "salt": salt.hex(),
            "opslimit": ops,
            "memlimit": mem,
            "cipher": "xsalsa20-poly1305",
            "ciphertext": bytes(box.encrypt(identity.seed)).hex(),
        }
    else:
        doc["seed"] = identity.seed.hex()
    return (json.dumps(doc, indent=2) + "\n").encode()


def write_key_file(path: str | os.PathLike[str], identity: Identity, passphrase: str | None = None) -> None:
    """Create `path` with mode 0600; refuse if it exists."""
    data = encode_key_file(identity, passphrase)
    p = Path(path)
    if not p.parent.exists():
        raise KeyFileError(f"directory {str(p.parent)!r} does not exist")
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{str(p)!r} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def key_file_id(path: str | os.PathLike[str]) -> str:
    """The identity id recorded in a key file, without needing its passphrase."""
    doc = _read(path)
    return str(doc["id"])


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    return "encryption" in _read(path)


def _read(path: str | os.PathLike[str]) -> dict[str, object]:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"key file {str(path)!r} not found") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {str(path)!r}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise KeyFileError(f"{str(path)!r} is not a MedLedger key file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("id"), str):
        raise KeyFileError(f"{str(path)!r} is not a MedLedger key file")
    return doc


def load_key_file(path: str | os.PathLike[str], passphrase: str | None = None) -> Identity:
    """Load the identity in `path`, decrypting it with `passphrase` when it is encrypted."""
    doc = _read(path)
    try:
        if "encryption" in doc:
            enc = doc["encryption"]
            assert isinstance(enc, dict)
            if not passphrase:
                raise KeyFileError(f"{str(path)!r} is encrypted: a passphrase is needed")
            key = _kdf(passphrase, bytes.fromhex(enc["salt"]), int(enc["opslimit"]), int(enc["memlimit"]))
            try:
                seed = nacl.secret.SecretBox(key).decrypt(bytes.fromhex(enc["ciphertext"]))
            except nacl.exceptions.CryptoError:
                raise KeyFileError(f"wrong passphrase for {str(path)!r}") from None
        else:
            seed = bytes.fromhex(str(doc["seed"]))
        identity = Identity.from_seed(seed)
    except KeyFileError:
        raise
    except (KeyError, ValueError, TypeError, AssertionError, nacl.exceptions.CryptoError):
        raise KeyFileError(f"{str(path)!r} is damaged") from None
    if identity.id != doc["id"]:
        raise KeyFileError(f"{str(path)!r} is damaged: its seed does not match its id")
    return identity
