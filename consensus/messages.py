"""The consensus messages: frozen, slotted, keyword-only dataclasses, checked when built.

Every message names its chain, height, view and sender and carries the sender's signature
over `signing_bytes()`: canonical msgpack of a fixed-order array that starts with a domain tag
and the message kind (never a map). Votes sign the block digest; a PRE-PREPARE and a DECISION
also sign the SHA-256 of their payload, so a relaying peer cannot swap payloads under someone
else's signature. The application checks that a payload is the valid block with its digest
before anyone votes for it. Certificates and view-change proofs name blocks by digest only,
which keeps them small (the payload a VIEW-CHANGE may carry is an unsigned convenience). A
NEW-VIEW signs, for each enclosed view change, its sender, the SHA-256 of its signed bytes and
its signature, so its primary answers for the whole content of its proof, not only for which
signatures it names.

| message     | sent by            | says                                                        |
| ----------- | ------------------ | ----------------------------------------------------------- |
| PrePrepare  | primary of (h, v)  | "at height h in view v I propose this block"                |
| Prepare     | every validator    | "I checked that proposal and it is the only one I accept"   |
| Commit      | every validator    | "a quorum prepared it (I hold the certificate)"             |
| ViewChange  | every validator    | "I want view v; here is the highest block I saw prepared"   |
| NewView     | primary of (h, v)  | "a quorum wants view v (proof enclosed); this is the block" |
| Decision    | any validator      | "height h is final: block and commit certificate enclosed"  |

`encode()` gives the wire bytes; `decode_message()` is the only way wire bytes become a
message and raises `MessageDecodeError` (the sender's fault) for anything malformed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgpack

from consensus.certificate import CertificateDecodeError, CommitCertificate, PreparedCertificate
from consensus.crypto import Signer
from consensus.encoding import (
    DIGEST_SIZE,
    DOMAIN,
    ID_SIZE,
    KIND_COMMIT,
    KIND_DECISION,
    KIND_NEW_VIEW,
    KIND_PRE_PREPARE,
    KIND_PREPARE,
    KIND_VIEW_CHANGE,
    MAX_CHAIN_ID_LEN,
    MAX_HEIGHT,
    MAX_SIGNATURE_SIZE,
    MAX_VALIDATORS,
    MAX_VIEW,
    check_bytes,
    check_chain_id,
    check_int,
    pack,
    proposal_signing_bytes,
    sha256,
    vote_signing_bytes,
)

DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024
# Everything in a message but block payloads: a NEW-VIEW holds up to MAX_VALIDATORS view
# changes, each with a prepared certificate of up to MAX_VALIDATORS votes.
_MAX_OVERHEAD = 4096 + MAX_VALIDATORS * (256 + MAX_VALIDATORS * (ID_SIZE + MAX_SIGNATURE_SIZE + 8))


class MessageDecodeError(ValueError):
    """Bytes from a peer that are not a well-formed consensus message (the peer's fault)."""


def _check_common(msg: Any) -> None:
    check_chain_id(msg.chain_id)
    check_int("height", msg.height, 1, MAX_HEIGHT)
    check_int("view", msg.view, 0, MAX_VIEW)
    check_bytes("sender", msg.sender, size=ID_SIZE)
    check_bytes("signature", msg.signature, max_size=MAX_SIGNATURE_SIZE)


def _cached(msg: Any, compute: Callable[[], bytes]) -> bytes:
    cached: bytes | None = msg._signing_bytes
    if cached is None:
        cached = compute()
        object.__setattr__(msg, "_signing_bytes", cached)
    return cached


# The six messages spell out their fields, each a flat frozen record: the signed bytes and the
# wire value follow the fields one by one, so the repeated lines (chain_id ... signature) stay.
@dataclass(frozen=True, slots=True, kw_only=True)
class PrePrepare:
    """The primary's proposal of a block (payload, opaque to consensus) at (height, view)."""

    chain_id: str
    height: int
    view: int
    sender: bytes
    digest: bytes
    payload: bytes
    signature: bytes = b""
    _signing_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_common(self)
        check_bytes("digest", self.digest, size=DIGEST_SIZE)
        check_bytes("payload", self.payload)

    def signing_bytes(self) -> bytes:
        return _cached(self, lambda: proposal_signing_bytes(
            KIND_PRE_PREPARE, self.chain_id, self.height, self.view, self.sender, self.digest, self.payload))

    def to_value(self) -> list[Any]:
        return [KIND_PRE_PREPARE, self.chain_id, self.height, self.view, self.sender, self.digest,
                self.payload, self.signature]

    def encode(self) -> bytes:
        return pack(self.to_value())


@dataclass(frozen=True, slots=True, kw_only=True)
class _Vote:
    """A vote on the proposal `digest` at (height, view); PREPARE and COMMIT differ only in kind."""

    KIND: ClassVar[int]
    chain_id: str
    height: int
    view: int
    sender: bytes
    digest: bytes
    signature: bytes = b""
    _signing_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_common(self)
        check_bytes("digest", self.digest, size=DIGEST_SIZE)

    def signing_bytes(self) -> bytes:
        return _cached(self, lambda: vote_signing_bytes(
            self.KIND, self.chain_id, self.height, self.view, self.sender, self.digest))

    def to_value(self) -> list[Any]:
        return [self.KIND, self.chain_id, self.height, self.view, self.sender, self.digest, self.signature]

    def encode(self) -> bytes:
        return pack(self.to_value())


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare(_Vote):
    """A validator accepts the proposal `digest` at (height, view)."""

    KIND: ClassVar[int] = KIND_PREPARE


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit(_Vote):
    """A validator holds a prepared certificate for `digest` at (height, view)."""

    KIND: ClassVar[int] = KIND_COMMIT


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewChange:
    """A validator asks for view `view` at `height`, with the highest prepared certificate it holds.

    `payload` is the prepared block (so the next primary can re-propose it even if it never
    saw it); it is not signed, and is stripped when the view change is enclosed in a NEW-VIEW.
    """

    chain_id: str
    height: int
    view: int
    sender: bytes
    prepared: PreparedCertificate | None = None
    payload: bytes | None = None
    signature: bytes = b""
    _signing_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_common(self)
        if self.view < 1:
            raise ValueError("a view change asks for a view >= 1")
        if self.prepared is not None:
            if type(self.prepared) is not PreparedCertificate:
                raise ValueError("prepared must be a PreparedCertificate or None")
            if self.prepared.height != self.height or self.prepared.view >= self.view:
                raise ValueError("prepared certificate must be for this height and an earlier view")
        if self.payload is not None:
            check_bytes("payload", self.payload)
            if self.prepared is None:
                raise ValueError("a payload without a prepared certificate")

    def signing_bytes(self) -> bytes:
        prepared = None if self.prepared is None else self.prepared.to_value()
        return _cached(self, lambda: pack(
            [DOMAIN, KIND_VIEW_CHANGE, self.chain_id, self.height, self.view, self.sender, prepared]))

    def to_value(self) -> list[Any]:
        prepared = None if self.prepared is None else self.prepared.to_value()
        return [KIND_VIEW_CHANGE, self.chain_id, self.height, self.view, self.sender, prepared,
                self.payload, self.signature]

    def encode(self) -> bytes:
        return pack(self.to_value())

    def stripped(self) -> ViewChange:
        """The same signed view change without the (unsigned) block payload."""
        if self.payload is None:
            return self
        return ViewChange(chain_id=self.chain_id, height=self.height, view=self.view, sender=self.sender,
                          prepared=self.prepared, payload=None, signature=self.signature)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewView:
    """The new primary's proof that a quorum asked for `view`, and its proposal for that view."""

    chain_id: str
    height: int
    view: int
    sender: bytes
    view_changes: tuple[ViewChange, ...]
    pre_prepare: PrePrepare
    signature: bytes = b""
    _signing_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_common(self)
        if type(self.view_changes) is not tuple or not 1 <= len(self.view_changes) <= MAX_VALIDATORS:
            raise ValueError("view_changes must be a non-empty tuple")
        senders = set()
        for vc in self.view_changes:
            if type(vc) is not ViewChange:
                raise ValueError("view_changes must hold ViewChange messages")
            if (vc.chain_id, vc.height, vc.view) != (self.chain_id, self.height, self.view):
                raise ValueError("an enclosed view change is for another chain, height or view")
            if vc.payload is not None:
                raise ValueError("enclosed view changes carry no payload")
            senders.add(vc.sender)
        if len(senders) != len(self.view_changes):
            raise ValueError("enclosed view changes must come from distinct validators")
        pp = self.pre_prepare
        if type(pp) is not PrePrepare:
            raise ValueError("pre_prepare must be a PrePrepare")
        if (pp.chain_id, pp.height, pp.view, pp.sender) != (self.chain_id, self.height, self.view, self.sender):
            raise ValueError("the enclosed pre-prepare must be the sender's own for this height and view")

    def signing_bytes(self) -> bytes:
        return _cached(self, lambda: pack(
            [DOMAIN, KIND_NEW_VIEW, self.chain_id, self.height, self.view, self.sender,
             [[vc.sender, sha256(vc.signing_bytes()), vc.signature] for vc in self.view_changes],
             self.pre_prepare.digest, self.pre_prepare.signature]))

    def to_value(self) -> list[Any]:
        return [KIND_NEW_VIEW, self.chain_id, self.height, self.view, self.sender,
                [vc.to_value() for vc in self.view_changes], self.pre_prepare.to_value(), self.signature]

    def encode(self) -> bytes:
        return pack(self.to_value())


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Height `height` is final: the block and its commit certificate, for a validator that is behind."""

    chain_id: str
    height: int
    view: int
    sender: bytes
    digest: bytes
    payload: bytes
    certificate: CommitCertificate
    signature: bytes = b""
    _signing_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_common(self)
        check_bytes("digest", self.digest, size=DIGEST_SIZE)
        check_bytes("payload", self.payload)
        cert = self.certificate
        if type(cert) is not CommitCertificate:
            raise ValueError("certificate must be a CommitCertificate")
        if (cert.height, cert.view, cert.digest) != (self.height, self.view, self.digest):
            raise ValueError("the certificate is for another height, view or block")

    def signing_bytes(self) -> bytes:
        return _cached(self, lambda: proposal_signing_bytes(
            KIND_DECISION, self.chain_id, self.height, self.view, self.sender, self.digest, self.payload))

    def to_value(self) -> list[Any]:
        return [KIND_DECISION, self.chain_id, self.height, self.view, self.sender, self.digest,
                self.payload, self.certificate.to_value(), self.signature]

    def encode(self) -> bytes:
        return pack(self.to_value())


Message = PrePrepare | Prepare | Commit | ViewChange | NewView | Decision
VOTE_TYPES = (PrePrepare, Prepare, Commit)
# One kind of message, kept through a copy: signing a PrePrepare gives a PrePrepare.
M = TypeVar("M", bound=Message)


def message_key(msg: Message) -> bytes:
    """What anything remembered about `msg` is keyed by: its signer, its signed bytes and its signature.

    The invariant (docs/consensus.md, "a remembered verification covers exactly the bytes that
    were checked"): a verification, or a "seen that", is reused only for exactly those bytes.
    Keyed by the signature alone, a Byzantine primary could relabel one genuine signature as
    other validators' view changes with other content.
    """
    return sha256(pack([msg.sender, msg.signing_bytes(), msg.signature]))


def sign_message(msg: M, signer: Signer) -> M:
    """A copy of `msg` with `signer`'s signature (the sender must be the signer)."""
    if msg.sender != signer.public_key:
        raise ValueError("a validator signs only messages it sends")
    signature = signer.sign(msg.signing_bytes())
    signed = _copy_with_signature(msg, signature)
    object.__setattr__(signed, "_signing_bytes", msg.signing_bytes())
    return signed


def _copy_with_signature(msg: M, signature: bytes) -> M:
    values = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg) if f.init}
    values["signature"] = signature
    return type(msg)(**values)


