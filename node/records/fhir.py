"""FHIR R4 validation on the writer's side (fhir.resources, R4B models).

fhir.resources checks required elements, primitive formats and unknown elements, not coded
values, so the codes this project relies on (Observation.status and the like) are checked here.
Messages name the element that is wrong, so a practitioner can fix the file.
"""

from __future__ import annotations

import json
from typing import Any

MAX_RESOURCE_BYTES = 1024 * 1024

# Required status codes of the resource types we handle most (FHIR R4 value sets).
STATUS_CODES: dict[str, frozenset[str]] = {
    "Observation": frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}),
    "Condition": frozenset(),
    "DiagnosticReport": frozenset({"registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled", "entered-in-error", "unknown"}),
    "MedicationRequest": frozenset({"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}),
    "Procedure": frozenset({"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}),
    "Encounter": frozenset({"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}),
}
GENDERS = frozenset({"male", "female", "other", "unknown"})


class FhirInvalid(ValueError):
    """The resource is not valid FHIR R4 (the writer's to fix); `code` is the refusal's code."""

    code = "invalid_fhir"


class ResourceTooLarge(FhirInvalid):
    """The resource may be valid FHIR, but it is over this node's size limit: a limit, named as one."""

    code = "too_large"


def parse_resource(data: bytes) -> dict[str, Any]:
    """Parse and validate a FHIR R4 resource given as JSON bytes; return it as a dict."""
    if len(data) > MAX_RESOURCE_BYTES:
        raise ResourceTooLarge(f"the resource is {len(data)} bytes, over the limit of {MAX_RESOURCE_BYTES} bytes per resource")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirInvalid(f"not JSON: {exc}") from None
    validate_resource(doc)
    return doc


def validate_resource(doc: Any) -> str:
    """Validate a parsed resource; return its resourceType."""
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise FhirInvalid("a FHIR resource is a JSON object with a resourceType")
    rtype = doc["resourceType"]
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError, ImportError):
        raise FhirInvalid(f"unknown FHIR resource type {rtype[:64]!r}") from None
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())) or rtype}: {err.get('msg', 'invalid')}" for err in exc.errors()[:5]
        )
        raise FhirInvalid(f"invalid {rtype}: {problems}") from None
    codes = STATUS_CODES.get(rtype)
    if codes and doc.get("status") not in codes:
        raise FhirInvalid(f"invalid {rtype}: status {doc.get('status')!r} is not one of {', '.join(sorted(codes))}")
    if rtype == "Patient" and "gender" in doc and doc["gender"] not in GENDERS:
        raise FhirInvalid(f"invalid Patient: gender {doc['gender']!r} is not one of {', '.join(sorted(GENDERS))}")
    return rtype
