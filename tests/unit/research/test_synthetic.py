"""The synthetic data generator: deterministic, valid FHIR R4, and full of what must be removed."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date

import pytest

from node.research.deid_rules import RESTRICTED_ZIP3
from node.research.synthetic import generate, write_demo
from tests.unit.research.support import assert_valid_r4, text_of, values_at


@pytest.fixture(scope="module")
def data():
    return generate(40, seed=7)


def test_same_seed_same_data_other_seed_other_data(data):
    assert text_of(generate(40, seed=7).institutions) == text_of(data.institutions)
    assert text_of(generate(40, seed=8).institutions) != text_of(data.institutions)


def test_every_resource_is_valid_fhir_r4(data):
    resources = data.resources()
    for resource in resources:
        assert_valid_r4(resource)
    counts = Counter(r["resourceType"] for r in resources)
    assert {"Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "Procedure",
            "DiagnosticReport"} <= set(counts)
    ids = [(r["resourceType"], r["id"]) for r in resources]
    assert len(ids) == len(set(ids))


def test_persons_are_spread_over_institutions_some_at_two(data):
    assert len(data.persons) == 40 and set(data.institutions) == {0, 1, 2}
    assert all(data.institutions[i] for i in range(3))
    assert any(len(places) == 2 for places in data.persons.values())
    for places in data.persons.values():
        for institution, patient_id in places.items():
            assert any(r["resourceType"] == "Patient" and r["id"] == patient_id for r in data.institutions[institution])


def test_records_carry_every_kind_of_identifier(data):
    patients = [r for r in data.resources() if r["resourceType"] == "Patient"]
    birth_years = [int(p["birthDate"][:4]) for p in patients]
    assert any(data.as_of.year - y >= 90 for y in birth_years) and any(data.as_of.year - y < 18 for y in birth_years)
    zips = [a["postalCode"] for p in patients for a in p["address"]]
    assert all(re.fullmatch(r"\d{5}", z) for z in zips)
    assert any(z[:3] in RESTRICTED_ZIP3 for z in zips) and any(z[:3] not in RESTRICTED_ZIP3 for z in zips)
    for element in ("name", "telecom", "identifier", "photo", "contact", "text", "address"):
        assert all(element in p for p in patients), element
    systems = {i["system"] for p in patients for i in p["identifier"]}
    assert "http://hl7.org/fhir/sid/us-ssn" in systems
    # Notes and free text repeat the patient's name; timestamps are full.
    name_of = {p["id"]: p["name"][0]["family"] for p in patients}
    notes = [(r["subject"]["reference"].split("/")[1], n["text"]) for r in data.resources() for n in r.get("note", [])]
    assert notes and any(name_of[pid] in text for pid, text in notes)
    observations = [r for r in data.resources() if r["resourceType"] == "Observation"]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}", o["effectiveDateTime"]) for o in observations)
    assert {c["system"] for o in observations for c in o["code"]["coding"]} == {"http://loinc.org"}
    assert values_at(data.resources(), "display")


def test_dates_stay_within_each_life(data):
    for resources in data.institutions.values():
        born = {r["id"]: date.fromisoformat(r["birthDate"]) for r in resources if r["resourceType"] == "Patient"}
        for r in resources:
            if r["resourceType"] == "Encounter":
                start = date.fromisoformat(r["period"]["start"][:10])
                assert born[r["subject"]["reference"].split("/")[1]] <= start <= data.as_of


def test_write_demo_layout(tmp_path):
    written = write_demo(tmp_path / "demo", patients=5, seed=3)
    root = tmp_path / "demo"
    persons = json.loads((root / "persons.json").read_text())
    assert len(persons) == 5 and {p.name for p in root.iterdir()} >= {"institution-0", "persons.json"}
    for path in written:
        if path.name == "persons.json":
            continue
        resource = json.loads(path.read_text())
        assert path.name == f"{resource['resourceType']}-{resource['id']}.json"
        assert path.parent.name.startswith("institution-")
    for places in persons.values():
        for institution, patient_id in places.items():
            assert (root / institution / f"Patient-{patient_id}.json").exists()
    with pytest.raises(FileExistsError):
        write_demo(root, patients=5, seed=3)
