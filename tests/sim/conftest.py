"""Shared pieces of the simulation tests: real Ed25519 for the simulator, seeds in test ids."""

from __future__ import annotations

import nacl.exceptions
import nacl.signing

from consensus.crypto import Signer, Verifier


class Ed25519Signer:
    """A PyNaCl signing key behind the engine's `Signer` protocol (what the node injects)."""

    def __init__(self, seed: bytes) -> None:
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


class Ed25519Verifier:
    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            nacl.signing.VerifyKey(public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
        return True


def ed25519_crypto(count: int) -> tuple[list[Signer], Verifier]:
    """Deterministic Ed25519 keys for `count` validators (seeded, so runs stay reproducible)."""
    return [Ed25519Signer(bytes([i + 1]) * 32) for i in range(count)], Ed25519Verifier()


def seed_id(seed: int) -> str:
    return f"seed={seed}"
