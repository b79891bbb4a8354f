"""Fixtures for the p2p unit tests: real Ed25519 keys through PyNaCl."""

from __future__ import annotations

import pytest

from tests.signing import NaclSigner, NaclVerifier


@pytest.fixture
def make_signer():
    """Deterministic signers: ``make_signer(n)`` is the same key within a test."""

    def make(index: int) -> NaclSigner:
        return NaclSigner.from_byte(index + 1)

    return make


@pytest.fixture
def verifier() -> NaclVerifier:
    return NaclVerifier()
