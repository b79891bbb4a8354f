"""The custodian institution's side of health records: it keeps ciphertext and wrapped keys off
the chain and releases them only against a committed access grant.

- An upload is accepted only from a practitioner registered under this node's institution,
  signed by that practitioner.
- A fetch is served only if it is signed by the requester, fresh and not replayed, the record is
  held here and not erased, and the ledger holds an access grant for that requester and record
  that is still valid at the last block's time. The grant is checked before the nonce is
  remembered (node/replay.py: a refused fetch leaves no trace), and an unknown record gets the
  same refusal as a record without a grant (403 `no_grant`), so a stranger learns nothing of what
  exists. The data key is unwrapped with the institution's key and re-wrapped for the requester;
  the answer is signed by the institution.
- When a block erasing a record held here is committed, the ciphertext and every wrapped key are
  deleted and the key range compacted.
"""

from __future__ import annotations

import logging
from typing import Any

from storage.offchain import OffchainStore

from .app import queries
from .core.crypto import sha256
from .records.envelope import EnvelopeError, unwrap_key, wrap_key
from .records.protocol import Fetch, Release, Upload
from .replay import ReplayGuard, ReplayRefused

log = logging.getLogger("medledger.custodian")


class CustodianRefusal(Exception):
    """A request the custodian refuses: HTTP status, stable code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def no_grant() -> CustodianRefusal:
    """The one refusal of a fetch without a grant, whether or not the record exists."""
    return CustodianRefusal(403, "no_grant", "no committed access grant for this requester and record "
                            "(request access first; an unknown record gets the same answer)")


class Custodian:
    """Off-chain records held by this node's institution."""

    def __init__(self, node: Any, store: OffchainStore) -> None:
        self.node = node
        self.store = store
        self.guard = ReplayGuard()

    @property
    def institution(self) -> bytes:
        return self.node.identity.public_key

    def accept_upload(self, upload: Upload) -> None:
        state = self.node.state_reader()
        author = queries.identity(state, upload.author)
        if author is None or author.get("role") != "practitioner":
            raise CustodianRefusal(403, "not_a_practitioner", "the author is not a registered practitioner")
        if author.get("institution") != self.institution.hex():
            raise CustodianRefusal(403, "wrong_custodian", "the author is not registered under this node's institution")
        patient = queries.identity(state, upload.patient)
        if patient is None or patient.get("role") != "patient":
            raise CustodianRefusal(404, "unknown_patient", "the patient is not registered on the ledger")
        if queries.record(state, upload.record_id) is not None or self.store.has(upload.record_id):
            raise CustodianRefusal(409, "record_exists", "a record with this id already exists")
        self.store.put(upload.record_id, {
            "patient": upload.patient, "resource_type": upload.resource_type, "ciphertext": upload.ciphertext,
            "wrapped": upload.wrapped, "author": upload.author, "sha256": sha256(upload.ciphertext),
        })

    def serve(self, fetch: Fetch, now_ms: int) -> Release:
        try:
            self.guard.check_time(fetch.timestamp_ms, now_ms)
        except ReplayRefused as exc:
            raise CustodianRefusal(401, exc.code, exc.message) from None
        state = self.node.state_reader()
        meta = queries.record(state, fetch.record_id)
        if meta is None:
            raise no_grant()
        if meta.get("custodian") != self.institution.hex():
            raise CustodianRefusal(421, "not_custodian", "this node does not hold that record")
        grant = queries.active_grant(state, fetch.requester, fetch.record_id, self.node.now_ms())
        if grant is None:
            raise no_grant()
        if meta.get("erased"):
            raise CustodianRefusal(410, "erased", "the record was erased at the patient's request")
        try:
            self.guard.remember(fetch.requester, fetch.nonce, now_ms)
        except ReplayRefused as exc:
            raise CustodianRefusal(429 if exc.code == "busy" else 401, exc.code, exc.message) from None
        entry = self.store.get(fetch.record_id)
        if entry is None:
            raise CustodianRefusal(410, "erased", "the record's data is not held here any more")
        try:
            key = unwrap_key(entry["wrapped"]["custodian"], self.node.identity)
        except EnvelopeError:
            log.error("cannot unwrap the data key of record %s", fetch.record_id.hex()[:16])
            raise CustodianRefusal(500, "key_unavailable", "the custodian cannot open this record's data key") from None
        unsigned = Release(chain_id=self.node.chain_id, record_id=fetch.record_id, requester=fetch.requester,
                           nonce=fetch.nonce, ciphertext=entry["ciphertext"], wrapped_key=wrap_key(key, fetch.requester),
                           custodian=self.institution)
        return Release(**{f: getattr(unsigned, f) for f in unsigned.__dataclass_fields__ if f != "signature"},
                       signature=self.node.identity.sign(unsigned.signing_bytes()))

    def on_block_committed(self, txs: list[Any], results: list[str]) -> None:
        """Erase the off-chain data of records erased by a committed block."""
        for tx, result in zip(txs, results, strict=True):
            if tx.type == "record.erase" and result == "ok":
                rid = tx.body.get("record")
                if isinstance(rid, bytes) and self.store.erase(rid):
                    log.info("erased record %s at the patient's request", rid.hex()[:16])

    def reconcile(self) -> None:
        """At start: erase what the ledger says is erased (a crash may have come in between)."""
        state = self.node.state_reader()
        for rid in self.store.record_ids():
            meta = queries.record(state, rid)
            if meta is not None and meta.get("erased"):
                self.store.erase(rid)
