"""Frame encoding and strict decoding (p2p.wire)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import wire
from p2p.errors import FrameTooLarge, MalformedFrame

MAX = 64 * 1024

node_ids = st.binary(min_size=32, max_size=32)
payloads = st.binary(max_size=2048)
kinds = st.integers(min_value=0, max_value=wire.MAX_KIND)
request_ids = st.integers(min_value=0, max_value=2**64 - 1)
texts = st.text(max_size=60)

frames = st.one_of(
    st.builds(
        wire.Hello,
        version=st.integers(0, 0xFFFF),
        chain_id=st.text(min_size=1, max_size=60),
        genesis_hash=st.binary(min_size=1, max_size=64),
        node_id=node_ids,
        nonce=node_ids,
    ),
    st.builds(wire.Auth, signature=st.binary(min_size=64, max_size=64)),
    st.builds(wire.Refuse, reason=texts),
    st.builds(wire.Data, kind=kinds, payload=payloads),
    st.builds(wire.Request, request_id=request_ids, kind=kinds, payload=payloads),
    st.builds(wire.Response, request_id=request_ids, payload=payloads),
    st.builds(wire.ErrorResponse, request_id=request_ids, reason=texts),
)


def decode_all(data: bytes) -> list[wire.Frame]:
    return list(wire.decode_stream(data, max_frame_bytes=MAX))


@given(st.lists(frames, min_size=1, max_size=8))
def test_any_sequence_of_frames_round_trips_as_one_message(batch):
    data = b"".join(wire.encode(f) for f in batch)
    assert decode_all(data) == batch


@given(st.binary(max_size=512))
@settings(max_examples=400)
def test_garbage_only_ever_raises_malformed_frame(data):
    try:
        decode_all(data)
    except MalformedFrame:
        pass


@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_a_truncated_message_is_malformed_after_the_whole_frames(batch, data):
    pieces = [wire.encode(f) for f in batch]
    encoded = b"".join(pieces)
    boundaries = {sum(len(p) for p in pieces[:i]): i for i in range(1, len(pieces))}
    cut = data.draw(st.integers(min_value=1, max_value=len(encoded) - 1))
    if cut in boundaries:  # a cut between frames is a valid, shorter message
        assert decode_all(encoded[:cut]) == batch[: boundaries[cut]]
        return
    got: list[wire.Frame] = []
    with pytest.raises(MalformedFrame):
        for frame in wire.decode_stream(encoded[:cut], max_frame_bytes=MAX):
            got.append(frame)
    assert got == batch[: len(got)]


def test_fast_encoders_match_the_generic_one():
    assert wire.encode_data(7, b"x", max_frame_bytes=MAX) == wire.encode(wire.Data(kind=7, payload=b"x"))
    assert wire.encode_request(3, 7, b"x", max_frame_bytes=MAX) == wire.encode(
        wire.Request(request_id=3, kind=7, payload=b"x")
    )
    assert wire.encode_response(3, bytearray(b"x"), max_frame_bytes=MAX) == wire.encode(
        wire.Response(request_id=3, payload=b"x")
    )


def test_frames_up_to_the_limit_pass_and_one_byte_more_is_refused_locally():
    size = next(n for n in range(MAX - 16, MAX) if len(wire.encode(wire.Data(kind=1, payload=b"a" * n))) == MAX)
    payload = b"a" * size
    frame = wire.encode_data(1, payload, max_frame_bytes=MAX)
    assert len(frame) == MAX
    assert decode_all(frame) == [wire.Data(kind=1, payload=payload)]
    with pytest.raises(FrameTooLarge):
        wire.encode_data(1, payload + b"a", max_frame_bytes=MAX)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [(-1, b""), (wire.MAX_KIND + 1, b""), (True, b""), ("1", b"")],
)
def test_building_a_bad_frame_locally_is_our_bug(kind, payload):
    with pytest.raises(ValueError):
        wire.encode_data(kind, payload, max_frame_bytes=MAX)


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"", "empty"),
        (pack({"kind": 1}), "max_map_len"),
        (pack([16, 1, [b"nested"]]), "payload must be bytes"),
        (pack([16, [1], b""]), "kind must be an int"),
        (pack([[16, 1, b""]]), "frame type must be an int"),
        (pack([16.0, 1, b""]), "frame type must be an int"),
        (pack([True, 1, b""]), "frame type must be an int"),
        (pack([99, 1, b""]), "unknown frame type 99"),
        (pack([16, 1]), "DATA with 2 elements"),
        (pack([16, 1, b"", 4]), "DATA with 4 elements"),
        (pack([16, 70000, b""]), "kind must be an int in"),
        (pack([16, 1, "text, not bytes"]), "payload must be bytes"),
        (pack([17, -1, 1, b""]), "request_id must be an int"),
        (pack([1, 1, "c", b"g", b"short", b"n" * 32]), "node_id must be 32 bytes"),
        (pack([2, b"sig"]), "signature must be 64 bytes"),
        (pack([3, "x" * 300]), "max_str_len"),
        (pack(msgpack.ExtType(1, b"abc")), "max_ext_len"),
        (pack(1.5), "non-empty array"),
        (pack([16] * 7), "max_array_len"),
        (b"\x91" * 2000, "StackError"),
        (b"\xc1", "FormatError"),
        (b"\xa3\xff\xfe\xfd", "UnicodeDecodeError"),
    ],
)
def test_malformed_frames_are_refused_with_a_reason(data, complaint):
    with pytest.raises(MalformedFrame, match=complaint):
        decode_all(data)


def test_frames_before_a_bad_one_are_still_delivered():
    good = wire.encode(wire.Data(kind=1, payload=b"a"))
    seen = []
    with pytest.raises(MalformedFrame):
        for frame in wire.decode_stream(good + good + b"\xc1" + good, max_frame_bytes=MAX):
            seen.append(frame)
    assert seen == [wire.Data(kind=1, payload=b"a")] * 2


def test_a_message_over_the_limit_is_refused_before_decoding():
    data = wire.encode(wire.Data(kind=1, payload=b"a" * 2000))
    with pytest.raises(MalformedFrame, match="exceeds"):
        list(wire.decode_stream(data, max_frame_bytes=1024))


def test_decode_one_wants_exactly_one_frame():
    frame = wire.encode(wire.Auth(signature=b"s" * 64))
    assert wire.decode_one(frame, max_frame_bytes=MAX) == wire.Auth(signature=b"s" * 64)
    with pytest.raises(MalformedFrame, match="exactly one"):
        wire.decode_one(frame + frame, max_frame_bytes=MAX)


def test_short_text_keeps_reasons_within_the_wire_bound():
    long = "é" * 500
    cut = wire.short_text(long)
    assert len(cut.encode()) <= wire.MAX_TEXT_BYTES
    assert cut.endswith("...")
    assert wire.short_text("fine") == "fine"
    decode_all(wire.encode_error(1, long))  # does not raise
