"""Canonical byte layouts and field checks shared by messages, certificates and the WAL.

Everything a validator signs is a msgpack array with a fixed field order that starts with a
domain tag and the kind of vote, and always includes the chain id, so that a signature made
for one purpose, one chain or one height can never be replayed as another. There are no maps
in signed data, no floats, and integers are range-checked, so two implementations produce the
same bytes for the same vote. The checks here are used when a dataclass is built: a value that
fails them raises `ValueError` (from a peer's bytes the decoder turns that into a discard).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

DOMAIN = "medledger/consensus/v1"

ID_SIZE = 32  # Ed25519 public key = validator id
DIGEST_SIZE = 32
MAX_SIGNATURE_SIZE = 128
MAX_CHAIN_ID_LEN = 64
MAX_HEIGHT = (1 << 63) - 1
MAX_VIEW = (1 << 31) - 1
MAX_VALIDATORS = 128

# Kinds of signed content; also the first element of each encoded message.
KIND_PRE_PREPARE = 1
KIND_PREPARE = 2
KIND_COMMIT = 3
KIND_VIEW_CHANGE = 4
KIND_NEW_VIEW = 5
KIND_DECISION = 6


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()


def pack(value: Any) -> bytes:
    """Canonical msgpack of a value made of lists, ints, str, bytes and None."""
    return msgpack.packb(value, use_bin_type=True)


def vote_signing_bytes(kind: int, chain_id: str, height: int, view: int, sender: bytes, digest: bytes) -> bytes:
    """The bytes signed for a PRE-PREPARE, PREPARE, COMMIT or DECISION on one block digest."""
    return pack([DOMAIN, kind, chain_id, height, view, sender, digest])


def proposal_signing_bytes(kind: int, chain_id: str, height: int, view: int, sender: bytes, digest: bytes,
                           payload: bytes) -> bytes:
    """The bytes signed for a PRE-PREPARE or DECISION: the digest and the SHA-256 of the payload.

    Covering the payload means nobody relaying the message can swap in another payload under
    the sender's signature (which would make honest validators reject a good proposal).
    """
    return pack([DOMAIN, kind, chain_id, height, view, sender, digest, hashlib.sha256(payload).digest()])


def check_int(name: str, value: object, low: int, high: int) -> int:
    if type(value) is not int:  # bool is an int subclass and is refused on purpose
        raise ValueError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} outside [{low}, {high}]")
    return value


def check_bytes(name: str, value: object, *, size: int | None = None, max_size: int | None = None) -> bytes:
    if type(value) is not bytes:
        raise ValueError(f"{name} must be bytes, not {type(value).__name__}")
    if size is not None and len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, not {len(value)}")
    if max_size is not None and len(value) > max_size:
        raise ValueError(f"{name} longer than {max_size} bytes")
    return value


def check_chain_id(value: object) -> str:
    if type(value) is not str or not value or len(value.encode()) > MAX_CHAIN_ID_LEN:
        raise ValueError(f"chain_id must be a non-empty str of at most {MAX_CHAIN_ID_LEN} bytes")
    return value


def check_votes(name: str, votes: object) -> tuple[tuple[bytes, bytes], ...]:
    """A tuple of (validator id, signature) pairs, sorted by id, without repeats."""
    if type(votes) is not tuple or len(votes) > MAX_VALIDATORS:
        raise ValueError(f"{name} must be a tuple of at most {MAX_VALIDATORS} (id, signature) pairs")
    previous = b""
    for vote in votes:
        if type(vote) is not tuple or len(vote) != 2:
            raise ValueError(f"{name}: each vote is an (id, signature) pair")
        check_bytes(f"{name} id", vote[0], size=ID_SIZE)
        check_bytes(f"{name} signature", vote[1], max_size=MAX_SIGNATURE_SIZE)
        if vote[0] <= previous:
            raise ValueError(f"{name}: votes must be sorted by id with no repeats")
        previous = vote[0]
    return votes
