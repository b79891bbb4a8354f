"""Writing records through FHIR: create (`POST /<Type>`), update (`PUT /<Type>/<id>`), the
transaction and batch Bundles (`POST /fhir/R4`), and DELETE (Consent only).

A resource names its ledger patient in `subject`/`patient` (`Patient/<id>`; a Patient in an
identifier of system urn:medledger:identity); it is validated, given the server's id and meta,
and stored with `store_for` for the token's practitioner. A new version supersedes the latest
(`NewRecord.supersedes`): an update, a PUT entry naming a resource on the ledger, and a Patient
stored again (its id is always the patient's). `If-Match` naming another version: 412.

The entries of a Bundle reference each other by the ids `plan_bundle` assigns before anything is
stored, so a new entry (not a new version) goes to `store_for` with that id as its
`NewRecord.record_id`, and the records service registers it under it: the references then hold.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from node.app.fhir_export import instant
from node.app.state import StateReader
from node.core.errors import CodedError
from node.fhir import consent_api
from node.fhir.answer import JSON, check_content_type, fhir_response, fhir_route, parse_json_object, read_body
from node.fhir.bearer import require_principal, require_scope
from node.fhir.catalog import TYPES
from node.fhir.context import delegate_of, served_type, state_of, version_headers
from node.fhir.ledger import is_patient, ledger_id, not_found, record_meta, versions
from node.fhir.outcome import FhirError
from node.fhir.principal import Principal
from node.fhir.resources import RecordView, as_patient, link_patient, to_fhir
from node.fhir.transaction import (
    IDENTITY_SYSTEM,
    MAX_BUNDLE_BYTES,
    MAX_ENTRIES,
    EntryFailure,
    Plan,
    parse_bundle,
    plan_bundle,
    response_bundle,
)
from node.records.delegate import NewRecord, StoredRecord
from node.records.fhir import MAX_RESOURCE_BYTES, FhirInvalid, validate_resource

_ETAG = re.compile(r'(?:W/)?"([0-9]{1,9})"')


# -- create and update -------------------------------------------------------------------------
def patient_named(doc: JSON, rtype: str) -> bytes:
    """The ledger patient a resource to store names (see the module's docstring); 422 otherwise."""
    if rtype == "Patient":
        for ident in doc.get("identifier") or ():
            if isinstance(ident, dict) and ident.get("system") == IDENTITY_SYSTEM and isinstance(ident.get("value"), str):
                if (key := ledger_id(ident["value"])) is not None:
                    return key
        raise FhirError(422, "patient_unresolved", f"a Patient names its ledger id in an identifier of system "
                                                   f"{IDENTITY_SYSTEM}")
    element = TYPES[rtype].patient_element or "subject"
    link = doc.get(element)
    reference = link.get("reference") if isinstance(link, dict) else None
    match = re.fullmatch(r"Patient/([0-9a-fA-F]{64})", reference) if isinstance(reference, str) else None
    if match is None:
        raise FhirError(422, "patient_unresolved", f"{rtype}.{element} must reference the patient as Patient/<ledger id> "
                                                   "(64 hex)")
    return bytes.fromhex(match.group(1).lower())


def prepared(doc: JSON, rtype: str, patient: bytes, fhir_id: str | None) -> JSON:
    """The resource as it is stored: the ledger's patient link, the server's id, no server meta."""
    out = as_patient(doc, patient.hex()) if rtype == "Patient" else link_patient(doc, patient.hex())
    if fhir_id is None:
        out.pop("id", None)
    else:
        out["id"] = fhir_id
    meta = out.get("meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated", "source")}
        if kept:
            out["meta"] = kept
        else:
            out.pop("meta")
    try:
        validate_resource(out)
    except FhirInvalid as exc:
        raise FhirError(422, exc.code, str(exc)) from None
    return out


def encoded(resource: JSON) -> bytes:
    data = json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) > MAX_RESOURCE_BYTES:
        raise FhirError(413, "too_large", f"the resource is {len(data)} bytes, over the limit of {MAX_RESOURCE_BYTES} bytes")
    return data


async def resource_body(request: web.Request, rtype: str) -> JSON:
    check_content_type(request)
    doc = parse_json_object(await read_body(request, MAX_RESOURCE_BYTES))
    if doc.get("resourceType") != rtype:
        raise FhirError(400, "type_mismatch", f"the body's resourceType must be {rtype}, the type in the URL")
    return doc


async def store_one(request: web.Request, principal: Principal, item: NewRecord) -> JSON:
    """Store one resource for the principal; the registered version's metadata."""
    [got] = await delegate_of(request).store_for(principal.identity, [item])
    if isinstance(got, CodedError):
        raise got
    meta = record_meta(state_of(request), got.record_id)
    if meta is None:
        raise FhirError(503, "not_committed", "the record was stored but its registration is not committed yet; read it "
                                              "again shortly")
    return meta


