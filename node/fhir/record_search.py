"""A search of the record types: candidates from the ledger's metadata, what the identity may see,
one page read for it (the audited read), matched on content, and the searchset Bundle.

A practitioner's or institution's search names the patient or the ids (a search through every
patient's records is not offered); a patient's token searches its own records. `predict`
leaves out what the identity may not read without a denial in the patient's trail; only the
page's records are read. A patient without a Patient record is a minimal Patient for those who
may know of it (context.may_know_patient).
"""

from __future__ import annotations

import dataclasses
import json

from aiohttp import web

from node.app.state import StateReader
from node.core.errors import CodedError
from node.fhir.answer import JSON, base_url
from node.fhir.context import delegate_of, may_know_patient, state_of
from node.fhir.ledger import is_patient, ledger_id, patient_metas, record_meta
from node.fhir.outcome import FhirError, operation_outcome
from node.fhir.principal import Principal
from node.fhir.resources import RecordView, latest_versions, minimal_patient, to_fhir
from node.fhir.search import Search, matches_content, matches_meta, searchset


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A search candidate: a record's latest version, or a patient known without a Patient record."""

    meta: JSON | None
    patient: str


def search_patients(state: StateReader, principal: Principal, search: Search) -> list[str]:
    """The patients whose records a search looks through."""
    if principal.role == "patient":
        own = principal.identity.hex()
        return [own] if search.patient in (None, own) else []
    if search.patient is not None:
        key = ledger_id(search.patient)
        return [search.patient] if key is not None and is_patient(state, key) else []
    if search.ids is not None:
        found: dict[str, None] = {}
        for fid in sorted(search.ids):
            key = ledger_id(fid)
            if key is None:
                continue
            if is_patient(state, key):
                found[fid] = None
            elif (meta := record_meta(state, key)) is not None:
                found[meta["patient"]] = None
        return list(found)
    raise FhirError(400, "search_patient_required", "name the patient (patient=Patient/<id>, or subject=) or the ids "
                                                    "(_id=) to search: a search over every patient's records is not "
                                                    "supported")


def candidates(state: StateReader, principal: Principal, search: Search) -> list[Candidate]:
    """The current versions the ledger's metadata selects (erased records left out), in the order
    the records were registered, and the minimal Patient of a patient without a Patient record."""
    out: list[Candidate] = []
    for patient in search_patients(state, principal, search):
        metas = [m for m in latest_versions(patient_metas(state, bytes.fromhex(patient))) if not m.get("erased")]
        has_patient_record = False
        for meta in metas:
            view = RecordView.of(meta)
            has_patient_record |= view.resource_type == "Patient"
            if matches_meta(search, view.resource_type, view.fhir_id, view.patient, view.time_ms):
                out.append(Candidate(meta, patient))
        if (not has_patient_record and "Patient" in search.types and not search.last_updated
                and (search.ids is None or patient in search.ids) and may_know_patient(state, principal, patient)):
            out.append(Candidate(None, patient))
    return out


async def record_search(request: web.Request, principal: Principal, search: Search, base: str) -> JSON:
    """The searchset Bundle of one page of a record search (see the module's docstring)."""
    state = state_of(request)
    delegate = delegate_of(request)
    visible = [c for c in candidates(state, principal, search)
               if c.meta is None or delegate.predict(principal.identity, bytes.fromhex(c.meta["id"]), principal.purpose,
                                                     reason=principal.reason) is None]
    page = visible[search.offset:search.offset + search.count]
    reading = [c.meta for c in page if c.meta is not None]
    answers = await delegate.read_for(principal.identity, [bytes.fromhex(m["id"]) for m in reading], principal.purpose,
                                      reason=principal.reason) if reading else []
    read = {m["id"]: a for m, a in zip(reading, answers)}
    entries: list[tuple[str, JSON]] = []
    failed: list[str] = []
    fhir_base = base_url(request)
    for candidate in page:
        if candidate.meta is None:
            resource = minimal_patient(candidate.patient)
        else:
            got = read[candidate.meta["id"]]
            if isinstance(got, CodedError):
                failed.append(got.code)
                continue
            resource = to_fhir(json.loads(got), candidate.meta)
            if not matches_content(search, resource):
                continue
        entries.append((f"{fhir_base}/{resource['resourceType']}/{resource['id']}", resource))
    notes = []
    if search.ignored:
        notes.append(f"search parameters not supported, ignored: {', '.join(search.ignored)}")
    if failed:
        notes.append(f"{len(failed)} matching resources could not be read now ({', '.join(sorted(set(failed)))}); "
                     "retry later")
    outcome = operation_outcome("search_incomplete" if failed else "parameters_ignored", "; ".join(notes),
                                issue="incomplete" if failed else "not-supported", severity="warning") if notes else None
    return searchset(base, search, entries, candidates=len(visible), outcome=outcome)
