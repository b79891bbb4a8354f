"""Signed API requests (scheme ``medledger-request-v2``) and who may read what.

A caller signs a read of health data with its identity key; the request carries four headers
(signer, timestamp, nonce, signature) and the signature covers the chain id, the id of the node
the request is sent to, the method, the path and query exactly as sent, the timestamp, the nonce
and the SHA-256 of the body. Naming the node means a request one node accepted cannot be
replayed at another (each node has its own replay guard). docs/api.md states the contract (it is
shared with the web UI).

This module has no web framework in it: `sign_headers` is what a client calls, `verify_headers`
checks a request's headers against its method, path and body (signature first, then time), and
the `may_read_*` functions decide from the committed ledger state whether a verified signer may
read a resource. Replayed nonces are refused by node/core/replay.py's `ReplayGuard`, which the API
consults only after the signer was found to be allowed (nothing is remembered of a request that
is refused).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.app import queries
from node.app.roles import guardian_of
from node.app.state import StateReader
from node.core.crypto import Identity, verify
from node.core.errors import CodedError
from node.core import replay

SCHEME = "medledger-request-v2"
HEADER_SIGNER = "X-MedLedger-Signer"
HEADER_TIMESTAMP = "X-MedLedger-Timestamp"
HEADER_NONCE = "X-MedLedger-Nonce"
HEADER_SIGNATURE = "X-MedLedger-Signature"
HEADERS = (HEADER_SIGNER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
FRESHNESS_MS = replay.FRESHNESS_MS
FUTURE_MS = replay.FUTURE_MS
NONCE_BYTES = 16

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX128 = re.compile(r"[0-9a-fA-F]{128}")
_DIGITS = re.compile(r"[0-9]{1,16}")


class AuthError(CodedError):
    """A signed request refused: HTTP status, stable code (docs/api.md), message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message, status)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request whose signature checked out (not yet checked for replay or permission)."""

    signer: bytes
    timestamp_ms: int
    nonce: bytes


def request_message(chain_id: str, node_id: str, method: str, path_qs: str, timestamp: str, nonce_hex: str,
                    body: bytes) -> bytes:
    """The bytes a caller signs: eight lines joined by newlines, no trailing newline. `node_id`
    is the hex id of the node the request is sent to (its `node_id` in /v1/status)."""
    return "\n".join([SCHEME, chain_id, node_id.lower(), method.upper(), path_qs, timestamp, nonce_hex,
                      hashlib.sha256(body).hexdigest()]).encode("utf-8")


def sign_headers(identity: Identity, *, chain_id: str, node_id: str, method: str, path_qs: str, body: bytes = b"",
                 timestamp_ms: int, nonce: bytes | None = None) -> dict[str, str]:
    """The four headers that sign one request to node `node_id` (a fresh random nonce unless one is given)."""
    nonce_hex = (nonce if nonce is not None else os.urandom(NONCE_BYTES)).hex()
    timestamp = str(int(timestamp_ms))
    signature = identity.sign(request_message(chain_id, node_id, method, path_qs, timestamp, nonce_hex, body))
    return {HEADER_SIGNER: identity.id, HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce_hex,
            HEADER_SIGNATURE: signature.hex()}


def verify_headers(headers: Mapping[str, str], *, chain_id: str, node_id: str, method: str, path_qs: str,
                   body: bytes, now_ms: int, window_ms: int = FRESHNESS_MS, future_ms: int = FUTURE_MS) -> SignedRequest:
    """Check the signature headers of one request to node `node_id`; raise AuthError (401) if
    they do not hold.

    The signature is checked before the time, so `stale_request` and `future_request` are only
    ever said of a request its signer really made.
    """
    given = [headers.get(h) for h in HEADERS]
    if not all(given):
        missing = [h for h, v in zip(HEADERS, given) if not v]
        raise AuthError(401, "signature_required",
                        f"this read is signed by the caller ({SCHEME}); missing header(s): {', '.join(missing)}")
    signer_hex, timestamp, nonce_hex, signature_hex = (str(v) for v in given)
    if not _HEX64.fullmatch(signer_hex):
        raise AuthError(401, "bad_signature", f"{HEADER_SIGNER} must be 64 hex characters (an Ed25519 public key)")
    if not _DIGITS.fullmatch(timestamp):
        raise AuthError(401, "bad_signature", f"{HEADER_TIMESTAMP} must be integer milliseconds since the Unix epoch")
    if not _HEX32.fullmatch(nonce_hex):
        raise AuthError(401, "bad_signature", f"{HEADER_NONCE} must be 32 hex characters (16 random bytes)")
    if not _HEX128.fullmatch(signature_hex):
        raise AuthError(401, "bad_signature", f"{HEADER_SIGNATURE} must be 128 hex characters (an Ed25519 signature)")
    signer = bytes.fromhex(signer_hex)
    message = request_message(chain_id, node_id, method, path_qs, timestamp, nonce_hex, body)
    if not verify(signer, message, bytes.fromhex(signature_hex)):
        raise AuthError(401, "bad_signature",
                        f"the signature does not match the signer, chain, this node ({node_id[:16]}...), method, path, "
                        f"time, nonce and body ({SCHEME}); sign the request for the node you send it to")
    timestamp_ms = int(timestamp)
    try:
        replay.check_time(timestamp_ms, now_ms, window_ms=window_ms, future_ms=future_ms)
    except replay.ReplayRefused as exc:
        raise AuthError(401, exc.code, exc.message) from None
    return SignedRequest(signer=signer, timestamp_ms=timestamp_ms, nonce=bytes.fromhex(nonce_hex))


def remember_nonce(guard: replay.ReplayGuard, request: SignedRequest, now_ms: int) -> None:
    """Refuse a replayed nonce of an authorised request (401 `replayed_request`), or 429
    `rate_limited` when the signer (or the node) holds too many recent nonces."""
    try:
        guard.remember(request.signer, request.nonce, now_ms)
    except replay.ReplayRefused as exc:
        if exc.code == "busy":
            raise AuthError(429, "rate_limited", exc.message) from None
        raise AuthError(401, exc.code, exc.message) from None


# -- who may read what (pure functions of the committed state) --------------------------------
# Reads are scoped to what was granted: a patient's whole file (its audit trail, every record and
# consent) is the patient's and its guardian's; anyone else sees only the parts it is a party to,
# so one grant on one record opens that record, not the file.
def may_read_patient(state: StateReader, signer: bytes, patient: bytes, now_ms: int) -> bool:
    """A patient's whole file (audit trail, record list, consents): the patient and its guardian."""
    return signer == patient or guardian_of(state, patient) == signer


