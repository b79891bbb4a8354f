"""The writer's check that a FHIR resource is about the patient it is put for (issue 15, 19)."""

from __future__ import annotations

import pytest

from node.records.subject import SYSTEM, SubjectMismatch, check_subject

P = "ab" * 32
OTHER = "cd" * 32


def obs(subject: dict | None) -> dict:
    doc = {"resourceType": "Observation", "status": "final", "code": {"text": "HR"}}
    if subject is not None:
        doc["subject"] = subject
    return doc


def bundle(*resources: dict, urls: list[str] | None = None) -> dict:
    entries = [{"resource": r} for r in resources]
    for entry, url in zip(entries, urls or [], strict=False):
        entry["fullUrl"] = url
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


@pytest.mark.parametrize("subject", [
    {"reference": f"Patient/{P}"},
    {"reference": f"Patient/{P.upper()}"},
    {"reference": f"https://fhir.example.org/r4/Patient/{P}/_history/2"},
    {"identifier": {"system": SYSTEM, "value": P}},
    None,  # a resource that names no patient is the named patient's
])
def test_the_forms_that_name_the_patient_are_accepted(subject):
    check_subject(obs(subject), P)
    check_subject(bundle(obs(subject), obs(subject)), P)


def test_a_bundle_holding_another_patients_record_is_refused():
    with pytest.raises(SubjectMismatch, match=r"entry\[1\].*another patient's record"):
        check_subject(bundle(obs({"reference": f"Patient/{P}"}), obs({"reference": f"Patient/{OTHER}"})), P)
    with pytest.raises(SubjectMismatch, match="another patient"):
        check_subject(obs({"identifier": {"system": SYSTEM, "value": OTHER}}), P)
    # a bundled Patient resource of someone else, and references to it by fullUrl
    them = {"resourceType": "Patient", "id": "local-1", "identifier": [{"system": SYSTEM, "value": OTHER}]}
    with pytest.raises(SubjectMismatch, match="another patient"):
        check_subject(bundle(them, obs({"reference": "urn:uuid:1"}), urls=["urn:uuid:1"]), P)
    # a nested Bundle is checked too
    with pytest.raises(SubjectMismatch):
        check_subject(bundle(bundle(obs({"reference": f"Patient/{OTHER}"}))), P)


def test_a_local_id_is_refused_unless_the_writer_names_it_as_the_patient():
    local = obs({"reference": "Patient/a5e3f4d0-3208-4155-82e4-e6be0ceabec7"})
    with pytest.raises(SubjectMismatch, match="--subject Patient/a5e3f4d0"):
        check_subject(local, P)
    check_subject(local, P, alias="Patient/a5e3f4d0-3208-4155-82e4-e6be0ceabec7")
    # the alias covers that local id only: another local patient in the same Bundle is refused
    with pytest.raises(SubjectMismatch, match="Patient/zz-2"):
        check_subject(bundle(local, obs({"reference": "Patient/zz-2"})), P, alias="Patient/a5e3f4d0-3208-4155-82e4-e6be0ceabec7")
    # a bundled Patient with the medledger identifier makes its local id the patient's
    me = {"resourceType": "Patient", "id": "local-9", "identifier": [{"system": SYSTEM, "value": P}]}
    check_subject(bundle(me, obs({"reference": "Patient/local-9"}), obs({"reference": "urn:uuid:9"}),
                         urls=["urn:uuid:9"]), P)


def test_subjects_that_cannot_be_checked_are_refused_with_what_to_write():
    for subject, words in (({"reference": "Group/g1"}, "not a reference to a Patient"),
                           ({"display": "Mei Delgado"}, "Patient/<patient id>"),
                           ({"identifier": {"system": "https://hospital.example/mrn", "value": "MRN1"}}, "Patient/<patient id>")):
        with pytest.raises(SubjectMismatch, match=words):
            check_subject(obs(subject), P)
    enc = {"resourceType": "Encounter", "status": "finished", "id": "e1"}
    with pytest.raises(SubjectMismatch, match="refers to a Encounter"):
        check_subject(bundle(enc, obs({"reference": "urn:uuid:e"}), urls=["urn:uuid:e"]), P)
    with pytest.raises(SubjectMismatch, match="neither an id"):
        check_subject({"resourceType": "Patient"}, P)
    deep: dict = obs(None)
    for _ in range(6):
        deep = bundle(deep)
    with pytest.raises(SubjectMismatch, match="nested"):
        check_subject(deep, P)
