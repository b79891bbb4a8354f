"""Custodian releases and the multi-institution extract: only consenting patients, nothing identifying, k reached."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.research.extract import NO_PATIENT, NOT_ELIGIBLE, assemble_extract, canonical_json, write_extract
from node.research.pseudonyms import KeyedPseudonyms
from node.research.release import FORMAT_V1, NOT_LINKED, CustodianRelease, ReleaseInvalid, deidentify_for_study
from node.research.synthetic import CLINICIANS, REGIONS, SyntheticData, generate
from tests.unit.research.support import assert_valid_r4, held_records, strings_in, values_at

KEY = b"k" * 16 + b"study-diabetes-2024"
STUDY = "study-diabetes-2024"
YEAR = 2024
CUSTODIANS = ["hospital-1", "hospital-2", "hospital-3"]


def releases_for(data: SyntheticData, consenting: set[str], *, key: bytes = KEY) -> list[CustodianRelease]:
    releases = []
    for index, resources in sorted(data.institutions.items()):
        persons = {pid: person for person, places in data.persons.items() if person in consenting
                   for institution, pid in places.items() if institution == index}
        releases.append(deidentify_for_study(held_records(resources, persons), study=STUDY, study_key=key,
                                             custodian=f"hospital-{index + 1}", reference_year=YEAR))
    return releases


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    data = generate(40, seed=7, institutions=3)
    consenting = set(random.Random(11).sample(sorted(data.persons), 30))
    releases = releases_for(data, consenting)
    pseudonyms = KeyedPseudonyms(KEY)
    eligible = {pseudonyms.person(p) for p in consenting}
    extract = assemble_extract(releases, study=STUDY, k=3, reference_year=YEAR, eligible=eligible,
                               custodians_asked=CUSTODIANS)
    out = tmp_path_factory.mktemp("extract")
    write_extract(extract, out)
    files = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    return SimpleNamespace(data=data, consenting=consenting, releases=releases, extract=extract, files=files,
                           report=json.loads(files["report.json"]), eligible=eligible,
                           person_pseudonym={p: pseudonyms.person(p) for p in data.persons})


def ndjson(files: dict[str, bytes], name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files.get(name, b"").splitlines()]


def identifying_strings(data: SyntheticData) -> set[str]:
    """Every name, street, city, phone, e-mail, identifier value, URL and local id in the source."""
    found: set[str] = set()
    for resource in data.resources():
        found.add(resource["id"])
        for name in values_at(resource, "name"):
            found.update(s for s in strings_in(name) if s not in ("official",))
        for address in values_at(resource, "address"):
            for a in address:
                found.update(a.get("line", []))
                found.update(a[k] for k in ("city", "district") if k in a)
        for telecom in values_at(resource, "telecom"):
            found.update(t["value"] for t in telecom)
        for identifier in values_at(resource, "identifier"):
            for i in identifier if isinstance(identifier, list) else [identifier]:
                found.add(i["value"])
        found.update(values_at(resource, "url"))
        found.update(d for d in values_at(resource, "display") if "serial" in d or d.startswith("Dr. "))
        for reference in values_at(resource, "reference"):
            found.add(reference.split("/")[-1])
    found.update(part for clinician in CLINICIANS for part in clinician.split())
    found.update(region.name for region in REGIONS)
    return found


# --- the multi-institution extract (the "done when") -----------------------------------------


def test_extract_is_released_with_k_reached(world):
    report = world.report
    assert report["released"] and report["refusal"] is None
    assert report["k_requested"] == 3 and report["k_reached"] >= 3
    assert [c["custodian"] for c in report["custodians"]] == CUSTODIANS and report["custodians_not_answering"] == []


def test_only_consenting_patients_appear(world):
    patients = ndjson(world.files, "Patient.ndjson")
    released = {p["id"] for p in patients}
    assert released and released <= world.eligible
    for name in world.files:
        if name.endswith(".ndjson") and name != "Patient.ndjson":
            for resource in ndjson(world.files, name):
                link = resource.get("subject") or resource.get("patient")
                assert link["reference"].removeprefix("Patient/") in released, (name, resource["id"])
    everything = b"".join(world.files.values())
    for person, pseudonym in world.person_pseudonym.items():
        if person not in world.consenting:
            assert pseudonym.encode() not in everything


def test_no_identifier_from_the_source_appears_anywhere_in_the_output(world):
    everything = b"".join(world.files.values())
    needles = identifying_strings(world.data)
    assert len(needles) > 1000  # the scan really looks for something
    leaked = sorted(n for n in needles if n.encode() in everything)
    assert not leaked, leaked[:20]
    assert not re.search(rb"\d{4}-\d{2}", everything), "a date finer than the year"
    zips = {a["postalCode"] for r in world.data.resources() for a in r.get("address", [])}
    assert not [z for z in zips if re.search(rb"\b" + z.encode() + rb"\b", everything)]


def test_every_output_resource_is_valid_fhir_r4(world):
    for name in world.files:
        if name.endswith(".ndjson"):
            for resource in ndjson(world.files, name):
                assert f"{resource['resourceType']}.ndjson" == name
                assert_valid_r4(resource)


def test_every_group_of_released_patients_reaches_k(world):
    patients = ndjson(world.files, "Patient.ndjson")
    groups = Counter(json.dumps({k: v for k, v in p.items() if k != "id"}, sort_keys=True) for p in patients)
    assert min(groups.values()) == world.report["k_reached"] >= 3
    assert sorted(groups.values()) == sorted(g["patients"] for g in world.report["groups"])


def test_report_counts_add_up(world):
    report = world.report
    assert report["patients_eligible"] == len(world.consenting) == 30
    assert report["patients_included"] + report["patients_suppressed_count"] == report["patients_eligible"]
    assert report["patients_suppressed_count"] == len(report["patients_suppressed"])
    assert report["patients_included"] == len(ndjson(world.files, "Patient.ndjson"))
    suppressed = {s["pseudonym"] for s in report["patients_suppressed"]}
    assert suppressed <= world.eligible and not suppressed & {p["id"] for p in ndjson(world.files, "Patient.ndjson")}
    assert all(s["reason"].startswith("k-anonymity") for s in report["patients_suppressed"])
    for name in report["types"]:
        assert report["resources_per_type"][name] == len(ndjson(world.files, f"{name}.ndjson"))
    assert report["resources_released"] == sum(report["resources_per_type"].values())
    assert set(world.files) == {f"{t}.ndjson" for t in report["types"]} | {"report.json"}
    for entry in report["files"]:
        assert entry["sha256"] == hashlib.sha256(world.files[entry["name"]]).hexdigest()
        assert entry["resources"] == report["resources_per_type"][entry["name"].removesuffix(".ndjson")]
    manifest = "".join(f"{hashlib.sha256(world.files[n]).hexdigest()}  {n}\n" for n in sorted(world.files)
                       if n.endswith(".ndjson"))
    assert report["released_sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    # Each custodian's patients: a person of two institutions counts at both, once in the extract.
    assert sum(c["patients"] for c in report["custodians"]) >= report["patients_eligible"]
    assert sum(c["patients_included"] for c in report["custodians"]) >= report["patients_included"]
    assert sum(c["resources_released"] for c in report["custodians"]) + report["patients_included"] == report["resources_released"]


def test_custodians_group_patients_over_89_before_release(world):
    sources = {r["id"]: r for r in world.data.resources() if r["resourceType"] == "Patient"}
    released = {r["id"]: r for release in world.releases for r in release.resources if r["resourceType"] == "Patient"}
    old = [p for p in world.consenting if any(YEAR - int(sources[pid]["birthDate"][:4]) >= 90
                                               for pid in world.data.persons[p].values())]
    assert old
    for person in old:
        patient = released[world.person_pseudonym[person]]
        assert "birthDate" not in patient and patient["extension"][0]["valueRange"]["low"]["value"] == 90


def test_a_patient_of_two_institutions_is_one_patient(world):
    shared = [p for p, places in world.data.persons.items() if len(places) == 2 and p in world.consenting]
    assert shared
    released = {p["id"] for p in ndjson(world.files, "Patient.ndjson")}
    included = [p for p in shared if world.person_pseudonym[p] in released]
    for person in included:
        assert sum(1 for p in ndjson(world.files, "Patient.ndjson") if p["id"] == world.person_pseudonym[person]) == 1
    links = Counter()
    for name in world.files:
        for resource in ndjson(world.files, name) if name.endswith(".ndjson") else []:
            link = resource.get("subject") or resource.get("patient")
            if link:
                links[link["reference"]] += 1
    assert all(links[f"Patient/{world.person_pseudonym[p]}"] > 0 for p in included)


def test_ndjson_is_one_canonical_object_per_line_sorted_by_id(world):
    for name, data in world.files.items():
        if name.endswith(".ndjson"):
            lines = data.splitlines()
            assert data.endswith(b"\n") and all(line == canonical_json(json.loads(line)) for line in lines)
            ids = [json.loads(line)["id"] for line in lines]
            assert ids == sorted(ids) and len(ids) == len(set(ids))


def test_the_same_inputs_in_any_order_give_the_same_bytes(world):
    again = assemble_extract(list(reversed(world.releases)), study=STUDY, k=3, reference_year=YEAR,
                             eligible=world.eligible, custodians_asked=CUSTODIANS)
    assert again.files == world.extract.files and again.report_json() == world.extract.report_json()


def test_another_study_key_gives_unlinkable_pseudonyms(world):
    other = releases_for(world.data, world.consenting, key=b"another-study-key-0123456789")
    ours = {r["id"] for release in world.releases for r in release.resources}
    theirs = {r["id"] for release in other for r in release.resources}
    assert ours and theirs and not ours & theirs


# --- refusal ---------------------------------------------------------------------------------------


def test_below_k_nothing_is_released_and_the_researcher_is_told_why(world, tmp_path):
    extract = assemble_extract(world.releases, study=STUDY, k=31, reference_year=YEAR, eligible=world.eligible,
                               custodians_asked=CUSTODIANS + ["hospital-4"])
    report = extract.report
    assert extract.files == {} and extract.refusal is not None and "fewer than k" in extract.refusal
    assert not report["released"] and report["k_reached"] is None and report["groups"] == []
    assert report["patients_included"] == 0 and report["patients_suppressed_count"] == report["patients_eligible"] == 30
    assert report["released_sha256"] is None and report["custodians_not_answering"] == ["hospital-4"]
    written = write_extract(extract, tmp_path / "out")
    assert [p.name for p in written] == ["report.json"]
    with pytest.raises(FileExistsError):
        write_extract(extract, tmp_path / "out")


def test_no_releases_at_all_is_a_refusal():
    extract = assemble_extract([], study=STUDY, k=2, reference_year=YEAR, custodians_asked=CUSTODIANS)
    assert extract.refusal == "no eligible patients in the custodians' releases"
    assert extract.report["custodians_not_answering"] == CUSTODIANS


# --- what the extract does with a faulty or hostile release -----------------------------------------


def hand_release(custodian: str = "hospital-9", study: str = STUDY, **extra: Any) -> CustodianRelease:
    pid, oid = "a" * 32, "b" * 32
    resources = [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-03-04",
         "name": [{"family": "Leakington"}]},
        {"resourceType": "Observation", "id": oid, "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
         "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2023-01-02T03:04:05Z",
         "note": [{"text": "Leakington was here"}]},
        {"resourceType": "Observation", "id": "obs-local-id", "status": "final",
         "code": {"coding": [{"code": "x"}]}, "subject": {"reference": f"Patient/{pid}"}},
        {"resourceType": "Observation", "id": "c" * 32, "status": "final", "code": {"coding": [{"code": "x"}]}},
        {"resourceType": "Observation", "id": "d" * 32, "status": "final", "code": {"coding": [{"code": "x"}]},
         "subject": {"reference": f"Patient/{'e' * 32}"}},
    ]
    return CustodianRelease(study=study, custodian=custodian, resources=tuple(resources), **extra)


def test_a_faulty_release_is_cleaned_again_and_counted():
    extract = assemble_extract([hand_release(withheld={"CarePlan": {"x": 2}})], study=STUDY, k=1, reference_year=YEAR)
    everything = b"".join(extract.files.values()) + extract.report_json()
    assert b"Leakington" not in everything and not re.search(rb"\d{4}-\d{2}", everything)
    custodian = extract.report["custodians"][0]
    assert custodian["resources_corrected"] == 2  # the Patient (name, full date) and the Observation (note, timestamp)
    assert custodian["resources_rejected"] == {"Observation": {"Observation id is not a pseudonym": 1, NOT_LINKED: 1}}
    assert custodian["resources_withheld_by_custodian"] == {"CarePlan": {"x": 2}}
    # what was left out, per type and reason, whoever left it out
    assert extract.report["resources_withheld"] == {
        "CarePlan": {"x": 2}, "Observation": {"Observation id is not a pseudonym": 1, NOT_LINKED: 1}}
    # The patient "e..." has an Observation but no Patient resource: suppressed, counted.
    assert {"pseudonym": "e" * 32, "reason": NO_PATIENT} in extract.report["patients_suppressed"]
    assert extract.report["patients_eligible"] == 2 and extract.report["patients_included"] == 1


def test_releases_for_another_study_twice_from_one_custodian_or_for_ineligible_patients_are_refused():
    extract = assemble_extract([hand_release(), hand_release(), hand_release(custodian="h2", study="other")],
                               study=STUDY, k=1, reference_year=YEAR, eligible={"e" * 32})
    custodians = {(c["custodian"], c["accepted"]): c for c in extract.report["custodians"]}
    assert custodians[("h2", False)]["reason"] == "release for another study"
    assert custodians[("hospital-9", False)]["reason"] == "more than one release from this custodian"
    assert custodians[("hospital-9", True)]["resources_rejected"]["Observation"][NOT_ELIGIBLE] == 1
    assert custodians[("hospital-9", True)]["resources_rejected"]["Patient"][NOT_ELIGIBLE] == 1
    assert extract.report["patients_eligible"] == 1 and extract.refusal is not None


# --- the custodian's side --------------------------------------------------------------------------


def test_the_custodian_releases_only_consenting_patients_and_counts_what_it_withholds():
    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1980-01-01"},
        {"resourceType": "Patient", "id": "p2", "gender": "female", "birthDate": "1981-01-01"},
        {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"coding": [{"code": "x"}]},
         "subject": {"reference": "Patient/p2"}},
        {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "free text only"},
         "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Quill"}]},
        {"resourceType": "Medication", "id": "med1",
         "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"}]}},
        {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "Medication/med1"}},
    ]
    release = deidentify_for_study(held_records(resources, {"p1": "person-1"}), study=STUDY, study_key=KEY,
                                   custodian="h1", reference_year=YEAR)
    assert [r["resourceType"] for r in release.resources] == ["MedicationRequest", "Patient"]
    assert release.resources[1]["id"] == KeyedPseudonyms(KEY).person("person-1")
    assert release.resources[0]["medicationCodeableConcept"]["coding"][0]["code"] == "314076"
    assert release.withheld == {"Observation": {"Observation.code missing after de-identification": 1}}
    assert "p2" not in json.dumps(release.to_dict()) and "female" not in json.dumps(release.to_dict())


def test_a_release_travels_as_json_and_malformed_ones_are_refused():
    release = hand_release(withheld={"CarePlan": {"reason": 1}})
    assert CustodianRelease.from_dict(json.loads(json.dumps(release.to_dict()))) == release
    good = release.to_dict()
    for bad in (None, [], {**good, "format": "other"}, {**good, "study": ""}, {**good, "resources": [1]},
                {**good, "resources": "x"}, {**good, "withheld": {"CarePlan": {"r": -1}}},
                {**good, "withheld": {"CarePlan": {"r": True}}}, {**good, "withheld": {"r": 1}}):
        with pytest.raises(ReleaseInvalid):
            CustodianRelease.from_dict(bad)
    # a custodian still on the first format: its counts are kept, their type unknown
    old = CustodianRelease.from_dict({**good, "format": FORMAT_V1, "withheld": {"reason": 3}})
    assert old.withheld == {"unknown": {"reason": 3}}


# --- properties over other populations -------------------------------------------------------------


@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=6),
       st.integers(min_value=1, max_value=4))
def test_any_population_gives_a_consistent_extract(seed, k, institutions):
    data = generate(20, seed=seed, institutions=institutions)
    consenting = set(random.Random(seed).sample(sorted(data.persons), 15))
    releases = releases_for(data, consenting)
    extract = assemble_extract(releases, study=STUDY, k=k, reference_year=YEAR)
    report = extract.report
    assert report["patients_included"] + report["patients_suppressed_count"] == report["patients_eligible"] == 15
    everything = b"".join(extract.files.values()) + extract.report_json()
    assert not re.search(rb"\d{4}-\d{2}", everything)
    patients = ndjson(dict(extract.files), "Patient.ndjson")
    if extract.refusal is None:
        groups = Counter(json.dumps({n: v for n, v in p.items() if n != "id"}, sort_keys=True) for p in patients)
        assert min(groups.values()) == report["k_reached"] >= k
    else:
        assert not patients and report["patients_included"] == 0


def test_write_extract_writes_exactly_the_files(world, tmp_path: Path):
    written = write_extract(world.extract, tmp_path / "x")
    assert {p.name: p.read_bytes() for p in written} == {**world.extract.files, "report.json": world.extract.report_json()}
