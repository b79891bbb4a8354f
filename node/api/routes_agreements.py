"""Routes of data-sharing agreements: public reads of what institutions agreed on the ledger.

GET /v1/agreements (`?in_force=1`, the only listing) answers a page of the agreements in force,
each as a summary without its policy text (parties with their names and kinds, purposes,
status, digest, the height it came into force at): what the dashboard's network page shows,
`?limit=N` (1 to 100) and `?after=<agreement id>` paging. GET /v1/agreements/{id} answers an agreement's latest version (`?version=N` for another), with
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
from node.api.routes_institutions import limit_param
from node.app.agreements import check_agreement_id, check_version

IN_FORCE_VALUES = ("1", "true")


async def get_agreements(request: web.Request) -> web.Response:
    """A page of the agreements in force: {"height", "agreements": [summary...], "next": the
    agreement id to pass as `after` when more follow, else null}."""
    node = request.app[NODE_KEY]
    if request.query.get("in_force", "1") not in IN_FORCE_VALUES:
        raise ApiError(400, "bad_in_force", "only the agreements in force are listed (in_force=1); "
                                            "read any other version with GET /v1/agreements/{id}?version=N")
    after = request.query.get("after")
    if after is not None:
        check_agreement_id(after)  # a TxRejected answers 400 with its code (errors_middleware)
    limit = limit_param(request)
    height = node.store.height
    found, nxt = queries.agreements_in_force(node.state_reader(), node.now_ms(), after=after, limit=limit)
    return json_response({"height": height, "agreements": found, "next": nxt})


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