# -- decoding ---------------------------------------------------------------------------------

def decode_message(data: bytes, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Message:
    """Parse a message from a peer; anything malformed raises `MessageDecodeError`.

    Signatures are not checked here (the runtime verifies the outer one next).
    """
    if type(data) is not bytes:
        raise MessageDecodeError("a message must be bytes")
    if len(data) > max_payload + _MAX_OVERHEAD:
        raise MessageDecodeError(f"message of {len(data)} bytes is too large")
    try:
        value = msgpack.unpackb(
            data, raw=False, use_list=False, strict_map_key=True,
            max_bin_len=max(max_payload, MAX_SIGNATURE_SIZE), max_str_len=MAX_CHAIN_ID_LEN,
            max_array_len=MAX_VALIDATORS + 8, max_map_len=0, max_ext_len=0,
        )
    except (ValueError, TypeError, OverflowError, msgpack.exceptions.UnpackException) as exc:
        raise MessageDecodeError(f"not valid msgpack: {exc}") from None
    try:
        return _from_value(value, max_payload)
    except (ValueError, TypeError, CertificateDecodeError) as exc:
        raise MessageDecodeError(str(exc)) from None


def _payload(value: Any, max_payload: int) -> bytes:
    if type(value) is not bytes or len(value) > max_payload:
        raise MessageDecodeError(f"payload must be bytes of at most {max_payload} bytes")
    return value


def _prepared(value: Any) -> PreparedCertificate | None:
    return None if value is None else PreparedCertificate.from_value(value)


def _from_value(value: Any, max_payload: int, only: int | None = None) -> Message:
    if type(value) is not tuple or not value or type(value[0]) is not int:
        raise MessageDecodeError("a message is an array that starts with its kind")
    kind, rest = value[0], value[1:]
    if only is not None and kind != only:
        raise MessageDecodeError("unexpected kind of enclosed message")
    if kind == KIND_PRE_PREPARE and len(rest) == 7:
        chain_id, height, view, sender, digest, payload, signature = rest
        return PrePrepare(chain_id=chain_id, height=height, view=view, sender=sender, digest=digest,
                          payload=_payload(payload, max_payload), signature=_signature(signature))
    if kind in (KIND_PREPARE, KIND_COMMIT) and len(rest) == 6:
        chain_id, height, view, sender, digest, signature = rest
        cls = Prepare if kind == KIND_PREPARE else Commit
        return cls(chain_id=chain_id, height=height, view=view, sender=sender, digest=digest,
                   signature=_signature(signature))
    if kind == KIND_VIEW_CHANGE and len(rest) == 7:
        chain_id, height, view, sender, prepared, payload, signature = rest
        return ViewChange(chain_id=chain_id, height=height, view=view, sender=sender,
                          prepared=_prepared(prepared),
                          payload=None if payload is None else _payload(payload, max_payload),
                          signature=_signature(signature))
    if kind == KIND_NEW_VIEW and len(rest) == 7:
        chain_id, height, view, sender, vcs, pp, signature = rest
        if type(vcs) is not tuple:
            raise MessageDecodeError("view_changes must be an array")
        decoded = tuple(_from_value(vc, max_payload, KIND_VIEW_CHANGE) for vc in vcs)
        view_changes = tuple(vc for vc in decoded if type(vc) is ViewChange)
        pre_prepare = _from_value(pp, max_payload, KIND_PRE_PREPARE)
        if len(view_changes) != len(decoded) or type(pre_prepare) is not PrePrepare:
            raise MessageDecodeError("a NEW-VIEW holds view changes and a pre-prepare")
        return NewView(chain_id=chain_id, height=height, view=view, sender=sender, view_changes=view_changes,
                       pre_prepare=pre_prepare, signature=_signature(signature))
    if kind == KIND_DECISION and len(rest) == 8:
        chain_id, height, view, sender, digest, payload, cert, signature = rest
        return Decision(chain_id=chain_id, height=height, view=view, sender=sender, digest=digest,
                        payload=_payload(payload, max_payload),
                        certificate=CommitCertificate.from_value(cert), signature=_signature(signature))
    raise MessageDecodeError(f"unknown message kind {kind!r} or wrong number of fields")


def _signature(value: Any) -> bytes:
    if type(value) is not bytes or not 1 <= len(value) <= MAX_SIGNATURE_SIZE:
        raise MessageDecodeError("signature must be 1..128 bytes")
    return value
