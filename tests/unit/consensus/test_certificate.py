"""Commit and prepared certificates: a quorum of distinct members, every signature valid."""

from __future__ import annotations

import hashlib

import pytest

from consensus.certificate import (CertificateDecodeError, CommitCertificate, PreparedCertificate, verify_certificate,
                                   verify_prepared)
from consensus.encoding import KIND_COMMIT, KIND_PREPARE, vote_signing_bytes
from consensus.simulation.fake_crypto import FakeKeyring, FakeVerifier
from consensus.validators import ValidatorSet

KEYRING = FakeKeyring()
SIGNERS = [KEYRING.new_signer(bytes([i])) for i in range(5)]
OUTSIDER = KEYRING.new_signer(b"outsider")
VALIDATORS = ValidatorSet(validators=tuple(s.public_key for s in SIGNERS[:4]))
VERIFIER = FakeVerifier(KEYRING)
DIGEST = hashlib.sha256(b"block").digest()


def cert(signers: list, *, kind: int = KIND_COMMIT, chain: str = "c", digest: bytes = DIGEST) -> CommitCertificate:
    votes = {s.public_key: s.sign(vote_signing_bytes(kind, chain, 7, 1, s.public_key, digest)) for s in signers}
    return CommitCertificate(height=7, view=1, digest=DIGEST, votes=tuple(sorted(votes.items())))


def check(c: CommitCertificate) -> bool:
    return verify_certificate(c, chain_id="c", validators=VALIDATORS, verifier=VERIFIER)


def test_a_quorum_of_valid_commit_signatures_verifies() -> None:
    assert check(cert(SIGNERS[:3]))
    assert check(cert(SIGNERS[:4]))


def test_fewer_than_a_quorum_fails() -> None:
    assert not check(cert(SIGNERS[:2]))


def test_a_non_member_vote_fails_even_with_a_quorum_of_members() -> None:
    assert not check(cert(SIGNERS[:3] + [OUTSIDER]))


def test_a_bad_signature_fails() -> None:
    good = cert(SIGNERS[:3])
    votes = list(good.votes)
    votes[1] = (votes[1][0], b"\x00" * 64)
    assert not check(CommitCertificate(height=7, view=1, digest=DIGEST, votes=tuple(votes)))


def test_signatures_for_another_chain_kind_or_block_fail() -> None:
    assert not check(cert(SIGNERS[:3], chain="other"))
    assert not check(cert(SIGNERS[:3], kind=KIND_PREPARE))
    assert not check(cert(SIGNERS[:3], digest=bytes(32)))


def test_prepared_certificate_uses_prepare_signatures() -> None:
    c = cert(SIGNERS[:3], kind=KIND_PREPARE)
    prepared = PreparedCertificate(height=c.height, view=c.view, digest=c.digest, votes=c.votes)
    assert verify_prepared(prepared, chain_id="c", validators=VALIDATORS, verifier=VERIFIER)
    assert not check(c)


def test_duplicate_or_unsorted_votes_cannot_be_built() -> None:
    v = cert(SIGNERS[:3]).votes
    with pytest.raises(ValueError):
        CommitCertificate(height=7, view=1, digest=DIGEST, votes=(v[0], v[0], v[1]))
    with pytest.raises(ValueError):
        CommitCertificate(height=7, view=1, digest=DIGEST, votes=(v[1], v[0], v[2]))


def test_encode_decode_round_trip_and_garbage() -> None:
    c = cert(SIGNERS[:3])
    assert CommitCertificate.decode(c.encode()) == c
    for bad in (b"", b"\x94\x00\x00\x00\x00", c.encode()[:-3], c.encode() + b"\x00", b"\xa1x"):
        with pytest.raises(CertificateDecodeError):
            CommitCertificate.decode(bad)
