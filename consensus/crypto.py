"""The signature scheme the engine is given: it never picks one itself.

The node runtime injects Ed25519 (PyNaCl); the simulator injects a fast fake (see
`consensus.simulation.fake_crypto`). The engine signs its own votes with the `Signer` and
checks signatures nested inside other messages (prepared certificates in VIEW-CHANGE, the
view-change proofs in NEW-VIEW, commit certificates in DECISION) with the `Verifier`; the outer
signature of every message is checked once by the runtime before the engine sees it.
"""

from __future__ import annotations

from typing import Protocol


class Signer(Protocol):
    """Holds this validator's private key."""

    @property
    def public_key(self) -> bytes:
        """The 32-byte public key, which is also the validator id."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Signature of `message`."""
        ...


class Verifier(Protocol):
    """Checks signatures of any validator."""

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True if `signature` is `public_key`'s signature of `message`; never raises."""
        ...
