"""The world the FHIR route tests run in: an in-process node serving the SMART token endpoint and
the FHIR routes, identities registered on its ledger, real access tokens, and the node's real
records service (node/records/node_delegate.py) over an in-memory custodian store: every record
is encrypted, kept by the custodian and registered by a `record.add` the institution signs on
behalf of the practitioner, and every read is decided on the ledger by a delegated
`access.request` (`SpyRecords` only notes the reads asked for).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from fhir.resources.R4B import get_fhir_model_class

from node.api.app import make_app
from node.app.types.identity import attest
from node.chain.tx import Transaction
from node.core.crypto import Identity
from node.core.errors import CodedError
from node.fhir.client_assertion import make_assertion, token_form
from node.fhir.routes import fhir_mount
from node.fhir.smart import TOKEN_PATH, install_smart
from node.home.config import build_config
from node.records.custodian import Custodian
from node.records.delegate import NewRecord, StoredRecord
from node.records.node_delegate import NodeDelegate
from node.runtime.runtime import Node
from storage.kv import MemoryStore
from storage.offchain import OffchainStore

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


class SpyRecords(NodeDelegate):
    """The node's real records service (NodeDelegate over an in-memory custodian store), noting
    every read it is asked for (the audited reads) and, when `fail_store` is set, refusing every
    store with that code (a test of how the routes answer a refusal)."""

    def __init__(self, node: Node, custodian: Custodian) -> None:
        super().__init__(node, custodian, commit_timeout_s=10.0)
        self.reads: list[tuple[bytes, bytes]] = []  # (reader, record id) of every read_for
        self.fail_store: str | None = None

    async def read_for(self, reader: bytes, record_ids: Sequence[bytes], purpose: str, *,
                       reason: str | None = None) -> list[bytes | CodedError]:
        self.reads.extend((reader, r) for r in record_ids)
        return await super().read_for(reader, record_ids, purpose, reason=reason)

    async def store_for(self, author: bytes, items: Sequence[NewRecord]) -> list[StoredRecord | CodedError]:
        if self.fail_store is not None:
            return [CodedError(self.fail_store, "refused by the ledger", 403) for _ in items]
        return await super().store_for(author, items)


class World(TxPoster):
    """The node, its API client, the records service and the registered identities."""

    def __init__(self, client: TestClient, node: Node, records: SpyRecords) -> None:
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
    custodian = Custodian(node, OffchainStore(MemoryStore()))
    node.commit_hooks.append(custodian.on_block_committed)
    records = SpyRecords(node, custodian)

    app = make_app(node, custodian=custodian, mounts=[install_smart, fhir_mount(records)])
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
