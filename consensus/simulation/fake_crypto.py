"""A fast, deterministic stand-in for Ed25519, for the simulator and tests only. NOT SECURE.

A fake key pair is a 32-byte secret and a "public key" derived from it; a signature is keyed
BLAKE2b of the message under the secret. Only a `FakeVerifier` that was told the secrets (via
the shared `FakeKeyring`) can check signatures, which is all a simulation needs: it makes
signatures unforgeable by the simulated Byzantine validators (they are not given other
validators' secrets) at a small fraction of Ed25519's cost.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(slots=True)
class FakeKeyring:
    """Secrets by public key: the fake verifier's knowledge."""

    secrets: dict[bytes, bytes] = field(default_factory=dict)

    def new_signer(self, seed: bytes) -> FakeSigner:
        """A signer whose key is derived from `seed` (same seed, same key)."""
        secret = hashlib.blake2b(b"medledger-fake-secret" + seed, digest_size=32).digest()
        public = hashlib.blake2b(b"medledger-fake-public" + secret, digest_size=32).digest()
        self.secrets[public] = secret
        return FakeSigner(public, secret)


class FakeSigner:
    """Signs with keyed BLAKE2b; implements `consensus.crypto.Signer`."""

    __slots__ = ("_public", "_secret")

    def __init__(self, public: bytes, secret: bytes) -> None:
        self._public = public
        self._secret = secret

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return hashlib.blake2b(message, key=self._secret, digest_size=64).digest()


class FakeVerifier:
    """Checks fake signatures of any key in the keyring; implements `consensus.crypto.Verifier`."""

    __slots__ = ("_keyring",)

    def __init__(self, keyring: FakeKeyring) -> None:
        self._keyring = keyring

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        secret = self._keyring.secrets.get(public_key)
        if secret is None:
            return False
        return hashlib.blake2b(message, key=secret, digest_size=64).digest() == signature
