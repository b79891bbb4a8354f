"""Signed messages between a client and the custodian institution's node.

UPLOAD    the author sends ciphertext and wrapped keys to its institution's node (before
          submitting `record.add`); signed by the author.
FETCH     a reader asks the custodian for a record it has a committed access grant for; signed by
          the reader, timestamped and with a random nonce, so a stale or replayed request is
          refused.
DELEGATED FETCH  an institution asks for a record on behalf of one of its practitioners, who
          holds the committed grant (the institution's node serves a FHIR client authenticated
          by a bearer token, node/fhir/); signed by the institution, timestamped and with a
          random nonce. The custodian re-wraps the data key for the institution.
RELEASE   the custodian's answer: ciphertext and the data key re-wrapped for the reader, signed by
          the custodian (a SealedBox does not say who sealed it; the signature does).

Every message is a msgpack map on the wire; what is signed is the canonical encoding of a
domain-tagged array of its fields, so no field can be moved between message kinds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Self

from node.core.crypto import KEY_SIZE, SIGNATURE_SIZE, Identity, sha256, verify
from node.core.encoding import canonical
from node.core.errors import CodedError

MAX_CIPHERTEXT = 2 * 1024 * 1024
NONCE_SIZE = 16


class ProtocolError(CodedError, ValueError):
    """A client's message is malformed, unsigned, stale or replayed; `code` says which
    (an unverifiable signature answers 401, anything else 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 401 if code == "bad_signature" else 400)


def _need(doc: Any, fields: dict[str, type]) -> None:
    if not isinstance(doc, dict):
        raise ProtocolError("malformed_request", "request must be a map")
    for name, kind in fields.items():
        value = doc.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ProtocolError("malformed_request", f"field {name!r} missing or of the wrong type")


def _id(doc: dict[str, Any], name: str, size: int = KEY_SIZE) -> bytes:
    value = doc[name]
    if len(value) != size:
        raise ProtocolError("malformed_request", f"field {name!r} must be {size} bytes")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedMessage:
    """What the three messages share: the chain they belong to (both sides know it, so it is
    signed but never sent), a signature over `signing_bytes()`, and a wire map of every other field."""

    chain_id: str
    signature: bytes = b""

    def signing_bytes(self) -> bytes:
        raise NotImplementedError

    def to_wire(self) -> bytes:
        return canonical({f.name: getattr(self, f.name) for f in fields(self) if f.name != "chain_id"})

    def signed_by(self, signer: Identity) -> Self:
        """This message with `signer`'s signature."""
        return replace(self, signature=signer.sign(self.signing_bytes()))

    def verified(self, signer: bytes, refusal: str) -> Self:
        """This message, if `signer` signed it; else ProtocolError("bad_signature", refusal)."""
        if not verify(signer, self.signing_bytes(), self.signature):
            raise ProtocolError("bad_signature", refusal)
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class Upload(SignedMessage):
    record_id: bytes
    patient: bytes
    resource_type: str
    ciphertext: bytes
    wrapped: dict[str, bytes]  # "patient" and "custodian"
    author: bytes
    timestamp_ms: int

    def signing_bytes(self) -> bytes:
        return canonical(["medledger-upload-v1", self.chain_id, self.record_id, self.patient, self.resource_type,
                          sha256(self.ciphertext), sorted(self.wrapped.items()), self.author, self.timestamp_ms])

    @classmethod
    def create(cls, author: Identity, **fields: Any) -> "Upload":
        return cls(author=author.public_key, **fields).signed_by(author)

    @classmethod
    def from_wire(cls, doc: Any, chain_id: str) -> "Upload":
        _need(doc, {"record_id": bytes, "patient": bytes, "resource_type": str, "ciphertext": bytes, "wrapped": dict,
                    "author": bytes, "timestamp_ms": int, "signature": bytes})
        wrapped = doc["wrapped"]
        if set(wrapped) != {"patient", "custodian"} or not all(isinstance(v, bytes) and len(v) <= 128 for v in wrapped.values()):
            raise ProtocolError("malformed_request", "wrapped must hold the data key wrapped for 'patient' and 'custodian'")
        if len(doc["ciphertext"]) > MAX_CIPHERTEXT:
            raise ProtocolError("record_too_large", f"ciphertext exceeds {MAX_CIPHERTEXT} bytes")
        up = cls(chain_id=chain_id, record_id=_id(doc, "record_id"), patient=_id(doc, "patient"),
                 resource_type=doc["resource_type"][:64], ciphertext=doc["ciphertext"], wrapped=dict(wrapped),
                 author=_id(doc, "author"), timestamp_ms=doc["timestamp_ms"], signature=_id(doc, "signature", SIGNATURE_SIZE))
        return up.verified(up.author, "the upload is not signed by its author")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetch(SignedMessage):
    record_id: bytes
    requester: bytes
    timestamp_ms: int
    nonce: bytes

    def signing_bytes(self) -> bytes:
        return canonical(["medledger-fetch-v1", self.chain_id, self.record_id, self.requester, self.timestamp_ms, self.nonce])

    @classmethod
    def create(cls, requester: Identity, *, chain_id: str, record_id: bytes, timestamp_ms: int) -> "Fetch":
        return cls(chain_id=chain_id, record_id=record_id, requester=requester.public_key,
                   timestamp_ms=timestamp_ms, nonce=os.urandom(NONCE_SIZE)).signed_by(requester)

    @classmethod
    def from_wire(cls, doc: Any, chain_id: str) -> "Fetch":
        _need(doc, {"record_id": bytes, "requester": bytes, "timestamp_ms": int, "nonce": bytes, "signature": bytes})
        f = cls(chain_id=chain_id, record_id=_id(doc, "record_id"), requester=_id(doc, "requester"),
                timestamp_ms=doc["timestamp_ms"], nonce=_id(doc, "nonce", NONCE_SIZE), signature=_id(doc, "signature", SIGNATURE_SIZE))
        return f.verified(f.requester, "the request is not signed by its requester")


