"""Issue 15, finding 4, through the HTTP API of an in-process node: a practitioner with no
treatment relationship cannot put a record in a patient's chart (and so cannot make itself an
author with access to the file), reads are scoped to what was granted, and the patient contests a
record it does not recognise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api import make_app
from node.app.types.identity import attest
from node.auth import sign_headers
from node.config import build_config
from node.core.crypto import Identity, sha256
from node.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.runtime import Node
from node.tx import Transaction
from storage.chain import ChainStore
from storage.kv import LevelDBStore

CHAIN = "test-chain"
MSGPACK = {"Content-Type": "application/msgpack"}
NODE = Identity.from_seed(b"\x31" * 32)  # the validator, an institution: custodian of the patient's records
OTHER = Identity.from_seed(b"\x32" * 32)  # an institution with no relationship to the patient
PATIENT = Identity.from_seed(b"\x33" * 32)
WRITER = Identity.from_seed(b"\x34" * 32)  # practitioner at NODE, where the patient registered
READER = Identity.from_seed(b"\x35" * 32)  # practitioner at OTHER, given consent to one record
JUNK = Identity.from_seed(b"\x36" * 32)  # practitioner at OTHER, no relationship at all
R1, R2 = sha256(b"record one"), sha256(b"record two")


class Sender:
    """Signs transactions with increasing nonces and commits them through the API."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.nonces: dict[bytes, int] = {}

    async def __call__(self, who: Identity, type_: str, body: dict[str, Any]) -> tuple[str, bytes]:
        nonce = self.nonces[who.public_key] = self.nonces.get(who.public_key, 0) + 1
        tx = Transaction.create(who, chain_id=CHAIN, type=type_, nonce=nonce, body=body)
        resp = await self.client.post("/v1/txs?wait=20", data=tx.encoded, headers=MSGPACK)
        got = await resp.json()
        assert resp.status == 200 and got["status"] == "committed", got
        return got["result"], tx.hash


async def read(client: TestClient, who: Identity, path: str) -> tuple[int, dict[str, Any]]:
    import time

    headers = sign_headers(who, chain_id=CHAIN, method="GET", path_qs=path, timestamp_ms=time.time_ns() // 1_000_000)
    resp = await client.get(path, headers=headers)
    return resp.status, await resp.json()


def staff(who: Identity, inst: Identity) -> dict[str, Any]:
    return {"role": "practitioner", "institution": inst.public_key,
            "attestation": attest(inst, chain_id=CHAIN, registrant=who.public_key, role="practitioner")}


def record_body(record: bytes, custodian: Identity) -> dict[str, Any]:
    return {"record": record, "patient": PATIENT.public_key, "resource_type": "Observation",
            "hash": sha256(record), "custodian": custodian.public_key}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Sender]]:
    """The patient registered at NODE, two records written there, practitioners at NODE and OTHER."""
    genesis = Genesis(chain_id=CHAIN, genesis_time_ms=1_700_000_000_000,
                      validators=(ValidatorInfo(id=NODE.public_key, name="v0", address="127.0.0.1:0"),),
                      institutions=(InstitutionInfo(id=NODE.public_key, name="v0"),
                                    InstitutionInfo(id=OTHER.public_key, name="other")))
    cfg = build_config({"consensus": {"empty_block_interval_ms": 50}}, env={})
    node = Node(config=cfg, genesis=genesis, identity=NODE, store=ChainStore(LevelDBStore(tmp_path / "db")))
    client = TestClient(TestServer(make_app(node)))
    await client.start_server()
    node.start()
    send = Sender(client)
    try:
        patient = {"role": "patient", "institution": NODE.public_key,
                   "attestation": attest(NODE, chain_id=CHAIN, registrant=PATIENT.public_key, role="patient")}
        assert (await send(PATIENT, "identity.register", patient))[0] == "ok"
        for who, inst in ((WRITER, NODE), (READER, OTHER), (JUNK, OTHER)):
            assert (await send(who, "identity.register", staff(who, inst)))[0] == "ok"
        for record in (R1, R2):
            assert (await send(WRITER, "record.add", record_body(record, NODE)))[0] == "ok"
        yield client, send
    finally:
        node.stop()
        await client.close()
        node.store.close()


