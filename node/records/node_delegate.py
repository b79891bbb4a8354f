"""`NodeDelegate`: the records service of a running node, acting for its institution's people.

The FHIR server (node/fhir/) authenticates a practitioner by a bearer token and calls this
`RecordAccess` (node/records/delegate.py). The node's institution signs every transaction with
its own key, `on_behalf_of` the practitioner (docs/ledger.md, "On behalf of a practitioner"):

- writing (`store_for`): each resource is encrypted here with a fresh data key wrapped for the
  patient and this institution (the custodian), kept in this node's off-chain store with the
  checks of an upload (`Custodian.accept_local`), and announced by one `record.add` each; the
  transactions are admitted as one batch (in chunks below the mempool's per-sender bound) and
  the answer waits for their commit, with a deadline;
- reading (`read_for`): records the reader holds no active grant for are asked for by one
  batch of `access.request`s; each granted record is then opened here if this institution is
  its custodian (`Custodian.open_for`, the custodian's own checks), else fetched from its
  custodian's node with a `DelegatedFetch` (the key comes back wrapped for this institution),
  checked against the ledger's hash and decrypted here. So the plaintext exists only at the
  reader's own institution, and only for what the ledger granted the reader;
- predicting (`predict`): the ledger's decision (`access_request.assess`) on the committed
  state, written nowhere;
- a patient (or its guardian) reading its own records: served from this node's custodian store
  only (`Custodian.open_own`), without a grant (the record's key is wrapped for the patient
  anyway); a record held at another institution is refused `held_elsewhere` (read it at that
  custodian's node, which issues tokens to patients too).

Nonces come from the node's allocator for its own key (`node.own_nonces`,
node/runtime/own_nonces.py, shared with the research coordinator); each chunk is signed and
admitted while its lock is held, so allocation order is submission order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from node.app import breakglass, queries
from node.app.registry import ExecFailed
from node.app.roles import PATIENT, practitioner_of, role_of
from node.app.types.access_request import RESULT_DENIED, assess, check_request
from node.chain.tx import Transaction, TxRejected
from node.core.crypto import sha256
from node.core.encoding import DecodeError, decode
from node.core.errors import CodedError
from node.records.custodian import Custodian
from node.records.delegate import NewRecord, RecordAccess, StoredRecord
from node.records.envelope import EnvelopeError, decrypt, seal_record, unwrap_key
from node.records.protocol import DelegatedFetch, ProtocolError, Release
from node.research.service import custodian_api
from node.runtime.own_nonces import OwnNonces

log = logging.getLogger("medledger.delegate")

COMMIT_TIMEOUT_S = 30.0  # how long an answer waits for its transactions' commit
FETCH_TIMEOUT_S = 15.0  # one remote custodian's answer
REMOTE_FETCHES = 8  # remote fetches in flight at once, per read
MAX_ITEMS = 1_000  # records per call
MAX_RELEASE_BYTES = 8 * 1024 * 1024

# The HTTP status of each ledger or custodian refusal an answer may carry (else 422).
STATUS = {
    "not_our_practitioner": 403, "not_custodian_staff": 403, "no_treatment_relationship": 403,
    "role_not_allowed": 403, "not_registered": 403, "no_grant": 403, "wrong_custodian": 403,
    "unknown_patient": 404, "unknown_record": 404,
    "record_exists": 409, "not_latest_version": 409, "nonce_replayed": 409, "record_mismatch": 409,
    "erased": 410, "too_many_uploads": 429, "sender_limit": 429, "mempool_full": 503, "busy": 503,
    "held_elsewhere": 421, "commit_timeout": 504, "custodian_unreachable": 502, "custodian_unknown": 502, "bad_answer": 502,
}
DENIED_STATUS = 403  # every access decision's refusal (no_consent, consent_revoked, breakglass_...)


class DelegateRefusal(CodedError):
    """Why a record could not be stored or read for someone: the ledger's or the custodian's code,
    with the HTTP status STATUS gives it unless told."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(code, message, status if status is not None else STATUS.get(code, 422))


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One transaction of a batch: committed with its result and height, or refused before."""

    tx: Transaction | None
    result: str | None = None
    height: int | None = None
    error: CodedError | None = None


class NodeDelegate:
    """`RecordAccess` for a running `Node` and its custodian (node/records/delegate.py)."""

    def __init__(self, node: Any, custodian: Custodian, *, client_ssl: ssl.SSLContext | None = None,
                 commit_timeout_s: float = COMMIT_TIMEOUT_S) -> None:
        self.node = node
        self.custodian = custodian
        self.client_ssl = client_ssl
        self.commit_timeout_s = commit_timeout_s
        self.nonces: OwnNonces = node.own_nonces  # shared with the node's other services

    @property
    def institution(self) -> bytes:
        return bytes(self.node.identity.public_key)

    # -- the ledger ----------------------------------------------------------------------------
    def _ours(self, practitioner: bytes) -> CodedError | None:
        try:
            practitioner_of(self.node.state_reader(), self.institution, practitioner)
        except ExecFailed as exc:
            return DelegateRefusal(exc.code, exc.message)
        return None

    def _chunk_size(self) -> int:
        return max(1, self.node.config.mempool.max_per_sender // 2)

    async def _submit(self, tx_type: str, bodies: Sequence[dict[str, Any]]) -> list[_Outcome]:
        """Sign `bodies` as one batch of `tx_type` (in chunks below the per-sender bound),
        admit them in nonce order and wait for their commit; one outcome per body."""
        out: list[_Outcome] = []
        step = self._chunk_size()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.commit_timeout_s
        for start in range(0, len(bodies), step):
            chunk = bodies[start:start + step]
            with self.nonces.lock:
                txs = [Transaction.create(self.node.identity, chain_id=self.node.chain_id, type=tx_type, nonce=nonce,
                                          body=body) for nonce, body in zip(self.nonces.take(len(chunk)), chunk)]
                verdicts = self.node.admit([[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in txs])
            for tx, verdict in zip(txs, verdicts, strict=True):
                if verdict.error is not None:
                    out.append(_Outcome(None, error=DelegateRefusal(verdict.error, verdict.message)))
                    continue
                await self.node.wait_committed(tx.hash, max(0.0, deadline - loop.time()))
                status = self.node.tx_status(tx.hash)
                if status.get("status") != "committed":
                    out.append(_Outcome(tx, error=DelegateRefusal("commit_timeout", "the transaction was not committed in "
                                                          f"{self.commit_timeout_s:.0f} s; it may still be")))
                else:
                    out.append(_Outcome(tx, result=str(status["result"]), height=int(status["height"])))
        return out

    # -- predict -------------------------------------------------------------------------------
    def _is_patient(self, reader: bytes) -> bool:
        return role_of(self.node.state_reader(), reader) == PATIENT

    def predict(self, reader: bytes, record_id: bytes, purpose: str, *, reason: str | None = None) -> str | None:
        """None if a delegated `access.request` by `reader` would be granted now, else its code
        (for a patient: whether it may read its own record here)."""
        if self._is_patient(reader):
            refused = self.custodian.own_refusal(reader, record_id)
            return None if refused is None else refused.code
        body = self._request_body(reader, record_id, purpose, reason)
        try:
            check_request(body)
        except TxRejected as exc:
            return exc.code
        state = self.node.state_reader()
        now = self.node.now_ms()
        try:
            identity = practitioner_of(state, self.institution, reader)
            found = assess(state, reader, identity, record_id, purpose, reason or "", now,
                           lambda patient: breakglass.standing_at(state, reader, patient, now))
        except ExecFailed as exc:
            return exc.code
        return None if found.decision.granted else found.decision.rule

    @staticmethod
    def _request_body(reader: bytes, record_id: bytes, purpose: str, reason: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"record": record_id, "purpose": purpose, "on_behalf_of": reader}
        if reason:
            body["reason"] = reason
        return body

    # -- store ---------------------------------------------------------------------------------
    async def store_for(self, author: bytes, items: Sequence[NewRecord]) -> list[StoredRecord | CodedError]:
        """Encrypt, keep and announce each item for `author` (see the module's docstring)."""
        if len(items) > MAX_ITEMS:
            raise DelegateRefusal("too_many_items", f"at most {MAX_ITEMS} records per call", 413)
        not_ours = self._ours(author)
        if not_ours is not None:
            return [not_ours for _ in items]
        answers: list[StoredRecord | CodedError | None] = [None] * len(items)
        bodies: list[dict[str, Any]] = []
        placed: list[tuple[int, bytes]] = []  # (item index, record id) of each body
        state = self.node.state_reader()
        for i, item in enumerate(items):
            patient = queries.identity(state, item.patient)
            if patient is None or patient.get("role") != "patient":
                answers[i] = DelegateRefusal("unknown_patient", "the patient is not registered on the ledger")
                continue
            record_id = item.record_id if item.record_id is not None else os.urandom(32)
            ciphertext, wrapped = seal_record(item.resource_json, {"patient": item.patient, "custodian": self.institution})
            try:
                self.custodian.accept_local(record_id, author, item.patient, item.resource_type, ciphertext, wrapped)
            except CodedError as exc:
                answers[i] = exc
                continue
            body: dict[str, Any] = {"record": record_id, "patient": item.patient, "resource_type": item.resource_type,
                                    "hash": sha256(ciphertext), "custodian": self.institution, "on_behalf_of": author}
            if item.supersedes is not None:
                body["supersedes"] = item.supersedes
            bodies.append(body)
            placed.append((i, record_id))
        for (i, record_id), outcome in zip(placed, await self._submit("record.add", bodies), strict=True):
            if outcome.error is not None:
                answers[i] = outcome.error
                if outcome.tx is None:  # refused at admission: no record.add will announce it
                    self.custodian.discard_upload(record_id)
            elif outcome.result == "ok":
                assert outcome.tx is not None and outcome.height is not None
                answers[i] = StoredRecord(record_id=record_id, tx_hash=outcome.tx.hash, height=outcome.height)
            else:
                answers[i] = DelegateRefusal(str(outcome.result), "the ledger refused the record.add")
                self.custodian.discard_upload(record_id)
        assert all(a is not None for a in answers)
        return [a for a in answers if a is not None]

    # -- read ----------------------------------------------------------------------------------
    async def read_for(self, reader: bytes, record_ids: Sequence[bytes], purpose: str, *,
                       reason: str | None = None) -> list[bytes | CodedError]:
        """Decide, fetch and decrypt each record for `reader` (see the module's docstring)."""
        if len(record_ids) > MAX_ITEMS:
            raise DelegateRefusal("too_many_items", f"at most {MAX_ITEMS} records per call", 413)
        if self._is_patient(reader):
            return [self._open_own(reader, r) for r in record_ids]
        not_ours = self._ours(reader)
        if not_ours is not None:
            return [not_ours for _ in record_ids]
        try:
            for record_id in record_ids:
                check_request(self._request_body(reader, record_id, purpose, reason))
        except TxRejected as exc:
            return [DelegateRefusal(exc.code, exc.message, 400) for _ in record_ids]
        state = self.node.state_reader()
        now = self.node.now_ms()
        answers: dict[bytes, bytes | CodedError] = {}
        meta: dict[bytes, dict[str, Any]] = {}
        grant_tx: dict[bytes, bytes] = {}  # records granted by this call: the granting transaction
        to_ask: list[bytes] = []
        for record_id in dict.fromkeys(record_ids):
            found = queries.record(state, record_id)
            if found is None:
                answers[record_id] = DelegateRefusal("unknown_record", "no record with this id")
            elif found["erased"]:
                answers[record_id] = DelegateRefusal("erased", "the record was erased at the patient's request")
            else:
                meta[record_id] = found
                if queries.active_grant(state, reader, record_id, now) is None:
                    to_ask.append(record_id)
        outcomes = await self._submit("access.request", [self._request_body(reader, r, purpose, reason) for r in to_ask])
        for record_id, outcome in zip(to_ask, outcomes, strict=True):
            if outcome.error is not None:
                answers[record_id] = outcome.error
            elif outcome.result == RESULT_DENIED:
                assert outcome.tx is not None
                decision = queries.access_grant(self.node.state_reader(), outcome.tx.hash) or {}
                rule = str(decision.get("rule", "denied"))
                answers[record_id] = DelegateRefusal(rule, "the ledger denied the access", DENIED_STATUS)
            elif outcome.result != "ok":
                answers[record_id] = DelegateRefusal(str(outcome.result), "the ledger refused the access request")
            else:
                assert outcome.tx is not None
                grant_tx[record_id] = outcome.tx.hash
        granted = [r for r in meta if r not in answers]
        remote = [r for r in granted if meta[r]["custodian"] != self.institution.hex()]
        for record_id in granted:
            if record_id in remote:
                continue
            try:
                answers[record_id] = self.custodian.open_for(reader, record_id)
            except CodedError as exc:
                answers[record_id] = exc
        if remote:
            answers.update(await self._fetch_remote(reader, remote, meta, grant_tx))
        return [answers[r] for r in record_ids]

    def _open_own(self, patient: bytes, record_id: bytes) -> bytes | CodedError:
        try:
            return self.custodian.open_own(patient, record_id)
        except CodedError as exc:
            return exc

    async def _fetch_remote(self, reader: bytes, record_ids: list[bytes], meta: dict[bytes, dict[str, Any]],
                            grant_tx: dict[bytes, bytes]) -> dict[bytes, bytes | CodedError]:
        """Delegated fetches from the records' custodians, at most REMOTE_FETCHES at once."""
        import aiohttp

        out: dict[bytes, bytes | CodedError] = {}
        queue = list(reversed(record_ids))
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async def worker() -> None:
                while queue:
                    record_id = queue.pop()
                    out[record_id] = await self._fetch_one(session, reader, record_id, meta[record_id],
                                                           grant_tx.get(record_id))

            await asyncio.gather(*(worker() for _ in range(min(REMOTE_FETCHES, len(record_ids)))))
        return out

    async def _fetch_one(self, session: Any, reader: bytes, record_id: bytes, meta: dict[str, Any],
                         granted_by: bytes | None) -> bytes | CodedError:
        import aiohttp

        api = custodian_api(self.node, meta["custodian"])
        if api is None:
            return DelegateRefusal("custodian_unknown", "the record's custodian publishes no API address")
        ssl_arg: ssl.SSLContext | bool = self.client_ssl if self.client_ssl is not None else True
        try:
            if granted_by is not None:  # a grant of this call: the custodian must have committed it first
                await self._wait_custodian(session, api, granted_by, ssl_arg)
            fetch = DelegatedFetch.create(self.node.identity, chain_id=self.node.chain_id, record_id=record_id,
                                          practitioner=reader, timestamp_ms=self.node.clock_ms())
            async with session.post(f"{api}/v1/records/{record_id.hex()}/fetch-delegated", data=fetch.to_wire(),
                                    ssl=ssl_arg, headers={"Content-Type": "application/msgpack"}) as resp:
                status = resp.status
                raw = await _read_bounded(resp, MAX_RELEASE_BYTES)
                if raw is None:
                    return DelegateRefusal("bad_answer", f"the custodian's answer is over {MAX_RELEASE_BYTES} bytes")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return DelegateRefusal("custodian_unreachable", f"the record's custodian did not answer: {exc}")
        if status != 200:
            return _error_answer(status, raw)
        try:
            release = Release.from_wire(decode(raw, max_bytes=MAX_RELEASE_BYTES), self.node.chain_id)
        except (DecodeError, ProtocolError) as exc:
            return DelegateRefusal("bad_answer", f"the custodian's answer is not valid: {exc}")
        if (release.custodian.hex() != meta["custodian"] or release.nonce != fetch.nonce
                or release.requester != self.institution or release.record_id != record_id):
            return DelegateRefusal("bad_answer", "the answer is not from the record's custodian or not for this request")
        if sha256(release.ciphertext).hex() != meta["hash"]:
            return DelegateRefusal("hash_mismatch", "the ciphertext does not match the hash on the ledger", 502)
        try:
            return decrypt(release.ciphertext, unwrap_key(release.wrapped_key, self.node.identity))
        except EnvelopeError as exc:
            return DelegateRefusal("cannot_decrypt", str(exc), 502)

    async def _wait_custodian(self, session: Any, api: str, tx_hash: bytes, ssl_arg: ssl.SSLContext | bool) -> None:
        """Until the custodian's node committed `tx_hash` (the grant), or the fetch timeout: its
        API long-polls for the commit (`GET /v1/txs/{hash}?wait=`). Validators commit a block at
        about the same time, so this rarely waits."""
        async with session.get(f"{api}/v1/txs/{tx_hash.hex()}?wait={int(FETCH_TIMEOUT_S) - 1}", ssl=ssl_arg) as resp:
            await resp.read()


async def _read_bounded(resp: Any, limit: int) -> bytes | None:
    """The whole body of an answer, or None once it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error_answer(status: int, raw: bytes) -> CodedError:
    """A custodian's JSON refusal as a CodedError with its code and status."""
    import json

    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return CodedError(str(doc.get("error", f"http_{status}"))[:64], str(doc.get("message", ""))[:512], status)


def _is_record_access(delegate: NodeDelegate) -> RecordAccess:
    return delegate  # mypy checks here that NodeDelegate implements the FHIR layer's interface
