"""A FHIR client we did not write (fhirpy) against the routes: with a token from the SMART token
endpoint it creates, reads and searches Observations; another practitioner gets a 403
OperationOutcome (`no_consent`) until the patient consents, and the resource after."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fhirpy import AsyncFHIRClient  # in the test extras: CI installs it, so this test always runs
from fhirpy.base.exceptions import ForbiddenError

from node.fhir.consent_map import grant_body

from tests.unit.fhir.routes_world import COLLEAGUE, DOCTOR, PATIENT, World, observation, running
from tests.unit.fhir.test_routes import B, DOCTOR_SCOPE, code_of
from tests.unit.fhir.test_routes_ledger import consent_for



@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    async with running(tmp_path, monkeypatch) as w:
        yield w


async def test_fhirpy_creates_reads_and_searches_and_is_refused_until_the_patient_consents(world):
    base = str(world.client.make_url(B))
    doctor = AsyncFHIRClient(base, authorization=f"Bearer {await world.token(DOCTOR, DOCTOR_SCOPE, 'TREAT')}")
    obs = doctor.resource("Observation", **observation(PATIENT, value=64))
    await obs.save()
    assert obs.id and len(obs.id) == 64 and obs["meta"]["versionId"] == "1"
    read = await doctor.reference("Observation", obs.id).to_resource()
    assert read["valueQuantity"]["value"] == 64 and read["subject"]["reference"] == f"Patient/{PATIENT.id}"
    found = await doctor.resources("Observation").search(patient=PATIENT.id, code="http://loinc.org|8867-4").fetch()
    assert [r.id for r in found] == [obs.id]

    colleague = AsyncFHIRClient(base, authorization=f"Bearer {await world.token(COLLEAGUE, DOCTOR_SCOPE, 'TREAT')}")
    with pytest.raises(ForbiddenError) as refused:
        await colleague.reference("Observation", obs.id).to_resource()
    assert code_of(json.loads(str(refused.value))) == "no_consent"
    granted = await world.tx(PATIENT, "consent.grant", grant_body(consent_for(COLLEAGUE.id)))
    assert granted["result"] == "ok", granted
    read = await colleague.reference("Observation", obs.id).to_resource()
    assert read.id == obs.id and read["valueQuantity"]["value"] == 64
    assert [r.id for r in await colleague.resources("Observation").search(patient=PATIENT.id).fetch()] == [obs.id]
