"""The Synthea-shaped test patients (tests/data/synthea_like/) load through the FHIR API as batch
Bundles and read back: every resource of a type this server holds is stored under the patient
the request names and reads back as it was sent (ids, meta and the references the server
rewrote aside, each of which now points at a resource it serves); every other type is refused
with a reason."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.devtools.synthea_like import HELD_TYPES, NOT_HELD_TYPES
from node.fhir.catalog import TYPES

from tests.unit.fhir.routes_world import OTHER_PATIENT, PATIENT, DOCTOR, World, running
from tests.unit.fhir.test_routes import B, DOCTOR_SCOPE, code_of

DATA = Path(__file__).resolve().parents[2] / "data" / "synthea_like"
SYNTHEA_ENV = "MEDLEDGER_SYNTHEA_DIR"


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    async with running(tmp_path, monkeypatch) as w:
        yield w


def without_references(value: Any) -> Any:
    """`value` with every reference's text blanked, and no id or meta at its top."""
    if isinstance(value, dict):
        return {k: "" if k == "reference" else without_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_references(v) for v in value]
    return value


def references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


async def load_and_read_back(world: World, token: str, bundle: dict[str, Any], patient: Any) -> None:
    """POST `bundle` as a batch for `patient`; check each entry as the module's docstring says."""
    sent = {**bundle, "type": "batch"}
    status, answer, _ = await world.call("POST", f"{B}?patient={patient.id}", token, body=sent)
    assert status == 200 and answer["type"] == "batch-response", answer
    assert len(answer["entry"]) == len(bundle["entry"])
    served: dict[str, dict[str, Any]] = {}
    for entry, result in zip(bundle["entry"], answer["entry"]):
        rtype = entry["resource"]["resourceType"]
        response = result["response"]
        if rtype not in TYPES:
            assert response["status"] == "422" and code_of(response["outcome"]) == "unsupported_type", response
            continue
        assert response["status"] in ("201 Created", "200 OK"), (rtype, response)  # 200: a Patient stored again
        location = response["location"].rsplit("/_history/", 1)[0]
        status, read, _ = await world.call("GET", f"{B}/{location}", token)
        assert status == 200, read
        sent_resource = {k: v for k, v in entry["resource"].items() if k not in ("id", "meta")}
        got = {k: v for k, v in read.items() if k not in ("id", "meta")}
        if rtype == "Patient":  # served under the ledger's id, which it carries as an identifier
            assert got["identifier"][0] == {"system": "urn:medledger:identity", "value": patient.id}
            got["identifier"] = got["identifier"][1:]
        assert without_references(got) == without_references(sent_resource), rtype
        served[location] = read
    for read in served.values():
        for ref in references(read):
            if ref.startswith("Patient/"):
                assert ref == f"Patient/{patient.id}"
            elif re.fullmatch(r"[A-Z][A-Za-z]+/[0-9a-f]{64}", ref) and ref.split("/")[0] in TYPES:
                assert ref in served, ref  # another entry, by the id the server gave it
            else:
                assert "?" in ref or ref.split("/")[0] not in TYPES, ref  # conditional, or a type not held


async def test_synthea_like_patients_load_as_batches_and_read_back(world):
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    assert set(HELD_TYPES) <= set(TYPES) and not set(NOT_HELD_TYPES) & set(TYPES)
    for path, patient in zip(sorted(DATA.glob("patient-*.json"))[:2], (PATIENT, OTHER_PATIENT)):
        bundle = json.loads(path.read_text())
        await load_and_read_back(world, token, bundle, patient)
        status, found, _ = await world.call("GET", f"{B}/Observation?patient={patient.id}&_count=100", token)
        assert found["total"] == sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")


@pytest.mark.skipif(not os.environ.get(SYNTHEA_ENV), reason=f"set {SYNTHEA_ENV} to a folder of Synthea R4 bundles "
                    "(tests/data/README.md)")
async def test_real_synthea_bundles_load_and_read_back(world):
    """Synthea's own output, when a folder of it is given (we may not commit it): the first two
    patients' whole bundles, as a batch each."""
    token = await world.token(DOCTOR, DOCTOR_SCOPE, "TREAT")
    files = sorted(Path(os.environ[SYNTHEA_ENV]).glob("*.json"))
    bundles = [b for b in (json.loads(f.read_text()) for f in files) if b.get("resourceType") == "Bundle"
               and any(e.get("resource", {}).get("resourceType") == "Patient" for e in b.get("entry", []))]
    assert bundles, f"no Synthea patient bundles in {os.environ[SYNTHEA_ENV]}"
    for bundle, patient in zip(bundles[:2], (PATIENT, OTHER_PATIENT)):
        await load_and_read_back(world, token, bundle, patient)
