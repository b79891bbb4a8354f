"""Transaction and batch Bundles planned: shape and limits, ids assigned, every reference rewritten,
each entry's patient told, the transaction-response built."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from node.fhir.outcome import FhirError
from node.fhir.transaction import (
    IDENTITY_SYSTEM, PlannedEntry, parse_bundle, plan_bundle, response_bundle,
)
from node.records.fhir import validate_resource

P = "a1" * 32  # the ledger patient of the request
Q = "b2" * 32  # another ledger patient


def assign(index: int, rtype: str) -> str:
    return hashlib.sha256(f"record {index}".encode()).hexdigest()


def patient(pid: str = "local-7", identity: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1980-02-03"}
    if identity:
        out["identifier"] = [{"system": IDENTITY_SYSTEM, "value": identity}]
    return out


def observation(subject: str, *, encounter: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                           "subject": {"reference": subject}, "valueQuantity": {"value": 72, "unit": "/min"}}
    if encounter:
        out["encounter"] = {"reference": encounter}
    return out


def encounter(subject: str) -> dict[str, Any]:
    return {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": subject}, "participant": [{"individual": {"reference": "Practitioner/dr-1"}}]}


def post(full_url: str | None, resource: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def bundle(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def synthea_like() -> dict[str, Any]:
    """Synthea's shape: urn:uuid fullUrls, the Patient's own id, references by placeholder."""
    pat, enc, obs = "urn:uuid:1d604da9-9a81-4ba9-80c2-de3375d59b40", "urn:uuid:0f3c1e0a-5d9e-4c57-9b1d-2a0f0c5e7d11", \
        "urn:uuid:7c2b8e44-1b7a-4e0e-8f5f-3d2c1b0a9e88"
    report = {"resourceType": "DiagnosticReport", "status": "final",
              "code": {"coding": [{"system": "http://loinc.org", "code": "57698-3"}]},
              "subject": {"reference": pat}, "encounter": {"reference": enc}, "result": [{"reference": obs}]}
    return bundle(post(pat, patient("1d604da9-9a81-4ba9-80c2-de3375d59b40")), post(enc, encounter(pat)),
                  post(obs, observation(pat, encounter=enc)), post("urn:uuid:5a1b2c3d-0000-4000-8000-000000000001", report))


def by_type(plan_entries: tuple[PlannedEntry, ...]) -> dict[str, PlannedEntry]:
    return {e.resource_type: e for e in plan_entries}


def test_urn_uuid_references_become_the_assigned_ids_and_the_patient_its_ledger_id() -> None:
    plan = plan_bundle(synthea_like(), assign=assign, patient=P)
    found = by_type(plan.entries)
    assert [e.index for e in plan.entries] == [0, 1, 2, 3]
    assert found["Patient"].resource["id"] == P and found["Patient"].fhir_id == P
    assert found["Patient"].record_id == assign(0, "Patient")  # the record is filed under its own id
    enc, obs = found["Encounter"], found["Observation"]
    assert enc.fhir_id == enc.resource["id"] == assign(1, "Encounter")
    assert obs.resource["subject"] == {"reference": f"Patient/{P}"}
    assert obs.resource["encounter"] == {"reference": f"Encounter/{enc.fhir_id}"}
    assert found["DiagnosticReport"].resource["result"] == [{"reference": f"Observation/{obs.fhir_id}"}]
    assert enc.resource["participant"][0]["individual"] == {"reference": "Practitioner/dr-1"}  # unknown, not a patient: kept
    assert {e.patient for e in plan.entries} == {P}
    assert "urn:uuid" not in json.dumps([e.resource for e in plan.entries])
    for entry in plan.entries:
        validate_resource(entry.resource)


def test_the_request_bundle_is_not_modified() -> None:
    original = synthea_like()
    kept = copy.deepcopy(original)
    plan_bundle(original, assign=assign, patient=P)
    assert original == kept


def test_the_patient_is_read_from_its_ledger_identifier_when_the_request_names_none() -> None:
    plan = plan_bundle(bundle(post("urn:uuid:1", patient(identity=P)), post("urn:uuid:2", observation("urn:uuid:1"))),
                       assign=assign)
    assert [e.patient for e in plan.entries] == [P, P]
    assert plan.entries[1].resource["subject"]["reference"] == f"Patient/{P}"


def test_a_patient_identifier_naming_another_patient_is_refused() -> None:
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle(post("urn:uuid:1", patient(identity=Q))), assign=assign, patient=P)
    assert err.value.code == "patient_mismatch" and err.value.status == 422


def test_a_patient_nobody_names_is_refused() -> None:
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle(post("urn:uuid:1", patient()), post("urn:uuid:2", observation("urn:uuid:1"))), assign=assign)
    assert err.value.code == "patient_unresolved"


@pytest.mark.parametrize("reference", [
    "Patient/local-7", "Patient/mrn-9", "http://ehr.example.org/fhir/Patient/123",
    "Patient?identifier=http://hospital.example.org|MRN-1",
])
def test_a_patient_reference_the_bundle_does_not_hold_becomes_the_bundle_patient(reference: str) -> None:
    # the hospital's own ids are not ours: the ledger's link decides whose record it is
    plan = plan_bundle(bundle(post(None, observation(reference))), assign=assign, patient=P)
    [entry] = plan.entries
    assert entry.resource["subject"] == {"reference": f"Patient/{P}"} and entry.patient == P


def test_a_reference_by_the_patient_resource_id_finds_the_entry() -> None:
    plan = plan_bundle(bundle(post("urn:uuid:1", patient("local-7")), post(None, observation("Patient/local-7"))),
                       assign=assign, patient=P)
    assert plan.entries[1].resource["subject"]["reference"] == f"Patient/{P}"


def test_absolute_full_urls_and_put_entries_resolve_relative_references() -> None:
    enc = {"fullUrl": "http://ehr.example.org/fhir/Encounter/e1", "resource": {**encounter("Patient/p1"), "id": "e1"},
           "request": {"method": "PUT", "url": "Encounter/e1"}}
    pat = {"fullUrl": "http://ehr.example.org/fhir/Patient/p1", "resource": patient("p1"),
           "request": {"method": "PUT", "url": "Patient/p1"}}
    pat["resource"]["id"] = "p1"
    obs = post(None, observation("http://ehr.example.org/fhir/Patient/p1", encounter="Encounter/e1/_history/3"))
    plan = plan_bundle(bundle(pat, enc, obs), assign=assign, patient=P)
    found = by_type(plan.entries)
    assert found["Observation"].resource["subject"]["reference"] == f"Patient/{P}"
    assert found["Observation"].resource["encounter"]["reference"] == f"Encounter/{assign(1, 'Encounter')}"
    assert found["Encounter"].method == "PUT"


def test_references_deep_in_the_tree_are_rewritten() -> None:
    claim = {"resourceType": "Claim", "status": "active", "use": "claim",
             "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
             "patient": {"reference": "urn:uuid:1"}, "created": "2020-01-01",
             "provider": {"reference": "Organization/org-1"}, "priority": {"coding": [{"code": "normal"}]},
             "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Cigna"}}],
             "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "185349003"}]},
                       "encounter": [{"reference": "urn:uuid:2"}]}]}
    plan = plan_bundle(bundle(post("urn:uuid:1", patient()), post("urn:uuid:2", encounter("urn:uuid:1")),
                              post("urn:uuid:3", claim)), assign=assign, patient=P)
    out = by_type(plan.entries)["Claim"].resource
    assert out["item"][0]["encounter"] == [{"reference": f"Encounter/{assign(1, 'Encounter')}"}]
    assert out["patient"] == {"reference": f"Patient/{P}"}
    assert out["provider"] == {"reference": "Organization/org-1"}


def test_an_unresolvable_placeholder_is_refused_and_fails_the_transaction() -> None:
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle(post("urn:uuid:1", patient()), post(None, observation("urn:uuid:1", encounter="urn:uuid:9"))),
                    assign=assign, patient=P)
    assert err.value.code == "unresolved_reference" and "entry 1 (Observation)" in err.value.message


def test_a_batch_keeps_its_good_entries_and_answers_each_refusal() -> None:
    bad = observation("urn:uuid:1")
    bad["status"] = "done"
    plan = plan_bundle(bundle(post("urn:uuid:1", patient()), post(None, bad), post(None, observation("urn:uuid:1")),
                              kind="batch"), assign=assign, patient=P)
    assert [e.index for e in plan.entries] == [0, 2]
    assert [(f.index, f.error.code) for f in plan.failures] == [(1, "invalid_fhir")]
    answer = response_bundle(plan)
    assert answer["type"] == "batch-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created", "422", "201 Created"]
    assert answer["entry"][1]["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"] == "invalid_fhir"
    validate_resource(answer)


def test_the_transaction_response_names_each_location_and_version() -> None:
    plan = plan_bundle(synthea_like(), assign=assign, patient=P)
    answer = response_bundle(plan, versions={0: "4"}, updated=frozenset({0}), last_modified="2026-01-02T03:04:05.000Z")
    assert answer["type"] == "transaction-response"
    first, second = answer["entry"][0]["response"], answer["entry"][1]["response"]
    assert first == {"status": "200 OK", "location": f"Patient/{P}/_history/4", "etag": 'W/"4"',
                     "lastModified": "2026-01-02T03:04:05.000Z"}
    assert second["status"] == "201 Created"
    assert second["location"] == f"Encounter/{assign(1, 'Encounter')}/_history/1" and second["etag"] == 'W/"1"'
    validate_resource(answer)


def test_several_patients_each_entry_to_its_own() -> None:
    plan = plan_bundle(bundle(post("urn:uuid:1", patient("a", identity=P)), post("urn:uuid:2", patient("b", identity=Q)),
                              post(None, observation("urn:uuid:2")), post(None, observation("urn:uuid:1")),
                              post(None, observation(f"Patient/{Q}"))), assign=assign)
    assert [e.patient for e in plan.entries] == [P, Q, Q, P, Q]


def test_several_patients_and_an_entry_naming_none_is_refused() -> None:
    org = {"resourceType": "Organization", "name": "General"}
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle(post("urn:uuid:1", patient("a", identity=P)), post("urn:uuid:2", patient("b", identity=Q)),
                           post(None, org)), assign=assign)
    assert err.value.code == "patient_unresolved"
    with pytest.raises(FhirError) as err:  # nor can a local patient reference be taken for one of them
        plan_bundle(bundle(post("urn:uuid:1", patient("a", identity=P)), post("urn:uuid:2", patient("b", identity=Q)),
                           post(None, observation("Patient/local-3"))), assign=assign)
    assert err.value.code == "unresolved_reference"


def test_a_resource_naming_no_patient_goes_to_the_bundle_patient() -> None:
    plan = plan_bundle(bundle(post("urn:uuid:1", patient()), post(None, {"resourceType": "Organization", "name": "General"})),
                       assign=assign, patient=P)
    assert [e.patient for e in plan.entries] == [P, P]


def test_a_patient_link_to_an_unknown_patient_is_not_taken_for_the_patient_itself() -> None:
    linked = {**patient(), "link": [{"other": {"reference": "Patient/old-record-2"}, "type": "replaces"}]}
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle(post("urn:uuid:1", linked)), assign=assign, patient=P)
    assert err.value.code == "unresolved_reference"


@pytest.mark.parametrize(("doc", "needle"), [
    ({"resourceType": "Patient"}, "expected a Bundle"),
    ({"resourceType": "Bundle", "type": "collection", "entry": []}, "transaction or batch"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": {}}, "must be a list"),
    (bundle({"resource": patient()}), "request is required"),
    (bundle({"resource": patient(), "request": {"method": "POST"}}), "request.url is required"),
    (bundle({"resource": patient(), "request": {"method": "POST", "url": "Observation"}}), "does not name"),
    (bundle({"resource": patient(), "request": {"method": "POST", "url": "Patient/x"}}), "a POST's request.url"),
    (bundle({"resource": {**patient(), "id": "x"}, "request": {"method": "PUT", "url": "Patient/y"}}), "a PUT names"),
    (bundle({"resource": {"id": "x"}, "request": {"method": "POST", "url": "Patient"}}), "resourceType"),
    (bundle(post("urn:uuid:1", patient()), post("urn:uuid:1", patient())), "appears twice"),
    (bundle(post("Patient/1", patient())), "fullUrl must be"),
])
def test_malformed_bundles_are_refused_with_a_reason(doc: Any, needle: str) -> None:
    with pytest.raises(FhirError) as err:
        plan_bundle(doc, assign=assign, patient=P)
    assert err.value.code == "invalid_bundle" and err.value.status == 400 and needle in err.value.message


@pytest.mark.parametrize("method", ["DELETE", "GET", "PATCH"])
def test_other_methods_are_not_supported(method: str) -> None:
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle({"resource": patient(), "request": {"method": method, "url": "Patient/x"}}), assign=assign,
                    patient=P)
    assert err.value.status == 405 and err.value.issue == "not-supported"


def test_limits_are_named_as_limits() -> None:
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle(*[post(None, observation("Patient/x")) for _ in range(4)]), assign=assign, patient=P,
                    max_entries=3)
    assert (err.value.code, err.value.status) == ("too_large", 413) and "limit of 3 entries" in err.value.message
    big = observation("Patient/x")
    big["code"]["coding"][0]["display"] = "x" * 5000
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle(post(None, big)), assign=assign, patient=P, max_resource_bytes=4096)
    assert err.value.code == "too_large" and "limit of 4096 bytes" in err.value.message
    with pytest.raises(FhirError) as err:
        parse_bundle(b"{" + b" " * 100 + b"}", max_bytes=50)
    assert err.value.code == "too_large"


def test_parse_bundle_refuses_what_is_not_json() -> None:
    assert parse_bundle(json.dumps(synthea_like()).encode())["type"] == "transaction"
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(FhirError) as err:
            parse_bundle(body)
        assert err.value.code == "invalid_bundle"


def test_an_invalid_resource_fails_the_transaction_as_invalid_fhir() -> None:
    bad = observation("urn:uuid:1")
    del bad["code"]
    with pytest.raises(FhirError) as err:
        plan_bundle(bundle(post("urn:uuid:1", patient()), post(None, bad)), assign=assign, patient=P)
    assert (err.value.code, err.value.status) == ("invalid_fhir", 422) and "code" in err.value.message


def test_assign_must_give_fhir_ids() -> None:
    with pytest.raises(ValueError, match="not a FHIR id"):
        plan_bundle(bundle(post(None, observation("Patient/x"))), assign=lambda i, t: "bad id!", patient=P)