def readable_records(state: StateReader, signer: bytes, patient: bytes, now_ms: int) -> list[dict[str, Any]]:
    """The patient's records `signer` may see in its record list: all of them for the patient and
    its guardian; for anyone else only those it may read one by one (`may_read_record`: it holds
    them as custodian, wrote them, or holds a committed grant on them valid at `now_ms`)."""
    records = queries.patient_records(state, patient)
    if may_read_patient(state, signer, patient, now_ms):
        return records
    signer_hex = signer.hex()
    return [r for r in records if signer_hex in (r.get("custodian"), r.get("author"))
            or queries.active_grant(state, signer, bytes.fromhex(r["id"]), now_ms) is not None]


def readable_consents(state: StateReader, signer: bytes, patient: bytes, now_ms: int) -> list[dict[str, Any]]:
    """The patient's consents `signer` may see: all of them for the patient and its guardian; for
    anyone else the consents that name it (as practitioner or institution) or its institution."""
    consents = queries.patient_consents(state, patient, now_ms)
    if may_read_patient(state, signer, patient, now_ms):
        return consents
    names = {signer.hex()}
    found = queries.identity(state, signer)
    if found is not None and found.get("institution"):
        names.add(found["institution"])
    return [c for c in consents if c.get("grantee_kind") != "study" and c.get("grantee") in names]


def may_read_record(state: StateReader, signer: bytes, record_id: bytes, now_ms: int) -> bool:
    """A record's metadata: its patient or the patient's guardian, its custodian, its author, or
    the holder of a committed grant still valid at `now_ms`. Nobody may read an unknown record:
    the caller gets the same refusal as for a record it may not read, so the answer does not
    tell a stranger whether the record exists."""
    found = queries.record(state, record_id)
    if found is None:
        return False
    patient = bytes.fromhex(found["patient"])
    if signer in (patient, guardian_of(state, patient)):
        return True
    if signer.hex() in (found.get("custodian"), found.get("author")):
        return True
    return queries.active_grant(state, signer, record_id, now_ms) is not None


def may_read_access(state: StateReader, signer: bytes, request_tx: bytes) -> bool:
    """An access decision: the requester and its institution, the patient and its guardian, the
    record's custodian. Nobody may read an unknown request (the same refusal as for one the
    caller may not read: existence is not revealed)."""
    found = queries.access_grant(state, request_tx)
    if found is None:
        return False
    patient = bytes.fromhex(found["patient"])
    allowed = {found.get("requester"), found.get("requester_institution"), found.get("custodian"), found["patient"]}
    guardian = guardian_of(state, patient)
    if guardian is not None:
        allowed.add(guardian.hex())
    return signer.hex() in allowed


def may_read_inbox(state: StateReader, signer: bytes, institution: bytes) -> bool:
    """An institution's inbox (what care workflows address to it): the institution and its
    practitioners (the pharmacist dispensing, the claims officer paying, the clinic's physician)."""
    if signer == institution:
        return True
    found = queries.identity(state, signer)
    return found is not None and found.get("role") == "practitioner" and found.get("institution") == institution.hex()


def may_read_institution(signer: bytes, institution: bytes) -> bool:
    """An institution's disclosures and pending break-glass reviews: its own key only."""
    return signer == institution
