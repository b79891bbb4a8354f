"""Routes of data-sharing agreements: public reads of what institutions agreed on the ledger.

GET /v1/agreements/{id} answers an agreement's latest version (`?version=N` for another), with
its status, parties, signatures, policy (canonical form) and digest: what `medledger policy
show` prints and what a party checks before `medledger policy sign`. GET
/v1/institutions/{id}/agreements answers the versions in force naming the institution. Both are
public, like the validator set: an agreement holds codes and institution ids only, never a
patient's data or free text (node/app/agreements.py), and every member should see the rules
data is shared under. Time is the node's, for `expired`.
"""

from __future__ import annotations

from aiohttp import web

from node.api.common import NODE_KEY, ApiError, id_param, int_param, json_response
from node.app import queries
from node.app.agreements import check_agreement_id, check_version


async def get_agreement(request: web.Request) -> web.Response:
    """An agreement's version (the latest unless `?version=N`), with its status."""
    node = request.app[NODE_KEY]
    agreement_id = request.match_info["id"]
    check_agreement_id(agreement_id)  # a TxRejected answers 400 with its code (errors_middleware)
    version = None
    if "version" in request.query:
        version = int_param(request.query["version"], "version")
        check_version(version)
    found = queries.agreement(node.state_reader(), agreement_id, version, node.now_ms())
    if found is None:
        raise ApiError(404, "unknown_agreement", "no agreement with this id and version")
    return json_response(found)


async def get_institution_agreements(request: web.Request) -> web.Response:
    """The agreement versions in force naming the institution (at most 16)."""
    node = request.app[NODE_KEY]
    institution = id_param(request)
    found = queries.agreements_of(node.state_reader(), institution, node.now_ms())
    return json_response({"institution": institution.hex(), "agreements": found})
