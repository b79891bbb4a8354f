"""Layered views of the application state used while executing a block.

`Overlay` buffers writes over a read-only base (the committed store, or another overlay); a
transaction runs in its own overlay that is merged into the block's only if it succeeds. The
write set of a block is listed in sorted key order, so the state root never depends on the
order in which a Python dict happened to be filled.

Ordered scans. The state machine reads families of keys by prefix (a patient's consents for one
grantee, say), so every reader offers `items(prefix)`: the (key, value) pairs under `prefix` in
ascending key order. An overlay merges its own buffered writes (deletions hide the base's keys)
with its base's ordered iteration. To keep a block's cost proportional to what it touches, an
overlay keeps its written keys in two sorted lists: a small one that new keys are inserted into,
and a large one it is folded into (one linear merge) each time it grows past `_FRESH_LIMIT`, so
neither an insert nor a scan ever re-sorts the whole block.

Do not write under a prefix while iterating it: materialise the scan first (`list(...)`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Protocol

_DELETED = None
_FRESH_LIMIT = 256


class StateReader(Protocol):
    """Read access to the state: point lookups and ordered prefix scans."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound).

    Trailing 0xff bytes cannot grow, so they go and the byte before them grows. (The same in
    storage/kv.py: the two layers import nothing from each other.)"""
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1]) if head else None


def _no_items(prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    raise TypeError(
        "this state reader was built without an ordered scan; "
        "build it as FuncReader(store.state_get, store.state_items)"
    )


class FuncReader:
    """Adapt lookup functions to StateReader: `FuncReader(store.state_get, store.state_items)`.

    `items(prefix)` must yield (key, value) pairs under `prefix` in ascending key order, as
    `ChainStore.state_items` does. When it is not given and `get` is a bound `state_get` of an
    object that also has `state_items` (a ChainStore), that is used, so readers built the older
    way, `FuncReader(store.state_get)`, keep working; otherwise a scan raises TypeError.
    """

    __slots__ = ("get", "items")

    def __init__(
        self,
        get: Callable[[bytes], bytes | None],
        items: Callable[[bytes], Iterator[tuple[bytes, bytes]]] | None = None,
    ) -> None:
        self.get = get
        if items is None:
            items = getattr(getattr(get, "__self__", None), "state_items", None)
        self.items: Callable[[bytes], Iterator[tuple[bytes, bytes]]] = items or _no_items


class RememberingReader:
    """A StateReader that remembers what each point lookup of its base returned, so the values a
    block's writes replace are known without reading them again (for the state checksum)."""

    __slots__ = ("_base", "seen")

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self.seen: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        seen = self.seen
        if key in seen:
            return seen[key]
        value = seen[key] = self._base.get(key)
        return value

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._base.items(prefix)


class EmptyState:
    """A state with nothing in it (the base of the genesis state)."""

    def get(self, key: bytes) -> bytes | None:
        return None

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter(())


class Overlay:
    """Buffered writes over a base reader."""

    __slots__ = ("base", "writes", "_sorted", "_fresh")

    def __init__(self, base: StateReader) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        self._sorted: list[bytes] = []  # written keys, sorted
        self._fresh: list[bytes] = []  # written keys not yet in _sorted, sorted too (and short)

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def _track(self, key: bytes) -> None:
        if key not in self.writes:
            bisect.insort(self._fresh, key)
            if len(self._fresh) > _FRESH_LIMIT:
                self._sorted = sorted(self._sorted + self._fresh)  # two sorted runs: a linear merge
                self._fresh = []

    def put(self, key: bytes, value: bytes) -> None:
        self._track(key)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self._track(key)
        self.writes[key] = _DELETED

    def merge_into(self, parent: Overlay) -> None:
        """Apply this overlay's writes (and deletions) to `parent`."""
        for key, value in self.writes.items():
            parent._track(key)
            parent.writes[key] = value

    def sorted_writes(self) -> list[tuple[bytes, bytes | None]]:
        return sorted(self.writes.items())

    def _written_under(self, prefix: bytes) -> list[bytes]:
        end = prefix_end(prefix)
        found = []
        for keys in (self._sorted, self._fresh):
            lo = bisect.bisect_left(keys, prefix)
            hi = bisect.bisect_left(keys, end) if end is not None else len(keys)
            found.append(keys[lo:hi])
        return sorted(found[0] + found[1]) if found[1] else found[0]

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) under `prefix` in key order: buffered writes merged over the base."""
        mine = [(k, self.writes[k]) for k in self._written_under(prefix)]
        if not mine:
            yield from self.base.items(prefix)
            return
        i = 0
        for key, value in self.base.items(prefix):
            while i < len(mine) and mine[i][0] < key:
                k, v = mine[i]
                i += 1
                if v is not None:
                    yield k, v
            if i < len(mine) and mine[i][0] == key:
                k, v = mine[i]
                i += 1
                if v is not None:
                    yield k, v
                continue
            yield key, value
        for k, v in mine[i:]:
            if v is not None:
                yield k, v
