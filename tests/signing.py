"""Ed25519 through PyNaCl for the tests that inject a signer and a verifier: the transport
(``p2p.Signer``/``p2p.Verifier``: unit, integration and the peer process), the consensus engine
and the simulator (``consensus.crypto.Signer``/``Verifier``, the same shapes).

Keys are made from a seed byte, so every run uses the same ids.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.signing


class NaclSigner:
    """A signer (p2p or consensus) over a PyNaCl signing key."""

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
    """A verifier (p2p or consensus) over PyNaCl; False for any bad key or signature."""

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            nacl.signing.VerifyKey(public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
        return True
