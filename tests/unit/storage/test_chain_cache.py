"""What ChainStore keeps in memory (the head, recent state values) always equals what the disk
holds: reads between commits, overwrites, deletes and absent keys agree with a store opened
afresh on the same data, and the cache stays within its bound."""

from __future__ import annotations

import random

import pytest

import storage.chain as chain_module
from storage.chain import ChainStore
from storage.kv import MemoryStore


def commit(chain: ChainStore, writes) -> None:
    h = chain.height + 1
    chain.commit_block(height=h, block_hash=h.to_bytes(32, "big"), block_bytes=b"b", certificate=b"c",
                       tx_results=[], state_writes=writes, state_root=h.to_bytes(32, "big"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cached_reads_equal_a_fresh_store_on_the_same_disk(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_module, "STATE_CACHE_ENTRIES", 8)  # small: trimming happens all along
    rng = random.Random(seed)
    kv = MemoryStore()
    chain = ChainStore(kv)
    chain.init_genesis(b"g" * 32, [(b"a", b"1")], bytes(32))
    keys = [bytes([k]) for k in b"abcdefghijklmnop"]
    for _ in range(200):
        for key in rng.sample(keys, 4):
            chain.state_get(key)  # warm the cache with present and absent keys
        writes = [(rng.choice(keys), None if rng.random() < 0.3 else rng.randbytes(3)) for _ in range(rng.randrange(0, 6))]
        commit(chain, writes)
        fresh = ChainStore(kv)
        assert [chain.state_get(k) for k in keys] == [fresh.state_get(k) for k in keys]
        assert (chain.height, chain.last_hash, chain.state_root) == (fresh.height, fresh.last_hash, fresh.state_root)
        assert len(chain._state_cache) <= 8


def test_a_commit_that_fails_to_write_leaves_the_cache_as_the_disk_is() -> None:
    class Failing(MemoryStore):
        fail = False

        def write(self, batch, *, sync=False):
            if self.fail:
                raise OSError("disk full")
            super().write(batch, sync=sync)

    kv = Failing()
    chain = ChainStore(kv)
    chain.init_genesis(b"g" * 32, [(b"a", b"1")], bytes(32))
    assert chain.state_get(b"a") == b"1" and chain.height == 0
    kv.fail = True
    with pytest.raises(OSError):
        commit(chain, [(b"a", b"2")])
    assert chain.state_get(b"a") == b"1" and chain.height == 0
