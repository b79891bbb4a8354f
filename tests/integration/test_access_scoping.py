"""Issue 15, findings 4 and 2, through the HTTP API of an in-process node: a practitioner with no
treatment relationship cannot put a record in a patient's chart (and so cannot make itself an
author with access to the file), reads are scoped to what was granted, the patient contests a
record it does not recognise; a break-glass sweep in one HTTP request stops at the limit, and
after an unjustified review the custodian serves nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from msgpack import packb

from node.api.app import make_app
from node.records.custodian import Custodian
from node.records.envelope import seal_record
from node.records.protocol import Fetch, Upload
from storage.offchain import OffchainStore
from node.app.types.identity import attest
from node.api.auth import sign_headers
from node.home.config import build_config
from node.core.crypto import Identity, sha256
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.runtime.runtime import Node
from node.chain.tx import Transaction
from storage.chain import ChainStore
from storage.kv import LevelDBStore, MemoryStore

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

    headers = sign_headers(who, chain_id=CHAIN, node_id=NODE.id, method="GET", path_qs=path, timestamp_ms=time.time_ns() // 1_000_000)
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
    custodian = Custodian(node, OffchainStore(MemoryStore()))
    client = TestClient(TestServer(make_app(node, custodian=custodian)))
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
    assert status == 403  # nothing entered the chart (an unknown record is as forbidden as one not granted)
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
    # another patient cannot contest (or erase) a record of this one's chart
    intruder = Identity.from_seed(b"\x37" * 32)
    assert (await send(intruder, "identity.register", {"role": "patient"}))[0] == "ok"
    assert (await send(intruder, "record.contest", {"record": R1, "reason": "not_my_record"}))[0] == "not_your_record"
    assert (await send(intruder, "record.erase", {"record": R1}))[0] == "not_your_record"
    assert (await send(PATIENT, "record.contest", {"record": R1, "reason": "not_my_record"}))[0] == "ok"
    assert (await send(PATIENT, "record.contest", {"record": R1}))[0] == "already_contested"
    status, body = await read(client, PATIENT, f"/v1/patients/{PATIENT.id}/records")
    assert status == 200 and [r["contested"] for r in body["records"]] == [True, False]
    assert body["records"][0]["contest_reason"] == "not_my_record"
    status, body = await read(client, PATIENT, f"/v1/patients/{PATIENT.id}/audit")
    last = body["entries"][-1]
    assert (last["event"], last["record"], last["reason"]) == ("record.contested", R1.hex(), "not_my_record")


async def test_a_breakglass_sweep_in_one_http_request_stops_at_the_limit_and_a_review_stops_the_fetch(world):
    import time

    from node.app.access import BREAKGLASS_MAX_PER_PRACTITIONER

    client, send = world
    # one real record (its ciphertext at the custodian) and 42 more announced, 44 in the chart
    real = sha256(b"real record")
    ciphertext, wrapped = seal_record(b'{"resourceType": "Observation"}', {"patient": PATIENT.public_key,
                                                                           "custodian": NODE.public_key})
    upload = Upload.create(WRITER, chain_id=CHAIN, record_id=real, patient=PATIENT.public_key, resource_type="Observation",
                           ciphertext=ciphertext, wrapped=wrapped, timestamp_ms=time.time_ns() // 1_000_000)
    assert (await client.post("/v1/records", data=upload.to_wire(), headers=MSGPACK)).status == 201
    assert (await send(WRITER, "record.add", {**record_body(real, NODE), "hash": sha256(ciphertext)}))[0] == "ok"
    more = [sha256(b"more %d" % i) for i in range(40)]
    for record in more:
        assert (await send(WRITER, "record.add", record_body(record, NODE)))[0] == "ok"
    # JUNK, at an unrelated institution, breaks the glass 43 times in one HTTP request; reason "x" is refused
    free = Transaction.create(JUNK, chain_id=CHAIN, type="access.request", nonce=10**12,  # a fresh nonce: refused for its body
                              body={"record": real, "purpose": "emergency", "reason": "x"})
    resp = await client.post("/v1/txs", data=free.encoded, headers=MSGPACK)
    assert resp.status == 400 and (await resp.json())["error"] == "reason_not_coded"
    first = send.nonces.get(JUNK.public_key, 0)
    txs = [Transaction.create(JUNK, chain_id=CHAIN, type="access.request", nonce=first + 1 + i,
                              body={"record": r, "purpose": "emergency", "reason": "unconscious"})
           for i, r in enumerate([real, R1, R2, *more])]
    send.nonces[JUNK.public_key] = first + len(txs)
    values = [[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in txs]
    resp = await client.post("/v1/txs", data=packb(values, use_bin_type=True), headers=MSGPACK)
    assert resp.status == 202 and (await resp.json())["accepted"] == 43
    results = []
    for t in txs:
        resp = await client.get(f"/v1/txs/{t.hash.hex()}?wait=20")
        results.append((await resp.json())["result"])
    assert results.count("ok") == BREAKGLASS_MAX_PER_PRACTITIONER and results[0] == "ok"

    async def fetch() -> tuple[int, bytes]:
        f = Fetch.create(JUNK, chain_id=CHAIN, record_id=real, timestamp_ms=time.time_ns() // 1_000_000)
        resp = await client.post(f"/v1/records/{real.hex()}/fetch", data=f.to_wire(), headers=MSGPACK)
        return resp.status, await resp.read()

    assert (await fetch())[0] == 200
    code, _ = await send(NODE, "breakglass.review", {"access": txs[0].hash, "outcome": "unjustified", "suspend": True})
    assert code == "ok"
    status, body = await fetch()
    assert status == 403 and b"no_grant" in body
    # the patient is told, and the practitioner is suspended
    status, trail = await read(client, PATIENT, f"/v1/patients/{PATIENT.id}/audit")
    events = [e["event"] for e in trail["entries"]]
    assert events.count("access.revoked") == BREAKGLASS_MAX_PER_PRACTITIONER and events[-1] == "breakglass.suspended"
    code, request = await send(JUNK, "access.request", {"record": R1, "purpose": "emergency", "reason": "life_threatening"})
    status, decision = await read(client, JUNK, f"/v1/access/{request.hex()}")
    assert (code, decision["rule"]) == ("denied", "breakglass_suspended")
