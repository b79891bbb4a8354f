"""Envelope encryption of a record (PyNaCl only; no cryptography of our own).

A fresh 32-byte data key encrypts the resource (SecretBox: XSalsa20-Poly1305). The data key is
wrapped for each reader with SealedBox to the X25519 form of the reader's Ed25519 identity key.
SealedBox does not authenticate who wrapped a key, so wrapped keys only ever travel inside a
message signed by the writer (upload) or the custodian (a fetch answer).
"""

from __future__ import annotations

import nacl.exceptions
import nacl.public
import nacl.secret
import nacl.signing
import nacl.utils

from node.core.crypto import Identity


class EnvelopeError(ValueError):
    """A wrapped key or ciphertext cannot be opened (wrong key or tampered bytes)."""


def x25519_public(public_key: bytes) -> nacl.public.PublicKey:
    return nacl.signing.VerifyKey(public_key).to_curve25519_public_key()


def x25519_private(identity: Identity) -> nacl.public.PrivateKey:
    return identity.signing_key.to_curve25519_private_key()


def new_data_key() -> bytes:
    return nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)


def encrypt(plaintext: bytes, data_key: bytes) -> bytes:
    return bytes(nacl.secret.SecretBox(data_key).encrypt(plaintext))


def decrypt(ciphertext: bytes, data_key: bytes) -> bytes:
    try:
        return nacl.secret.SecretBox(data_key).decrypt(ciphertext)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise EnvelopeError("the ciphertext does not open with this data key (tampered or wrong key)") from None


def wrap_key(data_key: bytes, reader_public_key: bytes) -> bytes:
    return bytes(nacl.public.SealedBox(x25519_public(reader_public_key)).encrypt(data_key))


def unwrap_key(wrapped: bytes, reader: Identity) -> bytes:
    try:
        key = nacl.public.SealedBox(x25519_private(reader)).decrypt(wrapped)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise EnvelopeError("the wrapped data key is not for this identity") from None
    if len(key) != nacl.secret.SecretBox.KEY_SIZE:
        raise EnvelopeError("the wrapped data key has the wrong size")
    return key


def seal_record(plaintext: bytes, readers: dict[str, bytes]) -> tuple[bytes, dict[str, bytes]]:
    """Encrypt with a fresh data key and wrap it for each named reader's public key."""
    key = new_data_key()
    return encrypt(plaintext, key), {name: wrap_key(key, pk) for name, pk in readers.items()}
