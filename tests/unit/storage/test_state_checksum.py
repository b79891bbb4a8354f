"""The state checksum kept by each committed block equals a full scan of the state, whatever
the writes do (overwrite, delete, write a key twice in one block), and a scan finds damage."""

from __future__ import annotations

import random

from storage.chain import P_STATE, ChainStore
from storage.kv import MemoryStore, WriteBatch


def commit(chain: ChainStore, writes, previous=None) -> None:
    h = chain.height + 1
    chain.commit_block(height=h, block_hash=h.to_bytes(32, "big"), block_bytes=b"b", certificate=b"c",
                       tx_results=[], state_writes=writes, state_root=b"r" * 32, previous=previous)


def test_the_kept_checksum_follows_every_kind_of_write():
    rng = random.Random(4)
    chain = ChainStore(MemoryStore())
    chain.init_genesis(b"g" * 32, [(b"a", b"1"), (b"b", b"2")], b"r" * 32)
    assert chain.stored_state_sum() == chain.scan_state_sum()
    keys = [bytes([k]) for k in b"abcdef"]
    for _ in range(50):
        writes = [(rng.choice(keys), None if rng.random() < 0.3 else rng.randbytes(rng.randrange(0, 5)))
                  for _ in range(rng.randrange(0, 6))]
        commit(chain, writes)
        assert chain.stored_state_sum() == chain.scan_state_sum()


def test_values_remembered_from_execution_give_the_same_checksum_as_reading_them():
    rng = random.Random(8)
    chain = ChainStore(MemoryStore())
    chain.init_genesis(b"g" * 32, [(b"a", b"1"), (b"b", b"2")], b"r" * 32)
    keys = [bytes([k]) for k in b"abcdef"]
    for _ in range(50):
        writes = [(rng.choice(keys), None if rng.random() < 0.3 else rng.randbytes(rng.randrange(0, 5)))
                  for _ in range(rng.randrange(0, 6))]
        # what execution read: some written keys, some only read, absent ones as None
        read = rng.sample(keys, rng.randrange(0, len(keys)))
        commit(chain, writes, previous={k: chain.state_get(k) for k in read})
        assert chain.stored_state_sum() == chain.scan_state_sum()


def test_an_altered_added_or_lost_entry_changes_the_scan():
    kv = MemoryStore()
    chain = ChainStore(kv)
    chain.init_genesis(b"g" * 32, [(b"a", b"1"), (b"b", b"2")], b"r" * 32)
    kept = chain.stored_state_sum()
    for ops in ([(P_STATE + b"a", b"9")], [(P_STATE + b"z", b"")], [(P_STATE + b"b", None)]):
        batch = WriteBatch()
        for k, v in ops:
            batch.put(k, v) if v is not None else batch.delete(k)
        kv.write(batch)
        assert chain.scan_state_sum() != kept
        undo = WriteBatch()
        undo.put(P_STATE + b"a", b"1")
        undo.put(P_STATE + b"b", b"2")
        undo.delete(P_STATE + b"z")
        kv.write(undo)
        assert chain.scan_state_sum() == kept
