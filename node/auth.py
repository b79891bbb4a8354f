"""Signed API requests (scheme ``medledger-request-v1``) and who may read what.

A caller signs a read of health data with its identity key; the request carries four headers
(signer, timestamp, nonce, signature) and the signature covers the chain id, the method, the path
and query exactly as sent, the timestamp, the nonce and the SHA-256 of the body. docs/api.md
states the contract (it is shared with the web UI).

This module has no web framework in it: `sign_headers` is what a client calls, `verify_headers`
checks a request's headers against its method, path and body, `NonceCache` refuses a nonce seen
twice from one signer within the freshness window (bounded memory), and the `may_read_*`
functions decide from the committed ledger state whether a verified signer may read a resource.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .app import queries
from .app.roles import guardian_of
from .app.state import StateReader
from .core.crypto import Identity, verify

SCHEME = "medledger-request-v1"
HEADER_SIGNER = "X-MedLedger-Signer"
HEADER_TIMESTAMP = "X-MedLedger-Timestamp"
HEADER_NONCE = "X-MedLedger-Nonce"
HEADER_SIGNATURE = "X-MedLedger-Signature"
HEADERS = (HEADER_SIGNER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
FRESHNESS_MS = 120_000
NONCE_BYTES = 16

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX128 = re.compile(r"[0-9a-fA-F]{128}")
_DIGITS = re.compile(r"[0-9]{1,16}")


class AuthError(Exception):
    """A signed request refused: HTTP status, stable code (docs/api.md), message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request whose signature checked out (not yet checked for replay or permission)."""

    signer: bytes
    timestamp_ms: int
    nonce: bytes


def request_message(chain_id: str, method: str, path_qs: str, timestamp: str, nonce_hex: str, body: bytes) -> bytes:
    """The bytes a caller signs: seven lines joined by newlines, no trailing newline."""
    return "\n".join([SCHEME, chain_id, method.upper(), path_qs, timestamp, nonce_hex,
                      hashlib.sha256(body).hexdigest()]).encode("utf-8")


def sign_headers(identity: Identity, *, chain_id: str, method: str, path_qs: str, body: bytes = b"",
                 timestamp_ms: int, nonce: bytes | None = None) -> dict[str, str]:
    """The four headers that sign one request (a fresh random nonce unless one is given)."""
    nonce_hex = (nonce if nonce is not None else os.urandom(NONCE_BYTES)).hex()
    timestamp = str(int(timestamp_ms))
    signature = identity.sign(request_message(chain_id, method, path_qs, timestamp, nonce_hex, body))
    return {HEADER_SIGNER: identity.id, HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce_hex,
            HEADER_SIGNATURE: signature.hex()}


def verify_headers(headers: Mapping[str, str], *, chain_id: str, method: str, path_qs: str, body: bytes,
                   now_ms: int, window_ms: int = FRESHNESS_MS) -> SignedRequest:
    """Check the signature headers of one request; raise AuthError (401) if they do not hold.

    The signature is checked before the time, so `stale_request` is only ever said of a request
    its signer really made.
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
    message = request_message(chain_id, method, path_qs, timestamp, nonce_hex, body)
    if not verify(signer, message, bytes.fromhex(signature_hex)):
        raise AuthError(401, "bad_signature",
                        "the signature does not match the signer, chain, method, path, time, nonce and body")
    timestamp_ms = int(timestamp)
    if abs(now_ms - timestamp_ms) > window_ms:
        raise AuthError(401, "stale_request",
                        f"the request's time is more than {window_ms // 1000} s from the node's clock; check your clock")
    return SignedRequest(signer=signer, timestamp_ms=timestamp_ms, nonce=bytes.fromhex(nonce_hex))


class NonceCache:
    """The nonces each signer used within the freshness window, to refuse a replay.

    A nonce is kept until its request's time has left the window (after which the request is
    stale anyway). Memory is bounded twice: per signer and in total; when a bound is reached
    after dropping what has expired, the request is refused as `rate_limited` (429) rather than
    forgetting a nonce that could then be replayed. Expired entries are swept at most once a
    second (the sweep walks the table).
    """

    def __init__(self, *, window_ms: int = FRESHNESS_MS, max_per_signer: int = 10_000, max_total: int = 200_000) -> None:
        if window_ms < 1 or max_per_signer < 1 or max_total < max_per_signer:
            raise ValueError("window and bounds must be positive, max_total >= max_per_signer")
        self.window_ms = window_ms
        self.max_per_signer = max_per_signer
        self.max_total = max_total
        self._seen: dict[bytes, dict[bytes, int]] = {}  # signer -> nonce -> expiry (ms)
        self._total = 0
        self._last_sweep_ms: int | None = None

    def __len__(self) -> int:
        return self._total

    def check(self, request: SignedRequest, now_ms: int) -> None:
        """Remember the request's nonce; raise AuthError if the signer used it within the window."""
        nonces = self._seen.get(request.signer)
        if nonces is not None:
            expiry = nonces.get(request.nonce)
            if expiry is not None and expiry >= now_ms:
                raise AuthError(401, "replayed_request", "this signer already sent a request with this nonce")
            if len(nonces) >= self.max_per_signer:
                self._prune(request.signer, now_ms)
                nonces = self._seen.get(request.signer)
                if nonces is not None and len(nonces) >= self.max_per_signer:
                    raise AuthError(429, "rate_limited", "too many recent requests from this signer; retry shortly")
        if self._total >= self.max_total:
            self._sweep(now_ms)
            if self._total >= self.max_total:
                raise AuthError(429, "rate_limited", "the node is tracking too many recent requests; retry shortly")
        nonces = self._seen.setdefault(request.signer, {})
        if request.nonce not in nonces:
            self._total += 1
        nonces[request.nonce] = request.timestamp_ms + self.window_ms

    def _prune(self, signer: bytes, now_ms: int) -> None:
        nonces = self._seen[signer]
        live = {n: e for n, e in nonces.items() if e >= now_ms}
        self._total -= len(nonces) - len(live)
        if live:
            self._seen[signer] = live
        else:
            del self._seen[signer]

    def _sweep(self, now_ms: int) -> None:
        if self._last_sweep_ms is not None and now_ms - self._last_sweep_ms < 1_000:
            return
        self._last_sweep_ms = now_ms
        for signer in list(self._seen):
            self._prune(signer, now_ms)


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
    the holder of a committed grant still valid at `now_ms`. An unknown record is left to the
    route (a 404): record ids are public in the blocks anyway."""
    found = queries.record(state, record_id)
    if found is None:
        return True
    patient = bytes.fromhex(found["patient"])
    if signer in (patient, guardian_of(state, patient)):
        return True
    if signer.hex() in (found.get("custodian"), found.get("author")):
        return True
    return queries.active_grant(state, signer, record_id, now_ms) is not None


def may_read_access(state: StateReader, signer: bytes, request_tx: bytes) -> bool:
    """An access decision: the requester and its institution, the patient and its guardian, the
    record's custodian. An unknown request is left to the route (a 404)."""
    found = queries.access_grant(state, request_tx)
    if found is None:
        return True
    patient = bytes.fromhex(found["patient"])
    allowed = {found.get("requester"), found.get("requester_institution"), found.get("custodian"), found["patient"]}
    guardian = guardian_of(state, patient)
    if guardian is not None:
        allowed.add(guardian.hex())
    return signer.hex() in allowed


def may_read_institution(signer: bytes, institution: bytes) -> bool:
    """An institution's disclosures and pending break-glass reviews: its own key only."""
    return signer == institution
