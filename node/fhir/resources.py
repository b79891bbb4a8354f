"""A ledger record and its decrypted content as the FHIR resource this server answers with.

Pure functions of the record's ledger metadata (a `queries.record` answer, ids in hex) and the
resource its author wrote:

- `id` is the record's logical id: the id of its first version (`version_of` of a later one),
  in hex; `meta.versionId` its version (1 unless it supersedes another); `meta.lastUpdated`
  the time of the block that registered this version (never a clock of ours);
- the ledger's link is authoritative: the element naming the patient (catalog.TYPES) is set to
  `Patient/<ledger patient id>` whatever the writer wrote there (a local id, a `urn:uuid:`),
  and every other reference that used the writer's form of the patient is rewritten alike;
- an order the ledger completed (a MedicationRequest dispensed, a ServiceRequest whose result
  came back: node/app/care.py) is served with `status` completed, whatever status it was written
  with;
- a Patient is served under the patient's ledger id, with the identifier of system
  `urn:medledger:identity`; a patient without a Patient record still has a minimal Patient.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from node.app.fhir_export import SYS_IDENTITY, instant
from node.fhir.catalog import BASE_PATH, TYPES

JSON = dict[str, Any]
MAX_DEPTH = 16  # how deep the reference rewriting walks (FHIR resources are shallow; bundles are not served)


@dataclass(frozen=True, slots=True)
class RecordView:
    """What the FHIR answer needs of a record's ledger metadata."""

    record_id: str
    logical_id: str
    version: int
    patient: str
    resource_type: str
    custodian: str
    author: str
    tx: str
    time_ms: int
    erased: bool

    @classmethod
    def of(cls, meta: JSON) -> "RecordView":
        """From a `queries.record` answer (hex ids)."""
        version = meta.get("version")
        return cls(record_id=meta["id"], logical_id=meta.get("version_of") or meta["id"],
                   version=version if isinstance(version, int) and version > 0 else 1,
                   patient=meta["patient"], resource_type=meta["resource_type"], custodian=meta["custodian"],
                   author=meta["author"], tx=meta.get("tx") or "", time_ms=int(meta.get("time_ms") or 0),
                   erased=bool(meta.get("erased")))

    @property
    def fhir_id(self) -> str:
        """The id the resource is served under: the patient's id for a Patient, else the logical id."""
        return self.patient if self.resource_type == "Patient" else self.logical_id


def latest_versions(metas: list[JSON]) -> list[JSON]:
    """Of each logical record, its latest version only, in the order the logical records were
    first registered (a search answers with current versions)."""
    latest: dict[str, JSON] = {}
    order: list[str] = []
    for meta in metas:
        view = RecordView.of(meta)
        held = latest.get(view.logical_id)
        if held is None:
            order.append(view.logical_id)
            latest[view.logical_id] = meta
        elif RecordView.of(held).version < view.version:
            latest[view.logical_id] = meta
    return [latest[lid] for lid in order]


def patient_reference(patient: str, display: Any = None) -> JSON:
    ref: JSON = {"reference": f"Patient/{patient}"}
    if isinstance(display, str):
        ref["display"] = display
    return ref


def _rewrite(value: Any, aliases: frozenset[str], target: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, dict):
        out = {k: _rewrite(v, aliases, target, depth + 1) for k, v in value.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in aliases:
            out["reference"] = target
        return out
    if isinstance(value, list):
        return [_rewrite(v, aliases, target, depth + 1) for v in value]
    return value


def link_patient(resource: JSON, patient: str) -> JSON:
    """`resource` with its patient element, and every reference written like it, naming the
    ledger's patient (a copy; the argument is left as it was)."""
    out = copy.deepcopy(resource)
    info = TYPES.get(str(out.get("resourceType")))
    if info is None or info.patient_element is None:
        return out
    written = out.get(info.patient_element)
    aliases = set()
    display = None
    if isinstance(written, dict):
        display = written.get("display")
        if isinstance(written.get("reference"), str):
            aliases.add(written["reference"])
    target = f"Patient/{patient}"
    aliases.discard(target)
    if aliases:
        out = _rewrite(out, frozenset(aliases), target, 0)
    out[info.patient_element] = patient_reference(patient, display)
    return out


def _meta(resource: JSON, view: RecordView) -> JSON:
    given = resource.get("meta")
    meta: JSON = given if isinstance(given, dict) else {}
    out = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated", "source")}
    out.update(versionId=str(view.version), lastUpdated=instant(view.time_ms))
    return out


def to_fhir(resource: JSON, meta: JSON) -> JSON:
    """The resource a record holds as served here: ids, version, time and patient from the ledger."""
    view = RecordView.of(meta)
    if view.resource_type == "Patient":
        out = as_patient(resource, view.patient)
    else:
        out = link_patient(resource, view.patient)
    out["id"] = view.fhir_id
    out["meta"] = _meta(out, view)
    workflow = meta.get("workflow")
    if view.resource_type in COMPLETED_BY_LEDGER and isinstance(workflow, dict) and workflow.get("status") == "completed":
        out["status"] = "completed"
    return out


COMPLETED_BY_LEDGER = ("MedicationRequest", "ServiceRequest")  # request.status: the ledger's completion is the truth


def ledger_identifier(patient: str) -> JSON:
    return {"system": SYS_IDENTITY, "value": patient}


def as_patient(resource: JSON, patient: str) -> JSON:
    """A Patient resource served under the ledger's patient id, carrying that id as an identifier."""
    out = copy.deepcopy(resource)
    idents = [i for i in out.get("identifier") or () if isinstance(i, dict) and i.get("system") != SYS_IDENTITY]
    out["identifier"] = [ledger_identifier(patient), *idents]
    out["id"] = patient
    return out


def minimal_patient(patient: str) -> JSON:
    """The Patient of a registered patient no Patient record describes: its ledger id only."""
    return {"resourceType": "Patient", "id": patient, "identifier": [ledger_identifier(patient)], "active": True}


def version_location(resource_type: str, fhir_id: str, version: int) -> str:
    """The path of one version, as a create's `Location` names it."""
    return f"{BASE_PATH}/{resource_type}/{fhir_id}/_history/{version}"


def etag(version: int) -> str:
    return f'W/"{version}"'
