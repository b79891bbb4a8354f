"""Property tests (hypothesis) of the decoders that meet bytes from clients and peers.

Each property is what the fuzzer checks end to end, here at unit level where it is cheap: bytes
from outside raise only the decoder's own error, and whatever a decoder accepts can be used
without surprises further in (a value `decode` accepts has a canonical encoding, a frame
`decode_stream` yields re-encodes to the bytes it came from).
"""

from __future__ import annotations

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core.encoding import DecodeError, canonical, decode

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
           | st.binary(max_size=40))
map_keys = st.text(max_size=8) | st.binary(max_size=8) | st.integers(-3, 3)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(map_keys, inner, max_size=4),
                      max_leaves=20)


def packed(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@SETTINGS
@given(st.binary(max_size=512))
def test_decode_raises_only_decode_error_on_random_bytes(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


@SETTINGS
@given(values)
def test_whatever_decode_accepts_has_a_canonical_encoding(value: object) -> None:
    try:
        decoded = decode(packed(value))
    except DecodeError:
        return
    assert decode(canonical(decoded)) == decoded


def test_bytes_map_keys_are_refused_by_decode() -> None:
    """Regression: a map with bytes keys decoded, then canonical() raised EncodeError (a 500 on POST /v1/txs)."""
    try:
        decode(packed({b"k": 1}))
    except DecodeError as exc:
        assert "keys" in str(exc)
    else:
        raise AssertionError("a bytes map key was accepted")