async def test_practitioner_without_treatment_relationship_cannot_add_a_record_and_read_the_file(world):
    client, send = world
    junk = sha256(b"junk")
    code, _ = await send(JUNK, "record.add", record_body(junk, OTHER))
    assert code == "no_treatment_relationship"
    status, _ = await read(client, JUNK, f"/v1/records/{junk.hex()}")
    assert status == 404  # nothing entered the chart
    code, _ = await send(JUNK, "access.request", {"record": junk, "purpose": "treatment"})
    assert code == "unknown_record"
    for path in ("audit", "records", "consents"):
        for who in (JUNK, OTHER):
            status, body = await read(client, who, f"/v1/patients/{PATIENT.id}/{path}")
            assert (status, body["error"]) == (403, "forbidden"), (path, who.id)
    # a treatment consent to OTHER is a relationship: then its practitioners may write
    code, _ = await send(PATIENT, "consent.grant", {"grantee_kind": "institution", "grantee": OTHER.public_key,
                                                    "purposes": ["treatment"], "resource_types": ["Condition"],
                                                    "valid_until": 2_000_000_000_000_000})
    assert code == "ok"
    assert (await send(JUNK, "record.add", record_body(junk, OTHER)))[0] == "ok"


async def test_one_grant_on_one_record_opens_that_record_not_the_patients_file(world):
    client, send = world
    code, mine = await send(PATIENT, "consent.grant", {"grantee_kind": "practitioner", "grantee": READER.public_key,
                                                       "purposes": ["treatment"], "record_ids": [R1],
                                                       "valid_until": 2_000_000_000_000_000})
    assert code == "ok"
    code, _ = await send(PATIENT, "consent.grant", {"grantee_kind": "institution", "grantee": NODE.public_key,
                                                    "purposes": ["operations"], "resource_types": ["*"],
                                                    "valid_until": 2_000_000_000_000_000})
    assert code == "ok"
    assert (await send(READER, "access.request", {"record": R1, "purpose": "treatment"}))[0] == "ok"
    base = f"/v1/patients/{PATIENT.id}"
    status, body = await read(client, READER, base + "/records")
    assert status == 200 and [r["id"] for r in body["records"]] == [R1.hex()]
    status, body = await read(client, READER, base + "/audit")
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await read(client, READER, base + "/consents")
    assert status == 200 and [c["id"] for c in body["consents"]] == [mine.hex()]
    status, _ = await read(client, READER, f"/v1/records/{R2.hex()}")
    assert status == 403
    # the custodian institution sees the records it holds and the consents naming it, not the trail
    status, body = await read(client, NODE, base + "/records")
    assert status == 200 and len(body["records"]) == 2
    status, body = await read(client, NODE, base + "/consents")
    assert status == 200 and [c["grantee"] for c in body["consents"]] == [NODE.id]
    status, _ = await read(client, NODE, base + "/audit")
    assert status == 403
    # the patient sees everything
    status, body = await read(client, PATIENT, base + "/consents")
    assert status == 200 and len(body["consents"]) == 2
    status, body = await read(client, PATIENT, base + "/audit")
    assert status == 200 and body["entries"]


async def test_patient_contests_a_record_and_the_chart_and_trail_show_it(world):
    client, send = world
    assert (await send(JUNK, "record.contest", {"record": R1}))[0] == "role_not_allowed"
    assert (await send(PATIENT, "record.contest", {"record": R1, "reason": "not_my_record"}))[0] == "ok"
    assert (await send(PATIENT, "record.contest", {"record": R1}))[0] == "already_contested"
    status, body = await read(client, PATIENT, f"/v1/patients/{PATIENT.id}/records")
    assert status == 200 and [r["contested"] for r in body["records"]] == [True, False]
    assert body["records"][0]["contest_reason"] == "not_my_record"
    status, body = await read(client, PATIENT, f"/v1/patients/{PATIENT.id}/audit")
    last = body["entries"][-1]
    assert (last["event"], last["record"], last["reason"]) == ("record.contested", R1.hex(), "not_my_record")
