"""One conformance suite run against every KeyValueStore implementation, and the chain layout
on top of each."""

import pytest

from storage.chain import ChainStore, StoreCorrupted
from storage.kv import LevelDBStore, MemoryStore, StorageError, WriteBatch


@pytest.fixture(params=["memory", "leveldb"])
def kv(request, tmp_path):
    store = MemoryStore() if request.param == "memory" else LevelDBStore(tmp_path / "db")
    yield store
    store.close()


def put(kv, items, sync=False):
    b = WriteBatch()
    for k, v in items:
        if v is None:
            b.delete(k)
        else:
            b.put(k, v)
    kv.write(b, sync=sync)


def test_get_put_delete(kv):
    assert kv.get(b"a") is None
    put(kv, [(b"a", b"1"), (b"b", b"2")])
    assert kv.get(b"a") == b"1"
    put(kv, [(b"a", None), (b"b", b"3")], sync=True)
    assert kv.get(b"a") is None and kv.get(b"b") == b"3"


def test_later_op_in_batch_wins(kv):
    put(kv, [(b"k", b"1"), (b"k", None), (b"k", b"2"), (b"j", b"x"), (b"j", None)])
    assert kv.get(b"k") == b"2" and kv.get(b"j") is None


def test_prefix_iteration_order_and_bounds(kv):
    put(kv, [(k, k.upper()) for k in [b"p/b", b"p/a", b"p/c", b"q/a", b"p", b"o/z", b"p/\xff\xff"]])
    assert [k for k, _ in kv.iterate(b"p/")] == [b"p/a", b"p/b", b"p/c", b"p/\xff\xff"]
    assert [k for k, _ in kv.iterate(b"p/", reverse=True)] == [b"p/\xff\xff", b"p/c", b"p/b", b"p/a"]
    assert [k for k, _ in kv.iterate(b"p/", start=b"p/b")] == [b"p/b", b"p/c", b"p/\xff\xff"]
    assert [k for k, _ in kv.iterate(b"p/", start=b"p/b", reverse=True)] == [b"p/b", b"p/a"]
    assert dict(kv.iterate(b"q/")) == {b"q/a": b"Q/A"}
    assert len(list(kv.iterate())) == 7


def test_empty_batch_and_compact(kv):
    kv.write(WriteBatch(), sync=True)
    put(kv, [(b"x", b"y")])
    kv.compact()
    assert kv.get(b"x") == b"y"


def test_chain_store_layout(kv):
    chain = ChainStore(kv)
    assert not chain.initialized and chain.height == 0
    chain.init_genesis(b"G" * 32, [(b"inst/1", b"v")], b"R" * 32)
    assert chain.initialized and chain.state_get(b"inst/1") == b"v" and chain.state_root == b"R" * 32
    with pytest.raises(StoreCorrupted):
        chain.init_genesis(b"G" * 32, [], b"R" * 32)
    chain.commit_block(height=1, block_hash=b"H" * 32, block_bytes=b"block1", certificate=b"cert1",
                       tx_results=[(b"t" * 32, "ok"), (b"u" * 32, "already_registered")],
                       state_writes=[(b"inst/1", None), (b"k", b"v2")], state_root=b"S" * 32)
    assert chain.height == 1 and chain.last_hash == b"H" * 32 and chain.state_root == b"S" * 32
    assert chain.block_bytes(1) == b"block1" and chain.certificate(1) == b"cert1"
    assert chain.height_of_block(b"H" * 32) == 1
    loc = chain.tx_location(b"u" * 32)
    assert (loc.height, loc.index, loc.result) == (1, 1, "already_registered")
    assert chain.state_get(b"inst/1") is None and chain.state_get(b"k") == b"v2"
    assert list(chain.state_items(b"k")) == [(b"k", b"v2")]
    with pytest.raises(StoreCorrupted):
        chain.commit_block(height=3, block_hash=b"x" * 32, block_bytes=b"", certificate=b"", tx_results=[], state_writes=[], state_root=b"")


def test_wal_append_order_and_prune(kv):
    chain = ChainStore(kv)
    for h, e in [(1, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]:
        chain.wal_append(h, e)
    assert chain.wal_entries() == [b"a", b"b", b"c", b"d"]
    chain.wal_prune(below_height=3)
    assert chain.wal_entries() == [b"d"]
    again = ChainStore(kv)  # a restart continues the sequence after the last entry
    again.wal_append(3, b"e")
    assert again.wal_entries() == [b"d", b"e"]


def test_leveldb_persists_and_locks(tmp_path):
    path = tmp_path / "db"
    first = LevelDBStore(path)
    put(first, [(b"a", b"1")], sync=True)
    with pytest.raises(StorageError, match="in use"):
        LevelDBStore(path)
    first.close()
    second = LevelDBStore(path)
    assert second.get(b"a") == b"1"
    second.close()


def test_flush_keeps_every_entry(kv):
    kv.put_run(b"s/", [[b"%06d" % i, b"v" * 100] for i in range(1000)])
    kv.flush()
    assert kv.get(b"s/000999") == b"v" * 100 and len(list(kv.iterate(b"s/"))) == 1000


def test_a_flushed_leveldb_store_leaves_no_log_to_replay(tmp_path):
    """A bulk load (a snapshot's state) stays in LevelDB's write buffer and its log until the
    buffer fills; flush writes it to a table, so the next open has nothing to replay."""
    def log_bytes(path):
        return sum(f.stat().st_size for f in path.glob("*.log"))

    for flushed, path in ((False, tmp_path / "plain"), (True, tmp_path / "flushed")):
        store = LevelDBStore(path)
        store.put_run(b"s/", [[b"%08d" % i, bytes([i % 251]) * 200] for i in range(20_000)])  # about 4 MB
        if flushed:
            store.flush()
        store.close()
        assert (log_bytes(path) < 64 * 1024) == flushed, log_bytes(path)
        again = LevelDBStore(path)
        assert again.get(b"s/00019999") == bytes([19999 % 251]) * 200
        again.close()
