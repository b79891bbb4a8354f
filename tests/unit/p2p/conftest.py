"""Fixtures for the p2p unit tests: real Ed25519 keys through PyNaCl."""

from __future__ import annotations

import nacl.exceptions
import nacl.signing
import pytest


class NaclSigner:
    """A ``p2p.Signer`` over a PyNaCl signing key."""

    def __init__(self, key: nacl.signing.SigningKey) -> None:
        self._key = key
        self.public_key = bytes(key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


class NaclVerifier:
    """A ``p2p.Verifier`` over PyNaCl; False for any bad key or signature."""

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            nacl.signing.VerifyKey(public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
        return True


@pytest.fixture
def make_signer():
    """Deterministic signers: ``make_signer(n)`` is the same key within a test."""

    def make(index: int) -> NaclSigner:
        return NaclSigner(nacl.signing.SigningKey(bytes([index + 1]) * 32))

    return make


@pytest.fixture
def verifier() -> NaclVerifier:
    return NaclVerifier()
