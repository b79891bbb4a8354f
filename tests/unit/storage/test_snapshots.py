"""Snapshots on disk (storage/snapshots.py) and a store started from one (storage/chain.py):
written in bounded chunks, listed, pruned to the newest two, and read back; a damaged chunk,
a reordered one or entries that do not add up are refused with a message that says so."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from storage.chain import ChainStore, StoreCorrupted
from storage.kv import LevelDBStore, MemoryStore, WriteBatch
from storage.snapshots import (
    SnapshotInvalid,
    add_attestation,
    attestations,
    heights,
    list_snapshots,
    load_snapshot,
    read_chunk,
    verify_chunk_runs,
    verify_chunks,
    write_snapshot,
)


def entries(n: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return sorted({rng.randbytes(20): rng.randbytes(rng.randrange(1, 300)) for _ in range(n)}.items())


def write(root: Path, height: int, items: list[tuple[bytes, bytes]], **kw) -> object:
    return write_snapshot(root, items, chain_id="c", height=height, block_hash=bytes([height % 256]) * 32,
                          state_root=b"r" * 32, block=b"block", certificate=b"cert", state_sum=bytes(32), **kw)


def chunks(root: Path, height: int) -> list[bytes]:
    info = load_snapshot(root, height)
    return [read_chunk(root, height, i) for i in range(len(info.chunk_hashes))]


def test_a_snapshot_is_written_in_bounded_chunks_and_read_back(tmp_path: Path):
    items = entries(2_000)
    info = write(tmp_path, 10, items, chunk_bytes=16 * 1024)
    assert len(info.chunk_hashes) > 5 and info.entries == len(items)
    assert all(len(c) < 17 * 1024 + 400 for c in chunks(tmp_path, 10))
    assert list(verify_chunks(info, chunks(tmp_path, 10))) == items
    assert load_snapshot(tmp_path, 10) == info
    # the entry hash does not depend on the chunking: another node's snapshot of the same state agrees
    other = write(tmp_path / "other", 10, items, chunk_bytes=64 * 1024)
    assert other.entries_hash == info.entries_hash and other.chunk_hashes != info.chunk_hashes


def test_only_the_newest_two_are_kept(tmp_path: Path):
    for h in (10, 20, 30):
        write(tmp_path, h, entries(10, seed=h))
    assert heights(tmp_path) == [20, 30]
    assert [s.height for s in list_snapshots(tmp_path)] == [30, 20]
    add_attestation(tmp_path, 30, b"v" * 32, b"s" * 64)
    assert attestations(tmp_path, 30) == [(b"v" * 32, b"s" * 64)]


def test_an_empty_state_makes_one_empty_chunk(tmp_path: Path):
    info = write(tmp_path, 1, [])
    assert len(info.chunk_hashes) == 1 and list(verify_chunks(info, chunks(tmp_path, 1))) == []


def test_a_damaged_chunk_is_refused(tmp_path: Path):
    info = write(tmp_path, 10, entries(500), chunk_bytes=8 * 1024)
    data = chunks(tmp_path, 10)
    data[2] = data[2][:-1] + bytes([data[2][-1] ^ 1])
    with pytest.raises(SnapshotInvalid, match="chunk 2 does not match its hash"):
        list(verify_chunks(info, data))


def test_missing_or_reordered_chunks_are_refused(tmp_path: Path):
    info = write(tmp_path, 10, entries(500), chunk_bytes=8 * 1024)
    data = chunks(tmp_path, 10)
    with pytest.raises(SnapshotInvalid, match="chunks, its manifest"):
        list(verify_chunks(info, data[:-1]))
    with pytest.raises(SnapshotInvalid, match="does not match its hash"):
        list(verify_chunks(info, [data[1], data[0], *data[2:]]))


def test_entries_that_do_not_add_up_are_refused(tmp_path: Path):
    from dataclasses import replace

    info = write(tmp_path, 10, entries(50))
    with pytest.raises(SnapshotInvalid, match="entry hash"):
        list(verify_chunks(replace(info, entries_hash=b"x" * 32), chunks(tmp_path, 10)))


def test_a_store_starts_at_a_snapshot_height(tmp_path: Path):
    items = entries(300)
    store = ChainStore(LevelDBStore(tmp_path / "db"))
    try:
        store.init_from_snapshot(genesis_hash=b"g" * 32, height=500, block_hash=b"h" * 32, block_bytes=b"blk",
                                 certificate=b"crt", state_root=b"r" * 32,
                                 runs=[items[i:i + 64] for i in range(0, len(items), 64)])
        assert (store.height, store.base_height, store.last_hash, store.state_root) == (500, 500, b"h" * 32, b"r" * 32)
        assert store.block_bytes(500) == b"blk" and store.block_bytes(499) is None
        assert store.height_of_block(b"h" * 32) == 500
        assert list(store.state_items(b"")) == items
        assert store.scan_state_sum() == store.stored_state_sum()
    finally:
        store.close()


def test_only_an_empty_store_starts_from_a_snapshot():
    kv = MemoryStore()
    batch = WriteBatch()
    batch.put(b"x", b"y")
    kv.write(batch)
    with pytest.raises(StoreCorrupted, match="only when it is empty"):
        ChainStore(kv).init_from_snapshot(genesis_hash=b"g" * 32, height=5, block_hash=b"h" * 32, block_bytes=b"",
                                          certificate=b"", state_root=b"r" * 32, runs=[])


def test_a_refused_snapshot_leaves_the_store_uninitialised(tmp_path: Path):
    info = write(tmp_path, 10, entries(500), chunk_bytes=8 * 1024)
    data = chunks(tmp_path, 10)
    data[-1] = data[0]
    store = ChainStore(MemoryStore())
    with pytest.raises(SnapshotInvalid):
        store.init_from_snapshot(genesis_hash=b"g" * 32, height=10, block_hash=info.block_hash, block_bytes=b"",
                                 certificate=b"", state_root=info.state_root, runs=verify_chunk_runs(info, data))
    assert not store.initialized and store.height == 0


@pytest.mark.parametrize("make", [MemoryStore, "leveldb"])
def test_a_view_does_not_see_later_writes(tmp_path: Path, make):
    kv = MemoryStore() if make is MemoryStore else LevelDBStore(tmp_path / "v")
    batch = WriteBatch()
    batch.put(b"a", b"1")
    kv.write(batch)
    view = kv.view()
    later = WriteBatch()
    later.put(b"a", b"2")
    later.put(b"b", b"3")
    kv.write(later)
    assert list(view.iterate()) == [(b"a", b"1")]
    view.close()
    kv.close()


def test_the_state_checksum_is_checked_in_the_same_pass_as_the_entries(tmp_path: Path):
    from dataclasses import replace

    from storage.chain import state_entry_sum

    items = entries(400)
    total = sum(state_entry_sum(k, v) for k, v in items) % (1 << 256)
    info = write(tmp_path, 10, items, chunk_bytes=8 * 1024)
    info = replace(info, state_sum=total.to_bytes(32, "big"))
    assert list(verify_chunks(info, chunks(tmp_path, 10), check_state_sum=True)) == items
    wrong = replace(info, state_sum=(total + 1).to_bytes(32, "big"))
    assert list(verify_chunks(wrong, chunks(tmp_path, 10))) == items  # not asked: not checked
    with pytest.raises(SnapshotInvalid, match="state checksum"):
        list(verify_chunks(wrong, chunks(tmp_path, 10), check_state_sum=True))
    # a store fed the checked entries keeps the checksum it was given, the one a scan finds
    store = ChainStore(MemoryStore())
    store.init_from_snapshot(genesis_hash=b"g" * 32, height=10, block_hash=info.block_hash, block_bytes=b"",
                             certificate=b"", state_root=info.state_root, state_sum=total,
                             runs=verify_chunk_runs(info, chunks(tmp_path, 10), check_state_sum=True))
    assert store.stored_state_sum() == store.scan_state_sum() == total


def test_only_the_first_start_may_rely_on_the_check_made_while_writing(tmp_path: Path):
    store = ChainStore(MemoryStore())
    store.init_from_snapshot(genesis_hash=b"g" * 32, height=7, block_hash=b"h" * 32, block_bytes=b"",
                             certificate=b"", state_root=b"r" * 32, runs=[entries(20)])
    assert store.take_state_checked() == 7
    assert store.take_state_checked() is None  # used once, then gone
