"""Blocks stored below the base of a store started from a snapshot (storage/chain.py
`store_history`): written a run at a time just below the lowest stored block, with the new
lowest height, in one batch that leaves the head, the state and the transaction index alone;
kept across a reopen; a run that does not end just below the lowest block is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.chain import ChainStore, StoreCorrupted
from storage.kv import LevelDBStore, MemoryStore

STATE = [(b"k1", b"v1"), (b"k2", b"v2")]


def joined(store: ChainStore, height: int = 10) -> ChainStore:
    store.init_from_snapshot(genesis_hash=b"g" * 32, height=height, block_hash=b"h" * 32, block_bytes=b"blk10",
                             certificate=b"crt10", state_root=b"r" * 32, runs=[STATE])
    return store


def run(first: int, last: int) -> list[tuple[int, bytes, bytes, bytes]]:
    return [(h, bytes([h]) * 32, b"blk%d" % h, b"crt%d" % h) for h in range(first, last + 1)]


def test_blocks_below_the_base_are_stored_without_moving_the_head(tmp_path: Path):
    store = joined(ChainStore(LevelDBStore(tmp_path / "db")))
    head = (store.height, store.last_hash, store.state_root, store.stored_state_sum())
    assert store.lowest_height == store.base_height == 10
    store.store_history(run(7, 9))
    assert store.lowest_height == 7 and store.base_height == 10
    assert (store.height, store.last_hash, store.state_root, store.stored_state_sum()) == head
    assert list(store.state_items(b"")) == STATE
    assert [store.block_bytes(h) for h in (6, 7, 9)] == [None, b"blk7", b"blk9"]
    assert store.certificate(8) == b"crt8" and store.height_of_block(bytes([8]) * 32) == 8
    assert store.tx_location(bytes(32)) is None
    store.close()

    reopened = ChainStore(LevelDBStore(tmp_path / "db"))  # the progress is on disk
    try:
        assert reopened.lowest_height == 7
        reopened.store_history(run(1, 6))
        assert reopened.lowest_height == 1 and reopened.block_bytes(1) == b"blk1"
        with pytest.raises(StoreCorrupted, match="already holds every block"):
            reopened.store_history(run(1, 1))
    finally:
        reopened.close()


@pytest.mark.parametrize("blocks", [run(6, 8), run(8, 10), run(0, 9), [*run(7, 7), *run(9, 9)], run(9, 9)[::-1] + run(8, 8)])
def test_a_run_that_does_not_end_just_below_the_lowest_block_is_refused(blocks):
    store = joined(ChainStore(MemoryStore()))
    with pytest.raises(StoreCorrupted, match="do not end just below the lowest stored block 10"):
        store.store_history(blocks)
    assert store.lowest_height == 10 and store.block_bytes(8) is None


def test_a_store_begun_at_genesis_holds_every_block_already():
    store = ChainStore(MemoryStore())
    store.init_genesis(b"g" * 32, [], b"r" * 32)
    assert store.lowest_height == 0
    with pytest.raises(StoreCorrupted, match="already holds every block"):
        store.store_history(run(1, 1))
