"""The ledger's link decides whose record it is (issue 18, points 5 and 6): releases made from
records whatever ids and references the submitting system used, required elements kept, every
released resource valid R4, what is withheld reported per type with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from node.records.fhir import MAX_RESOURCE_BYTES
from node.research.extract import assemble_extract
from node.research.pseudonyms import KeyedPseudonyms
from node.research.release import HeldRecord, deidentify_for_study
from node.research.safe_harbor import TYPE_RULES, Deidentifier
from tests.unit.research.support import assert_valid_r4

KEY = b"s" * 16 + b"study-link"
STUDY = "study-link"
YEAR = 2024
PEOPLE = [f"{i:02x}" * 32 for i in range(1, 6)]  # ledger patient ids
PSEUDONYMS = KeyedPseudonyms(KEY)


def patient(pid: str | None, *, gender: str = "female", birth: str = "1980-05-06") -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "gender": gender, "birthDate": birth,
                           "name": [{"family": "Hollingsworth"}], "address": [{"state": "MA", "postalCode": "02139"}]}
    if pid is not None:
        out["id"] = pid
    return out


def observation(oid: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": subject}, "valueQuantity": {"value": 70, "unit": "/min"}, **extra}


def release(records: list[HeldRecord], custodian: str = "h1") -> Any:
    return deidentify_for_study(records, study=STUDY, study_key=KEY, custodian=custodian, reference_year=YEAR)


def extract_of(*releases: Any, k: int = 1) -> Any:
    eligible = {PSEUDONYMS.person(p) for p in PEOPLE}
    return assemble_extract(releases, study=STUDY, k=k, reference_year=YEAR, eligible=eligible)


def ndjson(extract: Any, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in extract.files.get(name, b"").splitlines()]


@pytest.mark.parametrize("reference", ["urn:uuid:6f1c2d3e-1111-4222-8333-944455556666", "Patient/mrn-00417",
                                       "http://ehr.example.org/fhir/Patient/77", "Patient/some-other-id"])
def test_a_patient_without_id_and_observations_by_any_reference_are_released_under_the_ledger_patient(reference: str) -> None:
    person = PEOPLE[0]
    rel = release([HeldRecord(person, patient(None)), HeldRecord(person, observation("o1", reference)),
                   HeldRecord(person, observation("o2", reference))])
    assert rel.withheld == {}
    extract = extract_of(rel)
    assert extract.refusal is None
    [pat] = ndjson(extract, "Patient.ndjson")
    assert pat["id"] == PSEUDONYMS.person(person)
    observations = ndjson(extract, "Observation.ndjson")
    assert len(observations) == 2
    assert {o["subject"]["reference"] for o in observations} == {f"Patient/{PSEUDONYMS.person(person)}"}
    assert extract.report["patients_included"] == 1 and extract.report["resources_withheld"] == {}


def test_observations_at_one_institution_and_the_patient_at_another_are_released_together() -> None:
    person = PEOPLE[1]
    at_a = release([HeldRecord(person, patient("a-local-1"))], custodian="hospital-a")
    at_b = release([HeldRecord(person, observation("b-obs-1", "Patient/b-local-9")),
                    HeldRecord(person, observation("b-obs-2", "Patient/b-local-9"))], custodian="hospital-b")
    extract = extract_of(at_a, at_b)
    assert extract.refusal is None and extract.report["patients_included"] == 1
    assert len(ndjson(extract, "Observation.ndjson")) == 2
    custodians = {c["custodian"]: c for c in extract.report["custodians"]}
    assert custodians["hospital-b"]["patients_included"] == 1


def test_the_record_id_stands_for_a_resource_without_an_id() -> None:
    rel = release([HeldRecord(PEOPLE[0], {k: v for k, v in observation("x", "Patient/p").items() if k != "id"},
                              record_id="ab" * 32)])
    [obs] = rel.resources
    assert obs["id"] == KeyedPseudonyms(KEY, namespace="h1").pseudonym("Observation", "ab" * 32)


def test_a_missing_patient_link_is_added_from_the_ledger() -> None:
    # An Immunization whose patient was only a placeholder nobody can resolve: the ledger knows whose it is.
    imm = {"resourceType": "Immunization", "id": "i1", "status": "completed", "occurrenceDateTime": "2020-10-01",
           "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}}
    [out] = release([HeldRecord(PEOPLE[2], imm)]).resources
    assert out["patient"] == {"reference": f"Patient/{PSEUDONYMS.person(PEOPLE[2])}"}
    assert_valid_r4(out)


def test_urn_uuid_references_between_records_keep_pointing_at_each_other() -> None:
    person, enc_id = PEOPLE[0], "0f3c1e0a-5d9e-4c57-9b1d-2a0f0c5e7d11"
    encounter = {"resourceType": "Encounter", "id": enc_id, "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                 "subject": {"reference": "urn:uuid:p"}}
    obs = observation("o1", "urn:uuid:p", encounter={"reference": f"urn:uuid:{enc_id}"})
    released = {r["resourceType"]: r for r in release([HeldRecord(person, encounter), HeldRecord(person, obs)]).resources}
    assert released["Observation"]["encounter"] == {"reference": f"Encounter/{released['Encounter']['id']}"}


def careplan(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "order",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Care plan for Ann</div>"},
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "736285004"}]}],
            "subject": {"reference": "urn:uuid:p"}, "period": {"start": "2019-04-05T10:00:00-04:00"},
            "careTeam": [{"reference": "urn:uuid:team"}],
            "activity": [{"detail": {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "229065009"}]},
                                     "status": "in-progress", "location": {"display": "Main St clinic"}}}], **extra}


def test_a_careplan_keeps_its_required_intent_and_validates() -> None:
    [out] = release([HeldRecord(PEOPLE[0], careplan())]).resources
    assert out["intent"] == "order" and out["status"] == "active"
    assert out["activity"] == [{"detail": {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "229065009"}]},
                                           "status": "in-progress"}}]
    assert "careTeam" not in out and "text" not in out
    assert_valid_r4(out)


def test_what_is_withheld_is_reported_per_type_with_its_reason() -> None:
    person = PEOPLE[0]
    rel = release([HeldRecord(person, careplan(intent="whenever")), HeldRecord(person, careplan(id="cp2", intent="x")),
                   HeldRecord(person, observation("o1", "Patient/p", code={"text": "free text only"})),
                   HeldRecord(person, {"resourceType": "NotAType", "id": "n"})])
    assert rel.withheld == {
        "CarePlan": {"CarePlan.intent missing after de-identification": 2},
        "NotAType": {"not a FHIR R4 resource type": 1},
        "Observation": {"Observation.code missing after de-identification": 1},
    }


def test_a_resource_over_the_size_limit_is_withheld_as_too_large_not_as_invalid() -> None:
    big = observation("o1", "Patient/p", note=[{"text": "x" * (MAX_RESOURCE_BYTES + 10)}])
    rel = release([HeldRecord(PEOPLE[0], big)])
    [(reason, count)] = rel.withheld["Observation"].items()
    assert reason.startswith("too_large: ") and f"limit of {MAX_RESOURCE_BYTES} bytes" in reason and count == 1


# one minimal source resource of each released type, with what de-identification must remove
MINIMAL: dict[str, dict[str, Any]] = {
    "Observation": observation("x", "Patient/p"),
    "Condition": {"resourceType": "Condition", "id": "x", "subject": {"reference": "Patient/p"},
                  "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}], "text": "Ann's diabetes"}},
    "Encounter": {"resourceType": "Encounter", "id": "x", "status": "finished", "subject": {"reference": "Patient/p"},
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
    "DiagnosticReport": {"resourceType": "DiagnosticReport", "id": "x", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "57698-3"}]},
                         "presentedForm": [{"contentType": "text/plain", "data": "QW5uIGlzIHdlbGw="}]},
    "MedicationRequest": {"resourceType": "MedicationRequest", "id": "x", "status": "active", "intent": "order",
                          "subject": {"reference": "Patient/p"},
                          "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                    "code": "314076"}]}},
    "Procedure": {"resourceType": "Procedure", "id": "x", "status": "completed", "subject": {"reference": "Patient/p"}},
    "AllergyIntolerance": {"resourceType": "AllergyIntolerance", "id": "x", "patient": {"reference": "Patient/p"}},
    "Immunization": {"resourceType": "Immunization", "id": "x", "status": "completed", "patient": {"reference": "Patient/p"},
                     "occurrenceDateTime": "2020-01-02", "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx",
                                                                                      "code": "140"}]}},
    "CarePlan": careplan(),
    "MedicationAdministration": {"resourceType": "MedicationAdministration", "id": "x", "status": "completed",
                                 "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2021-03-04T05:06:07Z",
                                 "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                           "code": "1191"}]}},
    "MedicationDispense": {"resourceType": "MedicationDispense", "id": "x", "status": "completed",
                           "subject": {"reference": "Patient/p"}, "whenHandedOver": "2021-03-04T05:06:07Z",
                           "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                     "code": "1191"}]}},
}


@pytest.mark.parametrize("rtype", sorted(TYPE_RULES))
def test_every_released_type_keeps_what_r4_requires_and_validates(rtype: str) -> None:
    source = MINIMAL[rtype]
    assert_valid_r4(source)  # the source is valid R4: whatever R4 requires, it has
    out = Deidentifier(KeyedPseudonyms(KEY, namespace="h1"), reference_year=YEAR).resource(
        source, owner=PSEUDONYMS.person(PEOPLE[0]))
    assert_valid_r4(out)
    assert "Ann" not in json.dumps(out)


def test_every_type_has_a_minimal_example() -> None:
    assert set(MINIMAL) == set(TYPE_RULES)
