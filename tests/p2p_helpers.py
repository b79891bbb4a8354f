"""Helpers shared by the p2p tests (unit, integration and the peer process): Ed25519 through PyNaCl.

The transport takes any object with the ``p2p.Signer`` and ``p2p.Verifier``
shapes; these are the real thing over PyNaCl, with keys made from a seed byte
so every run uses the same ids.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.signing


class NaclSigner:
    """A ``p2p.Signer`` over a PyNaCl signing key."""

    def __init__(self, key: nacl.signing.SigningKey) -> None:
        self._key = key
        self.public_key = bytes(key.verify_key)

    @classmethod
    def from_byte(cls, byte: int) -> NaclSigner:
        """The signer whose seed is ``byte`` 32 times over."""
        return cls(nacl.signing.SigningKey(bytes([byte]) * 32))

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
