"""Quorum certificates: a quorum of signed votes on one block digest at one height and view.

A `CommitCertificate` (a quorum of COMMIT signatures) makes a block final and travels in the
header of the next block, so anyone holding the validator set can check a block's finality
with `verify_certificate`. A `PreparedCertificate` (a quorum of PREPARE signatures) is what a
validator carries into a VIEW-CHANGE to prove that a block may have been committed and must
therefore be re-proposed. Each vote is the voter's id and its signature over the canonical
signing bytes of the vote it cast, so a certificate is checked without the votes themselves.
Votes are kept sorted by id so that one set of votes has one encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import msgpack

from consensus.crypto import Verifier
from consensus.encoding import (
    DIGEST_SIZE,
    KIND_COMMIT,
    KIND_PREPARE,
    MAX_HEIGHT,
    MAX_SIGNATURE_SIZE,
    MAX_VALIDATORS,
    MAX_VIEW,
    check_bytes,
    check_int,
    check_votes,
    pack,
    vote_signing_bytes,
)
from consensus.validators import ValidatorSet


class CertificateDecodeError(ValueError):
    """Bytes that are not a well-formed certificate (the fault of whoever sent them)."""


def _check_fields(cert: QuorumCertificate) -> None:
    check_int("height", cert.height, 1, MAX_HEIGHT)
    check_int("view", cert.view, 0, MAX_VIEW)
    check_bytes("digest", cert.digest, size=DIGEST_SIZE)
    check_votes("votes", cert.votes)


def sorted_votes(votes: dict[bytes, bytes]) -> tuple[tuple[bytes, bytes], ...]:
    """Votes in their canonical order (sorted by validator id)."""
    return tuple(sorted(votes.items()))


@dataclass(frozen=True, slots=True, kw_only=True)
class QuorumCertificate:
    """A quorum of signed votes for (height, view, digest); the two kinds below share this body.

    The kinds do not compare equal to each other (dataclass equality needs the same class), so a
    prepared certificate never passes for a commit certificate with the same votes.
    """

    height: int
    view: int
    digest: bytes
    votes: tuple[tuple[bytes, bytes], ...]

    def __post_init__(self) -> None:
        _check_fields(self)

    def to_value(self) -> list[Any]:
        return [self.height, self.view, self.digest, [list(v) for v in self.votes]]

    def encode(self) -> bytes:
        """Canonical bytes, e.g. for the next block's header."""
        return pack(self.to_value())

    @classmethod
    def from_value(cls, value: Any) -> Self:
        height, view, digest, votes = _unpack_fields(value)
        return cls(height=height, view=view, digest=digest, votes=votes)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Parse bytes from outside; any malformation raises `CertificateDecodeError`."""
        return cls.from_value(_unpack(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitCertificate(QuorumCertificate):
    """A quorum of COMMIT signatures for (height, view, digest): the block is final."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedCertificate(QuorumCertificate):
    """A quorum of PREPARE signatures for (height, view, digest): the block may be committed."""


def _unpack(data: bytes) -> Any:
    if type(data) is not bytes or len(data) > 64 + MAX_VALIDATORS * (48 + MAX_SIGNATURE_SIZE):
        raise CertificateDecodeError("certificate must be bytes of bounded size")
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=False, max_str_len=0, max_bin_len=MAX_SIGNATURE_SIZE,
            max_array_len=MAX_VALIDATORS, max_map_len=0, max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, msgpack.exceptions.UnpackException) as exc:
        raise CertificateDecodeError(f"certificate is not valid msgpack: {exc}") from None


def _unpack_fields(value: Any) -> tuple[int, int, bytes, tuple[tuple[bytes, bytes], ...]]:
    if type(value) is not tuple or len(value) != 4 or type(value[3]) is not tuple:
        raise CertificateDecodeError("a certificate is [height, view, digest, votes]")
    votes = tuple(tuple(v) if type(v) is tuple else v for v in value[3])
    try:
        check_int("height", value[0], 1, MAX_HEIGHT)
        check_int("view", value[1], 0, MAX_VIEW)
        check_bytes("digest", value[2], size=DIGEST_SIZE)
        check_votes("votes", votes)
    except ValueError as exc:
        raise CertificateDecodeError(str(exc)) from None
    return value[0], value[1], value[2], votes


def _verify_votes(kind: int, cert: QuorumCertificate, chain_id: str,
                  validators: ValidatorSet, verifier: Verifier) -> bool:
    if len(cert.votes) < validators.quorum:
        return False
    seen: set[bytes] = set()
    for voter, signature in cert.votes:
        if voter not in validators or voter in seen:
            return False
        seen.add(voter)
        message = vote_signing_bytes(kind, chain_id, cert.height, cert.view, voter, cert.digest)
        if not verifier.verify(voter, message, signature):
            return False
    return True


def verify_certificate(cert: CommitCertificate, *, chain_id: str, validators: ValidatorSet,
                       verifier: Verifier) -> bool:
    """True if a quorum of distinct members of `validators` signed COMMIT for the certified block."""
    return _verify_votes(KIND_COMMIT, cert, chain_id, validators, verifier)


def verify_prepared(cert: PreparedCertificate, *, chain_id: str, validators: ValidatorSet,
                    verifier: Verifier) -> bool:
    """True if a quorum of distinct members of `validators` signed PREPARE for the block."""
    return _verify_votes(KIND_PREPARE, cert, chain_id, validators, verifier)
