"""Canonical encoding: deterministic bytes, floats refused, bounded decoding."""

import msgpack
import pytest
from hypothesis import given, strategies as st

from node.core.encoding import DecodeError, EncodeError, canonical, decode

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@given(values)
def test_round_trip(value):
    assert decode(canonical(value)) == value


@given(st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**64 - 1), min_size=2, max_size=8))
def test_map_order_does_not_change_bytes(d):
    reordered = dict(reversed(list(d.items())))
    assert canonical(d) == canonical(reordered)


def test_floats_are_refused_both_ways():
    with pytest.raises(EncodeError):
        canonical({"a": 1.5})
    with pytest.raises(DecodeError):
        decode(msgpack.packb([1, 2.5]))


def test_integers_outside_64_bits_refused():
    canonical([-(2**63), 2**64 - 1])
    for n in (2**64, -(2**63) - 1):
        with pytest.raises(EncodeError):
            canonical({"n": n})


def test_non_string_keys_refused():
    with pytest.raises(EncodeError):
        canonical({1: "x"})
    with pytest.raises(DecodeError):
        decode(msgpack.packb({1: "x"}))


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x92\x01", b"\xdb\xff\xff\xff\xff", b"\x91" * 5000 + b"\x00"])
def test_malformed_input_is_a_decode_error(data):
    with pytest.raises(DecodeError):
        decode(data)


def test_size_limits():
    with pytest.raises(DecodeError, match="exceeds"):
        decode(canonical(b"x" * 100), max_bytes=50)
    with pytest.raises(DecodeError):
        decode(canonical(list(range(100))), max_items=10)


def _slow_canonical(value):
    from node.core.encoding import _normalize

    return msgpack.packb(_normalize(value), use_bin_type=True)


@given(values)
def test_fast_path_gives_the_same_bytes_as_the_normalising_path(value):
    # `canonical` skips rebuilding values that are already in canonical form; the bytes must
    # not depend on which path was taken (maps in any order, tuples, nested containers).
    assert canonical(value) == _slow_canonical(value)
    shuffled = decode(canonical(value))
    assert canonical(shuffled) == _slow_canonical(shuffled)


def test_tuples_and_unsorted_maps_take_the_normalising_path():
    assert canonical(("a", {"b": 1, "a": 2})) == msgpack.packb(["a", {"a": 2, "b": 1}], use_bin_type=True)


@given(values)
def test_decode_canonical_equals_decode_then_canonical(value):
    from node.core.encoding import decode_canonical

    for data in (canonical(value), msgpack.packb(value, use_bin_type=True)):  # canonical or not
        decoded, encoded = decode_canonical(data)
        assert decoded == decode(data) and encoded == canonical(decode(data))


def test_decode_canonical_refuses_what_decode_refuses():
    from node.core.encoding import MAX_DEPTH, decode_canonical

    for bad in (msgpack.packb([1.5]), msgpack.packb({"a": [0.0]}), msgpack.packb(_nested(MAX_DEPTH + 2)), b"", b"\xc1"):
        with pytest.raises(DecodeError):
            decode(bad)
        with pytest.raises(DecodeError):
            decode_canonical(bad)


def _nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value
