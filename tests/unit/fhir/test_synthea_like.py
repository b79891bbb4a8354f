"""The Synthea-shaped bundles (node/devtools/synthea_like.py) are valid FHIR R4 and plan as
Synthea's do: every resource validates (fhir.resources R4B), every `urn:uuid:` reference
resolves to an entry of its bundle, the same seed gives the same bundles, and a transaction
plan rewrites every placeholder to the id the server assigns and the patient to its ledger id."""

from __future__ import annotations

import re

from node.devtools.synthea_like import HELD_TYPES, NOT_HELD_TYPES, bundle_bytes, generate
from node.fhir.transaction import parse_bundle, plan_bundle
from node.records.fhir import validate_resource

PATIENT = "ab" * 32


def references(value):
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


def test_every_resource_is_valid_r4_and_every_placeholder_resolves_in_its_bundle():
    patients = generate(3, seed=5)
    for p in patients:
        entries = p.bundle["entry"]
        full_urls = {e["fullUrl"] for e in entries}
        types = {e["resource"]["resourceType"] for e in entries}
        assert set(HELD_TYPES) <= types and set(NOT_HELD_TYPES) <= types
        for e in entries:
            assert validate_resource(e["resource"]) == e["resource"]["resourceType"] == e["request"]["url"]
            for ref in references(e["resource"]):
                assert not ref.startswith("urn:uuid:") or ref in full_urls, ref
        assert 40 < p.resources < 120 and p.held < p.resources


def test_a_seed_gives_the_same_bundles_and_another_seed_others():
    assert [bundle_bytes(p) for p in generate(2, seed=9)] == [bundle_bytes(p) for p in generate(2, seed=9)]
    assert bundle_bytes(generate(1, seed=9)[0]) != bundle_bytes(generate(1, seed=10)[0])


def test_a_transaction_plan_leaves_no_placeholder_and_links_everything_to_the_ledger_patient():
    bundle = parse_bundle(bundle_bytes(generate(1, seed=3)[0]))
    plan = plan_bundle(bundle, assign=lambda i, t: f"{i:064x}", patient=PATIENT)
    assert len(plan.entries) == len(bundle["entry"])
    for entry in plan.entries:
        refs = list(references(entry.resource))
        assert not any(r.startswith("urn:uuid:") for r in refs)
        assert entry.patient == PATIENT
        for ref in refs:
            if ref.startswith("Patient"):
                assert ref == f"Patient/{PATIENT}"
            else:  # another entry by the id it was given, or a conditional reference kept as written
                assert re.fullmatch(r"[A-Z][A-Za-z]+/[0-9a-f]{64}", ref) or "?identifier=" in ref, ref


def test_the_committed_test_patients_are_what_the_generator_makes():
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "data" / "synthea_like"
    made = generate(3, seed=2027)
    for i, p in enumerate(made):
        assert json.loads((folder / f"patient-{i}.json").read_text()) == p.bundle
