"""Frames on the wire: msgpack encoding and strict decoding, with no IO.

Every frame is one flat msgpack array whose first element is the frame type.
A websocket message carries one or more whole frames back to back (the writer
batches whatever is queued), so the reader decodes a message as a stream.

    HELLO     [1, version, chain_id: str, genesis_hash: bin, node_id: bin32, nonce: bin32]
    AUTH      [2, signature: bin64]
    REFUSE    [3, reason: str]
    DATA      [16, kind: uint16, payload: bin]
    REQUEST   [17, request_id: uint64, kind: uint16, payload: bin]
    RESPONSE  [18, request_id: uint64, payload: bin]
    ERROR     [19, request_id: uint64, reason: str]

Decoding is the boundary where a peer's bytes meet our code, so it is tight:
no maps, no extension types, no nested containers (the only array allowed is
the frame itself; msgpack's parser gives up past depth 1024 before we even
look), strings and byte strings bounded, integers range-checked. Anything else
raises ``MalformedFrame`` (the peer's fault) and never anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum

import msgpack

from p2p.errors import FrameTooLarge, MalformedFrame

__all__ = [
    "PROTOCOL_VERSION",
    "NODE_ID_BYTES",
    "NONCE_BYTES",
    "SIGNATURE_BYTES",
    "MAX_KIND",
    "MAX_TEXT_BYTES",
    "FrameType",
    "Hello",
    "our_hello",
    "Auth",
    "Refuse",
    "Data",
    "Request",
    "Response",
    "ErrorResponse",
    "Frame",
    "encode",
    "encode_data",
    "encode_request",
    "encode_response",
    "encode_error",
    "decode_stream",
    "decode_one",
    "short_text",
]

PROTOCOL_VERSION = 1
NODE_ID_BYTES = 32
NONCE_BYTES = 32
SIGNATURE_BYTES = 64
MAX_KIND = 0xFFFF
MAX_REQUEST_ID = 2**64 - 1
MAX_TEXT_BYTES = 256
"""Longest string on the wire (chain id, refusal and error reasons), UTF-8."""
MAX_GENESIS_HASH_BYTES = 64
_MAX_FIELDS = 6  # HELLO has the most elements


class FrameType(IntEnum):
    """The first element of every frame."""

    HELLO = 1
    AUTH = 2
    REFUSE = 3
    DATA = 16
    REQUEST = 17
    RESPONSE = 18
    ERROR = 19


# consensus/encoding.py checks its fields the same way; p2p and consensus import
# nothing of each other (tests/test_layers.py), so each keeps its own checks.
def _check_bytes(name: str, value: object, *, exact: int | None = None, max_len: int | None = None) -> None:
    if type(value) is not bytes:
        raise ValueError(f"{name} must be bytes, got {type(value).__name__}")
    if exact is not None and len(value) != exact:
        raise ValueError(f"{name} must be {exact} bytes, got {len(value)}")
    if max_len is not None and len(value) > max_len:
        raise ValueError(f"{name} must be at most {max_len} bytes, got {len(value)}")


def _check_text(name: str, value: object, *, allow_empty: bool = True) -> None:
    if type(value) is not str:
        raise ValueError(f"{name} must be str, got {type(value).__name__}")
    if not allow_empty and not value:
        raise ValueError(f"{name} must not be empty")
    if len(value.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ValueError(f"{name} must be at most {MAX_TEXT_BYTES} bytes of UTF-8")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")


def short_text(text: str) -> str:
    """Cut ``text`` so that it fits the wire's string bound (for reasons)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_TEXT_BYTES:
        return text
    return encoded[: MAX_TEXT_BYTES - 3].decode("utf-8", errors="ignore") + "..."


