"""Layered views of the application state used while executing a block.

`Overlay` buffers writes over a read-only base (the committed store, or another overlay); a
transaction runs in its own overlay that is merged into the block's only if it succeeds. The
write set of a block is listed in sorted key order, so the state root never depends on the
order in which a Python dict happened to be filled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

_DELETED = None


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class FuncReader:
    """Adapt a lookup function (e.g. `ChainStore.state_get`) to StateReader."""

    __slots__ = ("get",)

    def __init__(self, get: Callable[[bytes], bytes | None]) -> None:
        self.get = get


class Overlay:
    """Buffered writes over a base reader."""

    __slots__ = ("base", "writes")

    def __init__(self, base: StateReader) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = _DELETED

    def merge_into(self, parent: "Overlay") -> None:
        parent.writes.update(self.writes)

    def sorted_writes(self) -> list[tuple[bytes, bytes | None]]:
        return sorted(self.writes.items())
