"""Joining from a snapshot, in process (tests/harness): validators take snapshots every few
blocks off the commit path; a fresh node starts from one after checking it (the certificate,
f + 1 attestations, every chunk), follows the next blocks by the normal block sync, and holds the
same state and state root as the others. A snapshot whose parts were tampered with is refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from node.core.crypto import Identity
from node.home.config import build_config
from node.runtime.runtime import Node
from node.runtime.snapshots import Snapshotter, start_from_snapshot, verify_snapshot
from storage.chain import ChainStore
from storage.kv import LevelDBStore, MemoryStore
from storage.snapshots import (
    SnapshotInvalid,
    attestations,
    heights,
    list_snapshots,
    load_snapshot,
    read_chunk,
)
from tests.harness.cluster import Cluster, patient_registrations

INTERVAL = 4


def inline(job: Callable[[], None]) -> None:
    job()


def with_snapshots(c: Cluster, root: Path, run: Callable[[Callable[[], None]], None] = inline) -> None:
    for i, node in enumerate(c.nodes):
        node.snapshots = Snapshotter(store=node.store, chain_id=c.genesis.chain_id, identity=c.idents[i],
                                     directory=root / f"snap{i}", interval=INTERVAL, run=run)


def commit(c: Cluster, blocks: int, per_block: int, tag: bytes) -> None:
    for b in range(blocks):
        target = c.nodes[0].store.height + 1
        c.submit(b % len(c.nodes), patient_registrations(per_block, seed=tag + b"%d" % b))
        assert c.run_until(lambda: min(c.heights()) >= target)


def all_attestations(root: Path, n: int, height: int) -> list[tuple[bytes, bytes]]:
    return [a for i in range(n) for a in attestations(root / f"snap{i}", height)]


def chunks_of(root: Path, height: int) -> list[bytes]:
    info = load_snapshot(root, height)
    return [read_chunk(root, height, i) for i in range(len(info.chunk_hashes))]


def test_a_new_node_starts_from_a_snapshot_and_follows_the_chain(tmp_path: Path):
    c = Cluster(4, tmp=tmp_path)
    with_snapshots(c, tmp_path)
    c.start()
    joiner: Node | None = None
    try:
        commit(c, blocks=10, per_block=30, tag=b"before")  # 300 registrations
        assert heights(tmp_path / "snap0") == [4, 8]  # every INTERVAL blocks; the newest two kept
        info = list_snapshots(tmp_path / "snap0")[0]
        assert info.height == 8 and info.entries > 300
        # the same state at the same height gives every validator the same entry hash
        assert {load_snapshot(tmp_path / f"snap{i}", 8).entries_hash for i in range(4)} == {info.entries_hash}

        store = ChainStore(LevelDBStore(tmp_path / "joiner"))
        start_from_snapshot(store, genesis=c.genesis, info=info, chunks=chunks_of(tmp_path / "snap0", 8),
                            attestations=all_attestations(tmp_path, 4, 8))
        assert (store.height, store.base_height, store.block_bytes(7)) == (8, 8, None)
        config = build_config({"node": {"observer": True}}, env={})
        joiner = Node(config=config, genesis=c.genesis, identity=Identity.from_seed(b"j" * 32), store=store,
                      clock=c.clock)  # the start-up integrity check accepts a store that begins at 8
        c.net.add(joiner)
        joiner.start()
        assert c.run_until(lambda: joiner.store.height == c.nodes[0].store.height, max_steps=50)
        commit(c, blocks=3, per_block=20, tag=b"after")
        assert c.run_until(lambda: joiner.store.height == c.nodes[0].store.height, max_steps=50)
        assert joiner.store.state_root == c.nodes[0].store.state_root
        assert joiner.store.last_hash == c.nodes[0].store.last_hash
        assert list(joiner.store.state_items(b"")) == list(c.nodes[0].store.state_items(b""))
        assert c.net.penalties == []
    finally:
        if joiner is not None:
            joiner.stop()
            joiner.store.close()
        c.stop()


def test_taking_a_snapshot_costs_the_commit_path_only_a_view(tmp_path: Path):
    """The commit hands the writing to the runner and returns; blocks go on committing; the
    snapshot written later is the state of its own height, not of the later ones."""
    c = Cluster(4)
    deferred: list[Callable[[], None]] = []
    with_snapshots(c, tmp_path, run=deferred.append)
    c.start()
    try:
        commit(c, blocks=INTERVAL, per_block=5, tag=b"a")
        assert len(deferred) == 4 and all(n.snapshots.busy for n in c.nodes)  # one per node, none written yet
        assert heights(tmp_path / "snap0") == []
        state_at_4 = list(c.nodes[0].store.state_items(b""))
        commit(c, blocks=INTERVAL, per_block=5, tag=b"b")  # height 8 is due while 4 is still pending: skipped
        assert min(c.heights()) == 2 * INTERVAL and len(deferred) == 4 and c.nodes[0].snapshots.skipped == 1
        for job in deferred:
            job()
        info = load_snapshot(tmp_path / "snap0", INTERVAL)
        rebuilt = ChainStore(MemoryStore())
        start_from_snapshot(rebuilt, genesis=c.genesis, info=info, chunks=chunks_of(tmp_path / "snap0", INTERVAL),
                            attestations=all_attestations(tmp_path, 4, INTERVAL))
        assert list(rebuilt.state_items(b"")) == state_at_4 != list(c.nodes[0].store.state_items(b""))
    finally:
        c.stop()


@pytest.fixture
def snapshotted(tmp_path: Path):
    c = Cluster(4)
    with_snapshots(c, tmp_path)
    c.start()
    commit(c, blocks=INTERVAL, per_block=10, tag=b"t")
    yield c, tmp_path, load_snapshot(tmp_path / "snap0", INTERVAL)
    c.stop()


def test_too_few_attestations_are_refused(snapshotted):
    c, root, info = snapshotted
    one = attestations(root / "snap0", INTERVAL)
    with pytest.raises(SnapshotInvalid, match=r"only 1 validators attest .* 2 \(f \+ 1\) are needed"):
        verify_snapshot(info, genesis=c.genesis, attestations=one)
    outsider = Identity.from_seed(b"o" * 32)
    from storage.snapshots import attestation_message

    forged = one + [(outsider.public_key, outsider.sign(attestation_message(info)))]
    with pytest.raises(SnapshotInvalid, match="only 1 validators"):
        verify_snapshot(info, genesis=c.genesis, attestations=forged)


def test_a_wrong_state_root_or_block_is_refused(snapshotted):
    c, root, info = snapshotted
    signed = all_attestations(root, 4, INTERVAL)
    with pytest.raises(SnapshotInvalid, match="state root in the snapshot's block header differs"):
        verify_snapshot(dataclasses.replace(info, state_root=b"\x01" * 32), genesis=c.genesis, attestations=signed)
    other = c.nodes[0].store.block_bytes(INTERVAL - 1)
    assert other is not None
    with pytest.raises(SnapshotInvalid, match="is not block 4"):
        verify_snapshot(dataclasses.replace(info, block=other), genesis=c.genesis, attestations=signed)
    wrong_cert = c.nodes[0].store.certificate(INTERVAL - 1)
    assert wrong_cert is not None
    with pytest.raises(SnapshotInvalid, match="lacks a commit certificate"):
        verify_snapshot(dataclasses.replace(info, certificate=wrong_cert), genesis=c.genesis, attestations=signed)


def test_the_attested_checksum_is_trusted_and_a_forged_one_refused(snapshotted):
    """Validators sign the state checksum with the entries' hash: a joiner holding f + 1 such
    signatures does not hash every entry for it; a manifest whose checksum was altered no longer
    matches the signatures and is refused."""
    c, root, info = snapshotted
    signed = all_attestations(root, 4, INTERVAL)
    assert verify_snapshot(info, genesis=c.genesis, attestations=signed).state_sum_attested
    forged = dataclasses.replace(info, state_sum=(int.from_bytes(info.state_sum, "big") + 1).to_bytes(32, "big"))
    with pytest.raises(SnapshotInvalid, match="only 0 validators attest"):
        verify_snapshot(forged, genesis=c.genesis, attestations=signed)


def test_attestations_of_older_validators_cover_the_entries_and_the_checksum_is_then_computed(snapshotted):
    """Signatures in the previous form (no checksum) still attest the entries; the joiner then
    computes the checksum from the entries and refuses a manifest whose checksum differs."""
    from storage.snapshots import legacy_attestation_message

    c, root, info = snapshotted
    legacy = [(ident.public_key, ident.sign(legacy_attestation_message(info))) for ident in c.idents[:2]]
    assert not verify_snapshot(info, genesis=c.genesis, attestations=legacy).state_sum_attested
    store = ChainStore(MemoryStore())
    start_from_snapshot(store, genesis=c.genesis, info=info, chunks=chunks_of(root / "snap0", INTERVAL),
                        attestations=legacy)
    assert store.initialized and store.scan_state_sum() == int.from_bytes(info.state_sum, "big")
    forged = dataclasses.replace(info, state_sum=(int.from_bytes(info.state_sum, "big") + 1).to_bytes(32, "big"))
    legacy_forged = [(ident.public_key, ident.sign(legacy_attestation_message(forged))) for ident in c.idents[:2]]
    with pytest.raises(SnapshotInvalid, match="state checksum"):
        start_from_snapshot(ChainStore(MemoryStore()), genesis=c.genesis, info=forged,
                            chunks=chunks_of(root / "snap0", INTERVAL), attestations=legacy_forged)


def test_a_corrupted_chunk_is_refused_and_the_store_stays_empty(snapshotted):
    c, root, info = snapshotted
    chunks = chunks_of(root / "snap0", INTERVAL)
    chunks[0] = chunks[0].replace(b"patient", b"Patient", 1)
    store = ChainStore(MemoryStore())
    with pytest.raises(SnapshotInvalid, match="chunk 0 does not match its hash"):
        start_from_snapshot(store, genesis=c.genesis, info=info, chunks=chunks,
                            attestations=all_attestations(root, 4, INTERVAL))
    assert not store.initialized


def test_the_first_start_relies_on_the_check_made_while_writing_and_later_starts_scan(snapshotted, tmp_path: Path):
    """init checked the entries it wrote against the attested hash and took their checksum from
    the same attestations, so the first start skips the full scan; a later start scans and finds an
    entry damaged on disk in between."""
    from storage.chain import P_STATE, StoreCorrupted
    from storage.kv import WriteBatch

    c, root, info = snapshotted
    kv = MemoryStore()
    store = ChainStore(kv)
    start_from_snapshot(store, genesis=c.genesis, info=info, chunks=chunks_of(root / "snap0", INTERVAL),
                        attestations=all_attestations(root, 4, INTERVAL))
    config = build_config({"node": {"observer": True}}, env={})

    def start() -> None:
        Node(config=config, genesis=c.genesis, identity=Identity.from_seed(b"j" * 32), store=store, clock=c.clock)

    scans: list[int] = []
    real_scan = store.scan_state_sum
    store.scan_state_sum = lambda: scans.append(1) or real_scan()  # type: ignore[method-assign]
    start()
    assert scans == []  # the first start: checked while written
    start()
    assert scans == [1]  # every later one scans
    key = next(k for k, _ in kv.iterate(P_STATE))
    damage = WriteBatch()
    damage.put(key, b"altered")
    kv.write(damage)
    with pytest.raises(StoreCorrupted, match="checksum"):
        start()
