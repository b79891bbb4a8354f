"""The one mapping between a FHIR Consent and a `consent.grant` body round-trips: the Consent the
ledger's consent is served as maps back to the body that granted it, for every shape of scope;
anything it cannot map is refused as invalid_consent."""

from __future__ import annotations

from typing import Any

import pytest

from node.app.fhir_export import consent_resource
from node.fhir.consent_map import grant_body
from node.fhir.outcome import FhirError

from tests.unit.fhir.routes_world import assert_valid

PATIENT, GRANTEE = "aa" * 32, "bb" * 32
R1, R2 = b"\x01" * 32, b"\x02" * 32


def answer(body: dict[str, Any]) -> dict[str, Any]:
    """What `queries.consent` answers for the consent a body granted (hex ids, every list present)."""
    return {"id": "cc" * 32, "status": "active", "patient": PATIENT, "grantee_kind": body["grantee_kind"],
            "grantee": body["grantee"].hex() if isinstance(body["grantee"], bytes) else body["grantee"],
            "purposes": body["purposes"], "resource_types": body.get("resource_types", []),
            "record_ids": [r.hex() for r in body.get("record_ids", [])], "deny_types": body.get("deny_types", []),
            "valid_from": body["valid_from"], "valid_until": body["valid_until"], "granted_by": PATIENT,
            "time_ms": body["valid_from"]}


BODIES = [
    {"grantee_kind": "practitioner", "grantee": bytes.fromhex(GRANTEE), "purposes": ["treatment"],
     "resource_types": ["Observation"], "valid_from": 1_700_000_000_000, "valid_until": 1_800_000_000_123},
    {"grantee_kind": "institution", "grantee": bytes.fromhex(GRANTEE), "purposes": ["treatment", "payment"],
     "resource_types": ["*"], "deny_types": ["DocumentReference", "Observation"], "valid_from": 1_700_000_000_000,
     "valid_until": 1_800_000_000_000},
    {"grantee_kind": "practitioner", "grantee": bytes.fromhex(GRANTEE), "purposes": ["emergency"],
     "record_ids": [R1, R2], "valid_from": 1_700_000_000_000, "valid_until": 1_800_000_000_000},
    {"grantee_kind": "institution", "grantee": bytes.fromhex(GRANTEE), "purposes": ["operations"],
     "resource_types": ["Condition", "Observation"], "record_ids": [R1], "deny_types": ["Immunization"],
     "valid_from": 1_700_000_000_000, "valid_until": 1_800_000_000_000},
    {"grantee_kind": "study", "grantee": "trial-7", "purposes": ["research"], "resource_types": ["*"],
     "valid_from": 1_700_000_000_000, "valid_until": 1_800_000_000_000},
]


@pytest.mark.parametrize("body", BODIES, ids=["types", "all-but", "records", "types-and-records", "study"])
def test_a_served_consent_maps_back_to_the_grant_that_made_it(body: dict[str, Any]) -> None:
    served = assert_valid(consent_resource(answer(body)))
    assert grant_body(served) == body


def test_without_a_start_the_grant_leaves_it_to_the_block_time() -> None:
    served = consent_resource(answer(BODIES[0]))
    del served["provision"]["period"]["start"]
    assert "valid_from" not in grant_body(served)


@pytest.mark.parametrize("change", [
    lambda c: c["provision"].pop("purpose"),
    lambda c: c["provision"]["purpose"].append({"system": "http://example.org", "code": "TREAT"}),
    lambda c: c["provision"]["actor"][0]["reference"].update(type="Patient"),
    lambda c: c["provision"]["actor"].append(c["provision"]["actor"][0]),
    lambda c: c["provision"]["period"].pop("end"),
    lambda c: c["provision"]["period"].update(end="2030-01-01"),
    lambda c: c.update(status="inactive"),
    lambda c: c["provision"].update(type="deny"),
    lambda c: c["provision"]["class"].append({"system": "http://example.org", "code": "Observation"}),
])
def test_what_does_not_map_onto_a_grant_is_refused(change: Any) -> None:
    served = consent_resource(answer(BODIES[0]))
    change(served)
    with pytest.raises(FhirError) as caught:
        grant_body(served)
    assert (caught.value.status, caught.value.code) == (422, "invalid_consent")
