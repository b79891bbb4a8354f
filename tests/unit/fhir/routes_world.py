"""The world the FHIR route tests run in: an in-process node serving the SMART token endpoint and
the FHIR routes, identities registered on its ledger, real access tokens, and a small in-memory
records service (`FakeRecords`) standing in for the node's RecordAccess.

`FakeRecords` registers each stored record with a real `record.add` signed by its author, so the
routes see real ledger metadata; it keeps the plaintext in memory (a test only) and decides
access from the patient's real consents on the ledger (author, the patient, or an active
consent naming the reader or its institution for the type; a revoked one says
`consent_revoked`). Record versions: until the ledger registers them, `FakeRecords.versioned`
adds `version_of`/`version` to `queries.record` answers of superseding records (the field names
the ledger's answers carry).
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from fhir.resources.R4B import get_fhir_model_class

from node.api.app import make_app
from node.app import queries
from node.app.types.identity import attest
from node.chain.tx import Transaction
from node.core.crypto import Identity, sha256
from node.core.encoding import decode
from node.core.errors import CodedError
from node.fhir.client_assertion import make_assertion, token_form
from node.fhir.routes import fhir_mount
from node.fhir.smart import TOKEN_PATH, install_smart
from node.home.config import build_config
from node.records.delegate import NewRecord, StoredRecord
from node.runtime.runtime import Node

from tests.helpers import CHAIN, TxPoster, make_node

SEED = b"\x07" * 32
INSTITUTION = Identity.from_seed(SEED)  # the node's own key: validator and institution
PATIENT = Identity.from_seed(b"\x61" * 32)
OTHER_PATIENT = Identity.from_seed(b"\x62" * 32)
DOCTOR = Identity.from_seed(b"\x63" * 32)  # writes the records
COLLEAGUE = Identity.from_seed(b"\x64" * 32)  # same institution, reads only with the patient's consent
FHIR = "application/fhir+json"
JSON = dict[str, Any]


def assert_valid(resource: JSON) -> JSON:
    """Assert that a resource the server returned validates with fhir.resources (R4B models), and
    so do the resources of a Bundle's entries and an outcome's issues."""
    assert isinstance(resource, dict) and isinstance(resource.get("resourceType"), str), resource
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for entry in resource.get("entry", []) if resource["resourceType"] == "Bundle" else []:
        if "resource" in entry:
            assert_valid(entry["resource"])
        if "outcome" in entry.get("response", {}):
            assert_valid(entry["response"]["outcome"])
    return resource


class FakeRecords:
    """An in-memory RecordAccess over the real ledger (see the module's docstring)."""

    def __init__(self, node: Node, signers: dict[bytes, Identity], nonces: dict[bytes, int]) -> None:
        self.node = node
        self.signers = signers
        self.nonces = nonces
        self.plain: dict[bytes, bytes] = {}
        self.lineage: dict[bytes, tuple[bytes, int]] = {}  # record id -> (first version's id, version)
        self.reads: list[tuple[bytes, bytes]] = []  # (reader, record id) of every read_for: the audited reads
        self.random = random.Random(7)
        self.fail_store: str | None = None  # a code every store_for item fails with, when set

    # -- the ledger's record versions (see the module's docstring) ------------------------------
    def versioned(self, original: Callable[..., JSON | None]) -> Callable[..., JSON | None]:
        def record(state: Any, record_id: bytes) -> JSON | None:
            meta = original(state, record_id)
            if meta is not None and record_id in self.lineage:
                first, version = self.lineage[record_id]
                meta = {**meta, "version_of": first.hex(), "version": version}
            return meta
        return record

    # -- RecordAccess ---------------------------------------------------------------------------
    def predict(self, reader: bytes, record_id: bytes, purpose: str, *, reason: str | None = None) -> str | None:
        state = self.node.state_reader()
        meta = queries.record(state, record_id)
        if meta is None:
            return "unknown_record"
        if meta["erased"]:
            return "erased"
        if reader.hex() in (meta["author"], meta["patient"]):
            return None
        found = queries.identity(state, reader) or {}
        names = {reader.hex(), str(found.get("institution"))}
        verdict = "no_consent"
        for consent in queries.patient_consents(state, bytes.fromhex(meta["patient"]), self.node.now_ms()):
            if consent["grantee"] not in names or purpose not in consent["purposes"]:
                continue
            if not ({"*", meta["resource_type"]} & set(consent["resource_types"]) or meta["id"] in consent["record_ids"]):
                continue
            if consent["status"] == "active":
                return None
            verdict = "consent_revoked" if consent["status"] == "revoked" else "consent_expired"
        return verdict

    async def read_for(self, reader: bytes, record_ids: Sequence[bytes], purpose: str, *,
                       reason: str | None = None) -> list[bytes | CodedError]:
        out: list[bytes | CodedError] = []
        for record_id in record_ids:
            self.reads.append((reader, record_id))
            code = self.predict(reader, record_id, purpose, reason=reason)
            if code is not None:
                out.append(CodedError(code, f"access denied: {code}", 410 if code == "erased" else 403))
            else:
                out.append(self.plain[record_id])
        return out

    async def store_for(self, author: bytes, items: Sequence[NewRecord]) -> list[StoredRecord | CodedError]:
        if self.fail_store is not None:
            return [CodedError(self.fail_store, "refused by the ledger", 403) for _ in items]
        signer = self.signers[author]
        txs = []
        for item in items:
            given = json.loads(item.resource_json).get("id", "")
            # a new record's id: the one the routes gave it (a transaction's entries reference it)
            fresh = item.resource_type != "Patient" and item.supersedes is None and len(given) == 64
            record_id = bytes.fromhex(given) if fresh else self.random.randbytes(32)
            nonce = self.nonces.get(author, 0) + 1
            self.nonces[author] = nonce
            body = {"record": record_id, "patient": item.patient, "resource_type": item.resource_type,
                    "hash": sha256(item.resource_json), "custodian": INSTITUTION.public_key}
            txs.append((record_id, item, Transaction.create(signer, chain_id=CHAIN, type="record.add", nonce=nonce,
                                                            body=body)))
        admitted = self.node.admit([decode(tx.encoded) for _, _, tx in txs])
        assert all(a.error is None for a in admitted), admitted
        out: list[StoredRecord | CodedError] = []
        for record_id, item, tx in txs:
            assert await self.node.wait_committed(tx.hash, 10)
            status = self.node.tx_status(tx.hash)
            if status["result"] != "ok":
                out.append(CodedError(status["result"], "the ledger refused the record", 422))
                continue
            self.plain[record_id] = item.resource_json
            if item.supersedes is not None:
                first, version = self.lineage.get(item.supersedes, (item.supersedes, 1))
                self.lineage[record_id] = (first, version + 1)
            out.append(StoredRecord(record_id=record_id, tx_hash=tx.hash, height=status["height"]))
        return out


class World(TxPoster):
    """The node, its API client, the records service and the registered identities."""

    def __init__(self, client: TestClient, node: Node, records: FakeRecords) -> None:
        super().__init__(client)
        self.node = node
        self.records = records
        self.url = str(client.make_url(TOKEN_PATH))

    async def register(self) -> None:
        for who, role in ((PATIENT, "patient"), (OTHER_PATIENT, "patient"), (DOCTOR, "practitioner"),
                          (COLLEAGUE, "practitioner")):
            body = {"role": role, "institution": INSTITUTION.public_key,
                    "attestation": attest(INSTITUTION, chain_id=CHAIN, registrant=who.public_key, role=role)}
            got = await self.tx(who, "identity.register", body)
            assert got["result"] == "ok", got

    async def token(self, who: Identity, scope: str, purpose: str | None = None) -> str:
        form = token_form(make_assertion(who, self.url, self.node.clock_ms()), scope, purpose)
        resp = await self.client.post(TOKEN_PATH, data=form)
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["access_token"])

    async def call(self, method: str, path: str, token: str | None = None, *, body: Any = None,
                   headers: dict[str, str] | None = None, data: Any = None) -> tuple[int, JSON, Any]:
        """A FHIR request: (status, the JSON answer checked with fhir.resources, the headers)."""
        sent = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        if body is not None:
            data = json.dumps(body)
            sent.setdefault("Content-Type", FHIR)
        resp = await self.client.request(method, path, data=data, headers=sent)
        text = await resp.text()
        answer = json.loads(text) if text else {}
        if answer:
            assert resp.content_type == FHIR, (resp.status, resp.content_type, text[:200])
            assert_valid(answer)
        return resp.status, answer, resp.headers

    def sign(self, who: Identity, tx_type: str, body: JSON) -> Transaction:
        nonce = self.nonces.get(who.public_key, 0) + 1
        self.nonces[who.public_key] = nonce
        return Transaction.create(who, chain_id=CHAIN, type=tx_type, nonce=nonce, body=body)


@asynccontextmanager
async def running(tmp_path: Path, monkeypatch: Any) -> AsyncIterator[World]:
    cfg = build_config({"consensus": {"empty_block_interval_ms": 50}}, env={})
    node = make_node(tmp_path / "db", config=cfg, seed=SEED)
    nonces: dict[bytes, int] = {}
    records = FakeRecords(node, {DOCTOR.public_key: DOCTOR, COLLEAGUE.public_key: COLLEAGUE}, nonces)
    monkeypatch.setattr(queries, "record", records.versioned(queries.record))

    app = make_app(node, mounts=[install_smart, fhir_mount(records)])
    client = TestClient(TestServer(app))
    await client.start_server()
    node.start()
    try:
        world = World(client, node, records)
        world.nonces = nonces
        await world.register()
        yield world
    finally:
        node.stop()
        await client.close()
        node.store.close()


def observation(patient: Identity, code: str = "8867-4", when: str = "2024-03-05T10:00:00Z", value: int = 72) -> JSON:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{patient.id}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "/min"}}