# One frozen dataclass per frame type, written out alike on purpose: each is the
# reference for its fields and their bounds, read next to the table above.
@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First handshake message: who we claim to be, and a fresh challenge."""

    version: int
    chain_id: str
    genesis_hash: bytes
    node_id: bytes
    nonce: bytes

    def __post_init__(self) -> None:
        _check_int("version", self.version, 0, 0xFFFF)
        _check_text("chain_id", self.chain_id, allow_empty=False)
        _check_bytes("genesis_hash", self.genesis_hash, max_len=MAX_GENESIS_HASH_BYTES)
        if not self.genesis_hash:
            raise ValueError("genesis_hash must not be empty")
        _check_bytes("node_id", self.node_id, exact=NODE_ID_BYTES)
        _check_bytes("nonce", self.nonce, exact=NONCE_BYTES)


def our_hello(*, chain_id: str, genesis_hash: bytes, node_id: bytes, nonce: bytes) -> Hello:
    """Our HELLO, at our protocol version; ``ValueError`` if a field is out of bounds."""
    return Hello(version=PROTOCOL_VERSION, chain_id=chain_id, genesis_hash=genesis_hash, node_id=node_id, nonce=nonce)


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    """Second handshake message: our signature over the handshake transcript."""

    signature: bytes

    def __post_init__(self) -> None:
        _check_bytes("signature", self.signature, exact=SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refuse:
    """The sender refuses the connection; ``reason`` says why."""

    reason: str

    def __post_init__(self) -> None:
        _check_text("reason", self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class Data:
    """An application frame: the node's message kind and opaque payload."""

    kind: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_int("kind", self.kind, 0, MAX_KIND)
        _check_bytes("payload", self.payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """An application request that expects a ``Response`` or ``ErrorResponse``."""

    request_id: int
    kind: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_int("request_id", self.request_id, 0, MAX_REQUEST_ID)
        _check_int("kind", self.kind, 0, MAX_KIND)
        _check_bytes("payload", self.payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """The answer to the request with the same id."""

    request_id: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_int("request_id", self.request_id, 0, MAX_REQUEST_ID)
        _check_bytes("payload", self.payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorResponse:
    """The request with the same id failed on the peer; ``reason`` says why."""

    request_id: int
    reason: str

    def __post_init__(self) -> None:
        _check_int("request_id", self.request_id, 0, MAX_REQUEST_ID)
        _check_text("reason", self.reason)


Frame = Hello | Auth | Refuse | Data | Request | Response | ErrorResponse

_pack: Callable[[object], bytes] = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def encode(frame: Frame) -> bytes:
    """Encode any frame (already validated when it was built)."""
    match frame:
        case Data(kind=kind, payload=payload):
            return _pack((FrameType.DATA.value, kind, payload))
        case Request(request_id=rid, kind=kind, payload=payload):
            return _pack((FrameType.REQUEST.value, rid, kind, payload))
        case Response(request_id=rid, payload=payload):
            return _pack((FrameType.RESPONSE.value, rid, payload))
        case ErrorResponse(request_id=rid, reason=reason):
            return _pack((FrameType.ERROR.value, rid, reason))
        case Hello():
            return _pack(
                (
                    FrameType.HELLO.value,
                    frame.version,
                    frame.chain_id,
                    frame.genesis_hash,
                    frame.node_id,
                    frame.nonce,
                )
            )
        case Auth(signature=signature):
            return _pack((FrameType.AUTH.value, signature))
        case Refuse(reason=reason):
            return _pack((FrameType.REFUSE.value, reason))
    raise TypeError(f"not a frame: {frame!r}")


def _checked_size(encoded: bytes, max_frame_bytes: int) -> bytes:
    if len(encoded) > max_frame_bytes:
        raise FrameTooLarge(f"frame of {len(encoded)} bytes exceeds the maximum of {max_frame_bytes}")
    return encoded


def encode_data(kind: int, payload: bytes, *, max_frame_bytes: int) -> bytes:
    """Encode a DATA frame; the hot path, so without an intermediate object."""
    _check_int("kind", kind, 0, MAX_KIND)
    if type(payload) is not bytes:
        payload = bytes(payload)
    return _checked_size(_pack((FrameType.DATA.value, kind, payload)), max_frame_bytes)


def encode_request(request_id: int, kind: int, payload: bytes, *, max_frame_bytes: int) -> bytes:
    """Encode a REQUEST frame, checking its size."""
    if type(payload) is not bytes:
        payload = bytes(payload)
    return _checked_size(encode(Request(request_id=request_id, kind=kind, payload=payload)), max_frame_bytes)


def encode_response(request_id: int, payload: bytes, *, max_frame_bytes: int) -> bytes:
    """Encode a RESPONSE frame, checking its size."""
    if type(payload) is not bytes:
        payload = bytes(payload)
    return _checked_size(encode(Response(request_id=request_id, payload=payload)), max_frame_bytes)


def encode_error(request_id: int, reason: str) -> bytes:
    """Encode an ERROR frame; an overlong reason is shortened, not refused."""
    return encode(ErrorResponse(request_id=request_id, reason=short_text(reason)))


def _build(obj: object) -> Frame:
    """Turn one decoded msgpack object into a frame, or raise ``ValueError``."""
    if type(obj) is not list or not obj:
        raise ValueError(f"a frame must be a non-empty array, got {type(obj).__name__}")
    tag = obj[0]
    if type(tag) is not int:  # a bool or float would compare equal to a type
        raise ValueError(f"frame type must be an int, got {type(tag).__name__}")
    n = len(obj)
    # The common frames first, built without keyword overhead where it matters.
    if tag == FrameType.DATA and n == 3:
        return Data(kind=obj[1], payload=obj[2])
    if tag == FrameType.REQUEST and n == 4:
        return Request(request_id=obj[1], kind=obj[2], payload=obj[3])
    if tag == FrameType.RESPONSE and n == 3:
        return Response(request_id=obj[1], payload=obj[2])
    if tag == FrameType.ERROR and n == 3:
        return ErrorResponse(request_id=obj[1], reason=obj[2])
    if tag == FrameType.HELLO and n == 6:
        return Hello(version=obj[1], chain_id=obj[2], genesis_hash=obj[3], node_id=obj[4], nonce=obj[5])
    if tag == FrameType.AUTH and n == 2:
        return Auth(signature=obj[1])
    if tag == FrameType.REFUSE and n == 2:
        return Refuse(reason=obj[1])
    if tag not in FrameType._value2member_map_:
        raise ValueError(f"unknown frame type {tag!r}")
    raise ValueError(f"frame type {FrameType(tag).name} with {n} elements")


def _unpacker(max_frame_bytes: int) -> msgpack.Unpacker:
    # The same strict options as node/core/encoding.py's decoder (p2p imports no
    # node), with the bounds of a frame: one flat array, no maps, no extensions.
    return msgpack.Unpacker(
        raw=False,
        use_list=True,
        strict_map_key=True,
        max_buffer_size=max_frame_bytes,
        max_str_len=MAX_TEXT_BYTES,
        max_bin_len=max_frame_bytes,
        max_array_len=_MAX_FIELDS,
        max_map_len=0,
        max_ext_len=0,
    )


def decode_stream(data: bytes, *, max_frame_bytes: int) -> Iterator[Frame]:
    """Yield the frames of one websocket message, in order.

    Raises ``MalformedFrame`` at the first bad frame; the frames before it have
    already been yielded, the rest of the message is lost (a decoder cannot
    resynchronise inside a msgpack stream).
    """
    if not data:
        raise MalformedFrame("empty message")
    if len(data) > max_frame_bytes:
        raise MalformedFrame(f"message of {len(data)} bytes exceeds {max_frame_bytes}")
    unpacker = _unpacker(max_frame_bytes)
    unpacker.feed(data)
    end = 0
    while True:
        try:
            obj = unpacker.unpack()
        except msgpack.OutOfData:
            break
        except (ValueError, msgpack.UnpackException) as exc:
            raise MalformedFrame(f"undecodable msgpack at byte {end}: {type(exc).__name__}: {exc}") from None
        end = unpacker.tell()
        try:
            frame = _build(obj)
        except (ValueError, TypeError) as exc:
            raise MalformedFrame(str(exc)) from None
        yield frame
    if end != len(data):
        raise MalformedFrame(f"truncated frame at byte {end} of {len(data)}")


def decode_one(data: bytes, *, max_frame_bytes: int) -> Frame:
    """Decode a message that must hold exactly one frame (handshake messages)."""
    frames = list(decode_stream(data, max_frame_bytes=max_frame_bytes))
    if len(frames) != 1:
        raise MalformedFrame(f"expected exactly one frame, got {len(frames)}")
    return frames[0]
