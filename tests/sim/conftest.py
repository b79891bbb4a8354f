"""Shared pieces of the simulation tests: real Ed25519 for the simulator, seeds in test ids."""

from __future__ import annotations

from consensus.crypto import Signer, Verifier

from tests.signing import NaclSigner, NaclVerifier


def ed25519_crypto(count: int) -> tuple[list[Signer], Verifier]:
    """Deterministic Ed25519 keys for `count` validators (seeded, so runs stay reproducible)."""
    return [NaclSigner.from_byte(i + 1) for i in range(count)], NaclVerifier()


def seed_id(seed: int) -> str:
    return f"seed={seed}"
