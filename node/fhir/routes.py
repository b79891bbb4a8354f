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

This module dispatches and mounts; the search of records is record_search.py, the writes
record_writes.py, what every route shares (the records service on the app, the type check,
one audited read) context.py.

Every refusal is an OperationOutcome (node/fhir/answer.py). `install_fhir(app)` mounts the
routes; the app must hold the node (NODE_KEY), the token store (install_smart first) and the
records service (DELEGATE_KEY).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from urllib.parse import parse_qsl

from aiohttp import web

from node.api.common import NODE_KEY
from node.fhir import audit_api, consent_api, provenance
from node.fhir.answer import JSON, base_url, fhir_response, fhir_route, read_body
from node.fhir.bearer import TOKENS_KEY, require_principal, require_scope
from node.fhir.capability import capability_statement
from node.fhir.catalog import BASE_PATH, LEDGER_TYPES
from node.fhir.context import (
    DELEGATE_KEY,
    delegate_of,
    may_know_patient,
    read_one,
    served_type,
    software_version,
    state_of,
    strict_handling,
    version_headers,
)
from node.fhir.ledger import not_found, versions
from node.fhir.outcome import FhirError
from node.fhir.principal import Principal
from node.fhir.record_search import record_search
from node.fhir.record_writes import delete_instance, post_bundle, post_type, put_instance
from node.fhir.resources import RecordView, minimal_patient
from node.fhir.search import parse_search
from node.fhir.smart import TOKEN_PATH, public_base
from node.records.delegate import RecordAccess

MAX_FORM_BYTES = 16 * 1024  # a POST _search body
TYPE_PART = r"{type:[A-Z][A-Za-z]{1,63}}"
ID_PART = r"{id:[A-Za-z0-9\-.]{1,64}}"
__all__ = ["DELEGATE_KEY", "fhir_mount", "fhir_routes", "install_fhir"]


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


def fhir_mount(records: RecordAccess) -> Callable[[web.Application], None]:
    """A mount for `make_app(..., mounts=[install_smart, fhir_mount(records)])`: puts the records
    service on the app and mounts the routes."""

    def mount(app: web.Application) -> None:
        app[DELEGATE_KEY] = records
        install_fhir(app)

    return mount
