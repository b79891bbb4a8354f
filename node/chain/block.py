"""Blocks: a header that commits to everything, and the ordered transactions.

The header holds the chain id, height, previous block hash, timestamp (milliseconds, chosen
by the proposer), proposer id, the Merkle roots of the transactions and of their results, the
state root after applying the block, and the encoded commit certificate of the previous block
(empty at height 1), and the protocol version the block follows. The block hash is SHA-256 of the header's canonical encoding, so a
header alone identifies and proves a block; transactions and results are proven against it
with Merkle inclusion proofs.

The protocol version is encoded only from version 2 on, as an eleventh field: a version-1 header
is the ten-field array blocks had before versions existed, so every old block keeps its bytes
and its hash. Version 1 is never written explicitly (one header, one encoding). Which versions
this binary can validate and execute is `SUPPORTED_VERSIONS`; the version of each height is
scheduled on the ledger (`governance.schedule_upgrade`, node/app/upgrades.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from node.core.crypto import HASH_SIZE, KEY_SIZE, sha256
from node.core.encoding import DecodeError, canonical, decode
from node.core.merkle import merkle_root

BLOCK_DOMAIN = "medledger-block-v1"
MAX_BLOCK_BYTES = 8 * 1024 * 1024
MAX_BLOCK_TXS = 20_000
BASE_VERSION = 1  # the version of a header without a version field: every block made before versions
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)  # the protocol versions this binary validates and executes
MAX_VERSION = 2**16


class BlockInvalid(ValueError):
    """A block (from a peer or the disk) is malformed or inconsistent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    chain_id: str
    height: int
    prev_hash: bytes
    timestamp_ms: int
    proposer: bytes
    tx_root: bytes
    results_root: bytes
    state_root: bytes
    prev_certificate: bytes = b""
    version: int = BASE_VERSION

    def fields(self) -> list[Any]:
        fields: list[Any] = [BLOCK_DOMAIN, self.chain_id, self.height, self.prev_hash, self.timestamp_ms,
                             self.proposer, self.tx_root, self.results_root, self.state_root, self.prev_certificate]
        return fields if self.version == BASE_VERSION else [*fields, self.version]

    def encode(self) -> bytes:
        return canonical(self.fields())

    def hash(self) -> bytes:
        return sha256(self.encode())

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "prev_hash": self.prev_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "proposer": self.proposer.hex(),
            "tx_root": self.tx_root.hex(),
            "results_root": self.results_root.hex(),
            "state_root": self.state_root.hex(),
            "prev_certificate": self.prev_certificate.hex(),
            "version": self.version,
        }

    @classmethod
    def from_value(cls, value: Any) -> "Header":
        if not isinstance(value, list) or len(value) not in (10, 11) or value[0] != BLOCK_DOMAIN:
            raise BlockInvalid("header is not a medledger-block-v1 array of 10 fields (11 with a version)")
        _, chain_id, height, prev_hash, ts, proposer, tx_root, results_root, state_root, cert = value[:10]
        version = value[10] if len(value) == 11 else BASE_VERSION
        if len(value) == 11 and not (isinstance(version, int) and not isinstance(version, bool)
                                     and BASE_VERSION < version <= MAX_VERSION):
            raise BlockInvalid("header version must be an integer above 1 (version 1 has no version field)")
        checks = [
            isinstance(chain_id, str),
            isinstance(height, int) and not isinstance(height, bool) and height >= 1,
            isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0,
            isinstance(proposer, bytes) and len(proposer) == KEY_SIZE,
            isinstance(cert, bytes),
        ] + [isinstance(h, bytes) and len(h) == HASH_SIZE for h in (prev_hash, tx_root, results_root, state_root)]
        if not all(checks):
            raise BlockInvalid("header fields have wrong types or sizes")
        return cls(chain_id=chain_id, height=height, prev_hash=prev_hash, timestamp_ms=ts, proposer=proposer,
                   tx_root=tx_root, results_root=results_root, state_root=state_root, prev_certificate=cert,
                   version=version)


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    header: Header
    txs: tuple[bytes, ...]  # canonical wire encodings of the transactions, in order
    hash: bytes = field(default=b"", compare=False)

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", self.header.hash())

    @property
    def height(self) -> int:
        return self.header.height

    def encode(self) -> bytes:
        return canonical([self.header.fields(), list(self.txs)])


def decode_block(data: bytes, *, stored: bool = False) -> Block:
    """Decode a block's bytes; check shape and that the tx root matches the transactions.
    `stored=True` is for a block read back from our own store, which was checked in full before
    it was written: only its shape is checked again."""
    try:
        if stored:
            value = msgpack.unpackb(data, raw=False, use_list=True)
        else:
            value = decode(data, max_bytes=MAX_BLOCK_BYTES, max_items=MAX_BLOCK_TXS + 16)
    except (DecodeError, ValueError) as exc:
        raise BlockInvalid(str(exc)) from None
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], list):
        raise BlockInvalid("a block is [header, transactions]")
    header = Header.from_value(value[0])
    txs = value[1]
    if not all(isinstance(t, bytes) for t in txs):
        raise BlockInvalid("transactions must be byte strings")
    if not stored and merkle_root(txs) != header.tx_root:
        raise BlockInvalid("transaction root does not match the transactions")
    return Block(header=header, txs=tuple(txs))


def tx_hashes(block: Block) -> list[bytes]:
    return [sha256(t) for t in block.txs]
