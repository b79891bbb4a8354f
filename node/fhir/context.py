"""What every FHIR route needs: the records service on the app, the committed state, the type
and interaction check, and reading one record version for the token's identity.

`DELEGATE_KEY` holds the app's `RecordAccess` (node/records/delegate.py), through which every
record is read (`read_for`, decided and audited on the ledger for the identity) and stored.
"""

from __future__ import annotations

import email.utils
import json
from importlib import metadata

from aiohttp import web

from node.api.common import NODE_KEY
from node.app.roles import identity_of
from node.app.state import StateReader
from node.core.errors import CodedError
from node.fhir.answer import JSON, base_url
from node.fhir.catalog import BASE_PATH, INTERACTIONS
from node.fhir.ledger import not_found, patient_metas
from node.fhir.outcome import FhirError
from node.fhir.principal import Principal
from node.fhir.resources import RecordView, etag, to_fhir
from node.records.delegate import RecordAccess

DELEGATE_KEY = web.AppKey("fhir_record_access", RecordAccess)
"""The records service the routes read and store through (node/records/delegate.py)."""


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
    # the records service decides, erasure included: it tells another patient's token nothing
    # (unknown_record), which is answered exactly as an id that does not exist
    [got] = await delegate_of(request).read_for(principal.identity, [bytes.fromhex(view.record_id)], principal.purpose,
                                                reason=principal.reason)
    if isinstance(got, CodedError):
        if got.code == "unknown_record":
            raise not_found(view.resource_type, view.fhir_id)
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
