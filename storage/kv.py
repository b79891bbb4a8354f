"""The key-value store interface and its two implementations.

`LevelDBStore` (plyvel) is what nodes run on; `MemoryStore` is a faithful in-memory twin for
tests and simulations. Both are checked by one conformance suite
(`tests/unit/storage/test_kv_conformance.py`). Writes go through `WriteBatch` and are atomic:
all of a batch or none of it survives a crash; `sync=True` makes the batch durable before return.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import plyvel

# Bloom filters make a lookup of an absent key (a new transaction's hash, a new sender's nonce)
# cost one memory probe per table instead of a block read; the block cache keeps hot state in memory.
BLOOM_FILTER_BITS = 10
BLOCK_CACHE_BYTES = 32 * 1024 * 1024
# Transaction hashes and identity keys are spread evenly over the key space, so every level-0
# table overlaps all of level 1 and each compaction rewrites it: with LevelDB's 4 MB default
# write buffer and 1,000,000 records in state, compaction took half of each node's CPU and
# 100,000 registrations committed at 1,467 a second; with 64 MB, at 2,510. It costs up to two
# buffers of memory (the one filling and the one being written out).
WRITE_BUFFER_BYTES = 64 * 1024 * 1024
LOAD_WRITE_BUFFER_BYTES = 4 * 1024 * 1024  # LevelDB's default: for a bulk load, see LevelDBStore


class StorageError(Exception):
    """The store cannot be opened or used (disk full, locked by another process, damaged)."""


class WriteBatch:
    """Puts and deletes applied atomically, in the order given (a later op on a key wins)."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple[bytes, bytes | None]] = []

    def put(self, key: bytes, value: bytes) -> None:
        self.ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self.ops.append((key, None))

    def __len__(self) -> int:
        return len(self.ops)


