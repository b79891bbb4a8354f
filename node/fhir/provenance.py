"""Provenance of each record version, built from the ledger's metadata alone (nothing decrypted).

`Provenance/<record id>` (the id of one version's record): its target is that version
(`<Type>/<logical id>/_history/<v>`), recorded the time of the block that registered it, its
agents the author (a practitioner; `onBehalfOf` the institution that signed for it, when the
metadata names one in `via`) and the custodian institution, and its entity the registering
transaction (identifier of system urn:medledger:tx). Identities are not FHIR resources here,
so agents are referenced by identifier (system urn:medledger:identity).

Who may see it: the record's patient, or an identity the ledger would let read the record
(`predict`; a refusal is a 403 with the ledger's code, and nothing is written to the trail).
Search: `target` (`<Type>/<id>` any version, or one version) or `patient`.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.app.fhir_export import SYS_IDENTITY, SYS_TX, instant
from node.app.state import StateReader
from node.fhir.catalog import LEDGER_TYPES
from node.fhir.ledger import JSON, is_patient, ledger_id, not_found, patient_metas, record_meta, versions
from node.fhir.outcome import FhirError
from node.fhir.principal import Principal
from node.fhir.resources import RecordView
from node.fhir.search import parse_plain, patient_id, searchset
from node.records.delegate import RecordAccess

PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def _who(identity: str, kind: str) -> JSON:
    return {"identifier": {"system": SYS_IDENTITY, "value": identity}, "type": kind}


def provenance_resource(meta: JSON) -> JSON:
    """The Provenance of one record version (a `queries.record` answer, hex ids)."""
    view = RecordView.of(meta)
    author: JSON = {"type": {"coding": [{"system": PARTICIPANT, "code": "author", "display": "Author"}]},
                    "who": _who(view.author, "Practitioner")}
    if isinstance(meta.get("via"), str):
        author["onBehalfOf"] = _who(meta["via"], "Organization")
    custodian: JSON = {"type": {"coding": [{"system": PARTICIPANT, "code": "custodian", "display": "Custodian"}]},
                       "who": _who(view.custodian, "Organization")}
    operation = "CREATE" if view.version == 1 else "UPDATE"
    return {
        "resourceType": "Provenance",
        "id": view.record_id,
        "target": [{"reference": f"{view.resource_type}/{view.fhir_id}/_history/{view.version}"}],
        "recorded": instant(view.time_ms),
        "activity": {"coding": [{"system": DATA_OPERATION, "code": operation}]},
        "agent": [author, custodian],
        "entity": [{"role": "source", "what": {"identifier": {"system": SYS_TX, "value": view.tx},
                                               "display": "the ledger transaction that registered this version"}}],
    }


def refusal(delegate: RecordAccess, principal: Principal, meta: JSON) -> str | None:
    """Why the principal may not see this record's provenance (a ledger code), None when it may."""
    if meta["patient"] == principal.identity.hex():
        return None
    return delegate.predict(principal.identity, bytes.fromhex(meta["id"]), principal.purpose, reason=principal.reason)


def read(state: StateReader, delegate: RecordAccess, principal: Principal, fid: str) -> JSON:
    key = ledger_id(fid)
    meta = record_meta(state, key) if key is not None else None
    if meta is None:
        raise not_found("Provenance", fid)
    code = refusal(delegate, principal, meta)
    if code == "unknown_record":  # another patient's record, to a patient's token: as if it did not exist
        raise not_found("Provenance", fid)
    if code is not None:
        raise FhirError(403, code, "the ledger would not let this identity read the record this Provenance is about")
    return provenance_resource(meta)


def _target(state: StateReader, text: str) -> list[JSON]:
    parts = text.split("/")
    if len(parts) not in (2, 4) or (len(parts) == 4 and parts[2] != "_history"):
        raise FhirError(400, "invalid_search", "target is <Type>/<id> or <Type>/<id>/_history/<version>")
    try:
        held = versions(state, parts[0], parts[1])
    except FhirError:
        return []
    if len(parts) == 4:
        return [m for m in held if str(RecordView.of(m).version) == parts[3]]
    return held


def search(state: StateReader, delegate: RecordAccess, principal: Principal, query: Sequence[tuple[str, str]],
           base: str, now_ms: int, *, strict: bool) -> JSON:
    found, values = parse_plain(query, LEDGER_TYPES["Provenance"], now_ms, strict=strict)
    if not values:
        raise FhirError(400, "search_patient_required", "name the record (target=<Type>/<id>) or the patient (patient=)")
    selected: dict[str, JSON] | None = None
    for text in values.get("target", []):
        metas = {m["id"]: m for m in _target(state, text)}
        selected = metas if selected is None else {k: v for k, v in selected.items() if k in metas}
    for text in values.get("patient", []):
        patient = patient_id(text, bare=True)
        key = ledger_id(patient)
        metas = {m["id"]: m for m in patient_metas(state, key)} if key is not None and is_patient(state, key) else {}
        selected = metas if selected is None else {k: v for k, v in selected.items() if k in metas}
    if principal.role == "patient":
        own = principal.identity.hex()
        selected = {k: v for k, v in (selected or {}).items() if v["patient"] == own}
    visible = [m for m in (selected or {}).values() if refusal(delegate, principal, m) is None]
    page = visible[found.offset:found.offset + found.count]
    entries = [(f"{base}/{m['id']}", provenance_resource(m)) for m in page]
    return searchset(base, found, entries, candidates=len(visible))
