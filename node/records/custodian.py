"""The custodian institution's side of health records: it keeps ciphertext and wrapped keys off
the chain and releases them only against a committed access grant.

- An upload is accepted only from a practitioner registered under this node's institution,
  signed by that practitioner, fresh (node/core/replay.py's window), and within its author's bounds
  of uploads waiting for their announcement (`api.max_pending_uploads`,
  `api.max_pending_upload_bytes`). An upload that no committed `record.add` announces within
  `api.upload_ttl_ms` is deleted; until then its patient (or guardian) and its author may
  discard it (`DELETE /v1/records/{id}/upload`).
- When a `record.add` of a record held here is committed, the upload must match it: the same
  author, patient, resource type and ciphertext hash. One that does not is deleted, and a
  fetch of it is refused (409 `record_mismatch`): the ledger's record is what access decisions
  are made on, so the bytes behind it must be what it says.
- A fetch is served only if it is signed by the requester, fresh and not replayed, the record is
  held here and not erased, and the ledger holds an access grant for that requester and record
  that is still valid at the last block's time. The grant is checked before the nonce is
  remembered (node/core/replay.py: a refused fetch leaves no trace), and an unknown record gets the
  same refusal as a record without a grant (403 `no_grant`), so a stranger learns nothing of what
  exists. The data key is unwrapped with the institution's key and re-wrapped for the requester;
  the answer is signed by the institution.
- A delegated fetch (`DelegatedFetch`) is an institution asking for one of its practitioners
  (the institution's node serves a FHIR client that authenticated the practitioner with a
  bearer token). It is served only if it is signed by that institution, fresh and not replayed,
  the practitioner is registered under that institution (403 `not_our_practitioner`), and the
  ledger holds an active grant for the *practitioner* and the record; the data key is re-wrapped
  for the institution, so the plaintext exists only at the practitioner's own institution. The
  same checks guard this node's own practitioners' reads and writes in-process
  (`open_for`, `accept_local`: node/records/node_delegate.py).
- When a block erasing a record held here is committed, the ciphertext and every wrapped key are
  deleted and the key range compacted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from storage.offchain import MAX_RECORD_BYTES, OffchainStore

from node.app import queries
from node.app.roles import guardian_of
from node.core.crypto import sha256
from node.core.errors import CodedError
from node.core.encoding import canonical, decode
from node.records.envelope import EnvelopeError, decrypt, unwrap_key, wrap_key
from node.records.protocol import DelegatedFetch, Fetch, Release, Upload
from node.core.replay import ReplayGuard, ReplayRefused

log = logging.getLogger("medledger.custodian")


class CustodianRefusal(CodedError):
    """A request the custodian refuses: HTTP status, stable code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message, status)


def store_entry(store: OffchainStore, record_id: bytes, entry: dict[str, Any]) -> None:
    """Keep a record's ciphertext and wrapped keys (canonical msgpack) in the off-chain store."""
    store.put(record_id, canonical(entry))


def load_entry(store: OffchainStore, record_id: bytes) -> dict[str, Any] | None:
    """The entry `store_entry` kept for `record_id` (None when there is none, e.g. erased)."""
    raw = store.get(record_id)
    if raw is None:
        return None
    entry: dict[str, Any] = decode(raw, max_bytes=MAX_RECORD_BYTES * 2)
    return entry


def no_grant() -> CustodianRefusal:
    """The one refusal of a fetch without a grant, whether or not the record exists."""
    return CustodianRefusal(403, "no_grant", "no committed access grant for this requester and record "
                            "(request access first; an unknown record gets the same answer)")


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """Bounds on uploads waiting for their `record.add` (per author) and how long they wait."""

    ttl_ms: int = 3_600_000
    max_pending: int = 100
    max_pending_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_config(cls, api: Any) -> "UploadLimits":
        return cls(ttl_ms=api.upload_ttl_ms, max_pending=api.max_pending_uploads,
                   max_pending_bytes=api.max_pending_upload_bytes)


