"""The deterministic state machine: genesis state, block execution and the state root.

`execute_block` is a pure function of (committed state, block contents, which transactions were
already verified): it returns each transaction's result code, the sorted write set and the new
state root. Every replica computes the same bytes, so a divergent replica shows up in the very
next header.

Result codes: "ok"; "nonce_replayed" and "unknown_type" (set here); otherwise whatever the
type's `execute` returned (writes kept) or raised with `ExecFailed` (writes discarded).

A transaction from a sender with no registered identity (other than its own `identity.register`)
does not belong in a block at all: recording it would still write its nonce, so any key could
fill the permanent chain and its state. A block holding one is rejected (`UnregisteredSender`);
the proposer leaves such transactions out (`drop_unregistered`), and admission refuses them
before that (node/runtime/runtime.py).

State root: root(h) = SHA-256(canonical(["medledger-state-v1", root(h-1), h, W])) where W is the
Merkle root of the block's write set in key order. The root therefore commits to the genesis
state and to every change since, at a cost proportional to what a block writes, not to the
size of the state (see docs/architecture.md for why and what it does not give yet).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from msgpack import packb as _packb

from node.core.crypto import sha256
from node.core.encoding import canonical
from node.core.merkle import merkle_root
from node.chain.genesis import Genesis
from node.chain.vocabulary import UNSPECIFIED
from node.chain.tx import Transaction, TxRejected, check_signature, decode_tx

from node.app import keys
from node.app.registry import ExecContext, ExecFailed, check_tx_body, get_type
from node.app.state import EmptyState, Overlay, RememberingReader, StateReader
from node.app.types.identity import identity_key

STATE_DOMAIN = "medledger-state-v1"
NONCE_PREFIX = keys.NONCE
RESULT_OK = "ok"
_U64 = struct.Struct(">Q")


class BlockRejected(ValueError):
    """A proposed block cannot be applied (a bad transaction in it, a duplicate...)."""


class UnregisteredSender(BlockRejected):
    """A block holds a transaction whose sender has no registered identity at its place."""


REGISTRATION = "identity.register"  # the one type a sender without an identity may send


def nonce_key(sender: bytes) -> bytes:
    return NONCE_PREFIX + sender


def read_nonce(state: StateReader, sender: bytes) -> int:
    raw = state.get(nonce_key(sender))
    return _U64.unpack(raw)[0] if raw else 0


def _pair(a: bytes, b: bytes | str | None) -> bytes:
    # canonical([a, b]) for a byte key and a byte, text or absent value, without the walk
    return _packb([a, b], use_bin_type=True)


def state_root(prev_root: bytes, height: int, writes: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    leaves = [_pair(k, v) for k, v in writes]
    return sha256(canonical([STATE_DOMAIN, prev_root, height, merkle_root(leaves)]))


def results_root(tx_hashes: Sequence[bytes], results: Sequence[str]) -> bytes:
    return merkle_root([_pair(h, r) for h, r in zip(tx_hashes, results, strict=True)])


def genesis_writes(genesis: Genesis) -> list[tuple[bytes, bytes | None]]:
    """The state at height 0: the genesis institutions (and validators) registered, and the
    validator set whose quorum admits new institutions (`governance.admit_institution`)."""
    overlay = Overlay(EmptyState())
    overlay.put(keys.VALIDATORS, canonical([v.id for v in genesis.validators]))
    members = {inst.id: (inst.name, inst.kind) for inst in genesis.institutions}
    for v in genesis.validators:
        members.setdefault(v.id, (v.name, UNSPECIFIED))
    for member_id, (name, kind) in members.items():
        # the kind only when the genesis names one: a genesis without kinds keeps its state root
        record: dict[str, object] = {"role": "institution", "label": name[:64], "height": 0}
        if kind != UNSPECIFIED:
            record["kind"] = kind
        overlay.put(identity_key(member_id), canonical(record))
    return overlay.sorted_writes()


def genesis_state_root(genesis: Genesis) -> bytes:
    return state_root(bytes(32), 0, genesis_writes(genesis))


@dataclass(frozen=True, slots=True)
class BlockExecution:
    txs: list[Transaction]
    results: list[str]
    writes: list[tuple[bytes, bytes | None]]
    state_root: bytes
    results_root: bytes
    # committed values the block read by key (None: absent), among them most of what `writes`
    # replaces; the store uses them to update its state checksum without reading them again
    previous: dict[bytes, bytes | None] = field(default_factory=dict)
    dropped: tuple[bytes, ...] = ()  # hashes the proposer left out (drop_unregistered): unregistered or committed


def execute_transactions(
    base: StateReader,
    txs: Sequence[Transaction],
    *,
    height: int,
    timestamp_ms: int,
    dropped: list[Transaction] | None = None,
) -> tuple[list[str], Overlay]:
    """Run already-checked transactions in order; return result codes and the block overlay.

    A transaction from a sender not registered at its place in the block raises
    UnregisteredSender, unless `dropped` is given: then it is appended there, gets no result and
    writes nothing (the proposer builds its block from the others). Indexes count kept ones."""
    block = Overlay(base)
    results: list[str] = []
    index = -1
    for tx in txs:
        if tx.type != REGISTRATION and block.get(identity_key(tx.sender)) is None:
            if dropped is None:
                raise UnregisteredSender(f"transaction {tx.hash.hex()[:16]} is from a sender with no registered identity")
            dropped.append(tx)
            continue
        index += 1
        last = read_nonce(block, tx.sender)
        if tx.nonce <= last:
            results.append("nonce_replayed")
            continue
        block.put(nonce_key(tx.sender), _U64.pack(tx.nonce))
        tx_type = get_type(tx.type)
        if tx_type is None:  # checked at admission; a proposer that skipped the check is caught here
            results.append("unknown_type")
            continue
        scratch = Overlay(block)
        try:
            code = tx_type.execute(ExecContext(height=height, timestamp_ms=timestamp_ms, state=scratch, tx=tx, index=index))
        except ExecFailed as exc:
            results.append(exc.code)
            continue
        scratch.merge_into(block)
        results.append(code or RESULT_OK)
    return results, block


def execute_block(
    base: StateReader,
    prev_state_root: bytes,
    raw_txs: Sequence[bytes],
    *,
    chain_id: str,
    height: int,
    timestamp_ms: int,
    known: Callable[[bytes], Transaction | None],
    committed: Callable[[bytes], bool],
    certified: bool = False,
    drop_unregistered: bool = False,
) -> BlockExecution:
    """Decode, check and execute a block's transactions.

    `known(hash)` returns a transaction this node already verified (from its mempool), so its
    signature is not checked again; others are decoded and verified here, unless the block is
    `certified`: a commit certificate holds 2f+1 validators' signatures, so at least f+1 honest
    validators checked every transaction's signature before voting, and a node catching up
    re-executes the block (the state root must match) without verifying them all again.
    `committed(hash)` tells whether a hash is already on the chain (a block repeating one is
    rejected). It is asked only of a transaction whose nonce is not above its sender's committed
    nonce: a committed transaction always is (execution sets the sender's nonce to it, or it was
    already at or above it, and nonces never go down), so a fresh transaction costs no lookup
    of the transaction index. `drop_unregistered` (the proposer's mode) leaves out the
    transactions of senders with no registered identity, and any already committed, instead of
    rejecting the block: `txs` is then what the block holds and `dropped` the hashes left out.
    """
    txs: list[Transaction] = []
    seen: set[bytes] = set()
    reader = RememberingReader(base)
    stale: list[Transaction] = []
    for raw in raw_txs:
        tx_hash = sha256(raw)
        if tx_hash in seen:
            raise BlockRejected(f"transaction {tx_hash.hex()[:16]} is repeated")
        seen.add(tx_hash)
        tx = known(tx_hash)
        if tx is None:
            try:
                tx = decode_tx(raw, chain_id=chain_id)
                if tx.encoded != raw:
                    raise BlockRejected("a transaction in the block is not canonically encoded")
                check_tx_body(tx)
                if not certified:
                    check_signature(tx)
            except TxRejected as exc:
                raise BlockRejected(f"invalid transaction in block: {exc.code}: {exc.message}") from None
        if tx.nonce <= read_nonce(reader, tx.sender) and committed(tx_hash):
            if not drop_unregistered:
                raise BlockRejected(f"transaction {tx_hash.hex()[:16]} is repeated")
            stale.append(tx)
            continue
        txs.append(tx)
    dropped: list[Transaction] | None = [] if drop_unregistered else None
    results, overlay = execute_transactions(reader, txs, height=height, timestamp_ms=timestamp_ms, dropped=dropped)
    if dropped:
        gone = {t.hash for t in dropped}
        txs = [t for t in txs if t.hash not in gone]
    if stale:
        dropped = [*stale, *(dropped or ())]
    writes = overlay.sorted_writes()
    return BlockExecution(
        previous=reader.seen,
        dropped=tuple(t.hash for t in dropped or ()),
        txs=txs,
        results=results,
        writes=writes,
        state_root=state_root(prev_state_root, height, writes),
        results_root=results_root([t.hash for t in txs], results),
    )
