"""The custodian's endpoints in-process: uploads and fetches are refused when forged, replayed,
stale, from the wrong role or without a committed grant; a granted fetch opens to the original."""

from __future__ import annotations

import json
import os
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app.types.identity import attest
from node.core.crypto import Identity, sha256
from node.core.encoding import canonical, decode
from node.records.custodian import Custodian
from node.records.envelope import decrypt, seal_record, unwrap_key
from node.records.protocol import Fetch, Release, Upload
from storage.kv import MemoryStore
from storage.offchain import OffchainStore
from tests.helpers import CHAIN, MSGPACK, TxPoster, make_node

OBS = json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
                  "valueQuantity": {"value": 72, "unit": "beats/min"}}).encode()


class World(TxPoster):
    def __init__(self, client: TestClient, node) -> None:
        super().__init__(client)
        self.node = node

    async def fetch(self, fetch: Fetch):
        resp = await self.client.post(f"/v1/records/{fetch.record_id.hex()}/fetch", data=fetch.to_wire(), headers=MSGPACK)
        return resp.status, await resp.read()


@pytest.fixture
async def world(tmp_path):
    node = make_node(tmp_path / "db")
    custodian = Custodian(node, OffchainStore(MemoryStore()))
    node.commit_hooks.append(custodian.on_block_committed)
    client = TestClient(TestServer(make_app(node, custodian=custodian)))
    await client.start_server()
    node.start()
    try:
        yield World(client, node)
    finally:
        node.stop()
        await client.close()
        node.store.close()


async def setup_record(w: World):
    inst = w.node.identity
    patient, doctor, other = Identity.generate(), Identity.generate(), Identity.generate()
    registered = {"role": "patient", "institution": inst.public_key,  # at inst: its staff may write the patient's records
                  "attestation": attest(inst, chain_id=CHAIN, registrant=patient.public_key, role="patient")}
    assert (await w.tx(patient, "identity.register", registered))["result"] == "ok"
    for ident in (doctor, other):
        body = {"role": "practitioner", "institution": inst.public_key,
                "attestation": attest(inst, chain_id=CHAIN, registrant=ident.public_key, role="practitioner")}
        assert (await w.tx(ident, "identity.register", body))["result"] == "ok"
    rid = os.urandom(32)
    ct, wrapped = seal_record(OBS, {"patient": patient.public_key, "custodian": inst.public_key})
    up = Upload.create(doctor, chain_id=CHAIN, record_id=rid, patient=patient.public_key, resource_type="Observation",
                       ciphertext=ct, wrapped=wrapped, timestamp_ms=time.time_ns() // 1_000_000)
    resp = await w.client.post("/v1/records", data=up.to_wire(), headers=MSGPACK)
    assert resp.status == 201, await resp.text()
    added = await w.tx(doctor, "record.add", {"record": rid, "patient": patient.public_key, "resource_type": "Observation",
                                               "hash": sha256(ct), "custodian": inst.public_key})
    assert added["result"] == "ok", added
    return patient, doctor, other, rid


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_granted_fetch_opens_to_the_original_and_refusals(world):
    patient, doctor, other, rid = await setup_record(world)
    # no grant yet: refused
    status, body = await world.fetch(Fetch.create(other, chain_id=CHAIN, record_id=rid, timestamp_ms=now_ms()))
    assert status == 403 and json.loads(body)["error"] == "no_grant"
    denied = await world.tx(other, "access.request", {"record": rid, "purpose": "treatment"})
    assert denied["result"] == "denied"
    grant = await world.tx(patient, "consent.grant", {"grantee_kind": "practitioner", "grantee": other.public_key,
                                                       "purposes": ["treatment"], "resource_types": ["Observation"],
                                                       "valid_until": now_ms() + 3_600_000})
    assert grant["result"] == "ok", grant
    assert (await world.tx(other, "access.request", {"record": rid, "purpose": "treatment"}))["result"] == "ok"
    fetch = Fetch.create(other, chain_id=CHAIN, record_id=rid, timestamp_ms=now_ms())
    status, body = await world.fetch(fetch)
    assert status == 200
    release = Release.from_wire(decode(body), CHAIN)
    assert release.custodian == world.node.identity.public_key
    assert decrypt(release.ciphertext, unwrap_key(release.wrapped_key, other)) == OBS

    # replayed: the very same signed request again
    status, body = await world.fetch(fetch)
    assert status == 401 and json.loads(body)["error"] == "replayed_request"
    # stale: signed ten minutes ago
    status, body = await world.fetch(Fetch.create(other, chain_id=CHAIN, record_id=rid, timestamp_ms=now_ms() - 600_000))
    assert status == 401 and json.loads(body)["error"] == "stale_request"
    # forged: someone else's id on a request they did not sign
    forged = decode(Fetch.create(doctor, chain_id=CHAIN, record_id=rid, timestamp_ms=now_ms()).to_wire())
    forged["requester"] = other.public_key
    resp = await world.client.post(f"/v1/records/{rid.hex()}/fetch", data=canonical(forged), headers=MSGPACK)
    assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
    # a stranger with a valid signature but no grant
    stranger = Identity.generate()
    status, body = await world.fetch(Fetch.create(stranger, chain_id=CHAIN, record_id=rid, timestamp_ms=now_ms()))
    assert status == 403


async def test_wrong_roles_are_refused(world):
    patient, doctor, other, rid = await setup_record(world)
    # a patient cannot add records; a practitioner cannot grant consent for a patient; nobody but the
    # patient (or guardian) revokes
    res = await world.tx(patient, "record.add", {"record": os.urandom(32), "patient": patient.public_key,
                                                  "resource_type": "Observation", "hash": bytes(32),
                                                  "custodian": world.node.identity.public_key})
    assert res["result"] not in ("ok", "denied"), res
    res = await world.tx(doctor, "consent.grant", {"grantee_kind": "practitioner", "grantee": doctor.public_key,
                                                    "purposes": ["treatment"], "resource_types": ["*"],
                                                    "valid_until": now_ms() + 3_600_000})
    assert res["result"] not in ("ok", "denied"), res
    # an upload by someone who is not a practitioner here
    ct, wrapped = seal_record(OBS, {"patient": patient.public_key, "custodian": world.node.identity.public_key})
    up = Upload.create(patient, chain_id=CHAIN, record_id=os.urandom(32), patient=patient.public_key, resource_type="Observation",
                       ciphertext=ct, wrapped=wrapped, timestamp_ms=now_ms())
    resp = await world.client.post("/v1/records", data=up.to_wire(), headers=MSGPACK)
    assert resp.status == 403 and (await resp.json())["error"] == "not_a_practitioner"
    # an upload whose signature does not match
    doc = decode(Upload.create(doctor, chain_id=CHAIN, record_id=os.urandom(32), patient=patient.public_key,
                               resource_type="Observation", ciphertext=ct, wrapped=wrapped, timestamp_ms=now_ms()).to_wire())
    doc["patient"] = other.public_key
    resp = await world.client.post("/v1/records", data=canonical(doc), headers=MSGPACK)
    assert resp.status == 401
