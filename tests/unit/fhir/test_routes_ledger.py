"""The CapabilityStatement against what the server does (a test walks it), and the resources served
from the ledger itself: Provenance of each record, the AuditEvent trail, and Consent read,
search, create and revoke through the patient's own signed transactions."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.app.fhir_export import SYS_TX
from node.fhir.consent_map import grant_body
from node.fhir.consent_api import TX_HEADER
from node.fhir.catalog import TYPES

from tests.unit.fhir.routes_world import COLLEAGUE, DOCTOR, OTHER_PATIENT, PATIENT, World, observation, running
from tests.unit.fhir.test_routes import B, DOCTOR_SCOPE, code_of, create

UNSUPPORTED = {"unsupported_type", "unsupported_interaction", "unsupported_search_parameter"}
HEX = "ab" * 32


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    async with running(tmp_path, monkeypatch) as w:
        yield w


# -- the CapabilityStatement ------------------------------------------------------------------------
def example(param: dict[str, Any], rtype: str) -> str:
    """A well-formed value of a search parameter."""
    name = param["name"]
    if name == "target":
        return f"Observation/{HEX}"
    if name in ("patient", "subject"):
        return f"Patient/{PATIENT.id}"
    if name == "agent":
        return DOCTOR.id
    if name == "_type":
        return "Observation,Condition"
    return {"token": "http://loinc.org|8867-4", "date": "ge2024-01-01", "number": "5",
            "reference": f"Patient/{PATIENT.id}"}[param["type"]] if name != "_id" else HEX


def answered(status: int, body: dict[str, Any]) -> bool:
    """An interaction the server supports: anything but an 'unsupported' refusal (a 404 only for a missing id)."""
    if status < 400:
        return True
    code = code_of(body)
    return code not in UNSUPPORTED and (status != 404 or code == "not_found") and status != 405


async def test_the_capability_statement_lists_exactly_what_the_server_does(world):
    status, cap, _ = await world.call("GET", f"{B}/metadata")
    assert status == 200 and cap["fhirVersion"] == "4.0.1" and cap["format"][0] == "json"
    [rest] = cap["rest"]
    assert rest["mode"] == "server"
    [oauth] = rest["security"]["extension"]
    assert oauth["extension"][0]["valueUri"].endswith("/fhir/R4/auth/token")
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "search-system"}
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    strict = {"Prefer": "handling=strict"}
    listed = {r["type"] for r in rest["resource"]}
    assert set(TYPES) <= listed and {"AuditEvent", "Consent", "Provenance"} <= listed
    for resource in rest["resource"]:
        rtype = resource["type"]
        codes = {i["code"] for i in resource["interaction"]}
        params = resource.get("searchParam", [])
        requests: list[tuple[str, str, Any]] = []
        if "read" in codes:
            requests.append(("GET", f"{B}/{rtype}/{HEX}", None))
        if "vread" in codes:
            requests.append(("GET", f"{B}/{rtype}/{HEX}/_history/1", None))
        if "create" in codes:
            requests.append(("POST", f"{B}/{rtype}", {"resourceType": rtype}))
        if "update" in codes:
            requests.append(("PUT", f"{B}/{rtype}/{HEX}", {"resourceType": rtype}))
        if "delete" in codes:
            requests.append(("DELETE", f"{B}/{rtype}/{HEX}", None))
        for method, path, body in requests:
            status, answer, _ = await world.call(method, path, token, body=body)
            assert answered(status, answer), (method, path, status, answer)
        names = {p["name"] for p in params}
        # a search names its patient (or, for Patient, the ids)
        base = [("patient", f"Patient/{PATIENT.id}")] if "patient" in names else [("_id", PATIENT.id)] \
            if rtype == "Patient" else []
        for param in params:
            query = "&".join(f"{k}={v}" for k, v in [*[b for b in base if b[0] != param["name"]],
                                                      (param["name"], example(param, rtype))])
            status, answer, _ = await world.call("GET", f"{B}/{rtype}?{query}", token, headers=strict)
            assert status == 200 and answer["type"] == "searchset", (rtype, query, answer)
        # what is not listed is refused as unsupported
        query = "&".join(f"{k}={v}" for k, v in [*base, ("flavour", "sweet")])
        status, answer, _ = await world.call("GET", f"{B}/{rtype}?{query}", token, headers=strict)
        if "search-type" in codes:
            assert status == 400 and code_of(answer) == "unsupported_search_parameter", (rtype, answer)
        else:
            assert status == 405 and code_of(answer) == "unsupported_interaction"
        for method, interaction in (("DELETE", "delete"), ("PUT", "update"), ("POST", "create")):
            if interaction not in codes:
                path = f"{B}/{rtype}" if method == "POST" else f"{B}/{rtype}/{HEX}"
                status, answer, _ = await world.call(method, path, token, body=None if method == "DELETE" else
                                                     {"resourceType": rtype})
                assert status in (404, 405) and code_of(answer) == "unsupported_interaction", (method, rtype, answer)
    for param in rest["searchParam"]:
        query = "&".join(f"{k}={v}" for k, v in [("_type", "Observation"), ("patient", f"Patient/{PATIENT.id}"),
                                                   (param["name"], example(param, ""))])
        status, answer, _ = await world.call("GET", f"{B}?{query}", token, headers=strict)
        assert status == 200, (query, answer)
    status, answer, _ = await world.call("GET", f"{B}?_type=Observation&patient={PATIENT.id}&code=x", token, headers=strict)
    assert status == 400 and code_of(answer) == "unsupported_search_parameter"
    for rtype in ("CarePlan", "Medication", "Group"):
        status, answer, _ = await world.call("GET", f"{B}/{rtype}?patient={PATIENT.id}", token)
        assert status == 404 and code_of(answer) == "unsupported_type"


# -- Provenance --------------------------------------------------------------------------------------
async def test_each_record_version_has_its_provenance_from_the_ledger(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, token, observation(PATIENT))
    status, prov, _ = await world.call("GET", f"{B}/Provenance/{made['id']}", token)
    assert status == 200
    assert prov["target"] == [{"reference": f"Observation/{made['id']}/_history/1"}]
    assert prov["recorded"] == made["meta"]["lastUpdated"]
    assert [a["who"]["identifier"]["value"] for a in prov["agent"]] == [DOCTOR.id, world.node.identity.id]
    from node.app import queries
    tx = queries.record(world.node.state_reader(), bytes.fromhex(made["id"]))["tx"]  # type: ignore[index]
    assert prov["entity"][0]["what"]["identifier"] == {"system": SYS_TX, "value": tx}
    status, found, _ = await world.call("GET", f"{B}/Provenance?target=Observation/{made['id']}", token)
    assert status == 200 and [e["resource"]["id"] for e in found["entry"]] == [made["id"]]
    status, found, _ = await world.call("GET", f"{B}/Provenance?patient={PATIENT.id}", token)
    assert [e["resource"]["id"] for e in found["entry"]] == [made["id"]]
    colleague = await world.token(COLLEAGUE, DOCTOR_SCOPE, "TREAT")
    status, body, _ = await world.call("GET", f"{B}/Provenance/{made['id']}", colleague)
    assert status == 403 and code_of(body) == "no_consent"
    status, found, _ = await world.call("GET", f"{B}/Provenance?patient={PATIENT.id}", colleague)
    assert status == 200 and found["total"] == 0


# -- AuditEvent --------------------------------------------------------------------------------------
async def test_a_patient_searches_its_audit_trail_each_event_naming_its_transaction(world):
    doctor = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, doctor, observation(PATIENT))
    await create(world, doctor, observation(OTHER_PATIENT))
    token = await world.token(PATIENT, "patient/*.read")
    status, found, _ = await world.call("GET", f"{B}/AuditEvent", token)
    assert status == 200 and found["total"] == 1
    event = found["entry"][0]["resource"]
    assert event["subtype"][-1]["code"] == "record.added"
    entities = {e["what"]["identifier"]["system"]: e["what"]["identifier"]["value"] for e in event["entity"]}
    from node.app import queries
    assert entities[SYS_TX] == queries.record(world.node.state_reader(), bytes.fromhex(made["id"]))["tx"]  # type: ignore[index]
    status, found, _ = await world.call("GET", f"{B}/AuditEvent?date=lt2000-01-01", token)
    assert status == 200 and found["total"] == 0
    status, found, _ = await world.call("GET", f"{B}/AuditEvent?agent=Practitioner/{DOCTOR.id}", token)
    assert found["total"] == 1
    status, found, _ = await world.call("GET", f"{B}/AuditEvent?agent={COLLEAGUE.id}", token)
    assert found["total"] == 0
    status, found, _ = await world.call("GET", f"{B}/AuditEvent?patient={OTHER_PATIENT.id}", token)
    assert found["total"] == 0  # another patient's trail is not this token's


async def test_staff_search_their_institutions_disclosures(world):
    doctor = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, doctor, observation(PATIENT))
    status, found, _ = await world.call("GET", f"{B}/AuditEvent?patient={PATIENT.id}", doctor)
    assert status == 200 and found["total"] == 0  # nothing of the patient's was disclosed yet
    # the patient consents and the colleague's access is granted on the ledger: a disclosure by the custodian
    consent = consent_for(COLLEAGUE.id)
    assert (await world.tx(PATIENT, "consent.grant", grant_body(consent)))["result"] == "ok"
    access = await world.tx(COLLEAGUE, "access.request", {"record": bytes.fromhex(made["id"]), "purpose": "treatment"})
    assert access["result"] == "ok", access
    status, found, _ = await world.call("GET", f"{B}/AuditEvent?patient={PATIENT.id}&agent={COLLEAGUE.id}", doctor)
    assert status == 200 and found["total"] == 1
    event = found["entry"][0]["resource"]
    assert event["subtype"][-1]["code"] == "access.granted"
    assert any(e["what"]["identifier"] == {"system": SYS_TX, "value": access["hash"]} for e in event["entity"])
    status, found, _ = await world.call("GET", f"{B}/AuditEvent?patient={OTHER_PATIENT.id}", doctor)
    assert found["total"] == 0
    patient = await world.token(PATIENT, "patient/*.read")  # the patient sees the same access in its own trail
    status, found, _ = await world.call("GET", f"{B}/AuditEvent?agent={COLLEAGUE.id}", patient)
    assert [e["resource"]["subtype"][-1]["code"] for e in found["entry"]] == ["consent.granted", "access.granted"]
    no_scope = await world.token(DOCTOR, "user/Observation.rs", "TREAT")
    status, body, _ = await world.call("GET", f"{B}/AuditEvent", no_scope)
    assert status == 403 and code_of(body) == "insufficient_scope"


# -- Consent -------------------------------------------------------------------------------------------
def consent_for(grantee: str, *, until: str = "2030-01-01T00:00:00.000Z") -> dict[str, Any]:
    return {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{PATIENT.id}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit", "period": {"end": until},
                      "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                      "code": "IRCP"}]},
                                 "reference": {"identifier": {"system": "urn:medledger:identity", "value": grantee},
                                               "type": "Practitioner"}}],
                      "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
                      "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]},
    }


def header(tx: Any) -> dict[str, str]:
    return {TX_HEADER: base64.b64encode(tx.encoded).decode()}


async def test_a_patient_grants_and_revokes_consent_through_fhir_with_its_own_signature(world):
    doctor = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    made = await create(world, doctor, observation(PATIENT))
    colleague = await world.token(COLLEAGUE, DOCTOR_SCOPE, "TREAT")
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}", colleague)
    assert status == 403 and code_of(body) == "no_consent"
    patient = await world.token(PATIENT, "patient/*.read patient/Consent.cruds")
    consent = consent_for(COLLEAGUE.id)
    # the transaction must be exactly the Consent's consent.grant, signed by the token's patient
    wrong = world.sign(PATIENT, "consent.grant", {**grant_body(consent), "resource_types": ["*"]})
    status, body, _ = await world.call("POST", f"{B}/Consent", patient, body=consent, headers=header(wrong))
    assert status == 422 and code_of(body) == "transaction_mismatch"
    stranger = world.sign(OTHER_PATIENT, "consent.grant", grant_body(consent))
    status, body, _ = await world.call("POST", f"{B}/Consent", patient, body=consent, headers=header(stranger))
    assert status == 403 and code_of(body) == "signer_mismatch"
    status, body, _ = await world.call("POST", f"{B}/Consent", patient, body=consent)
    assert status == 400 and code_of(body) == "transaction_required"
    status, body, _ = await world.call("POST", f"{B}/Consent", doctor, body=consent, headers=header(wrong))
    assert status == 403 and code_of(body) == "patient_only"  # the patient grants its consents
    tx = world.sign(PATIENT, "consent.grant", grant_body(consent))
    status, made_consent, headers = await world.call("POST", f"{B}/Consent", patient, body=consent, headers=header(tx))
    assert status == 201, made_consent
    assert made_consent["id"] == tx.hash_hex and headers["Location"].endswith(f"/Consent/{tx.hash_hex}")
    assert made_consent["status"] == "active" and made_consent["patient"] == {"reference": f"Patient/{PATIENT.id}"}
    held = grant_body(made_consent)  # what the ledger holds maps back to the same grant, its start the block's time
    assert {k: v for k, v in held.items() if k != "valid_from"} == grant_body(consent) and held["valid_from"] > 0
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}", colleague)
    assert status == 200 and body == made
    # read and search
    status, read, _ = await world.call("GET", f"{B}/Consent/{tx.hash_hex}", patient)
    assert status == 200 and read == made_consent
    status, found, _ = await world.call("GET", f"{B}/Consent", patient)
    assert [e["resource"]["id"] for e in found["entry"]] == [tx.hash_hex]
    status, found, _ = await world.call("GET", f"{B}/Consent?patient={PATIENT.id}", colleague)
    assert [e["resource"]["id"] for e in found["entry"]] == [tx.hash_hex]  # the grantee sees it
    status, found, _ = await world.call("GET", f"{B}/Consent?patient={PATIENT.id}", doctor)
    assert found["total"] == 0  # others do not
    # revoke
    revoke = world.sign(PATIENT, "consent.revoke", {"consent": tx.hash})
    status, body, _ = await world.call("DELETE", f"{B}/Consent/{tx.hash_hex}", patient, headers=header(revoke))
    assert status == 200 and body["status"] == "inactive", body
    status, body, _ = await world.call("GET", f"{B}/Observation/{made['id']}", colleague)
    assert status == 403 and code_of(body) == "consent_revoked"
    again = world.sign(PATIENT, "consent.revoke", {"consent": tx.hash})
    status, body, _ = await world.call("DELETE", f"{B}/Consent/{tx.hash_hex}", patient, headers=header(again))
    assert status == 422 and code_of(body) == "already_revoked"


async def test_a_consent_the_ledger_refuses_is_refused_with_its_code(world):
    patient = await world.token(PATIENT, "patient/Consent.cruds")
    consent = consent_for(OTHER_PATIENT.id)  # not a practitioner
    tx = world.sign(PATIENT, "consent.grant", grant_body(consent))
    status, body, _ = await world.call("POST", f"{B}/Consent", patient, body=consent, headers=header(tx))
    assert status == 422 and code_of(body) == "unknown_grantee"
    bad = {**consent, "provision": {**consent["provision"], "purpose": []}}
    status, body, _ = await world.call("POST", f"{B}/Consent", patient, body=bad, headers=header(tx))
    assert status == 422 and code_of(body) == "invalid_consent"
    status, body, _ = await world.call("POST", f"{B}/Consent", patient, body=consent,
                                       headers={TX_HEADER: "not base64!"})
    assert status == 400 and code_of(body) == "malformed_transaction"