@dataclass(frozen=True, slots=True, kw_only=True)
class DelegatedFetch(SignedMessage):
    record_id: bytes
    institution: bytes
    practitioner: bytes
    timestamp_ms: int
    nonce: bytes

    def signing_bytes(self) -> bytes:
        return canonical(["medledger-fetch-delegated-v1", self.chain_id, self.record_id, self.institution,
                          self.practitioner, self.timestamp_ms, self.nonce])

    @classmethod
    def create(cls, institution: Identity, *, chain_id: str, record_id: bytes, practitioner: bytes,
               timestamp_ms: int) -> "DelegatedFetch":
        return cls(chain_id=chain_id, record_id=record_id, institution=institution.public_key, practitioner=practitioner,
                   timestamp_ms=timestamp_ms, nonce=os.urandom(NONCE_SIZE)).signed_by(institution)

    @classmethod
    def from_wire(cls, doc: Any, chain_id: str) -> "DelegatedFetch":
        _need(doc, {"record_id": bytes, "institution": bytes, "practitioner": bytes, "timestamp_ms": int,
                    "nonce": bytes, "signature": bytes})
        f = cls(chain_id=chain_id, record_id=_id(doc, "record_id"), institution=_id(doc, "institution"),
                practitioner=_id(doc, "practitioner"), timestamp_ms=doc["timestamp_ms"], nonce=_id(doc, "nonce", NONCE_SIZE),
                signature=_id(doc, "signature", SIGNATURE_SIZE))
        return f.verified(f.institution, "the request is not signed by the institution it names")


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(SignedMessage):
    record_id: bytes
    requester: bytes
    nonce: bytes
    ciphertext: bytes
    wrapped_key: bytes
    custodian: bytes

    def signing_bytes(self) -> bytes:
        return canonical(["medledger-release-v1", self.chain_id, self.record_id, self.requester, self.nonce,
                          sha256(self.ciphertext), self.wrapped_key, self.custodian])

    @classmethod
    def from_wire(cls, doc: Any, chain_id: str) -> "Release":
        _need(doc, {"record_id": bytes, "requester": bytes, "nonce": bytes, "ciphertext": bytes, "wrapped_key": bytes,
                    "custodian": bytes, "signature": bytes})
        r = cls(chain_id=chain_id, record_id=_id(doc, "record_id"), requester=_id(doc, "requester"), nonce=doc["nonce"],
                ciphertext=doc["ciphertext"], wrapped_key=doc["wrapped_key"], custodian=_id(doc, "custodian"),
                signature=_id(doc, "signature", SIGNATURE_SIZE))
        return r.verified(r.custodian, "the answer is not signed by the custodian")
