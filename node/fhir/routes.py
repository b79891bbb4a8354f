"""The FHIR R4 REST routes at /fhir/R4: metadata, read, vread, search, create, update, transaction.

Every route checks the bearer token (node/fhir/bearer.py) and the token's scope for the
interaction, then acts through the records service on the app (`DELEGATE_KEY`, the
`RecordAccess` of node/records/delegate.py) for the token's identity and purpose:

- **read / vread** (`GET /<Type>/<id>[/_history/<v>]`): the version's metadata from the ledger
  (node/fhir/ledger.py), then `read_for`: the access is decided and audited on the ledger, a
  refusal answers 403 with the ledger's code (`no_consent`, `consent_revoked`...), an erased
  record 410. A patient without a Patient record has a minimal Patient (its ledger id).
- **search** (`GET /<Type>?...`, `POST /<Type>/_search` with a form body, `GET /?_type=...`):
  candidates from the ledger's metadata (a patient's records; a patient token searches its own),
  selected by `matches_meta`; `predict` leaves out what the identity may not see, without a
  denial in the patient's trail; one page of the rest is read with `read_for` (the audited
  read) and matched on content (`code`, `date`). A searchset Bundle with self/next links.
- **create / update** (`POST /<Type>`, `PUT /<Type>/<id>`): the resource is validated, its patient
  taken from `subject`/`patient` (`Patient/<ledger id>`; a Patient names it in an identifier of
  system urn:medledger:identity) and stored with `store_for`; an update supersedes the latest
  version (`If-Match: W/"<v>"` must name it, else 412). 201/200 with Location and ETag.
- **transaction / batch** (`POST /fhir/R4` with a Bundle): `plan_bundle`, then one `store_for`
  for every entry, answered with the transaction-response Bundle.
- AuditEvent, Consent and Provenance are served from the ledger itself (audit_api.py,
  consent_api.py, provenance.py).

Every refusal is an OperationOutcome (node/fhir/answer.py). `install_fhir(app)` mounts the
routes; the app must hold the node (NODE_KEY), the token store (install_smart first) and the
records service (DELEGATE_KEY).
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import re
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from importlib import metadata
from node.api.common import NODE_KEY
from node.app.fhir_export import instant
from node.app.roles import identity_of
from node.app.state import StateReader
from node.core.errors import CodedError
from node.fhir import audit_api, consent_api, provenance
from node.fhir.answer import (
    JSON,
    base_url,
    check_content_type,
    fhir_response,
    fhir_route,
    parse_json_object,
    read_body,
)
from node.fhir.bearer import TOKENS_KEY, require_principal, require_scope
from node.fhir.capability import capability_statement
from node.fhir.catalog import BASE_PATH, INTERACTIONS, LEDGER_TYPES, TYPES
from node.fhir.ledger import is_patient, ledger_id, not_found, patient_metas, record_meta, versions
from node.fhir.outcome import FhirError, operation_outcome
from node.fhir.principal import Principal
from node.fhir.resources import RecordView, as_patient, etag, latest_versions, link_patient, minimal_patient, to_fhir
from node.fhir.search import Search, matches_content, matches_meta, parse_search, searchset
from node.fhir.smart import TOKEN_PATH, public_base
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
from node.records.delegate import NewRecord, RecordAccess, StoredRecord
from node.records.fhir import MAX_RESOURCE_BYTES, FhirInvalid, validate_resource

DELEGATE_KEY = web.AppKey("fhir_record_access", RecordAccess)
"""The records service the routes read and store through (node/records/delegate.py)."""

MAX_FORM_BYTES = 16 * 1024  # a POST _search body
TYPE_PART = r"{type:[A-Z][A-Za-z]{1,63}}"
ID_PART = r"{id:[A-Za-z0-9\-.]{1,64}}"
_ETAG = re.compile(r'(?:W/)?"([0-9]{1,9})"')


# -- common steps ---------------------------------------------------------------------------------
def delegate_of(request: web.Request) -> RecordAccess:
    return request.app[DELEGATE_KEY]


def state_of(request: web.Request) -> StateReader:
    return request.app[NODE_KEY].state_reader()


def served_type(name: str, interaction: str) -> None:
    """Refuse a type this server does not serve (404) or an interaction it does not serve on it (405)."""
    offered = INTERACTIONS.get(name)
    if offered is None:
        raise FhirError(404, "unsupported_type", f"this server does not serve {name[:64]} (see {BASE_PATH}/metadata)",
                        issue="not-supported")
    if interaction not in offered:
        raise FhirError(405, "unsupported_interaction", f"{interaction} is not supported on {name} (it supports "
                                                        f"{', '.join(offered)}; see {BASE_PATH}/metadata)",
                        issue="not-supported")


def strict_handling(request: web.Request) -> bool:
    """Whether the client asked for unknown search parameters to be refused (`Prefer: handling=strict`)."""
    return "handling=strict" in request.headers.get("Prefer", "").replace(" ", "")


def http_date(ms: int) -> str:
    return email.utils.formatdate(ms // 1000, usegmt=True)


def version_headers(request: web.Request, served: JSON, view: RecordView, *, location: bool) -> dict[str, str]:
    headers = {"ETag": etag(view.version), "Last-Modified": http_date(view.time_ms)}
    if location:
        headers["Location"] = f"{base_url(request)}/{served['resourceType']}/{served['id']}/_history/{view.version}"
    return headers


async def read_one(request: web.Request, principal: Principal, meta: JSON) -> JSON:
    """The served resource of one record version, read for the principal (audited on the ledger)."""
    view = RecordView.of(meta)
    if view.erased:
        raise FhirError(410, "erased", f"this {view.resource_type} was erased at the patient's request")
    [got] = await delegate_of(request).read_for(principal.identity, [bytes.fromhex(view.record_id)], principal.purpose,
                                                reason=principal.reason)
    if isinstance(got, CodedError):
        raise got
    return to_fhir(json.loads(got), meta)


def may_know_patient(state: StateReader, principal: Principal, patient: str) -> bool:
    """Whether the principal may learn that `patient` is registered here without reading a record:
    the patient itself, or staff of an institution the patient registered at or that holds its records."""
    if principal.identity.hex() == patient:
        return True
    if principal.institution is None:
        return False
    found = identity_of(state, bytes.fromhex(patient)) or {}
    if found.get("attested_by") == principal.institution:
        return True
    mine = principal.institution.hex()
    return any(m["custodian"] == mine for m in patient_metas(state, bytes.fromhex(patient)))


def software_version() -> str:
    try:
        return metadata.version("medledger")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- metadata -------------------------------------------------------------------------------------
@fhir_route
async def get_metadata(request: web.Request) -> web.StreamResponse:
    """GET /fhir/R4/metadata: the CapabilityStatement (no token needed, as FHIR wants)."""
    config = request.app[NODE_KEY].config
    return fhir_response(capability_statement(base_url(request), public_base(request, config) + TOKEN_PATH,
                                              software_version=software_version()))


# -- read and vread ---------------------------------------------------------------------------------
@fhir_route
async def get_instance(request: web.Request) -> web.StreamResponse:
    """GET /fhir/R4/<Type>/<id>."""
    rtype, fid = request.match_info["type"], request.match_info["id"]
    served_type(rtype, "read")
    principal = require_principal(request)
    require_scope(principal, rtype, "r")
    if rtype in LEDGER_TYPES:
        return fhir_response(await ledger_read(request, principal, rtype, fid))
    return await read_version(request, principal, rtype, fid, None)


@fhir_route
async def get_version(request: web.Request) -> web.StreamResponse:
    """GET /fhir/R4/<Type>/<id>/_history/<v>."""
    rtype, fid, vid = request.match_info["type"], request.match_info["id"], request.match_info["vid"]
    served_type(rtype, "vread")
    principal = require_principal(request)
    require_scope(principal, rtype, "r")
    if not vid.isdigit() or len(vid) > 9:
        raise not_found(rtype, f"{fid}/_history/{vid}")
    return await read_version(request, principal, rtype, fid, int(vid))


async def read_version(request: web.Request, principal: Principal, rtype: str, fid: str,
                       version: int | None) -> web.StreamResponse:
    state = state_of(request)
    held = versions(state, rtype, fid)
    if not held:  # a registered patient without a Patient record
        patient = fid.lower()
        if version not in (None, 1) or not may_know_patient(state, principal, patient):
            raise not_found(rtype, fid)
        return fhir_response(minimal_patient(patient))
    if version is None:
        meta = held[-1]
    else:
        found = [m for m in held if RecordView.of(m).version == version]
        if not found:
            raise not_found(rtype, f"{fid}/_history/{version}")
        meta = found[0]
    served = await read_one(request, principal, meta)
    return fhir_response(served, 200, version_headers(request, served, RecordView.of(meta), location=False))


async def ledger_read(request: web.Request, principal: Principal, rtype: str, fid: str) -> JSON:
    state = state_of(request)
    delegate = delegate_of(request)
    if rtype == "Consent":
        return consent_api.read(state, principal, fid, request.app[NODE_KEY].now_ms())
    if rtype == "Provenance":
        return provenance.read(state, delegate, principal, fid)
    raise FhirError(405, "unsupported_interaction", f"read is not supported on {rtype}", issue="not-supported")


# -- search ----------------------------------------------------------------------------------------
async def search_query(request: web.Request) -> list[tuple[str, str]]:
    """The search's parameters: the query string, and for POST _search the form body too."""
    query = list(request.query.items())
    if request.method == "POST":
        if request.content_type != "application/x-www-form-urlencoded":
            raise FhirError(415, "unsupported_media_type", "POST _search takes a form body "
                                                           "(application/x-www-form-urlencoded)")
        data = await read_body(request, MAX_FORM_BYTES)
        try:
            query += parse_qsl(data.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(data),
                               max_num_fields=64)
        except (ValueError, UnicodeDecodeError):
            raise FhirError(400, "invalid_search", "the body is not a form (name=value pairs joined by '&')") from None
    return query


