"""The research steps in-process (issue 15, findings 5, 6 and 20): the study's minimum k holds
whatever the researcher asks; prepare and record answer only a fresh, unreplayed request
countersigned by the coordinator the researcher named, who must be the study's institution (or
a custodian of its records); record commits only what was prepared; and the pseudonyms of an
extract cannot be linked back to ledger identities from what the explorer shows."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app.types.identity import attest
from node.api.auth import sign_headers
from node.core.crypto import Identity, sha256
from node.core.encoding import canonical
from node.records.custodian import Custodian
from node.records.envelope import seal_record
from node.records.protocol import Upload
from node.research.pseudonyms import KeyedPseudonyms, derive_study_key
from node.research.release import linked_patient
from node.research.service import ExtractRequest, ResearchService
from node.runtime.runtime import Node
from storage.kv import MemoryStore
from storage.offchain import OffchainStore
from tests.helpers import CHAIN, MSGPACK, NODE_ID, TxPoster, make_node

SECRET = bytes(range(32))
STUDY, LONE, STRICT = "DIAB-1", "LONE-1", "STRICT-1"
FAR = 4_102_444_800_000
PATIENTS = 6  # patient i has i + 1 Observations: every patient's record count is different


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def patient_resource(i: int) -> dict:
    return {"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"Family{i}", "given": ["Ann"]}],
            "gender": "female", "birthDate": "1970-05-17", "address": [{"state": "MA", "postalCode": "02139", "country": "US"}]}


def observation(i: int, j: int) -> dict:
    return {"resourceType": "Observation", "id": f"o{i}-{j}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/p{i}"}, "effectiveDateTime": f"2024-03-0{j + 1}T10:00:00Z",
            "valueQuantity": {"value": 70 + j, "unit": "beats/min"}}


@dataclass
class Lab:
    client: TestClient
    node: Node
    service: ResearchService
    researcher: Identity
    outsider: Identity
    rogue: Identity
    patients: list[Identity]
    poster: TxPoster = field(init=False)

    def __post_init__(self) -> None:
        self.poster = TxPoster(self.client, wait_s=20)

    async def tx(self, who: Identity, type_: str, body: dict) -> dict:
        status, got, _ = await self.poster.submit(who, type_, body)
        assert status == 200 and got["status"] == "committed" and got["result"] == "ok", (type_, got)
        return got

    @property
    def inst(self) -> Identity:
        return self.node.identity

    def request(self, *, study: str = STUDY, k: int = 5, who: Identity | None = None, coordinator: bytes | None = None,
                ts: int | None = None) -> ExtractRequest:
        return ExtractRequest.create(who or self.researcher, chain_id=CHAIN, study=study, types=["Patient", "Observation"], k=k,
                                     coordinator=coordinator or self.inst.public_key, timestamp_ms=now_ms() if ts is None else ts)

    async def extract(self, req: ExtractRequest) -> tuple[int, dict]:
        resp = await self.client.post("/v1/research/extract", data=canonical(req.to_dict()), headers=MSGPACK)
        return resp.status, await resp.json()

    async def step(self, signer: Identity, step: str, payload: dict) -> tuple[int, dict]:
        body = canonical(payload)
        envelope = canonical({"payload": body, "coordinator": signer.public_key,
                              "signature": signer.sign(sha256(b"medledger-coordinate-v1" + body))})
        resp = await self.client.post(f"/v1/research/{step}", data=envelope, headers=MSGPACK)
        return resp.status, await resp.json()

    def pseudonyms(self, study: str = STUDY) -> dict[str, str]:
        pseudo = KeyedPseudonyms(derive_study_key(SECRET, study))
        return {pseudo.person(p.id): p.id for p in self.patients}


@pytest.fixture
async def lab(tmp_path):
    node = make_node(tmp_path / "db")
    offchain = OffchainStore(MemoryStore())
    custodian = Custodian(node, offchain)
    node.commit_hooks.append(custodian.on_block_committed)
    service = ResearchService(node, offchain, SECRET)
    client = TestClient(TestServer(make_app(node, custodian=custodian, research=service)))
    await client.start_server()
    node.start()
    try:
        seed = iter(range(0x40, 0x80))  # clear of the node's own seed
        mk = lambda: Identity.from_seed(bytes([next(seed)]) * 32)  # noqa: E731
        lab = Lab(client=client, node=node, service=service, researcher=mk(), outsider=mk(), rogue=mk(),
                  patients=[mk() for _ in range(PATIENTS)])
        inst, doctor = node.identity, mk()
        # another institution, admitted by the (only) validator: it may countersign, but it is not the study's
        await lab.tx(inst, "governance.admit_institution", {"institution": lab.rogue.public_key, "name": "Rogue clinic"})
        for who, role in ((doctor, "practitioner"), (lab.researcher, "researcher"), (lab.outsider, "researcher")):
            await lab.tx(who, "identity.register", {"role": role, "institution": inst.public_key,
                                                    "attestation": attest(inst, chain_id=CHAIN, registrant=who.public_key, role=role)})
        for study, min_k in ((STUDY, None), (LONE, None), (STRICT, 8)):
            body = {"study": study, "title": "t", "ethics_ref": "IRB-1", "until_ms": FAR, **({"min_k": min_k} if min_k else {})}
            await lab.tx(inst, "study.register", body)
            await lab.tx(inst, "study.add_researcher", {"study": study, "researcher": lab.researcher.public_key})
        for i, patient in enumerate(lab.patients):
            # registered at the institution that treats them: its practitioner may add their records
            await lab.tx(patient, "identity.register", {"role": "patient", "institution": inst.public_key,
                                                        "attestation": attest(inst, chain_id=CHAIN,
                                                                              registrant=patient.public_key, role="patient")})
            for resource in [patient_resource(i)] + [observation(i, j) for j in range(i + 1)]:
                rid = os.urandom(32)
                ct, wrapped = seal_record(json.dumps(resource).encode(), {"patient": patient.public_key, "custodian": inst.public_key})
                up = Upload.create(doctor, chain_id=CHAIN, record_id=rid, patient=patient.public_key,
                                   resource_type=resource["resourceType"], ciphertext=ct, wrapped=wrapped, timestamp_ms=now_ms())
                resp = await client.post("/v1/records", data=up.to_wire(), headers=MSGPACK)
                assert resp.status == 201, await resp.text()
                await lab.tx(doctor, "record.add", {"record": rid, "patient": patient.public_key, "resource_type": resource["resourceType"],
                                                    "hash": sha256(ct), "custodian": inst.public_key})
            studies = (STUDY, STRICT, LONE) if i == 0 else (STUDY, STRICT)
            for study in studies:
                await lab.tx(patient, "consent.grant", {"grantee_kind": "study", "grantee": study, "purposes": ["research"],
                                                        "resource_types": ["Patient", "Observation"], "valid_until": FAR})
        yield lab
    finally:
        node.stop()
        await client.close()
        node.store.close()


async def audit_events(lab: Lab, patient: Identity) -> list[str]:
    path = f"/v1/patients/{patient.id}/audit"
    headers = sign_headers(patient, chain_id=CHAIN, node_id=NODE_ID, method="GET", path_qs=path, timestamp_ms=now_ms())
    resp = await lab.client.get(path, headers=headers)
    assert resp.status == 200
    return [e["event"] for e in (await resp.json())["entries"]]


# -- finding 5: the study's minimum k -----------------------------------------------------------------
async def test_researcher_cannot_release_one_patient_alone_with_k_1(lab):
    status, doc = await lab.extract(lab.request(study=LONE, k=1))
    assert (status, doc["error"]) == (409, "too_few_patients"), doc
    assert "minimum is 5" in doc["message"]
    assert "research.released" not in await audit_events(lab, lab.patients[0])


async def test_researcher_cannot_go_below_the_minimum_k_the_study_registered(lab):
    status, doc = await lab.extract(lab.request(study=STRICT, k=5))  # 6 patients consent, the study says 8
    assert (status, doc["error"]) == (409, "too_few_patients"), doc


async def test_extract_at_the_study_minimum_is_released_and_recorded_first(lab):
    status, doc = await lab.extract(lab.request(k=1))
    assert status == 200, doc
    report = doc["report"]
    assert (report["k_requested"], report["k_applied"], report["k_min_study"]) == (1, 5, 5)
    assert report["k_reached"] >= 5 and report["patients_included"] == PATIENTS and report["ledger_transactions"]
    for tx_hash in report["ledger_transactions"]:
        resp = await lab.client.get(f"/v1/txs/{tx_hash}")
        assert (await resp.json())["result"] == "ok"
    assert "research.released" in await audit_events(lab, lab.patients[3])


# -- finding 6: freshness, replay, the named coordinator, only what was prepared -------------------------
async def test_prepare_refuses_a_day_old_request(lab):
    old = lab.request(ts=now_ms() - 86_400_000)
    status, doc = await lab.step(lab.inst, "prepare", {"request": old.to_dict()})
    assert (status, doc["error"]) == (401, "stale_request"), doc


async def test_extract_refuses_a_request_from_the_future(lab):
    status, doc = await lab.extract(lab.request(ts=now_ms() + 60_000))
    assert (status, doc["error"]) == (401, "future_request"), doc


async def test_prepare_refuses_a_countersignature_by_an_institution_other_than_the_named_coordinator(lab):
    status, doc = await lab.step(lab.rogue, "prepare", {"request": lab.request().to_dict()})
    assert (status, doc["error"]) == (403, "coordinator_not_named"), doc


async def test_prepare_refuses_a_coordinator_that_is_not_the_study_institution(lab):
    # the researcher named the rogue institution (or was tricked into it): it holds no record of the study's patients
    req = lab.request(coordinator=lab.rogue.public_key)
    status, doc = await lab.step(lab.rogue, "prepare", {"request": req.to_dict()})
    assert (status, doc["error"]) == (403, "not_study_institution"), doc


async def test_prepare_is_answered_once_per_request(lab):
    req = lab.request()
    status, doc = await lab.step(lab.inst, "prepare", {"request": req.to_dict()})
    assert status == 200 and doc["resources"], doc
    status, doc = await lab.step(lab.inst, "prepare", {"request": req.to_dict()})
    assert (status, doc["error"]) == (401, "replayed_request"), doc


async def test_record_step_refuses_to_commit_a_release_that_was_never_prepared(lab):
    included = sorted(lab.pseudonyms())
    payload = {"request": lab.request().to_dict(), "included": included, "resources": 99, "release_hash": sha256(b"false")}
    status, doc = await lab.step(lab.inst, "record", payload)
    assert (status, doc["error"]) == (409, "not_prepared"), doc
    for patient in lab.patients:
        assert "research.released" not in await audit_events(lab, patient)


async def test_record_step_commits_only_what_it_prepared_and_only_once(lab):
    req = lab.request()
    status, prepared = await lab.step(lab.inst, "prepare", {"request": req.to_dict()})
    assert status == 200
    released = Counter(linked_patient(r) for r in prepared["resources"] if r["resourceType"] != "Patient")
    few = sorted(lab.pseudonyms())[:2]
    payload = {"request": req.to_dict(), "included": few + ["0" * 32], "resources": 10**6, "release_hash": sha256(b"x")}
    status, doc = await lab.step(lab.inst, "record", payload)
    assert status == 200 and doc["tx"], doc
    block_tx = await lab.client.get(f"/v1/txs/{doc['tx']}?wait=10")
    height = (await block_tx.json())["height"]
    path = f"/v1/blocks/{height}"
    headers = sign_headers(lab.inst, chain_id=CHAIN, node_id=NODE_ID, method="GET", path_qs=path, timestamp_ms=now_ms())
    block = await (await lab.client.get(path, headers=headers)).json()
    body = next(t["body"] for t in block["txs"] if t["hash"] == doc["tx"])
    assert sorted(body["patients"]) == sorted(lab.pseudonyms()[p] for p in few)
    assert body["resources"] == sum(released[p] for p in few)  # counted by the custodian, not the coordinator's 10**6
    status, doc = await lab.step(lab.inst, "record", payload)
    assert (status, doc["error"]) == (401, "replayed_request"), doc


async def test_a_refused_extract_request_is_not_remembered(lab):
    for _ in range(5):
        status, doc = await lab.extract(lab.request(who=lab.outsider))
        assert (status, doc["error"]) == (403, "researcher_not_on_study"), doc
    assert len(lab.service.guard) == 0


async def test_extract_refuses_a_request_naming_another_coordinator(lab):
    status, doc = await lab.extract(lab.request(coordinator=lab.rogue.public_key))
    assert (status, doc["error"]) == (403, "coordinator_not_named"), doc


# -- finding 20: linking pseudonyms back to ledger identities through record counts ----------------------
async def test_extract_pseudonyms_cannot_be_linked_to_patients_through_public_record_counts(lab):
    status, doc = await lab.extract(lab.request())
    assert status == 200, doc
    per_pseudonym = Counter(json.loads(line)["subject"]["reference"].split("/")[1]
                            for line in doc["files"]["Observation.ndjson"].splitlines())
    assert len(set(per_pseudonym.values())) == PATIENTS  # the counts in the extract do tell the patients apart

    # the attacker: every block and proof the explorer shows, unsigned and signed with the researcher's key
    per_patient: Counter[str] = Counter()
    for height in range(1, lab.node.store.height + 1):
        for who in (None, lab.researcher):
            path = f"/v1/blocks/{height}"
            headers = sign_headers(who, chain_id=CHAIN, node_id=NODE_ID, method="GET", path_qs=path, timestamp_ms=now_ms()) if who else {}
            block = await (await lab.client.get(path, headers=headers)).json()
            for tx in block["txs"]:
                if tx.get("type") == "record.add" and tx.get("body"):
                    per_patient[tx["body"]["patient"]] += 1 if who is None else 0
    links = {}
    for pseudonym, count in per_pseudonym.items():
        candidates = [p for p, n in per_patient.items() if n - 1 == count]  # minus the Patient record
        if len(candidates) == 1:
            links[pseudonym] = candidates[0]
    truth = lab.pseudonyms()
    correct = sum(1 for p, who in links.items() if truth.get(p) == who)
    assert correct == 0, f"{correct} of {len(per_pseudonym)} pseudonyms linked back to ledger identities"
    assert not per_patient, "per-patient record counts are readable from the explorer"
