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


# -- transactions -----------------------------------------------------------------------------
from node.chain.tx import TxRejected, decode_tx, tx_from_value  # noqa: E402

CHAIN = "medledger-test"
tx_like = st.tuples(st.just(CHAIN) | st.text(max_size=8), st.sampled_from(["identity.register", "record.add", "x"]) | st.text(max_size=70),
                    st.binary(min_size=31, max_size=33), st.integers(-2, 2**64 - 1) | st.booleans(),
                    st.dictionaries(st.text(max_size=8), values, max_size=4) | values, st.binary(min_size=63, max_size=65)).map(list)


@SETTINGS
@given(tx_like | values)
def test_tx_from_value_raises_only_tx_rejected(value: object) -> None:
    try:
        decoded = decode(packed(value))
    except DecodeError:
        return
    try:
        tx = tx_from_value(decoded, chain_id=CHAIN)
    except TxRejected:
        return
    assert decode_tx(tx.encoded, chain_id=CHAIN).hash == tx.hash


@SETTINGS
@given(st.binary(max_size=300))
def test_decode_tx_raises_only_tx_rejected(data: bytes) -> None:
    try:
        decode_tx(data, chain_id=CHAIN)
    except TxRejected:
        pass


# -- custodian and research requests ----------------------------------------------------------
from node.records.protocol import Fetch, ProtocolError, Upload  # noqa: E402
from node.research.service import ExtractRequest  # noqa: E402

upload_like = st.fixed_dictionaries({
    "record_id": st.binary(min_size=31, max_size=33), "patient": st.binary(min_size=32, max_size=32), "resource_type": st.text(max_size=70),
    "ciphertext": st.binary(max_size=50), "wrapped": st.dictionaries(st.sampled_from(["patient", "custodian", "x"]), st.binary(max_size=130) | values),
    "author": st.binary(min_size=32, max_size=32), "timestamp_ms": st.integers(-(2**63), 2**64 - 1), "signature": st.binary(min_size=63, max_size=65),
}) | values
fetch_like = st.fixed_dictionaries({
    "record_id": st.binary(min_size=32, max_size=32), "requester": st.binary(min_size=31, max_size=32),
    "timestamp_ms": st.integers(-(2**63), 2**64 - 1) | values, "nonce": st.binary(min_size=15, max_size=17),
    "signature": st.binary(min_size=64, max_size=64),
}) | values
extract_like = st.fixed_dictionaries({
    "study": st.text(max_size=70), "types": st.lists(st.text(max_size=70), max_size=40) | values, "k": st.integers(-1, 1001) | st.booleans(),
    "researcher": st.binary(min_size=32, max_size=32), "coordinator": st.binary(min_size=31, max_size=32),
    "timestamp_ms": st.integers(-(2**63), 2**64 - 1),
    "nonce": st.binary(min_size=16, max_size=16), "signature": st.binary(min_size=64, max_size=64),
}) | values


def _decoded(value: object) -> object:
    try:
        return decode(packed(value))
    except DecodeError:
        return None


@SETTINGS
@given(upload_like, fetch_like, extract_like)
def test_signed_requests_raise_only_protocol_errors(upload: object, fetch: object, extract: object) -> None:
    for parse, value in ((Upload.from_wire, upload), (Fetch.from_wire, fetch), (ExtractRequest.from_dict, extract)):
        try:
            parse(_decoded(value), CHAIN)
        except ProtocolError:
            pass


# -- peer wire and handshake ------------------------------------------------------------------
from node.core.crypto import Ed25519Verifier, Identity  # noqa: E402
from p2p import wire  # noqa: E402
from p2p.errors import MalformedFrame  # noqa: E402
from p2p.handshake import Handshake, HandshakeState, Role  # noqa: E402

frame_like = st.lists(st.integers(0, 20) | scalars, min_size=0, max_size=7) | values


@SETTINGS
@given(st.lists(frame_like, max_size=3), st.binary(max_size=20))
def test_decode_stream_yields_frames_that_reencode_exactly_or_raises_malformed(objs: list[object], tail: bytes) -> None:
    data = b"".join(packed(o) for o in objs) + tail
    frames = []
    try:
        for frame in wire.decode_stream(data, max_frame_bytes=4096):
            frames.append(frame)
    except MalformedFrame:
        return
    assert b"".join(wire.encode(f) for f in frames) == data


NODE = Identity.from_seed(b"\x01" * 32)
GENESIS = b"\x22" * 32


@SETTINGS
@given(st.binary(max_size=200) | frame_like.map(packed), st.binary(max_size=100))
def test_handshake_refuses_garbage_and_unsigned_auth_without_raising(first: bytes, second: bytes) -> None:
    hs = Handshake(role=Role.ACCEPTOR, signer=NODE, verifier=Ed25519Verifier(), chain_id=CHAIN, genesis_hash=GENESIS,
                   nonce=b"\x03" * 32, admit=lambda peer: None)
    hs.receive(first)
    if hs.state is HandshakeState.AWAIT_AUTH:
        hs.receive(second)
    assert hs.state in (HandshakeState.REFUSED, HandshakeState.AWAIT_AUTH)


@SETTINGS
@given(st.binary(min_size=64, max_size=64), st.binary(min_size=32, max_size=32))
def test_a_valid_looking_hello_with_an_unsigned_auth_is_refused(signature: bytes, claimed: bytes) -> None:
    hs = Handshake(role=Role.ACCEPTOR, signer=NODE, verifier=Ed25519Verifier(), chain_id=CHAIN, genesis_hash=GENESIS,
                   nonce=b"\x03" * 32, admit=lambda peer: None)
    hello = wire.Hello(version=wire.PROTOCOL_VERSION, chain_id=CHAIN, genesis_hash=GENESIS, node_id=claimed, nonce=b"\x04" * 32)
    hs.receive(wire.encode(hello))
    if hs.state is HandshakeState.AWAIT_AUTH:
        hs.receive(wire.encode(wire.Auth(signature=signature)))
    assert hs.state is HandshakeState.REFUSED