@fhir_route
async def post_type(request: web.Request) -> web.StreamResponse:
    """POST /fhir/R4/<Type>: create (Consent: the patient's signed consent.grant, consent_api.py)."""
    rtype = request.match_info["type"]
    served_type(rtype, "create")
    principal = require_principal(request)
    require_scope(principal, rtype, "c")
    if rtype == "Consent":
        return await consent_api.create(request, principal, await resource_body(request, rtype))
    doc = await resource_body(request, rtype)
    patient = patient_named(doc, rtype)
    if not is_patient(state_of(request), patient):
        raise FhirError(422, "unknown_patient", "the resource's patient is not a registered patient of this ledger")
    resource = prepared(doc, rtype, patient, patient.hex() if rtype == "Patient" else None)
    previous = latest_patient_record(state_of(request), patient.hex()) if rtype == "Patient" else None
    if previous is not None:
        require_scope(principal, rtype, "u")
    meta = await store_one(request, principal, NewRecord(patient, rtype, encoded(resource),
                                                         supersedes=bytes.fromhex(previous["id"]) if previous else None))
    served = to_fhir(resource, meta)
    status = 200 if previous is not None else 201
    return fhir_response(served, status, version_headers(request, served, RecordView.of(meta), location=True))


def if_match(request: web.Request) -> int | None:
    header = request.headers.get("If-Match")
    if header is None:
        return None
    found = _ETAG.fullmatch(header.strip())
    if found is None:
        raise FhirError(400, "invalid_if_match", 'If-Match must be a version ETag, W/"<version>"')
    return int(found.group(1))


def updated_patient(doc: JSON, rtype: str, fid: str, latest: RecordView | None) -> bytes:
    """The patient of an update: a Patient's is its id, any other resource's the ledger's patient of
    its latest version; a body naming another patient is refused (422 patient_mismatch)."""
    patient = bytes.fromhex(fid.lower()) if rtype == "Patient" else bytes.fromhex(latest.patient) if latest else b""
    if rtype == "Patient":
        idents = doc.get("identifier")
        named = isinstance(idents, list) and any(isinstance(i, dict) and i.get("system") == IDENTITY_SYSTEM for i in idents)
    else:
        named = doc.get(TYPES[rtype].patient_element or "subject") is not None
    if named and patient_named(doc, rtype) != patient:
        raise FhirError(422, "patient_mismatch", f"this {rtype} belongs to another patient on the ledger")
    return patient


@fhir_route
async def put_instance(request: web.Request) -> web.StreamResponse:
    """PUT /fhir/R4/<Type>/<id>: a new version of the resource."""
    rtype, fid = request.match_info["type"], request.match_info["id"]
    served_type(rtype, "update")
    principal = require_principal(request)
    require_scope(principal, rtype, "u")
    doc = await resource_body(request, rtype)
    if isinstance(doc.get("id"), str) and doc["id"].lower() != fid.lower():
        raise FhirError(400, "id_mismatch", "the resource's id must be the id in the URL")
    state = state_of(request)
    held = versions(state, rtype, fid)
    if not held and rtype != "Patient":
        raise not_found(rtype, fid)
    latest = RecordView.of(held[-1]) if held else None
    if latest is not None and latest.erased:
        raise FhirError(410, "erased", f"this {rtype} was erased at the patient's request")
    wanted = if_match(request)
    if wanted is not None and wanted != (latest.version if latest else 0):
        raise FhirError(412, "version_conflict", f"If-Match names version {wanted}, the latest is "
                                                 f"{latest.version if latest else 'none'}: read it again and retry")
    patient = updated_patient(doc, rtype, fid, latest)
    if not is_patient(state, patient):
        raise FhirError(422, "unknown_patient", "the resource's patient is not a registered patient of this ledger")
    resource = prepared(doc, rtype, patient, latest.fhir_id if latest else patient.hex())
    supersedes = bytes.fromhex(latest.record_id) if latest else None
    meta = await store_one(request, principal, NewRecord(patient, rtype, encoded(resource), supersedes=supersedes))
    served = to_fhir(resource, meta)
    status = 200 if latest else 201
    return fhir_response(served, status, version_headers(request, served, RecordView.of(meta), location=True))


@fhir_route
async def delete_instance(request: web.Request) -> web.StreamResponse:
    """DELETE /fhir/R4/Consent/<id>: revoke (the patient's signed consent.revoke)."""
    rtype, fid = request.match_info["type"], request.match_info["id"]
    served_type(rtype, "delete")
    principal = require_principal(request)
    require_scope(principal, rtype, "d")
    return await consent_api.revoke(request, principal, fid)


# -- transaction and batch ------------------------------------------------------------------------
def bundle_patient(state: StateReader, given: str | None) -> str | None:
    """The patient a Bundle's request names (`?patient=Patient/<id>` or `<id>`): a registered patient."""
    if given is None:
        return None
    key = ledger_id(given.removeprefix("Patient/"))
    if key is None or not is_patient(state, key):
        raise FhirError(422, "unknown_patient", "?patient= must name a registered patient by its ledger id (64 hex)")
    return key.hex()


