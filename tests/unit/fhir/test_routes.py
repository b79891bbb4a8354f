"""The FHIR REST routes through the HTTP API of an in-process node, with real access tokens and an
in-memory records service over the real ledger (routes_world.py): create, read, vread, update,
search (by type, POST _search, across types) and transaction Bundles; every answer validates
with fhir.resources and every refusal is an OperationOutcome with its status and code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from node.fhir.outcome import CODE_SYSTEM

from tests.unit.fhir.routes_world import (
    COLLEAGUE,
    DOCTOR,
    OTHER_PATIENT,
    PATIENT,
    World,
    observation,
    running,
)

DOCTOR_SCOPE = "user/*.crus"
B = "/fhir/R4"


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    async with running(tmp_path, monkeypatch) as w:
        yield w


def code_of(outcome: dict[str, Any]) -> str:
    assert outcome["resourceType"] == "OperationOutcome", outcome
    [coding] = outcome["issue"][0]["details"]["coding"]
    assert coding["system"] == CODE_SYSTEM
    return str(coding["code"])


async def create(world: World, token: str, resource: dict[str, Any]) -> dict[str, Any]:
    status, body, headers = await world.call("POST", f"{B}/{resource['resourceType']}", token, body=resource)
    assert status == 201, body
    assert headers["Location"].endswith(f"{B}/{resource['resourceType']}/{body['id']}/_history/{body['meta']['versionId']}")
    assert headers["ETag"] == f'W/"{body["meta"]["versionId"]}"'
    return body


# -- create, read, vread, update ------------------------------------------------------------------
async def test_a_practitioner_creates_an_observation_and_reads_it_back(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    written = {**observation(PATIENT), "id": "local-1", "meta": {"versionId": "7", "lastUpdated": "1999-01-01T00:00:00Z"}}
    made = await create(world, token, written)
    assert made["meta"]["versionId"] == "1" and made["id"] != "local-1" and len(made["id"]) == 64
    assert made["subject"] == {"reference": f"Patient/{PATIENT.id}"}
    status, read, headers = await world.call("GET", f"{B}/Observation/{made['id']}", token)
    assert status == 200 and read == made and headers["ETag"] == 'W/"1"'
    status, again, _ = await world.call("GET", f"{B}/Observation/{made['id']}/_history/1", token)
    assert status == 200 and again == made
    meta = world.node.state_reader  # the record is on the ledger under the id served
    from node.app import queries
    on_chain = queries.record(meta(), bytes.fromhex(made["id"]))
    assert on_chain is not None and on_chain["patient"] == PATIENT.id and on_chain["author"] == DOCTOR.id


async def test_an_update_is_a_new_version_superseding_the_latest(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, token, observation(PATIENT, value=70))
    changed = {**made, "valueQuantity": {"value": 75, "unit": "/min"}}
    status, body, _ = await world.call("PUT", f"{B}/Observation/{made['id']}", token, body=changed,
                                       headers={"If-Match": 'W/"2"'})
    assert status == 412 and code_of(body) == "version_conflict"
    status, body, headers = await world.call("PUT", f"{B}/Observation/{made['id']}", token, body=changed,
                                             headers={"If-Match": 'W/"1"'})
    assert status == 200, body
    assert body["id"] == made["id"] and body["meta"]["versionId"] == "2" and body["valueQuantity"]["value"] == 75
    assert headers["Location"].endswith(f"/Observation/{made['id']}/_history/2")
    status, latest, _ = await world.call("GET", f"{B}/Observation/{made['id']}", token)
    assert status == 200 and latest["meta"]["versionId"] == "2"
    status, first, _ = await world.call("GET", f"{B}/Observation/{made['id']}/_history/1", token)
    assert status == 200 and first["valueQuantity"]["value"] == 70
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}/_history/3", token)
    assert status == 404 and code_of(body) == "not_found"
    status, found, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}", token)
    assert [e["resource"]["meta"]["versionId"] for e in found["entry"]] == ["2"]  # current versions only
    # the patient of a record stays the ledger's
    moved = {**changed, "subject": {"reference": f"Patient/{OTHER_PATIENT.id}"}}
    status, body, _ = await world.call("PUT", f"{B}/Observation/{made['id']}", token, body=moved)
    assert status == 422 and code_of(body) == "patient_mismatch"


async def test_a_patient_without_a_patient_record_has_a_minimal_one_and_can_be_given_one(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    status, body, _ = await world.call("GET", f"{B}/Patient/{PATIENT.id}", token)
    assert status == 200 and body["id"] == PATIENT.id and body["identifier"][0]["value"] == PATIENT.id
    patient = {"resourceType": "Patient", "name": [{"family": "Doe"}], "gender": "female",
               "identifier": [{"system": "urn:medledger:identity", "value": PATIENT.id}]}
    status, body, _ = await world.call("PUT", f"{B}/Patient/{PATIENT.id}", token, body=patient)
    assert status == 201 and body["id"] == PATIENT.id and body["meta"]["versionId"] == "1", body
    status, body, _ = await world.call("GET", f"{B}/Patient/{PATIENT.id}", token)
    assert status == 200 and body["name"] == [{"family": "Doe"}]
    renamed = {k: v for k, v in body.items() if k != "identifier"} | {"name": [{"family": "Roe"}]}
    status, body, _ = await world.call("PUT", f"{B}/Patient/{PATIENT.id}", token, body=renamed)
    assert status == 200 and body["meta"]["versionId"] == "2" and body["identifier"][0]["value"] == PATIENT.id, body
    other = {**renamed, "identifier": [{"system": "urn:medledger:identity", "value": OTHER_PATIENT.id}]}
    status, body, _ = await world.call("PUT", f"{B}/Patient/{PATIENT.id}", token, body=other)
    assert status == 422 and code_of(body) == "patient_mismatch"
    status, body, _ = await world.call("GET", f"{B}/Patient/{'ab' * 32}", token)
    assert status == 404 and code_of(body) == "not_found"


async def test_reads_are_decided_on_the_ledger_and_refused_with_its_reason(world):
    doctor = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, doctor, observation(PATIENT))
    colleague = await world.token(COLLEAGUE, DOCTOR_SCOPE, "TREAT")
    status, body, headers = await world.call("GET", f"{B}/Observation/{made['id']}", colleague)
    assert status == 403 and code_of(body) == "no_consent"
    assert (COLLEAGUE.public_key, bytes.fromhex(made["id"])) in world.records.reads  # a read: decided and audited
    # a search leaves it out without a read (no denial in the patient's trail)
    reads = len(world.records.reads)
    status, found, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}", colleague)
    assert status == 200 and "entry" not in found and found["total"] == 0
    assert len(world.records.reads) == reads
    # the patient itself reads its own
    patient = await world.token(PATIENT, "patient/*.read")
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}", patient)
    assert status == 200 and body == made


# -- search ------------------------------------------------------------------------------------
async def test_search_by_patient_code_date_and_paging(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = [await create(world, token, observation(PATIENT, code=code, when=when))
            for code, when in (("8867-4", "2024-01-05"), ("8867-4", "2024-03-05"), ("2339-0", "2024-03-06"))]
    await create(world, token, observation(OTHER_PATIENT))
    status, found, _ = await world.call("GET", f"{B}/Observation?subject=Patient/{PATIENT.id}&_count=2", token)
    assert status == 200 and found["type"] == "searchset" and found["total"] == 3
    assert [e["resource"]["id"] for e in found["entry"]] == [made[0]["id"], made[1]["id"]]
    links = {link["relation"]: link["url"] for link in found["link"]}
    nxt = urlsplit(links["next"])
    status, page, _ = await world.call("GET", f"{nxt.path}?{nxt.query}", token)
    assert [e["resource"]["id"] for e in page["entry"]] == [made[2]["id"]] and "next" not in {
        link["relation"] for link in page["link"]}
    status, found, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}&code=http://loinc.org|8867-4"
                                               "&date=ge2024-02", token)
    assert [e["resource"]["id"] for e in found["entry"]] == [made[1]["id"]]
    status, found, _ = await world.call("POST", f"{B}/Observation/_search", token,
                                        data=f"patient={PATIENT.id}&code=2339-0",
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and [e["resource"]["id"] for e in found["entry"]] == [made[2]["id"]]
    status, found, _ = await world.call("GET", f"{B}?_type=Observation,Patient&patient={PATIENT.id}", token)
    assert status == 200 and {e["resource"]["resourceType"] for e in found["entry"]} == {"Observation", "Patient"}
    status, found, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}&_lastUpdated=lt2000", token)
    assert status == 200 and found["total"] == 0
    status, found, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}&_lastUpdated=gt2000", token)
    assert found["total"] == 3
    status, found, _ = await world.call("GET", f"{B}/Observation?_id={made[0]['id']},{made[2]['id']}", token)
    assert status == 200 and {e["resource"]["id"] for e in found["entry"]} == {made[0]["id"], made[2]["id"]}


async def test_a_patient_token_searches_its_own_records_only(world):
    doctor = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    await create(world, doctor, observation(PATIENT))
    await create(world, doctor, observation(OTHER_PATIENT))
    token = await world.token(PATIENT, "patient/*.read")
    status, found, _ = await world.call("GET", f"{B}/Observation", token)
    assert status == 200 and [e["resource"]["subject"]["reference"] for e in found["entry"]] == [f"Patient/{PATIENT.id}"]
    status, found, _ = await world.call("GET", f"{B}/Observation?patient={OTHER_PATIENT.id}", token)
    assert status == 200 and "entry" not in found


async def test_search_refusals_and_ignored_parameters(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    status, body, _ = await world.call("GET", f"{B}/Observation", token)
    assert status == 400 and code_of(body) == "search_patient_required"
    status, body, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}&date=yesterday", token)
    assert status == 400 and code_of(body) == "invalid_search"
    status, body, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}&code:text=x", token)
    assert status == 400 and code_of(body) == "invalid_search"
    status, body, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}&category=vital-signs", token,
                                       headers={"Prefer": "handling=strict"})
    assert status == 400 and code_of(body) == "unsupported_search_parameter"
    status, body, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}&category=vital-signs", token)
    assert status == 200 and body["entry"][-1]["search"]["mode"] == "outcome"
    status, body, _ = await world.call("GET", f"{B}/Encounter?patient={PATIENT.id}&code=x", token,
                                       headers={"Prefer": "handling=strict"})
    assert status == 400 and code_of(body) == "unsupported_search_parameter"  # R4 Encounter has no code


# -- errors ---------------------------------------------------------------------------------------
async def test_every_refusal_is_an_operation_outcome_with_its_status(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    status, body, headers = await world.call("GET", f"{B}/Observation/{'ab' * 32}")
    assert status == 401 and code_of(body) == "token_required" and "Bearer" in headers["WWW-Authenticate"]
    status, body, headers = await world.call("GET", f"{B}/Observation/{'ab' * 32}", "not-a-token")
    assert status == 401 and code_of(body) == "invalid_token" and 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, body, _ = await world.call("POST", f"{B}/Observation/_search", token, data="patient=" + "x" * 20_000,
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413 and code_of(body) == "too_large"
    reader = await world.token(DOCTOR, "user/Observation.rs", "TREAT")
    status, body, _ = await world.call("POST", f"{B}/Observation", reader, body=observation(PATIENT))
    assert status == 403 and code_of(body) == "insufficient_scope"
    status, body, _ = await world.call("GET", f"{B}/Observation/{'ab' * 32}", token)
    assert status == 404 and code_of(body) == "not_found"
    status, body, _ = await world.call("GET", f"{B}/CarePlan/{'ab' * 32}", token)
    assert status == 404 and code_of(body) == "unsupported_type"
    status, body, _ = await world.call("GET", f"{B}/no/such/path/here", token)
    assert status == 404 and code_of(body) == "unsupported_interaction"
    status, body, _ = await world.call("PUT", f"{B}/AuditEvent/{'ab' * 32}", token, body={"resourceType": "AuditEvent"})
    assert status == 405 and code_of(body) == "unsupported_interaction"
    bad = {**observation(PATIENT), "status": "invented"}
    status, body, _ = await world.call("POST", f"{B}/Observation", token, body=bad)
    assert status == 422 and code_of(body) == "invalid_fhir"
    unlinked = {**observation(PATIENT), "subject": {"reference": "Patient/local-7"}}
    status, body, _ = await world.call("POST", f"{B}/Observation", token, body=unlinked)
    assert status == 422 and code_of(body) == "patient_unresolved"
    status, body, _ = await world.call("POST", f"{B}/Observation", token, body=observation(DOCTOR))
    assert status == 422 and code_of(body) == "unknown_patient"
    status, body, _ = await world.call("POST", f"{B}/Observation", token, data="{not json",
                                       headers={"Content-Type": "application/fhir+json"})
    assert status == 400 and code_of(body) == "malformed_json"
    status, body, _ = await world.call("POST", f"{B}/Observation", token, body=observation(PATIENT),
                                       headers={"Content-Type": "text/plain"})
    assert status == 415
    huge = {**observation(PATIENT), "note": [{"text": "x" * (1024 * 1024)}]}
    status, body, _ = await world.call("POST", f"{B}/Observation", token, body=huge)
    assert status == 413 and code_of(body) == "too_large"
    world.records.fail_store = "no_treatment_relationship"
    status, body, _ = await world.call("POST", f"{B}/Observation", token, body=observation(PATIENT))
    assert status == 403 and code_of(body) == "no_treatment_relationship"


async def test_an_erased_record_answers_410(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, token, observation(PATIENT))
    got = await world.tx(PATIENT, "record.erase", {"record": bytes.fromhex(made["id"])})
    assert got["result"] == "ok", got
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}", token)
    assert status == 410 and code_of(body) == "erased"
    status, found, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}", token)
    assert status == 200 and found["total"] == 0


# -- transaction and batch ------------------------------------------------------------------------
def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


async def test_a_transaction_bundle_stores_every_entry_with_references_resolved(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    encounter = {"resourceType": "Encounter", "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                 "subject": {"reference": "urn:uuid:0c4d6a2e-0000-4000-8000-000000000001"}, "period": {"start": "2024-03-05T09:00:00Z"}}
    obs = {**observation(PATIENT), "subject": {"reference": "urn:uuid:0c4d6a2e-0000-4000-8000-000000000001"}, "encounter": {"reference": "urn:uuid:0c4d6a2e-0000-4000-8000-000000000002"}}
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:medledger:identity", "value": PATIENT.id}]}
    sent = bundle("transaction",
                  {"fullUrl": "urn:uuid:0c4d6a2e-0000-4000-8000-000000000001", "resource": patient, "request": {"method": "POST", "url": "Patient"}},
                  {"fullUrl": "urn:uuid:0c4d6a2e-0000-4000-8000-000000000002", "resource": encounter, "request": {"method": "POST", "url": "Encounter"}},
                  {"fullUrl": "urn:uuid:0c4d6a2e-0000-4000-8000-000000000003", "resource": obs, "request": {"method": "POST", "url": "Observation"}})
    status, answer, _ = await world.call("POST", B, token, body=sent)
    assert status == 200 and answer["type"] == "transaction-response", answer
    locations = [e["response"]["location"] for e in answer["entry"]]
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 3
    assert locations[0] == f"Patient/{PATIENT.id}/_history/1"
    encounter_id = locations[1].split("/")[1]
    status, read, _ = await world.call("GET", f"{B}/{locations[2].rsplit('/_history', 1)[0]}", token)
    assert status == 200 and read["encounter"] == {"reference": f"Encounter/{encounter_id}"}
    assert read["subject"] == {"reference": f"Patient/{PATIENT.id}"}


async def test_a_batch_keeps_what_it_can_and_says_why_not_for_the_rest(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    good = {"resource": observation(PATIENT), "request": {"method": "POST", "url": "Observation"}}
    bad = {"resource": {**observation(PATIENT), "status": "invented"}, "request": {"method": "POST", "url": "Observation"}}
    status, answer, _ = await world.call("POST", B, token, body=bundle("batch", good, bad))
    assert status == 200 and [e["response"]["status"][:3] for e in answer["entry"]] == ["201", "422"]
    assert code_of(answer["entry"][1]["response"]["outcome"]) == "invalid_fhir"
    status, answer, _ = await world.call("POST", B, token, body=bundle("transaction", good, bad))
    assert status == 422 and code_of(answer) == "invalid_fhir"
    status, found, _ = await world.call("GET", f"{B}/Observation?patient={PATIENT.id}", token)
    assert found["total"] == 1  # the refused transaction stored nothing


async def test_put_entries_of_resources_on_the_ledger_and_a_patient_stored_again_are_new_versions(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, token, observation(PATIENT, value=60))
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:medledger:identity", "value": PATIENT.id}]}
    first = await create(world, token, patient)
    assert first["meta"]["versionId"] == "1"
    changed = {**made, "valueQuantity": {"value": 61, "unit": "/min"}}
    sent = bundle("transaction",
                  {"resource": changed, "request": {"method": "PUT", "url": f"Observation/{made['id']}"}},
                  {"resource": {**patient, "gender": "other"}, "request": {"method": "POST", "url": "Patient"}})
    status, answer, _ = await world.call("POST", B, token, body=sent)
    assert status == 200, answer
    assert [(e["response"]["status"], e["response"]["location"]) for e in answer["entry"]] == [
        ("200 OK", f"Observation/{made['id']}/_history/2"), ("200 OK", f"Patient/{PATIENT.id}/_history/2")]
    status, read, _ = await world.call("GET", f"{B}/Patient/{PATIENT.id}", token)
    assert read["gender"] == "other" and read["meta"]["versionId"] == "2"
    status, read, _ = await world.call("GET", f"{B}/Observation/{made['id']}", token)
    assert read["valueQuantity"]["value"] == 61 and read["meta"]["versionId"] == "2"


async def test_strangers_to_a_record_are_refused_and_learn_nothing(world):
    """Another patient's token reads a record by its id as if it did not exist; a researcher's
    token (research data leaves only as a de-identified export), an unknown token and no token
    are refused; none of them is given the content. (A practitioner of another institution is
    refused by the records service: tests/unit/records/test_node_delegate.py.)"""
    from node.app.types.identity import attest
    from node.core.crypto import Identity

    from tests.unit.fhir.routes_world import INSTITUTION
    from tests.helpers import CHAIN

    doctor = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, doctor, observation(PATIENT))
    other = await world.token(OTHER_PATIENT, "patient/*.read")
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}", other)
    missing, unknown, _ = await world.call("GET", f"{B}/Observation/{'0' * 64}", other)
    assert (status, code_of(body)) == (missing, code_of(unknown)) and status == 404, body
    status, body, _ = await world.call("GET", f"{B}/Provenance/{made['id']}", other)
    missing, unknown, _ = await world.call("GET", f"{B}/Provenance/{'0' * 64}", other)
    assert (status, code_of(body)) == (missing, code_of(unknown)) and status == 404, body

    researcher = Identity.from_seed(b"\x65" * 32)
    body_r = {"role": "researcher", "institution": INSTITUTION.public_key,
              "attestation": attest(INSTITUTION, chain_id=CHAIN, registrant=researcher.public_key, role="researcher")}
    assert (await world.tx(researcher, "identity.register", body_r))["result"] == "ok"
    research = await world.token(researcher, "system/Observation.rs", "HRESCH")
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}", research)
    assert status == 403 and "valueQuantity" not in body, body

    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}", "not-a-token")
    assert status == 401 and code_of(body) == "invalid_token"
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}")
    assert status == 401
