"""State snapshots in the running node, and checking one before a new node starts from it.

Taking: every `storage.snapshot_interval` blocks, right after the commit of such a height (on
the node's thread, so nothing else is written in between), `Snapshotter.after_commit` takes a
LevelDB snapshot of the store (`KeyValueStore.view`: it copies nothing) and the head's block
and certificate, and hands the writing to a background thread. That is all the commit path
pays; the thread streams the state into 1 MiB chunks (storage/snapshots.py), yields between
chunks, signs the result with the node's key (an attestation) and prunes old snapshots. While
one snapshot is being written the next due height is skipped, never queued.

Checking (a joiner, `medledger node init --join`): `verify_snapshot` accepts a snapshot only if
its block is the one at its height of this chain, carries a commit certificate of a quorum of
the validator set of that height, has the snapshot's state root in its header, and f + 1
validators of that set signed the snapshot's entry hash: the state root is a hash chain over
write sets (docs/architecture.md) and cannot be recomputed from the entries alone, so it is
the attestations of f + 1 validators (at least one of them honest) that tie the entries to the
certified block. `start_from_snapshot` then rebuilds the entries from the chunks (every chunk's
hash, key order, count and entry hash checked) into an empty store.

The validator set of the snapshot's height is derived, never read from the snapshot: from the
genesis set, `verify_changes` walks the validator-set changes (GET /v1/validators?proofs=1,
built by `change_evidence`), accepting each new set only after the commit certificate of the
block that decided it verifies with the set in force at that block's height and the deciding
transaction, proven in that block with the result "ok", makes exactly that set. The snapshot's
own history of sets must then agree with the verified one up to its height, so a change left
out of the evidence is refused too. (What is not re-checked: that the approvals before the
deciding one reached the quorum; the validators of that height certified the block that says so.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.certificate import CommitCertificate, verify_certificate
from consensus.validators import ValidatorSet
from storage.chain import P_STATE, ChainStore
from storage.kv import StoreView
from storage.snapshots import (
    KEEP_SNAPSHOTS,
    SnapshotInfo,
    SnapshotInvalid,
    add_attestation,
    attestation_message,
    legacy_attestation_message,
    verify_chunk_runs,
    write_snapshot,
)

from node.app import keys
from node.app.validator_sets import CHANGE_DELAY
from node.chain.block import Block, BlockInvalid, Header, decode_block
from node.chain.genesis import Genesis
from node.chain.tx import Transaction, TxRejected, check_signature, decode_tx
from node.core.crypto import Ed25519Verifier, Identity
from node.core.encoding import DecodeError, canonical, decode
from node.core.merkle import inclusion_proof, verify_inclusion

log = logging.getLogger("medledger.node")

Runner = Callable[[Callable[[], None]], None]
JOIN_TIMEOUT_S = 30.0


def in_thread(job: Callable[[], None]) -> None:
    """Run `job` on its own daemon thread (the production runner)."""
    threading.Thread(target=job, name="medledger-snapshot", daemon=True).start()


def _state_entries(view: StoreView) -> Iterator[tuple[bytes, bytes]]:
    n = len(P_STATE)
    for key, value in view.iterate(P_STATE):
        yield key[n:], value


def _yielding(entries: Iterable[tuple[bytes, bytes]], every: int = 4096) -> Iterator[tuple[bytes, bytes]]:
    """Pass `entries` on, giving the interpreter to the node's thread every `every` entries."""
    for i, entry in enumerate(entries):
        if i % every == every - 1:
            time.sleep(0)
        yield entry