def bundle_updates(state: StateReader, bundle: JSON) -> dict[int, JSON]:
    """By entry index, the latest version of each resource a PUT entry names (`Type/<id>`) that the
    ledger holds already: the entry is its next version (a Patient's, see latest_patient_record)."""
    out: dict[int, JSON] = {}
    entries = bundle.get("entry")
    for index, entry in enumerate(entries[:MAX_ENTRIES] if isinstance(entries, list) else []):
        asked = entry.get("request") if isinstance(entry, dict) else None
        url = asked.get("url") if isinstance(asked, dict) and asked.get("method") == "PUT" else None
        rtype, _, fid = url.partition("/") if isinstance(url, str) else ("", "", "")
        if rtype in TYPES and rtype != "Patient" and fid:
            try:
                held = versions(state, rtype, fid)
            except FhirError:
                continue
            if held:
                out[index] = held[-1]
    return out


def latest_patient_record(state: StateReader, patient: str) -> JSON | None:
    """The latest version of the patient's Patient record, None when it has none: a Patient stored
    again (its id is always the patient's) is that record's next version."""
    key = ledger_id(patient)
    held = versions(state, "Patient", patient) if key is not None and is_patient(state, key) else []
    return held[-1] if held else None


@fhir_route
async def post_bundle(request: web.Request) -> web.StreamResponse:
    """POST /fhir/R4 with a transaction or batch Bundle; `?patient=<ledger id>` names the Bundle's
    patient when its Patient carries no urn:medledger:identity identifier (a Synthea export)."""
    principal = require_principal(request)
    check_content_type(request)
    state = state_of(request)
    patient = bundle_patient(state, request.query.get("patient"))
    bundle = parse_bundle(await read_body(request, MAX_BUNDLE_BYTES))
    updates = bundle_updates(state, bundle)
    plan = plan_bundle(bundle, assign=lambda index, rtype: RecordView.of(updates[index]).logical_id
                       if index in updates else secrets.token_hex(32), patient=patient)
    failures = list(plan.failures)
    kept = []
    supersedes: dict[int, bytes] = {}
    for entry in plan.entries:
        problem: FhirError | None = None
        previous = updates.get(entry.index) if entry.resource_type != "Patient" else latest_patient_record(state, entry.patient)
        if previous is not None:
            supersedes[entry.index] = bytes.fromhex(previous["id"])
        perm = "u" if previous is not None else "c"
        if entry.resource_type not in TYPES:
            problem = FhirError(422, "unsupported_type", f"this server does not store {entry.resource_type} resources")
        elif not principal.may(entry.resource_type, perm):
            problem = FhirError(403, "insufficient_scope", f"the access token's scopes do not allow "
                                                           f"{'update' if perm == 'u' else 'create'} on {entry.resource_type}")
        elif previous is not None and previous["patient"] != entry.patient:
            problem = FhirError(422, "patient_mismatch", f"this {entry.resource_type} belongs to another patient on the ledger")
        elif previous is not None and previous.get("erased"):
            problem = FhirError(410, "erased", f"this {entry.resource_type} was erased at the patient's request")
        elif not is_patient(state, bytes.fromhex(entry.patient)):
            problem = FhirError(422, "unknown_patient", "the entry's patient is not a registered patient of this ledger")
        if problem is None:
            kept.append(entry)
        elif plan.kind == "transaction":
            raise FhirError(problem.status, problem.code, f"entry {entry.index} ({entry.resource_type}): {problem.message}",
                            problem.issue)
        else:
            failures.append(EntryFailure(entry.index, problem))
    # a new entry is registered under the id the plan gave it (other entries' references name it);
    # a new version gets a fresh record id (its logical id, the one referenced, is its first version's)
    items = [NewRecord(bytes.fromhex(e.patient), e.resource_type, encoded(e.resource), supersedes=supersedes.get(e.index),
                       record_id=None if e.index in supersedes else bytes.fromhex(e.record_id))
             for e in kept]
    results: Sequence[StoredRecord | CodedError] = await delegate_of(request).store_for(principal.identity, items) \
        if items else []
    stored: list[Any] = []
    versions_of: dict[int, str] = {}
    last_ms = 0
    for entry, got in zip(kept, results):
        if isinstance(got, CodedError):
            if plan.kind == "transaction":
                done = sum(1 for r in results if not isinstance(r, CodedError))
                raise FhirError(got.status if 400 <= got.status < 600 else 500, got.code,
                                f"entry {entry.index} ({entry.resource_type}): {got.message} ({done} of {len(items)} "
                                "entries were stored)")
            failures.append(EntryFailure(entry.index, FhirError(got.status, got.code, got.message)))
            continue
        meta = record_meta(state_of(request), got.record_id) or {}
        view = RecordView.of({"id": got.record_id.hex(), "patient": entry.patient, "resource_type": entry.resource_type,
                              "custodian": "", "author": "", **meta})
        versions_of[entry.index] = str(view.version)
        last_ms = max(last_ms, view.time_ms)
        stored.append(dataclasses.replace(entry, record_id=got.record_id.hex(), fhir_id=view.fhir_id))
    answered = Plan(kind=plan.kind, entries=tuple(stored), failures=tuple(sorted(failures, key=lambda f: f.index)),
                    size=plan.size)
    return fhir_response(response_bundle(answered, versions=versions_of, updated=frozenset(supersedes),
                                         last_modified=instant(last_ms) if last_ms else None))
