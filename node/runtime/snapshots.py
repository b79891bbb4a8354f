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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from consensus.certificate import CommitCertificate, verify_certificate
from consensus.validators import ValidatorSet
from storage.chain import P_STATE, ChainStore, state_entry_sum
from storage.kv import StoreView
from storage.snapshots import (
    KEEP_SNAPSHOTS,
    SnapshotInfo,
    SnapshotInvalid,
    add_attestation,
    attestation_message,
    verify_chunks,
    write_snapshot,
)

from node.chain.block import Block, BlockInvalid, decode_block
from node.chain.genesis import Genesis
from node.core.crypto import Ed25519Verifier, Identity

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


def validators_at(genesis: Genesis, height: int) -> ValidatorSet:
    """The validator set whose quorum certifies block `height`.

    Today the set is the genesis set at every height. This is the one place where the history of
    validator-set changes plugs in: it must return the set in effect at `height` (a change
    committed in block h takes effect at h + 2), derived from the genesis and verified changes,
    never from the unverified snapshot being checked."""
    del height
    return ValidatorSet(validators=tuple(v.id for v in genesis.validators))


def verify_snapshot(info: SnapshotInfo, *, genesis: Genesis, attestations: Sequence[tuple[bytes, bytes]],
                    validators: ValidatorSet | None = None) -> Block:
    """Check the snapshot's block, certificate and attestations (not its chunks: see
    `start_from_snapshot`); return the block. Raises SnapshotInvalid saying what is wrong."""
    if info.chain_id != genesis.chain_id:
        raise SnapshotInvalid(f"the snapshot is of chain {info.chain_id!r}, not {genesis.chain_id!r}")
    vset = validators if validators is not None else validators_at(genesis, info.height)
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
    message = attestation_message(info)
    signers = {s for s, sig in attestations if s in vset and verifier.verify(s, message, sig)}
    if len(signers) < vset.weak_quorum:
        raise SnapshotInvalid(f"only {len(signers)} validators attest the snapshot's entries at height {info.height}; "
                              f"{vset.weak_quorum} (f + 1) are needed")
    return block


def start_from_snapshot(store: ChainStore, *, genesis: Genesis, info: SnapshotInfo, chunks: Iterable[bytes],
                        attestations: Sequence[tuple[bytes, bytes]]) -> None:
    """Verify the snapshot and write it into the empty `store` (head = its height). On
    SnapshotInvalid the store may hold part of the entries but is not initialised: discard it."""
    verify_snapshot(info, genesis=genesis, attestations=attestations)

    def checked() -> Iterator[tuple[bytes, bytes]]:
        total = 0
        for key, value in verify_chunks(info, chunks):
            total += state_entry_sum(key, value)
            yield key, value
        if total % (1 << 256) != int.from_bytes(info.state_sum, "big"):
            raise SnapshotInvalid("the snapshot's entries do not give the state checksum its manifest names")

    store.init_from_snapshot(genesis_hash=genesis.hash(), height=info.height, block_hash=info.block_hash,
                             block_bytes=info.block, certificate=info.certificate, state_root=info.state_root,
                             entries=checked())