@fhir_route
async def search_type(request: web.Request) -> web.StreamResponse:
    """GET /fhir/R4/<Type>?... and POST /fhir/R4/<Type>/_search."""
    rtype = request.match_info["type"]
    served_type(rtype, "search-type")
    principal = require_principal(request)
    require_scope(principal, rtype, "s")
    query = await search_query(request)
    node = request.app[NODE_KEY]
    base = f"{base_url(request)}/{rtype}"
    if rtype in LEDGER_TYPES:
        state = node.state_reader()
        if rtype == "AuditEvent":
            return fhir_response(audit_api.search(state, principal, query, base, node.now_ms(), node.chain_id,
                                                  strict=strict_handling(request)))
        if rtype == "Consent":
            return fhir_response(consent_api.search(state, principal, query, base, node.now_ms(),
                                                    strict=strict_handling(request)))
        return fhir_response(provenance.search(state, delegate_of(request), principal, query, base, node.now_ms(),
                                               strict=strict_handling(request)))
    search = parse_search(rtype, query, node.clock_ms(), strict=strict_handling(request))
    return fhir_response(await record_search(request, principal, search, base))


@fhir_route
async def search_system(request: web.Request) -> web.StreamResponse:
    """GET /fhir/R4?_type=...: a search across the record types (those the token may search)."""
    principal = require_principal(request)
    node = request.app[NODE_KEY]
    search = parse_search(None, await search_query(request), node.clock_ms(), strict=strict_handling(request))
    named = any(name == "_type" for name, _ in search.params)
    refused = [t for t in search.types if not principal.may(t, "s")]
    if refused and named:
        require_scope(principal, refused[0], "s")
    search = dataclasses.replace(search, types=tuple(t for t in search.types if principal.may(t, "s")))
    if not search.types:
        require_scope(principal, "*", "s")
    return fhir_response(await record_search(request, principal, search, base_url(request)))


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
    raise FhirError(400, "search_patient_required", "name the patient (patient=Patient/<id>, or subject=) or the ids (_id=) to "
                                             "search: a search over every patient's records is not supported")