class Snapshotter:
    """Takes the node's snapshots into `directory` every `interval` heights (0 or no directory: never)."""

    def __init__(self, *, store: ChainStore, chain_id: str, identity: Identity, directory: Path | None,
                 interval: int, keep: int = KEEP_SNAPSHOTS, run: Runner = in_thread) -> None:
        self.store = store
        self.chain_id = chain_id
        self.identity = identity
        self.directory = directory
        self.interval = interval
        self.keep = keep
        self.run = run
        self.busy = False
        self.taken = 0  # snapshots finished (for tests and status)
        self.skipped = 0  # due heights skipped because one was still being written
        self._done = threading.Event()
        self._done.set()

    def after_commit(self, height: int) -> None:
        """Called after block `height` is committed: start a snapshot if one is due."""
        if self.directory is None or self.interval <= 0 or height % self.interval:
            return
        if self.busy:
            self.skipped += 1
            log.info("snapshot at height %d skipped: the previous one is still being written", height)
            return
        store = self.store
        block, cert = store.block_bytes(height), store.certificate(height)
        if block is None or cert is None:
            return
        block_hash, state_root = store.last_hash, store.state_root
        state_sum = (store.stored_state_sum() or 0).to_bytes(32, "big")
        view = store.kv.view()
        directory = self.directory
        self.busy = True
        self._done.clear()

        def job() -> None:
            try:
                info = write_snapshot(directory, _yielding(_state_entries(view)), chain_id=self.chain_id, height=height,
                                      block_hash=block_hash, state_root=state_root, block=block, certificate=cert,
                                      state_sum=state_sum, keep=self.keep)
                add_attestation(directory, height, self.identity.public_key,
                                self.identity.sign(attestation_message(info)))
                self.taken += 1
                log.info("snapshot at height %d written: %d entries in %d chunks", height, info.entries,
                         len(info.chunk_hashes))
            except Exception:  # a failed snapshot must never take the node down
                log.exception("snapshot at height %d failed", height)
            finally:
                view.close()
                self.busy = False
                self._done.set()

        self.run(job)

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Wait for a snapshot being written to finish (before the store closes)."""
        self._done.wait(timeout_s)


VALIDATOR_TYPES = ("validator.add", "validator.remove", "validator.rotate")


@dataclass(frozen=True)
class SetChange:
    """One validator-set change with the evidence that the chain made it: the header and commit
    certificate of the block that decided it (effective_height - 2), and the deciding
    transaction with its Merkle paths to that header's tx_root and (with the result "ok") to its
    results_root. All of it is public: validator transactions concern no patient."""

    effective_height: int
    validators: tuple[bytes, ...]
    header: bytes
    certificate: bytes
    tx: bytes
    index: int
    size: int
    tx_path: tuple[bytes, ...]
    results_path: tuple[bytes, ...]

    @property
    def decided_height(self) -> int:
        return self.effective_height - CHANGE_DELAY

    def to_json(self) -> dict[str, Any]:
        return {"effective_height": self.effective_height, "decided_height": self.decided_height,
                "validators": [v.hex() for v in self.validators], "header": self.header.hex(),
                "certificate": self.certificate.hex(), "tx": self.tx.hex(), "index": self.index, "size": self.size,
                "tx_path": [p.hex() for p in self.tx_path], "results_path": [p.hex() for p in self.results_path]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "SetChange":
        """Parse an entry of GET /v1/validators?proofs=1 (raises KeyError, TypeError, ValueError)."""
        def h(name: str) -> bytes:
            return bytes.fromhex(str(doc[name]))

        return cls(effective_height=int(doc["effective_height"]), validators=tuple(bytes.fromhex(v) for v in doc["validators"]),
                   header=h("header"), certificate=h("certificate"), tx=h("tx"), index=int(doc["index"]),
                   size=int(doc["size"]), tx_path=tuple(bytes.fromhex(p) for p in doc["tx_path"]),
                   results_path=tuple(bytes.fromhex(p) for p in doc["results_path"]))


def explained_set(before: Sequence[bytes], tx: Transaction) -> list[bytes] | None:
    """The set a successful validator transaction makes of the last scheduled set `before`
    (validator_sets: an added one appended, a removed one left out, a rotated key in its old
    key's place), or None when it changes nothing."""
    body = tx.body
    if tx.type == "validator.add" and isinstance(body.get("candidate"), bytes) and body["candidate"] not in before:
        return [*before, body["candidate"]]
    if tx.type == "validator.remove" and body.get("validator") in before:
        return [v for v in before if v != body["validator"]]
    if tx.type == "validator.rotate" and tx.sender in before and isinstance(body.get("new_key"), bytes):
        return [body["new_key"] if v == tx.sender else v for v in before]
    return None


def _result_leaf(tx_hash: bytes, result: str | None) -> bytes:
    return canonical([tx_hash, result])  # a leaf of the header's results_root (node/app/executor.py)


def change_evidence(store: ChainStore, chain_id: str, history: Sequence[tuple[int, Sequence[bytes]]]) -> list[SetChange]:
    """The evidence of every change in `history` (the validator_sets history, oldest first) whose
    deciding block this store holds; the served side of `verify_changes`."""
    out: list[SetChange] = []
    for (_, before), (effective, ids) in zip(history, history[1:]):
        decided = effective - CHANGE_DELAY
        raw, cert = store.block_bytes(decided), store.certificate(decided)
        if raw is None or cert is None:
            continue  # before this node's snapshot base: a joiner asks a node that holds it
        block = decode_block(raw, stored=True)
        txs = [decode_tx(t, chain_id=chain_id) for t in block.txs]
        results = [loc.result if (loc := store.tx_location(t.hash)) else None for t in txs]
        for index, tx in enumerate(txs):
            if tx.type in VALIDATOR_TYPES and results[index] == "ok" and explained_set(before, tx) == list(ids):
                leaves = [_result_leaf(t.hash, r) for t, r in zip(txs, results)]
                out.append(SetChange(effective_height=effective, validators=tuple(ids), header=block.header.encode(),
                                     certificate=cert, tx=block.txs[index], index=index, size=len(txs),
                                     tx_path=tuple(inclusion_proof(block.txs, index)),
                                     results_path=tuple(inclusion_proof(leaves, index))))
                break
    return out


def verify_changes(genesis: Genesis, changes: Sequence[SetChange]) -> list[tuple[int, ValidatorSet]]:
    """The validator sets by effective height, from the genesis set and `changes` (oldest first),
    each accepted only after its deciding block's certificate verifies with the set in force at
    that block's height, and the deciding transaction, proven in that block with the result
    "ok", makes exactly the claimed set of the one before. Raises SnapshotInvalid."""
    sets = [(1, ValidatorSet(validators=tuple(v.id for v in genesis.validators)))]
    verifier = Ed25519Verifier()
    for change in changes:
        d = change.decided_height
        where = f"the validator-set change decided at height {d}"
        if d < 1 or change.effective_height <= sets[-1][0]:
            raise SnapshotInvalid(f"{where} is out of order (effective at {change.effective_height})")
        deciding = _set_of(sets, d)
        try:
            header = Header.from_value(decode(change.header))
            cert = CommitCertificate.decode(change.certificate)
            tx = decode_tx(change.tx, chain_id=genesis.chain_id)
            check_signature(tx)
        except (DecodeError, BlockInvalid, TxRejected, ValueError) as exc:
            raise SnapshotInvalid(f"{where}: its evidence does not decode: {exc}") from None
        if header.chain_id != genesis.chain_id or header.height != d:
            raise SnapshotInvalid(f"{where}: the header is not of height {d} of this chain")
        if cert.height != d or cert.digest != header.hash() or not verify_certificate(
                cert, chain_id=genesis.chain_id, validators=deciding, verifier=verifier):
            raise SnapshotInvalid(f"{where}: block {d} lacks a commit certificate of a quorum of the validators of "
                                  f"that height")
        if not (verify_inclusion(change.tx, change.index, change.size, change.tx_path, header.tx_root)
                and verify_inclusion(_result_leaf(tx.hash, "ok"), change.index, change.size, change.results_path,
                                     header.results_root)):
            raise SnapshotInvalid(f"{where}: the deciding transaction is not proven in block {d} with the result ok")
        made = explained_set(sets[-1][1].validators, tx) if tx.type in VALIDATOR_TYPES else None
        if made is None or tuple(made) != change.validators:
            raise SnapshotInvalid(f"{where}: its transaction ({tx.type}) does not make the claimed set")
        if tx.sender not in deciding:
            raise SnapshotInvalid(f"{where}: its transaction is not from a validator of height {d}")
        sets.append((change.effective_height, ValidatorSet(validators=change.validators)))
    return sets


def _set_of(sets: Sequence[tuple[int, ValidatorSet]], height: int) -> ValidatorSet:
    return [s for effective, s in sets if effective <= height][-1]


def validators_at(genesis: Genesis, height: int, changes: Sequence[SetChange] = ()) -> ValidatorSet:
    """The validator set whose quorum certifies block `height`: the genesis set, walked through
    the verified `changes` (`verify_changes`), never read from the unverified snapshot."""
    return _set_of(verify_changes(genesis, changes), height)


@dataclass(frozen=True, slots=True)
class VerifiedSnapshot:
    """A snapshot whose block, certificate and attestations were checked: its block, and whether
    f + 1 validators attested its state checksum too (else only its entries: older validators)."""

    block: Block
    state_sum_attested: bool


def verify_snapshot(info: SnapshotInfo, *, genesis: Genesis, attestations: Sequence[tuple[bytes, bytes]],
                    validators: ValidatorSet | None = None, changes: Sequence[SetChange] = ()) -> VerifiedSnapshot:
    """Check the snapshot's block, certificate and attestations (not its chunks: see
    `start_from_snapshot`). Raises SnapshotInvalid saying what is wrong."""
    if info.chain_id != genesis.chain_id:
        raise SnapshotInvalid(f"the snapshot is of chain {info.chain_id!r}, not {genesis.chain_id!r}")
    vset = validators if validators is not None else validators_at(genesis, info.height, changes)
    try:
        block = decode_block(info.block, stored=True)
    except BlockInvalid as exc:
        raise SnapshotInvalid(f"the snapshot's block does not decode: {exc}") from None
    header = block.header
    if block.hash != info.block_hash or header.height != info.height or header.chain_id != genesis.chain_id:
        raise SnapshotInvalid(f"the snapshot's block is not block {info.height} {info.block_hash.hex()[:16]} of this chain")
    if header.state_root != info.state_root:
        raise SnapshotInvalid("the state root in the snapshot's block header differs from the snapshot's state root")
    try:
        cert = CommitCertificate.decode(info.certificate)
    except ValueError as exc:
        raise SnapshotInvalid(f"the snapshot's commit certificate does not decode: {exc}") from None
    verifier = Ed25519Verifier()
    if cert.height != info.height or cert.digest != block.hash or not verify_certificate(
            cert, chain_id=genesis.chain_id, validators=vset, verifier=verifier):
        raise SnapshotInvalid(f"block {info.height} of the snapshot lacks a commit certificate of a quorum of "
                              f"the validators of that height")
    message, legacy = attestation_message(info), legacy_attestation_message(info)
    with_sum = {s for s, sig in attestations if s in vset and verifier.verify(s, message, sig)}
    signers = with_sum | {s for s, sig in attestations if s in vset and s not in with_sum and verifier.verify(s, legacy, sig)}
    if len(signers) < vset.weak_quorum:
        raise SnapshotInvalid(f"only {len(signers)} validators attest the snapshot's entries at height {info.height}; "
                              f"{vset.weak_quorum} (f + 1) are needed")
    return VerifiedSnapshot(block, state_sum_attested=len(with_sum) >= vset.weak_quorum)


def start_from_snapshot(store: ChainStore, *, genesis: Genesis, info: SnapshotInfo, chunks: Iterable[bytes],
                        attestations: Sequence[tuple[bytes, bytes]], changes: Sequence[SetChange] = ()) -> None:
    """Verify the snapshot (against the set of its height, from the verified `changes`) and
    write it into the empty `store` (head = its height). The snapshot's own history of sets must
    agree with the verified one up to its height: a change left out of `changes` is refused too.
    On SnapshotInvalid the store may hold part of the entries but is not initialised: discard it."""
    # f + 1 validators (one honest at least) sign the entries' hash and their checksum: with the
    # entries checked against that hash, the checksum needs no hash of each entry here
    attested = verify_snapshot(info, genesis=genesis, attestations=attestations, changes=changes).state_sum_attested
    verified = [(e, list(s.validators)) for e, s in verify_changes(genesis, changes) if e <= info.height]

    def checked() -> Iterator[list[list[bytes]]]:
        recorded = [(1, [v.id for v in genesis.validators])]  # no history entry: the genesis set
        for run in verify_chunk_runs(info, chunks, check_state_sum=not attested):
            if run and run[0][0] <= keys.VALIDATOR_SETS <= run[-1][0]:  # keys ascend: only this run can hold it
                for key, value in run:
                    if key == keys.VALIDATOR_SETS:
                        try:
                            recorded = [(int(e), list(ids)) for e, ids in decode(value)]
                        except (DecodeError, TypeError, ValueError):
                            raise SnapshotInvalid("the snapshot's history of validator sets does not decode") from None
            yield run
        if [(e, ids) for e, ids in recorded if e <= info.height] != verified:
            raise SnapshotInvalid("the snapshot's history of validator sets differs from the verified one "
                                  "(a change is missing from the evidence, or the snapshot is forged)")

    store.init_from_snapshot(genesis_hash=genesis.hash(), height=info.height, block_hash=info.block_hash,
                             block_bytes=info.block, certificate=info.certificate, state_root=info.state_root,
                             runs=checked(), state_sum=int.from_bytes(info.state_sum, "big"))
