"""Values in state: every record is stored as the canonical msgpack encoding of its value."""

from __future__ import annotations

from typing import Any

from node.core.encoding import canonical, decode_stored

from node.app.registry import ExecContext
from node.app.state import StateReader


def read(state: StateReader, key: bytes) -> Any:
    """The decoded value at `key`, or None (state holds only what `write` encoded)."""
    raw = state.get(key)
    return None if raw is None else decode_stored(raw)


def write(ctx: ExecContext, key: bytes, value: Any) -> None:
    ctx.state.put(key, canonical(value))