class KeyValueStore(Protocol):
    """Ordered byte-keyed store. Iteration is in ascending key order (or descending)."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]: ...

    def write(self, batch: WriteBatch, *, sync: bool = False) -> None: ...

    def put_run(self, prefix: bytes, pairs: Iterable[Sequence[bytes]]) -> None:
        """Put every [key, value] of `pairs` under `prefix` + key, in one unsynced batch (a
        snapshot chunk going into an empty store: no deletes, no ordering among them)."""
        ...

    def compact(self, start: bytes | None = None, stop: bytes | None = None) -> None: ...

    def flush(self) -> None:
        """Write what the store holds in memory to its files and wait, so that opening it again
        has no log to replay (after a bulk load: a snapshot's state)."""
        ...

    def view(self) -> "StoreView": ...

    def close(self) -> None: ...


class StoreView(Protocol):
    """A frozen, read-only view of a store at one moment (later writes are not seen): what a
    snapshot is written from while the node goes on committing. Release it with `close`."""

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


_PAST_EVERY_KEY = b"\xff" * 16  # above every key the stores write (their prefixes are ASCII)


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound).

    Trailing 0xff bytes cannot grow, so they go and the byte before them grows. (The same in
    node/app/state.py: the two layers import nothing from each other.)"""
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1]) if head else None


class MemoryStore:
    """In-memory KeyValueStore (sorted key list + dict)."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StorageError("store is closed")

    def get(self, key: bytes) -> bytes | None:
        self._check()
        return self._data.get(key)

    def iterate(self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        self._check()
        lo_key = max(prefix, start) if start is not None and not reverse else prefix
        lo = bisect.bisect_left(self._keys, lo_key)
        end = _prefix_end(prefix)
        hi = bisect.bisect_left(self._keys, end) if end is not None else len(self._keys)
        if reverse and start is not None:
            hi = min(hi, bisect.bisect_right(self._keys, start))
        keys = self._keys[lo:hi]
        for k in reversed(keys) if reverse else keys:
            yield k, self._data[k]

    def write(self, batch: WriteBatch, *, sync: bool = False) -> None:
        self._check()
        for key, value in batch.ops:
            if value is None:
                if key in self._data:
                    del self._data[key]
                    self._keys.pop(bisect.bisect_left(self._keys, key))
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value

    def put_run(self, prefix: bytes, pairs: Iterable[Sequence[bytes]]) -> None:
        batch = WriteBatch()
        for key, value in pairs:
            batch.put(prefix + key, value)
        self.write(batch)

    def compact(self, start: bytes | None = None, stop: bytes | None = None) -> None:
        self._check()

    def flush(self) -> None:
        self._check()

    def view(self) -> StoreView:
        """A copy of the entries (the test twin of a LevelDB snapshot)."""
        self._check()
        copy = MemoryStore()
        copy._data = dict(self._data)
        copy._keys = list(self._keys)
        return _MemoryView(copy)

    def close(self) -> None:
        self._closed = True


class _MemoryView:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self._store.iterate(prefix)

    def close(self) -> None:
        self._store.close()


class LevelDBStore:
    """KeyValueStore on LevelDB via plyvel."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 write_buffer_bytes: int = WRITE_BUFFER_BYTES) -> None:
        """`write_buffer_bytes`: how much LevelDB holds in memory (and in its log) before it
        writes a table in the background; a bulk load (a snapshot's state) takes a small one, so
        the tables are written while the load goes on rather than all at its end."""
        try:
            self._db = plyvel.DB(os.fspath(path), create_if_missing=create, paranoid_checks=True,
                                bloom_filter_bits=BLOOM_FILTER_BITS, lru_cache_size=BLOCK_CACHE_BYTES,
                                write_buffer_size=write_buffer_bytes)
        except plyvel.IOError as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                raise StorageError(f"the data directory {os.fspath(path)!r} is in use by another process (is the node already running?)") from None
            raise StorageError(f"cannot open the data directory {os.fspath(path)!r}: {msg}") from None
        except plyvel.CorruptionError as exc:
            raise StorageError(f"the data directory {os.fspath(path)!r} is damaged: {exc}") from None
        except plyvel.Error as exc:
            raise StorageError(f"cannot open the data directory {os.fspath(path)!r}: {exc}") from None

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def iterate(self, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        end = _prefix_end(prefix)
        if reverse:
            stop = end
            if start is not None:
                stop_incl = start
                with self._db.iterator(start=prefix, stop=stop_incl, include_stop=True, reverse=True) as it:
                    yield from it
                return
            with self._db.iterator(start=prefix, stop=stop, reverse=True) as it:
                yield from it
            return
        lo = max(prefix, start) if start is not None else prefix
        with self._db.iterator(start=lo, stop=end) as it:
            yield from it

    def write(self, batch: WriteBatch, *, sync: bool = False) -> None:
        wb = self._db.write_batch(sync=sync)
        for key, value in batch.ops:
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        wb.write()

    def put_run(self, prefix: bytes, pairs: Iterable[Sequence[bytes]]) -> None:
        wb = self._db.write_batch()
        put = wb.put
        for key, value in pairs:
            put(prefix + key, value)
        wb.write()

    def compact(self, start: bytes | None = None, stop: bytes | None = None) -> None:
        self._db.compact_range(start=start, stop=stop)

    def flush(self) -> None:
        # LevelDB's CompactRange writes the memtable to a table first, whatever the range; a
        # range past every key compacts nothing more. Without it the next open replays the
        # whole log of the last write buffer (64 MiB: about a second).
        self._db.compact_range(start=_PAST_EVERY_KEY, stop=_PAST_EVERY_KEY)

    def view(self) -> StoreView:
        """A LevelDB snapshot: taking it costs nothing; it pins the files it reads until closed."""
        return _LevelDBView(self._db.snapshot())

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()


class _LevelDBView:
    def __init__(self, snapshot: Any) -> None:  # plyvel._plyvel.Snapshot
        self._snapshot = snapshot

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        with self._snapshot.iterator(prefix=prefix) as it:
            yield from it

    def close(self) -> None:
        self._snapshot.close()
