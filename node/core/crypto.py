"""Hashing and Ed25519 identities (PyNaCl).

An identity's id is the hex form of its 32-byte Ed25519 public key. `Identity` holds a signing
key; `Ed25519Verifier` is the verifier injected into the consensus engine and the transport.
We never implement cryptography ourselves: everything here is a thin veneer over PyNaCl.
"""

from __future__ import annotations

import hashlib

import nacl.exceptions
import nacl.signing

HASH_SIZE = 32
KEY_SIZE = 32
SIGNATURE_SIZE = 64


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    if len(public_key) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


class Ed25519Verifier:
    """The Verifier protocol of consensus/ and p2p/, backed by PyNaCl."""

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        return verify(public_key, message, signature)


def parse_id(text: str) -> bytes:
    """Parse a hex identity id into its 32-byte public key; raise ValueError if malformed."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"identity id {text!r} is not hex") from None
    if len(raw) != KEY_SIZE:
        raise ValueError(f"identity id must be {KEY_SIZE * 2} hex characters, got {len(text)}")
    return raw


class Identity:
    """An Ed25519 signing identity. Never print or log `seed`."""

    __slots__ = ("_signing_key", "public_key")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self.public_key: bytes = bytes(signing_key.verify_key)

    @classmethod
    def generate(cls) -> "Identity":
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "Identity":
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    @property
    def id(self) -> str:
        return self.public_key.hex()

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        return self._signing_key

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    def __repr__(self) -> str:  # never show the secret
        return f"Identity({self.id[:16]}...)"
