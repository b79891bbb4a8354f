"""Checks shared by the research tests: is an output valid FHIR R4, and what does it still contain."""

from __future__ import annotations

import json
from typing import Any

from node.records.fhir import validate_resource


def assert_valid_r4(resource: dict[str, Any]) -> None:
    """Valid for fhir.resources R4B, status codes checked, and no empty or null element (ele-1)."""
    validate_resource(resource)
    _no_empty(resource, resource.get("resourceType", "?"))


def _no_empty(value: Any, path: str) -> None:
    assert value is not None, f"{path} is null"
    if isinstance(value, dict):
        assert value, f"{path} is an empty object"
        for name, item in value.items():
            _no_empty(item, f"{path}.{name}")
    elif isinstance(value, list):
        assert value, f"{path} is an empty array"
        for index, item in enumerate(value):
            _no_empty(item, f"{path}[{index}]")
    elif isinstance(value, str):
        assert value, f"{path} is an empty string"


def text_of(value: Any) -> str:
    """The JSON text of a value, for scanning."""
    return json.dumps(value, ensure_ascii=False)


def strings_in(value: Any) -> list[str]:
    """Every string anywhere in a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def values_at(value: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a JSON value."""
    found = []
    if isinstance(value, dict):
        for name, item in value.items():
            if name == key:
                found.append(item)
            found.extend(values_at(item, key))
    elif isinstance(value, list):
        for item in value:
            found.extend(values_at(item, key))
    return found


def held_records(resources: list[dict[str, Any]], persons: dict[str, str]) -> list[Any]:
    """The records a custodian holds, each with the patient the ledger registered it for: the
    person whose local Patient (in ``persons``: local id -> person key) the resource names, as
    the writer's `record.add` said. Resources of patients not in ``persons`` are not given (the
    custodian only opens consenting patients' records); a Medication goes with the first patient."""
    from node.research.release import HeldRecord, linked_patient

    first = next(iter(persons.values()), "")
    out = []
    for resource in resources:
        if resource.get("resourceType") == "Medication":
            out.append(HeldRecord(patient=first, resource=resource))
            continue
        local = linked_patient(resource)
        if local in persons:
            out.append(HeldRecord(patient=persons[local], resource=resource))
    return out