def candidates(state: StateReader, principal: Principal, search: Search) -> list[Candidate]:
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
    patient = patient_named(doc, rtype) if rtype == "Patient" or latest is None else bytes.fromhex(latest.patient)
    if rtype == "Patient" and patient.hex() != fid.lower():
        raise FhirError(422, "patient_mismatch", "a Patient's ledger id identifier must be its id")
    if latest is not None and rtype != "Patient":
        named = doc.get(TYPES[rtype].patient_element or "subject")
        if named is not None and patient_named(doc, rtype) != patient:
            raise FhirError(422, "patient_mismatch", f"this {rtype} belongs to another patient on the ledger")
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
    """POST /fhir/R4 with a transaction or batch Bundle."""
    principal = require_principal(request)
    check_content_type(request)
    bundle = parse_bundle(await read_body(request, MAX_BUNDLE_BYTES))
    state = state_of(request)
    updates = bundle_updates(state, bundle)
    plan = plan_bundle(bundle, assign=lambda index, rtype: RecordView.of(updates[index]).logical_id
                       if index in updates else secrets.token_hex(32))
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
    items = [NewRecord(bytes.fromhex(e.patient), e.resource_type, encoded(e.resource), supersedes=supersedes.get(e.index))
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


# -- anything else ---------------------------------------------------------------------------------
@fhir_route
async def unknown_path(request: web.Request) -> web.StreamResponse:
    raise FhirError(404, "unsupported_interaction", f"{request.method} {request.path[:120]} is not a FHIR interaction this "
                                                    f"server supports (see {BASE_PATH}/metadata)", issue="not-supported")


def fhir_routes() -> list[web.RouteDef]:
    """The routes, most specific first; the last answers any other path under /fhir/R4."""
    typed = f"{BASE_PATH}/{TYPE_PART}"
    return [
        web.get(f"{BASE_PATH}/metadata", get_metadata),
        web.get(BASE_PATH, search_system), web.get(BASE_PATH + "/", search_system),
        web.post(BASE_PATH, post_bundle), web.post(BASE_PATH + "/", post_bundle),
        web.post(f"{typed}/_search", search_type),
        web.get(typed, search_type),
        web.post(typed, post_type),
        web.get(f"{typed}/{ID_PART}/_history/{{vid:[A-Za-z0-9\\-.]{{1,64}}}}", get_version),
        web.get(f"{typed}/{ID_PART}", get_instance),
        web.put(f"{typed}/{ID_PART}", put_instance),
        web.delete(f"{typed}/{ID_PART}", delete_instance),
        web.route("*", BASE_PATH + "/{tail:.*}", unknown_path),
    ]


def install_fhir(app: web.Application) -> None:
    """Mount the FHIR routes on the API's `app`: it holds the node (NODE_KEY), the records service
    (DELEGATE_KEY) and the token store (mount install_smart before this)."""
    missing = [name for name, key in (("NODE_KEY", NODE_KEY), ("DELEGATE_KEY", DELEGATE_KEY),
                                      ("TOKENS_KEY (install_smart)", TOKENS_KEY)) if key not in app]
    if missing:
        raise RuntimeError(f"install_fhir needs on the app: {', '.join(missing)}")
    app.router.add_routes(fhir_routes())