@dataclass(frozen=True, slots=True)
class _Pending:
    author: bytes
    patient: bytes
    size: int
    expires_ms: int


EXPIRY_INTERVAL_S = 60.0  # how often a running node looks for uploads past their time
LOCAL_MAX_PENDING = 10_000  # records kept for one author by this node itself, waiting for their record.add


class Custodian:
    """Off-chain records held by this node's institution."""

    def __init__(self, node: Any, store: OffchainStore, limits: UploadLimits | None = None) -> None:
        self.node = node
        self.store = store
        self.guard = ReplayGuard()
        self.limits = limits or UploadLimits.from_config(node.config.api)
        # uploads not announced yet, in arrival order (expiry pops from the front)
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._pending_of: dict[bytes, tuple[int, int]] = {}  # author -> (count, bytes)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def institution(self) -> bytes:
        return self.node.identity.public_key

    def accept_upload(self, upload: Upload) -> None:
        """Keep a practitioner's signed upload (its signature was checked on decoding)."""
        self._accept(upload.record_id, upload.author, upload.patient, upload.resource_type, upload.ciphertext,
                     upload.wrapped, signed_ms=upload.timestamp_ms)

    def accept_local(self, record_id: bytes, author: bytes, patient: bytes, resource_type: str, ciphertext: bytes,
                     wrapped: dict[str, bytes]) -> None:
        """Keep a record this node's institution encrypted for `author`, one of its practitioners
        (a `record.add` on behalf of the author announces it): the checks and the entry of an
        upload, without the author's signature."""
        self._accept(record_id, author, patient, resource_type, ciphertext, wrapped, signed_ms=None)

    def _accept(self, record_id: bytes, author_id: bytes, patient_id: bytes, resource_type: str, ciphertext: bytes,
                wrapped: dict[str, bytes], *, signed_ms: int | None) -> None:
        state = self.node.state_reader()
        author = queries.identity(state, author_id)
        if author is None or author.get("role") != "practitioner":
            raise CustodianRefusal(403, "not_a_practitioner", "the author is not a registered practitioner")
        if author.get("institution") != self.institution.hex():
            raise CustodianRefusal(403, "wrong_custodian", "the author is not registered under this node's institution")
        patient = queries.identity(state, patient_id)
        if patient is None or patient.get("role") != "patient":
            raise CustodianRefusal(404, "unknown_patient", "the patient is not registered on the ledger")
        now = self.node.clock_ms()
        if signed_ms is not None:
            try:
                self.guard.check_time(signed_ms, now)
            except ReplayRefused as exc:
                raise CustodianRefusal(401, exc.code, exc.message) from None
        if queries.record(state, record_id) is not None or self.store.has(record_id):
            raise CustodianRefusal(409, "record_exists", "a record with this id already exists")
        self.expire_uploads(now)
        count, size = self._pending_of.get(author_id, (0, 0))
        # a local record is announced by the same call that keeps it (NodeDelegate.store_for, up to
        # its MAX_ITEMS at once), so it waits for seconds, not for a client: a larger count bound
        max_pending = self.limits.max_pending if signed_ms is not None else max(self.limits.max_pending, LOCAL_MAX_PENDING)
        if count >= max_pending or size + len(ciphertext) > self.limits.max_pending_bytes:
            raise CustodianRefusal(429, "too_many_uploads",
                                   f"this author has {count} upload(s), {size} bytes, waiting for their record.add (at most "
                                   f"{max_pending} and {self.limits.max_pending_bytes} bytes): announce them "
                                   "on the ledger first")
        store_entry(self.store, record_id, {
            "patient": patient_id, "resource_type": resource_type, "ciphertext": ciphertext,
            "wrapped": wrapped, "author": author_id, "sha256": sha256(ciphertext),
            "received_ms": now,
        })
        self._add_pending(record_id, author_id, patient_id, len(ciphertext), now)

    # -- uploads waiting for their announcement --------------------------------------------------
    def _add_pending(self, record_id: bytes, author: bytes, patient: bytes, size: int, received_ms: int) -> None:
        self._pending[record_id] = _Pending(author, patient, size, received_ms + self.limits.ttl_ms)
        count, total = self._pending_of.get(author, (0, 0))
        self._pending_of[author] = (count + 1, total + size)

    def _drop_pending(self, record_id: bytes) -> _Pending | None:
        entry = self._pending.pop(record_id, None)
        if entry is not None:
            count, total = self._pending_of[entry.author]
            if count > 1:
                self._pending_of[entry.author] = (count - 1, total - entry.size)
            else:
                del self._pending_of[entry.author]
        return entry

    def pending_upload(self, record_id: bytes) -> _Pending | None:
        """The upload of `record_id` if it waits for its announcement here."""
        return self._pending.get(record_id)

    def pending_count(self) -> int:
        return len(self._pending)

    def may_discard(self, signer: bytes, record_id: bytes) -> bool:
        """An upload not announced yet may be discarded by its patient, the patient's guardian or
        its author; an unknown or announced one by nobody here (a record on the ledger is erased
        with `record.erase`)."""
        entry = self._pending.get(record_id)
        if entry is None:
            return False
        return signer in (entry.patient, entry.author) or guardian_of(self.node.state_reader(), entry.patient) == signer

    def discard_upload(self, record_id: bytes) -> bool:
        """Delete an upload that no record.add announced (its bytes leave the store's files)."""
        if self._drop_pending(record_id) is None:
            return False
        self.store.erase(record_id)
        log.info("discarded upload %s before its announcement", record_id.hex()[:16])
        return True

    def expire_uploads(self, now_ms: int) -> int:
        """Delete the uploads whose announcement did not come in time; how many."""
        gone = 0
        while self._pending:
            record_id, entry = next(iter(self._pending.items()))
            if entry.expires_ms > now_ms:
                break
            self._drop_pending(record_id)
            if queries.record(self.node.state_reader(), record_id) is None:  # announced meanwhile: keep
                self.store.erase(record_id)
                gone += 1
        if gone:
            log.info("deleted %d upload(s) that no record.add announced within %d s", gone, self.limits.ttl_ms // 1000)
        return gone

    def start(self) -> None:
        """Look for expired uploads now and then while the node runs (call on the loop)."""
        def tick() -> None:
            self.expire_uploads(self.node.clock_ms())
            self._timer = loop.call_later(EXPIRY_INTERVAL_S, tick)

        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(EXPIRY_INTERVAL_S, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def serve(self, fetch: Fetch, now_ms: int) -> Release:
        """A reader's own signed fetch (its signature was checked on decoding)."""
        self._check_fresh(fetch.timestamp_ms, now_ms)
        meta = self._granted(fetch.requester, fetch.record_id)
        self._remember(fetch.requester, fetch.nonce, now_ms)
        return self._release(meta, fetch.record_id, fetch.requester, fetch.nonce)

    def serve_delegated(self, fetch: DelegatedFetch, now_ms: int) -> Release:
        """An institution's fetch for one of its practitioners (its signature was checked on
        decoding): the grant must be the practitioner's; the key is re-wrapped for the institution."""
        self._check_fresh(fetch.timestamp_ms, now_ms)
        self._check_practitioner(fetch.institution, fetch.practitioner)
        meta = self._granted(fetch.practitioner, fetch.record_id)
        self._remember(fetch.institution, fetch.nonce, now_ms)
        return self._release(meta, fetch.record_id, fetch.institution, fetch.nonce)

    def open_for(self, practitioner: bytes, record_id: bytes) -> bytes:
        """The plaintext of a record held here for one of this institution's practitioners, after
        the checks of a delegated fetch (no message: the caller is this node)."""
        self._check_practitioner(self.institution, practitioner)
        meta = self._granted(practitioner, record_id)
        return self._plaintext(meta, record_id)

    def own_refusal(self, patient: bytes, record_id: bytes) -> CustodianRefusal | None:
        """Why a patient (or its guardian) may not read `record_id` here, or None: the record
        must be the patient's, held here and not erased. A record of another patient gets the
        refusal of an unknown one, so a patient learns nothing of what others have."""
        state = self.node.state_reader()
        meta = queries.record(state, record_id)
        if meta is None or (meta.get("patient") != patient.hex() and guardian_of(state, bytes.fromhex(meta["patient"])) != patient):
            return CustodianRefusal(404, "unknown_record", "no record of yours with this id")
        if meta.get("custodian") != self.institution.hex():
            return CustodianRefusal(421, "held_elsewhere", "this node does not hold that record: read it at its "
                                    "custodian's node (its `custodian` on the ledger)")
        if meta.get("erased"):
            return CustodianRefusal(410, "erased", "the record was erased at the patient's request")
        return None

    def open_own(self, patient: bytes, record_id: bytes) -> bytes:
        """The plaintext of a record held here for its own patient (or the patient's guardian),
        who proved its key to this node (a SMART token): the record's key is wrapped for the
        patient anyway, so no grant is needed and none is asked for (no caller but this node)."""
        refused = self.own_refusal(patient, record_id)
        if refused is not None:
            raise refused
        meta = queries.record(self.node.state_reader(), record_id)
        assert meta is not None
        return self._plaintext(meta, record_id)

    def _plaintext(self, meta: dict[str, Any], record_id: bytes) -> bytes:
        entry, key = self._data_key(meta, record_id)
        try:
            return decrypt(entry["ciphertext"], key)
        except EnvelopeError:
            log.error("record %s does not open with its own data key", record_id.hex()[:16])
            raise CustodianRefusal(500, "key_unavailable", "the custodian cannot open this record's data") from None

    def _check_fresh(self, timestamp_ms: int, now_ms: int) -> None:
        try:
            self.guard.check_time(timestamp_ms, now_ms)
        except ReplayRefused as exc:
            raise CustodianRefusal(401, exc.code, exc.message) from None

    def _check_practitioner(self, institution: bytes, practitioner: bytes) -> None:
        found = queries.identity(self.node.state_reader(), practitioner)
        if found is None or found.get("role") != "practitioner" or found.get("institution") != institution.hex():
            raise CustodianRefusal(403, "not_our_practitioner", "the practitioner is not registered under the "
                                   "institution that asks for it")

    def _granted(self, reader: bytes, record_id: bytes) -> dict[str, Any]:
        """The ledger's record, held here, with a committed grant for `reader`, not erased."""
        state = self.node.state_reader()
        meta = queries.record(state, record_id)
        if meta is None:
            raise no_grant()
        if meta.get("custodian") != self.institution.hex():
            raise CustodianRefusal(421, "not_custodian", "this node does not hold that record")
        grant = queries.active_grant(state, reader, record_id, self.node.now_ms())
        if grant is None:
            raise no_grant()
        if meta.get("erased"):
            raise CustodianRefusal(410, "erased", "the record was erased at the patient's request")
        return meta

    def _remember(self, signer: bytes, nonce: bytes, now_ms: int) -> None:
        try:
            self.guard.remember(signer, nonce, now_ms)
        except ReplayRefused as exc:
            raise CustodianRefusal(429 if exc.code == "busy" else 401, exc.code, exc.message) from None

    def _data_key(self, meta: dict[str, Any], record_id: bytes) -> tuple[dict[str, Any], bytes]:
        """The stored entry of a record and its data key, opened with the institution's key."""
        entry = load_entry(self.store, record_id)
        if entry is None:
            raise CustodianRefusal(410, "erased", "the record's data is not held here any more")
        if not matches_ledger(entry, meta):
            log.warning("record %s: the upload held here differs from its record.add; not serving it",
                        record_id.hex()[:16])
            raise CustodianRefusal(409, "record_mismatch", "the data held for this record is not what the ledger "
                                   "announces (author, patient, type or hash); ask its author to write it again")
        try:
            return entry, unwrap_key(entry["wrapped"]["custodian"], self.node.identity)
        except EnvelopeError:
            log.error("cannot unwrap the data key of record %s", record_id.hex()[:16])
            raise CustodianRefusal(500, "key_unavailable", "the custodian cannot open this record's data key") from None

    def _release(self, meta: dict[str, Any], record_id: bytes, reader: bytes, nonce: bytes) -> Release:
        entry, key = self._data_key(meta, record_id)
        return Release(chain_id=self.node.chain_id, record_id=record_id, requester=reader, nonce=nonce,
                       ciphertext=entry["ciphertext"], wrapped_key=wrap_key(key, reader),
                       custodian=self.institution).signed_by(self.node.identity)

    def on_block_committed(self, txs: list[Any], results: list[str]) -> None:
        """Erase the off-chain data of records erased by a committed block; check each upload
        announced by it against its record.add; delete uploads whose time ran out."""
        for tx, result in zip(txs, results, strict=True):
            if result != "ok":
                continue
            if tx.type == "record.erase":
                rid = tx.body.get("record")
                if isinstance(rid, bytes):
                    self._drop_pending(rid)
                    if self.store.erase(rid):
                        log.info("erased record %s at the patient's request", rid.hex()[:16])
            elif tx.type == "record.add" and tx.body.get("custodian") == self.institution:
                self._announced(tx)
        self.expire_uploads(self.node.clock_ms())

    def _announced(self, tx: Any) -> None:
        rid = tx.body["record"]
        self._drop_pending(rid)
        entry = load_entry(self.store, rid)
        if entry is None:
            return
        author = tx.body.get("on_behalf_of", tx.sender)  # an institution's record.add for its practitioner
        meta = {"author": author.hex(), "patient": tx.body["patient"].hex(),
                "resource_type": tx.body["resource_type"], "hash": tx.body["hash"].hex()}
        if not matches_ledger(entry, meta):
            log.warning("record %s: the upload differs from its record.add (author, patient, type or hash); deleted",
                        rid.hex()[:16])
            self.store.erase(rid)

    def reconcile(self) -> None:
        """At start: erase what the ledger says is erased (a crash may have come in between), and
        take up the count of uploads still waiting for their announcement."""
        state = self.node.state_reader()
        now = self.node.clock_ms()
        waiting: list[tuple[int, bytes, bytes, bytes, int]] = []
        for rid in self.store.record_ids():
            meta = queries.record(state, rid)
            if meta is not None and meta.get("erased"):
                self.store.erase(rid)
            elif meta is None and rid not in self._pending:
                entry = load_entry(self.store, rid)
                if entry is not None:
                    received = entry.get("received_ms")  # absent in uploads older than this rule: from now on
                    waiting.append((received if isinstance(received, int) else now, rid, entry["author"], entry["patient"],
                                    len(entry["ciphertext"])))
        for received, rid, author, patient, size in sorted(waiting):  # arrival order, as expiry expects
            self._add_pending(rid, author, patient, size, received)
        self.expire_uploads(now)


def matches_ledger(entry: dict[str, Any], meta: dict[str, Any]) -> bool:
    """Whether a stored upload is what the ledger's record (hex fields, as queries.record gives
    them) announces: the same author, patient, resource type and ciphertext hash."""
    return (entry.get("author", b"").hex() == meta.get("author") and entry.get("patient", b"").hex() == meta.get("patient")
            and entry.get("resource_type") == meta.get("resource_type") and entry.get("sha256", b"").hex() == meta.get("hash"))
