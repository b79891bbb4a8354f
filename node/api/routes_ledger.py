"""Routes that read health data from the ledger, each signed by a caller entitled to it.

A record's metadata, a patient's records, consents and audit trail, an institution's disclosures
and pending break-glass accesses, the decision on an access request. Each route names its authorizer
(`signed(...)`, node/api/signed.py); the patient and its guardian see all of a patient's file, a
grant holder only what its grants cover. `?format=fhir` answers with a FHIR Bundle where it applies.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.api import auth
from node.api.common import NODE_KEY, ApiError, hash_param, id_param, int_param, json_response, ms_param
from node.api.signed import signed
from node.app import queries
from node.runtime.runtime import Node

# What a scoped reader may see of a patient's file, computed once by the authorizer for the handler.
_SCOPED_KEY: web.RequestKey[list[dict[str, Any]]] = web.RequestKey("scoped", list)


def _may_read_patient(request: web.Request, signer: bytes) -> bool:
    node = request.app[NODE_KEY]
    return auth.may_read_patient(node.state_reader(), signer, id_param(request), node.now_ms())


def _may_see_records(request: web.Request, signer: bytes) -> bool:
    node = request.app[NODE_KEY]
    found = auth.readable_records(node.state_reader(), signer, id_param(request), node.now_ms())
    request[_SCOPED_KEY] = found
    return bool(found) or auth.may_read_patient(node.state_reader(), signer, id_param(request), node.now_ms())


def _may_see_consents(request: web.Request, signer: bytes) -> bool:
    node = request.app[NODE_KEY]
    found = auth.readable_consents(node.state_reader(), signer, id_param(request), node.now_ms())
    request[_SCOPED_KEY] = found
    return bool(found) or auth.may_read_patient(node.state_reader(), signer, id_param(request), node.now_ms())


def _may_read_record(request: web.Request, signer: bytes) -> bool:
    node = request.app[NODE_KEY]
    return auth.may_read_record(node.state_reader(), signer, id_param(request, "rid"), node.now_ms())


def _may_read_access(request: web.Request, signer: bytes) -> bool:
    return auth.may_read_access(request.app[NODE_KEY].state_reader(), signer, hash_param(request))


def _is_institution(request: web.Request, signer: bytes) -> bool:
    return auth.may_read_institution(signer, id_param(request))


def _may_read_inbox(request: web.Request, signer: bytes) -> bool:
    return auth.may_read_inbox(request.app[NODE_KEY].state_reader(), signer, id_param(request))


def _audit_bundle(node: Node, entries: list[dict[str, Any]]) -> web.Response:
    """Audit entries as a FHIR Bundle of AuditEvents."""
    from node.app import fhir_export

    return json_response(fhir_export.bundle([fhir_export.audit_event(e, chain_id=node.chain_id) for e in entries]))


@signed(_may_read_record)
async def get_record_meta(request: web.Request) -> web.Response:
    """A record's metadata on the ledger (its content stays at the custodian)."""
    node = request.app[NODE_KEY]
    found = queries.record(node.state_reader(), id_param(request, "rid"))
    if found is None:
        raise ApiError(404, "unknown_record", "no such record on the ledger")
    return json_response(found)


@signed(_may_see_records)
async def get_patient_records(request: web.Request) -> web.Response:
    """A patient's records: the patient and its guardian see every one, anyone else those it may read."""
    return json_response({"patient": request.match_info["id"], "records": request[_SCOPED_KEY]})


@signed(_may_see_consents)
async def get_patient_consents(request: web.Request) -> web.Response:
    """A patient's consents: all for the patient and its guardian, else those naming the signer."""
    consents = request[_SCOPED_KEY]
    if request.query.get("format") == "fhir":
        from node.app import fhir_export

        return json_response(fhir_export.bundle([fhir_export.consent_resource(c) for c in consents]))
    return json_response({"patient": request.match_info["id"], "consents": consents})


@signed(_may_read_patient)
async def get_patient_audit(request: web.Request) -> web.Response:
    """A patient's audit trail (every event touching the patient), between `since_ms` and `until_ms`."""
    node = request.app[NODE_KEY]
    entries = queries.patient_audit(node.state_reader(), id_param(request), since_ms=ms_param(request, "since_ms", 0) or 0,
                                    until_ms=ms_param(request, "until_ms", None))
    if request.query.get("format") == "fhir":
        return _audit_bundle(node, entries)
    return json_response({"patient": request.match_info["id"], "entries": entries})


@signed(_is_institution)
async def get_disclosures(request: web.Request) -> web.Response:
    """What an institution disclosed, between `since_ms` and `until_ms` (default: now)."""
    node = request.app[NODE_KEY]
    since = ms_param(request, "since_ms", 0) or 0
    until = ms_param(request, "until_ms", None)
    if until is None:
        until = node.now_ms()
    entries = queries.disclosures(node.state_reader(), id_param(request), since, until)
    if request.query.get("format") == "fhir":
        return _audit_bundle(node, entries)
    return json_response({"institution": request.match_info["id"], "since_ms": since, "until_ms": until,
                          "disclosures": entries})


@signed(_is_institution)
async def get_breakglass(request: web.Request) -> web.Response:
    """Break-glass grants on records the institution holds that it has not reviewed yet."""
    node = request.app[NODE_KEY]
    return json_response({"institution": request.match_info["id"],
                          "pending": queries.breakglass_pending(node.state_reader(), id_param(request))})


@signed(_may_read_access)
async def get_access(request: web.Request) -> web.Response:
    """The decision recorded for an access request (granted or denied), by its transaction hash."""
    node = request.app[NODE_KEY]
    found = queries.access_grant(node.state_reader(), hash_param(request))
    if found is None:
        raise ApiError(404, "unknown_access_request", "no committed access request with that transaction hash")
    return json_response(found)


@signed(_may_read_inbox)
async def get_inbox(request: web.Request) -> web.Response:
    """What care workflows address to an institution (node/app/care.py): Claims to its payer,
    accepted referrals and lab orders, prescriptions for the pharmacy a patient nominated, results
    and dispenses posted back; oldest first, from blocks after `after_height`, at most `limit`."""
    node = request.app[NODE_KEY]
    after = int_param(request.query.get("after_height", "0"), "after_height")
    limit = max(1, int_param(request.query.get("limit", str(queries.INBOX_LIMIT)), "limit"))
    entries = queries.inbox(node.state_reader(), id_param(request), after_height=after, limit=limit)
    return json_response({"institution": request.match_info["id"], "after_height": after, "entries": entries,
                          "more": len(entries) >= min(limit, queries.INBOX_LIMIT)})


@signed(_may_read_patient)
async def get_standing(request: web.Request) -> web.Response:
    """A patient's standing permissions (the pharmacy and insurer it nominated)."""
    node = request.app[NODE_KEY]
    return json_response({"patient": request.match_info["id"],
                          "standing": queries.standing(node.state_reader(), id_param(request))})
