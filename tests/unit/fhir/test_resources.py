"""A ledger record as the FHIR resource served: its logical id, version and time from the ledger,
the patient as the ledger links it (whatever the writer wrote), and the latest version of each."""

from __future__ import annotations

from fhir.resources.R4B import get_fhir_model_class

from node.app.fhir_export import SYS_IDENTITY
from node.fhir.resources import (
    RecordView,
    etag,
    latest_versions,
    link_patient,
    minimal_patient,
    to_fhir,
    version_location,
)

P = "ab" * 32
R1, R2, R3 = "11" * 32, "22" * 32, "33" * 32
T = 1_709_632_800_000  # 2024-03-05T10:00:00Z


def meta(rid: str, rtype: str = "Observation", **extra: object) -> dict:
    return {"id": rid, "patient": P, "resource_type": rtype, "custodian": "cc" * 32, "author": "dd" * 32,
            "tx": "ee" * 32, "time_ms": T, "erased": False, "hash": "ff" * 32, **extra}


def valid(resource: dict) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_a_record_is_served_under_its_logical_id_with_the_ledger_version_and_time() -> None:
    written = {"resourceType": "Observation", "id": "hospital-7", "status": "final", "code": {"text": "Heart rate"},
               "meta": {"versionId": "9", "lastUpdated": "1999-01-01T00:00:00Z", "profile": ["http://x/p"]},
               "subject": {"reference": "Patient/local-42", "display": "Ann"}}
    served = to_fhir(written, meta(R1))
    assert served["id"] == R1
    assert served["meta"] == {"profile": ["http://x/p"], "versionId": "1", "lastUpdated": "2024-03-05T10:00:00.000Z"}
    assert served["subject"] == {"reference": f"Patient/{P}", "display": "Ann"}
    assert written["id"] == "hospital-7" and written["subject"]["reference"] == "Patient/local-42"  # not changed in place
    valid(served)
    later = to_fhir(written, meta(R2, version_of=R1, version=3))
    assert later["id"] == R1 and later["meta"]["versionId"] == "3"
    assert version_location("Observation", R1, 3) == f"/fhir/R4/Observation/{R1}/_history/3" and etag(3) == 'W/"3"'


def test_the_ledgers_patient_replaces_any_other_and_references_written_like_it() -> None:
    written = {"resourceType": "Immunization", "status": "completed", "occurrenceDateTime": "2024-01-01",
               "vaccineCode": {"text": "flu"}, "patient": {"reference": "urn:uuid:5e1f"},
               "performer": [{"actor": {"reference": "urn:uuid:5e1f"}}, {"actor": {"reference": "Practitioner/9"}}]}
    served = link_patient(written, P)
    assert served["patient"] == {"reference": f"Patient/{P}"}
    assert served["performer"][0]["actor"]["reference"] == f"Patient/{P}"
    assert served["performer"][1]["actor"]["reference"] == "Practitioner/9"
    # a resource that names no patient gets the ledger's
    assert link_patient({"resourceType": "Condition", "code": {"text": "x"}}, P)["subject"] == {"reference": f"Patient/{P}"}


def test_a_patient_is_served_under_its_ledger_id_with_that_id_as_identifier() -> None:
    written = {"resourceType": "Patient", "id": "local", "gender": "female",
               "identifier": [{"system": "urn:hospital", "value": "7"}, {"system": SYS_IDENTITY, "value": "stale"}]}
    served = to_fhir(written, meta(R1, "Patient"))
    assert served["id"] == P
    assert served["identifier"] == [{"system": SYS_IDENTITY, "value": P}, {"system": "urn:hospital", "value": "7"}]
    valid(served)
    bare = minimal_patient(P)
    assert bare["id"] == P and bare["identifier"] == [{"system": SYS_IDENTITY, "value": P}]
    valid(bare)


def test_of_each_logical_record_only_its_latest_version_in_first_registration_order() -> None:
    metas = [meta(R1), meta(R2, "Condition"), meta(R3, version_of=R1, version=2)]
    assert [m["id"] for m in latest_versions(metas)] == [R3, R2]
    view = RecordView.of(metas[2])
    assert (view.logical_id, view.version, view.fhir_id) == (R1, 2, R1)
    assert RecordView.of(meta(R1, "Patient")).fhir_id == P


def test_an_order_the_ledger_completed_is_served_completed() -> None:
    written = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
               "medicationCodeableConcept": {"text": "metformin"}, "subject": {"reference": "Patient/example"}}
    assert to_fhir(written, meta(R1, "MedicationRequest"))["status"] == "active"
    active = meta(R1, "MedicationRequest", workflow={"status": "active"})
    assert to_fhir(written, active)["status"] == "active"
    done = to_fhir(written, meta(R1, "MedicationRequest", workflow={"status": "completed", "completed_by": R2}))
    assert done["status"] == "completed" and written["status"] == "active"
    valid(done)
    claim = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": f"Patient/{P}"}}
    assert to_fhir(claim, meta(R3, workflow={"status": "completed"}))["status"] == "final"  # only requests
