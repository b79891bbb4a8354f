"""The off-chain store: erasure removes the bytes from the LevelDB files."""

import random
from pathlib import Path

from storage.kv import LevelDBStore, MemoryStore
from storage.offchain import OffchainStore


def files_contain(root: Path, needle: bytes) -> bool:
    return any(needle in p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_erased_after_reaching_table_files(tmp_path):
    path = tmp_path / "records"
    store = OffchainStore(LevelDBStore(path))
    rng = random.Random(8)
    marker = b"MARKER-" + rng.randbytes(64)
    store.put(b"a" * 32, b"ciphertext:" + marker)
    store.kv.compact()  # the bytes reach a table file
    for i in range(50):
        store.put(bytes([i]) * 32, rng.randbytes(4000))
    assert files_contain(path, marker)
    store.erase(b"a" * 32)
    store.close()
    assert not files_contain(path, marker)


def test_put_get_erase_memory():
    store = OffchainStore(MemoryStore())
    store.put(b"r" * 32, b"abc")
    assert store.get(b"r" * 32) == b"abc" and store.record_ids() == [b"r" * 32]
    assert store.erase(b"r" * 32) and store.get(b"r" * 32) is None and not store.erase(b"r" * 32)


def test_erased_bytes_leave_the_leveldb_files(tmp_path):
    path = tmp_path / "records"
    store = OffchainStore(LevelDBStore(path))
    rng = random.Random(7)  # ciphertext is random, so LevelDB's compression leaves it intact
    marker = b"CIPHERTEXT-MARKER-" + rng.randbytes(64)
    keep = b"KEEP-MARKER-" + rng.randbytes(64)
    store.put(b"a" * 32, b"ciphertext:" + marker)
    store.put(b"b" * 32, keep)
    store.erase(b"a" * 32)  # erased while still in the memtable: flushed and dropped together
    store.close()
    assert not files_contain(path, marker)
    assert files_contain(path, keep)
    again = OffchainStore(LevelDBStore(path))
    assert again.get(b"a" * 32) is None and again.get(b"b" * 32) == keep
    again.close()
