"""The chain's layout in a key-value store: blocks, commit certificates, the transaction index,
the application state, and the consensus write-ahead log.

Keys (all under one store):

    m/height, m/last_hash, m/state_root, m/genesis   metadata of the last applied block
    m/state_sum         checksum of every s/ entry (see `state_entry_sum`), checked at start
    m/state_checked     set by init_from_snapshot: the base height at which every s/ entry was
                        checked as it was written (taken, and removed, by the first start)
    m/base              the first stored block of a store started from a snapshot (absent: 0)
    m/low               the lowest stored block once earlier blocks were fetched below m/base
                        (`store_history`; absent: m/base)
    b/<height:8>        encoded block              c/<height:8>   its commit certificate
    h/<block hash>      height                     t/<tx hash>    [height, index, result code]
    s/<state key>       application state value    w/<height:8><seq:8>  consensus WAL entry

A block, its certificate, its index entries, its state writes and the new metadata are written in
ONE synced batch (`commit_block`), so after a crash the store holds either all of a block or
none of it. Blocks before the base of a store started from a snapshot (`store_history`) go
in the same way, a run at a time with the new m/low, without touching the head or the state.

`crash_at` names a point in that path where a test makes the process exit on the spot
(`os._exit`, as abrupt as SIGKILL); the daemon sets it only under `--unsafe-test-switches`.
`CRASH_POINTS` lists them; the durability tests kill a node at each and restart it.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

import msgpack


from .kv import KeyValueStore, WriteBatch

_U64 = struct.Struct(">Q")
K_HEIGHT = b"m/height"
K_LAST_HASH = b"m/last_hash"
K_STATE_ROOT = b"m/state_root"
K_GENESIS = b"m/genesis"
K_STATE_SUM = b"m/state_sum"
K_BASE = b"m/base"
K_LOW = b"m/low"
K_STATE_CHECKED = b"m/state_checked"
P_BLOCK = b"b/"
P_CERT = b"c/"
P_BLOCK_HASH = b"h/"
P_TX = b"t/"
P_STATE = b"s/"
P_WAL = b"w/"


_SUM_MOD = 1 << 256
# State values kept in memory after a read or a commit (None included: an absent key), so what
# admission read of a sender (its identity, its nonce) is not read from LevelDB again when its
# transaction executes, nor what one block wrote when the next reads it. Written through at each
# commit, after the batch is on disk; at most this many entries (about 10 MB), the oldest half
# dropped when full.
STATE_CACHE_ENTRIES = 1 << 16
CRASH_POINTS: tuple[str, ...] = ("commit-before-write", "commit-after-write", "wal-after-append")
CRASH_EXIT_CODE = 86


def u64(n: int) -> bytes:
    return _U64.pack(n)


def state_entry_sum(key: bytes, value: bytes) -> int:
    """One state entry's share of the state checksum: the checksum is the sum (mod 2^256) of
    the SHA-256 of every entry, so a block's writes update it without rescanning the state, and
    a start-up scan finds an entry that was altered, added or lost on disk."""
    digest = hashlib.sha256(_U64.pack(len(key)) + key + value).digest()
    return int.from_bytes(digest, "big")


class StoreCorrupted(Exception):
    """What the disk holds is inconsistent; the node must not start on it."""


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    index: int
    result: str


class ChainStore:
    """Typed access to the chain's data in a KeyValueStore."""

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv
        self.crash_at: str | None = None  # test switch: see CRASH_POINTS
        # the head (height, last hash, state root) and recent state values, as on disk: this
        # class is the only writer of those keys (see STATE_CACHE_ENTRIES)
        self._head: tuple[int, bytes, bytes] | None = None
        self._state_cache: dict[bytes, bytes | None] = {}
        # the WAL's keys in append order, so pruning deletes them without iterating the prefix
        # (after many prunes, an iteration steps over every deleted key LevelDB has not yet
        # compacted away: 7 % of a busy node's time went there); the next entry's number follows
        self._wal_keys: deque[bytes] = deque(sorted((k for k, _ in self.kv.iterate(P_WAL)),
                                                    key=lambda k: k[len(P_WAL) + 8 :]))
        self._wal_seq = _U64.unpack(self._wal_keys[-1][len(P_WAL) + 8 :])[0] + 1 if self._wal_keys else 0

    # -- metadata ---------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self.kv.get(K_GENESIS) is not None

    def _read_head(self) -> tuple[int, bytes, bytes]:
        if self._head is None:
            raw = self.kv.get(K_HEIGHT)
            self._head = (_U64.unpack(raw)[0] if raw else 0, self.kv.get(K_LAST_HASH) or bytes(32),
                          self.kv.get(K_STATE_ROOT) or bytes(32))
        return self._head

    @property
    def height(self) -> int:
        return self._read_head()[0]

    @property
    def last_hash(self) -> bytes:
        return self._read_head()[1]

    @property
    def state_root(self) -> bytes:
        return self._read_head()[2]

    def _written(self, state_writes: Iterable[tuple[bytes, bytes | None]] = (), *, forget: bool = False) -> None:
        """A batch that changed the head (and these state entries) is on disk: the caches follow."""
        self._head = None
        if forget:
            self._state_cache.clear()
        cache = self._state_cache
        for key, value in state_writes:
            cache[key] = value
        self._trim()

    def _trim(self) -> None:
        cache = self._state_cache
        if len(cache) > STATE_CACHE_ENTRIES:
            for key in list(islice(cache, len(cache) - STATE_CACHE_ENTRIES // 2)):
                del cache[key]

    @property
    def genesis_hash(self) -> bytes | None:
        return self.kv.get(K_GENESIS)

    def init_genesis(self, genesis_hash: bytes, state_writes: Sequence[tuple[bytes, bytes | None]], state_root: bytes) -> None:
        """Write the genesis state (height 0) once."""
        if self.initialized:
            raise StoreCorrupted("store already initialised")
        batch = WriteBatch()
        total = self._sum_after(0, state_writes)
        for key, value in state_writes:
            if value is None:
                batch.delete(P_STATE + key)
            else:
                batch.put(P_STATE + key, value)
        batch.put(K_STATE_SUM, total.to_bytes(32, "big"))
        batch.put(K_HEIGHT, u64(0))
        batch.put(K_LAST_HASH, bytes(32))
        batch.put(K_STATE_ROOT, state_root)
        batch.put(K_GENESIS, genesis_hash)
        self.kv.write(batch, sync=True)
        self._written(forget=True)

    @property
    def base_height(self) -> int:
        """The lowest height whose block is stored: 0 for a store begun at genesis, H for one
        started from a snapshot at H (blocks before H are absent)."""
        raw = self.kv.get(K_BASE)
        return _U64.unpack(raw)[0] if raw else 0

    @property
    def lowest_height(self) -> int:
        """The lowest height whose block is stored: `base_height` until earlier blocks are
        stored by `store_history` (0 for a store begun at genesis: it holds every block)."""
        raw = self.kv.get(K_LOW)
        return _U64.unpack(raw)[0] if raw else self.base_height

    def store_history(self, blocks: Sequence[tuple[int, bytes, bytes, bytes]]) -> None:
        """Store blocks just below `lowest_height` of a store started from a snapshot, as
        (height, block hash, block bytes, certificate) in ascending heights ending at
        lowest_height - 1, in one synced batch with the new lowest height. The head, the state
        and the transaction index stay as they are: these blocks were executed by others (the
        state came from the snapshot), and the caller has checked that they link up to the
        lowest stored block."""
        low = self.lowest_height
        if not blocks:
            return
        if low <= 1:
            raise StoreCorrupted("this store already holds every block from 1 on")
        heights = [b[0] for b in blocks]
        if heights != list(range(low - len(blocks), low)) or heights[0] < 1:
            raise StoreCorrupted(f"blocks {heights[0]}..{heights[-1]} do not end just below the lowest stored block {low}")
        batch = WriteBatch()
        for height, block_hash, block_bytes, certificate in blocks:
            batch.put(P_BLOCK + u64(height), block_bytes)
            batch.put(P_CERT + u64(height), certificate)
            batch.put(P_BLOCK_HASH + block_hash, u64(height))
        batch.put(K_LOW, u64(heights[0]))
        self.kv.write(batch, sync=True)

    def init_from_snapshot(self, *, genesis_hash: bytes, height: int, block_hash: bytes, block_bytes: bytes,
                           certificate: bytes, state_root: bytes, runs: Iterable[Sequence[Sequence[bytes]]],
                           state_sum: int | None = None) -> None:
        """Start an empty store at `height` from a snapshot: the state entries in `runs` (each a
        sequence of [key, value] in key order, as a snapshot chunk holds them, already checked by
        the caller), block `height` and its certificate; head = height, no blocks before it. Each
        run goes in one batch as it comes; the metadata that makes the store initialised is
        written last in one synced batch, so a store whose initialisation was interrupted is never
        taken for a complete one.

        `state_sum` is the checksum of the entries when the caller knows it: attested by f + 1
        validators with the entries' hash the iteration checks, or checked while iterating
        (storage.snapshots.verify_chunk_runs with check_state_sum: the iteration raises before
        the end if they do not add up); without it the checksum is computed here. Either
        way the store is marked as checked at its base (K_STATE_CHECKED), so its first start need
        not read every entry again (node/runtime/integrity.py)."""
        if self.initialized or next(iter(self.kv.iterate(b"")), None) is not None:
            raise StoreCorrupted("a store can start from a snapshot only when it is empty")
        total = 0
        for run in runs:
            self.kv.put_run(P_STATE, run)
            if state_sum is None:
                total += sum(state_entry_sum(key, value) for key, value in run)
        batch = WriteBatch()
        batch.put(K_STATE_SUM, ((total if state_sum is None else state_sum) % _SUM_MOD).to_bytes(32, "big"))
        batch.put(K_STATE_CHECKED, u64(height))
        batch.put(P_BLOCK + u64(height), block_bytes)
        batch.put(P_CERT + u64(height), certificate)
        batch.put(P_BLOCK_HASH + block_hash, u64(height))
        batch.put(K_BASE, u64(height))
        batch.put(K_HEIGHT, u64(height))
        batch.put(K_LAST_HASH, block_hash)
        batch.put(K_STATE_ROOT, state_root)
        batch.put(K_GENESIS, genesis_hash)
        self.kv.write(batch, sync=True)
        self._written(forget=True)
        self.kv.flush()  # the node's first start then opens the store without replaying the load's log

    def take_state_checked(self) -> int | None:
        """The height at which init_from_snapshot checked every state entry it wrote, if no start
        has used that check yet; the mark is removed, so only the first start may rely on it."""
        raw = self.kv.get(K_STATE_CHECKED)
        if raw is None:
            return None
        batch = WriteBatch()
        batch.delete(K_STATE_CHECKED)
        self.kv.write(batch, sync=True)
        return _U64.unpack(raw)[0]

    # -- blocks -----------------------------------------------------------------------------
    def commit_block(
        self,
        *,
        height: int,
        block_hash: bytes,
        block_bytes: bytes,
        certificate: bytes,
        tx_results: Sequence[tuple[bytes, str]],
        state_writes: Sequence[tuple[bytes, bytes | None]],
        state_root: bytes,
        previous: Mapping[bytes, bytes | None] | None = None,
    ) -> None:
        """Store block `height` with everything it changes in one synced batch. `previous` may
        give the committed values of some written keys (None: absent), read while executing
        the block, so the state checksum is updated without reading them again."""
        if height != self.height + 1:
            raise StoreCorrupted(f"block {height} does not follow stored height {self.height}")
        batch = WriteBatch()
        total = self.stored_state_sum()
        if total is not None:
            batch.put(K_STATE_SUM, self._sum_after(total, state_writes, previous).to_bytes(32, "big"))
        batch.put(P_BLOCK + u64(height), block_bytes)
        batch.put(P_CERT + u64(height), certificate)
        batch.put(P_BLOCK_HASH + block_hash, u64(height))
        for index, (tx_hash, result) in enumerate(tx_results):
            batch.put(P_TX + tx_hash, msgpack.packb([height, index, result], use_bin_type=True))
        for key, value in state_writes:
            if value is None:
                batch.delete(P_STATE + key)
            else:
                batch.put(P_STATE + key, value)
        batch.put(K_HEIGHT, u64(height))
        batch.put(K_LAST_HASH, block_hash)
        batch.put(K_STATE_ROOT, state_root)
        self._maybe_crash("commit-before-write")
        self._head = None
        self.kv.write(batch, sync=True)
        self._written(state_writes)
        self._maybe_crash("commit-after-write")

    def _maybe_crash(self, point: str) -> None:
        if self.crash_at == point:
            os._exit(CRASH_EXIT_CODE)

    def _sum_after(self, total: int, state_writes: Sequence[tuple[bytes, bytes | None]],
                   previous: Mapping[bytes, bytes | None] | None = None) -> int:
        """The state checksum after applying `state_writes` (in order; a later write wins)."""
        current: dict[bytes, bytes | None] = {}
        known = previous or {}
        for key, value in state_writes:
            if key in current:
                old = current[key]
            elif key in known:
                old = known[key]
            else:
                old = self.state_get(key)
            if old is not None:
                total -= state_entry_sum(key, old)
            if value is not None:
                total += state_entry_sum(key, value)
            current[key] = value
        return total % _SUM_MOD

    def stored_state_sum(self) -> int | None:
        raw = self.kv.get(K_STATE_SUM)
        return int.from_bytes(raw, "big") if raw is not None else None

    def scan_state_sum(self) -> int:
        """The state checksum recomputed from every stored entry (a full scan)."""
        total = 0
        n = len(P_STATE)
        for k, v in self.kv.iterate(P_STATE):
            total += state_entry_sum(k[n:], v)
        return total % _SUM_MOD

    def set_state_sum(self, total: int) -> None:
        """Record the checksum of a store written before checksums existed."""
        batch = WriteBatch()
        batch.put(K_STATE_SUM, total.to_bytes(32, "big"))
        self.kv.write(batch, sync=True)

    def block_bytes(self, height: int) -> bytes | None:
        return self.kv.get(P_BLOCK + u64(height))

    def certificate(self, height: int) -> bytes | None:
        return self.kv.get(P_CERT + u64(height))

    def height_of_block(self, block_hash: bytes) -> int | None:
        raw = self.kv.get(P_BLOCK_HASH + block_hash)
        return _U64.unpack(raw)[0] if raw else None

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        raw = self.kv.get(P_TX + tx_hash)
        if raw is None:
            return None
        height, index, result = msgpack.unpackb(raw, raw=False)
        return TxLocation(height, index, result)

    def has_tx(self, tx_hash: bytes) -> bool:
        return self.kv.get(P_TX + tx_hash) is not None

    # -- state ------------------------------------------------------------------------------
    def state_get(self, key: bytes) -> bytes | None:
        cache = self._state_cache
        if key in cache:
            return cache[key]
        value = cache[key] = self.kv.get(P_STATE + key)
        self._trim()
        return value

    def state_items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        n = len(P_STATE)
        for k, v in self.kv.iterate(P_STATE + prefix):
            yield k[n:], v

    # -- consensus write-ahead log ----------------------------------------------------------
    def wal_append(self, height: int, entry: bytes) -> None:
        """Append one consensus entry durably (fsync) before the caller acts on it."""
        batch = WriteBatch()
        key = P_WAL + u64(height) + u64(self._wal_seq)
        batch.put(key, entry)
        self._wal_seq += 1
        self.kv.write(batch, sync=True)
        self._wal_keys.append(key)
        self._maybe_crash("wal-after-append")

    def wal_entries(self) -> list[bytes]:
        """Every entry not yet pruned, in append order."""
        entries = [(k[len(P_WAL) + 8 :], v) for k, v in self.kv.iterate(P_WAL)]
        entries.sort()
        return [v for _, v in entries]

    def wal_prune(self, below_height: int) -> None:
        """Delete the entries of heights below `below_height`."""
        batch = WriteBatch()
        keep: deque[bytes] = deque()
        for key in self._wal_keys:
            if _U64.unpack(key[len(P_WAL) : len(P_WAL) + 8])[0] < below_height:
                batch.delete(key)
            else:
                keep.append(key)
        if len(batch):
            self.kv.write(batch, sync=False)
            self._wal_keys = keep

    def close(self) -> None:
        self.kv.close()
