"""Canonical msgpack encoding and bounded decoding.

Everything that is hashed or signed goes through `canonical()`: msgpack with binary types,
maps re-ordered by their (string) keys, and floats refused, so that two nodes always produce
the same bytes for the same value. `decode()` is the only way bytes from outside become values:
it bounds every length and the nesting depth and turns every failure into `DecodeError`.
"""

from __future__ import annotations

from typing import Any

import msgpack

MAX_DEPTH = 32


class DecodeError(ValueError):
    """Bytes from outside (a client or a peer) are not a valid canonical value."""


class EncodeError(ValueError):
    """Our own code tried to encode a value that has no canonical form (our bug)."""


def _normalize(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise EncodeError("value nested too deeply")
    t = type(value)
    # exact built-in types first: the records the ledger writes are maps of these
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int:
        if not -(1 << 63) <= value < (1 << 64):
            raise EncodeError("integer outside the 64-bit range msgpack encodes")
        return value
    if t is dict:
        out = {}
        for k in sorted(value, key=_str_key):
            out[k] = _normalize(value[k], depth + 1)
        return out
    if t is list or t is tuple:
        return [_normalize(item, depth + 1) for item in value]
    # subclasses and the rest
    if isinstance(value, int) and not isinstance(value, bool) and not -(1 << 63) <= value < (1 << 64):
        raise EncodeError("integer outside the 64-bit range msgpack encodes")
    if isinstance(value, (bool, int, str, bytes)):
        return value
    if isinstance(value, float):
        raise EncodeError("floats have no canonical encoding; use integers")
    if isinstance(value, (list, tuple)):
        return [_normalize(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {k: _normalize(value[k], depth + 1) for k in sorted(value, key=_str_key)}
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise EncodeError(f"cannot encode {type(value).__name__}")


def _str_key(key: Any) -> str:
    if not isinstance(key, str):
        raise EncodeError("map keys must be strings")
    return key


def _already_canonical(value: Any, depth: int = 0) -> bool:
    """True when msgpack can encode `value` as it is: only lists, maps whose string keys are
    already in sorted order, and scalars in range. Values decoded from canonical bytes (every
    transaction, vote and block we receive) pass, so `canonical` skips rebuilding them."""
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return True
    if t is int:
        return -(1 << 63) <= value < (1 << 64)
    if depth >= MAX_DEPTH:
        return False
    if t is list:
        for item in value:
            if not _already_canonical(item, depth + 1):
                return False
        return True
    if t is dict:
        # the keys' order first: a map built in code usually fails here, before any recursion
        previous = ""
        first = True
        for key in value:
            if type(key) is not str or (not first and key <= previous):
                return False
            first, previous = False, key
        for item in value.values():
            if not _already_canonical(item, depth + 1):
                return False
        return True
    return False


def canonical(value: Any) -> bytes:
    """Encode `value` deterministically (sorted map keys, no floats)."""
    if _already_canonical(value):
        return msgpack.packb(value, use_bin_type=True)
    return msgpack.packb(_normalize(value), use_bin_type=True)


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError("value nested too deeply")
    if isinstance(value, float):
        raise DecodeError("floats are not allowed")
    if isinstance(value, list):
        for item in value:
            _check(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check(item, depth + 1)


def _unpack(data: bytes, max_bytes: int, max_items: int) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    if len(data) > max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) == 0:
        raise DecodeError("empty message")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_items,
            max_map_len=max_items,
            max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}: {exc}") from None


def decode_stored(data: bytes) -> Any:
    """Decode bytes this node encoded itself with `canonical` (state values it wrote after
    checking them): no bounds or walk, which bytes from outside always get from `decode`."""
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)


def decode(data: bytes, *, max_bytes: int = 1 << 20, max_items: int = 100_000) -> Any:
    """Decode untrusted msgpack bytes with bounded sizes; raise DecodeError on anything wrong."""
    value = _unpack(data, max_bytes, max_items)
    _check(value, 0)
    return value


def decode_canonical(data: bytes, *, max_bytes: int = 1 << 20, max_items: int = 100_000) -> tuple[Any, bytes]:
    """`decode`, returning also the value's canonical encoding. Bytes that arrive canonical (all
    that our own nodes and clients send) cost one walk over the value instead of three."""
    value = _unpack(data, max_bytes, max_items)
    if _already_canonical(value):  # no floats, not too deep: what `_check` refuses fails here too
        return value, msgpack.packb(value, use_bin_type=True)
    _check(value, 0)
    return value, canonical(value)
