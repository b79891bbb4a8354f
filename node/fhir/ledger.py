"""What the FHIR routes ask of the ledger's metadata: a resource's versions, a patient's records.

A record is known to the ledger by its metadata (node/app/queries.py `record`): its patient,
type, custodian, author, registering transaction and block time, and, for a later version,
`version_of` (the first version's record id: the resource's logical id) and `version`. These
functions find the versions of one FHIR resource and the candidates of a search; they read
the committed state only and decrypt nothing.
"""

from __future__ import annotations

import re
from typing import Any

from node.app import queries
from node.app.roles import identity_of
from node.app.state import StateReader
from node.fhir.outcome import FhirError
from node.fhir.resources import RecordView, latest_versions

JSON = dict[str, Any]
_HEX64 = re.compile(r"[0-9a-f]{64}")


def ledger_id(text: str) -> bytes | None:
    """The 32 bytes a FHIR id names when it is a ledger id (64 hex), else None."""
    lowered = text.lower()
    return bytes.fromhex(lowered) if _HEX64.fullmatch(lowered) else None


def is_patient(state: StateReader, patient: bytes) -> bool:
    found = identity_of(state, patient)
    return found is not None and found.get("role") == "patient"


def record_meta(state: StateReader, record_id: bytes) -> JSON | None:
    """One record's metadata (hex ids), None when the ledger has no such record."""
    return queries.record(state, record_id)


def patient_metas(state: StateReader, patient: bytes) -> list[JSON]:
    """Every record of a patient, in the order they were registered (erased ones marked)."""
    return queries.patient_records(state, patient)


def not_found(resource_type: str, fhir_id: str) -> FhirError:
    return FhirError(404, "not_found", f"no {resource_type} with id {fhir_id[:64]!r} on this ledger")


def versions(state: StateReader, resource_type: str, fhir_id: str) -> list[JSON]:
    """The versions of the resource `resource_type/fhir_id`, oldest first; 404 when there is none.

    A Patient's id is its patient's ledger id: its versions are those of the patient's Patient
    record registered last (empty when the patient has none). Any other id is the record id of
    the resource's first version."""
    key = ledger_id(fhir_id)
    if key is None:
        raise not_found(resource_type, fhir_id)
    if resource_type == "Patient":
        if not is_patient(state, key):
            raise not_found(resource_type, fhir_id)
        mine = [m for m in patient_metas(state, key) if m["resource_type"] == "Patient"]
        if not mine:
            return []
        logical = RecordView.of(latest_versions(mine)[-1]).logical_id
        return _sorted([m for m in mine if RecordView.of(m).logical_id == logical])
    first = record_meta(state, key)
    if first is None or first["resource_type"] != resource_type or RecordView.of(first).logical_id != key.hex():
        raise not_found(resource_type, fhir_id)
    return _sorted([m for m in patient_metas(state, bytes.fromhex(first["patient"]))
                    if RecordView.of(m).logical_id == key.hex()])


def _sorted(metas: list[JSON]) -> list[JSON]:
    return sorted(metas, key=lambda m: RecordView.of(m).version)


def patient_custodians(metas: list[JSON]) -> set[str]:
    """The institutions that hold some record of these (hex ids)."""
    return {m["custodian"] for m in metas}
