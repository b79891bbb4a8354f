"""Layered views of the application state used while executing a block.

`Overlay` buffers writes over a read-only base (the committed store, or another overlay); a
transaction runs in its own overlay that is merged into the block's only if it succeeds. The
write set of a block is listed in sorted key order, so the state root never depends on the
order in which a Python dict happened to be filled.

Ordered scans. The state machine reads families of keys by prefix (a patient's consents for one
grantee, say), so every reader offers `items(prefix)`: the (key, value) pairs under `prefix` in
ascending key order. An overlay merges its own buffered writes (deletions hide the base's keys)
with its base's ordered iteration. To keep a block's cost proportional to what it touches, an
overlay does not re-sort all its writes for every scan: keys written since the last scan wait
in a small unsorted list that is scanned linearly and folded into the sorted list (one linear
merge) only once it grows past `_FRESH_LIMIT`.

Do not write under a prefix while iterating it: materialise the scan first (`list(...)`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

_DELETED = None
_FRESH_LIMIT = 256


class StateReader(Protocol):
    """Read access to the state: point lookups and ordered prefix scans."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix` (None: no bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None


def _no_items(prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    raise TypeError(
        "this state reader was built without an ordered scan; "
        "build it as FuncReader(store.state_get, store.state_items)"
    )


class FuncReader:
    """Adapt lookup functions to StateReader: `FuncReader(store.state_get, store.state_items)`.

    `items(prefix)` must yield (key, value) pairs under `prefix` in ascending key order, as
    `ChainStore.state_items` does. Without it, a transaction that scans state raises TypeError.
    """

    __slots__ = ("get", "items")

    def __init__(
        self,
        get: Callable[[bytes], bytes | None],
        items: Callable[[bytes], Iterable[tuple[bytes, bytes]]] | None = None,
    ) -> None:
        self.get = get
        self.items = items or _no_items


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
        self._fresh: list[bytes] = []  # written keys not yet in _sorted, unsorted

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.writes:
            self._fresh.append(key)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        if key not in self.writes:
            self._fresh.append(key)
        self.writes[key] = _DELETED

    def merge_into(self, parent: "Overlay") -> None:
        """Apply this overlay's writes (and deletions) to `parent`."""
        known = parent.writes
        parent._fresh.extend(k for k in self.writes if k not in known)
        known.update(self.writes)

    def sorted_writes(self) -> list[tuple[bytes, bytes | None]]:
        return sorted(self.writes.items())

    def _written_under(self, prefix: bytes) -> list[bytes]:
        if len(self._fresh) > _FRESH_LIMIT:
            self._sorted = sorted(self._sorted + self._fresh)  # two sorted-ish runs: a linear merge
            self._fresh = []
        lo = bisect.bisect_left(self._sorted, prefix)
        end = prefix_end(prefix)
        hi = bisect.bisect_left(self._sorted, end) if end is not None else len(self._sorted)
        keys = self._sorted[lo:hi]
        fresh = [k for k in self._fresh if k.startswith(prefix)]
        if fresh:
            keys = sorted(keys + fresh)
        return keys

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
