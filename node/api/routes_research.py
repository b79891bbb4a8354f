"""Routes of research: studies on the ledger and extracts coordinated across custodians.

A researcher posts a signed extract request to any node, which coordinates it: each custodian is
asked, with the coordinator's countersignature, to prepare its part and then to record the release
(node/research/service.py).
"""

from __future__ import annotations

from aiohttp import web

from node.api.common import NODE_KEY, RESEARCH_KEY, ApiError, json_response, msgpack_body
from node.app import queries
from node.app.fields import check_study_id
from node.research.service import ExtractRequest


async def get_study(request: web.Request) -> web.Response:
    """A study registered on the ledger (public)."""
    node = request.app[NODE_KEY]
    study_id = request.match_info["study"]
    check_study_id(study_id)  # a TxRejected answers 400 with its code (errors_middleware)
    found = queries.study(node.state_reader(), study_id, node.now_ms())
    if found is None:
        raise ApiError(404, "unknown_study", "no such study")
    return json_response(found)


async def post_research_extract(request: web.Request) -> web.Response:
    """A researcher's signed extract request; this node coordinates the custodians."""
    node = request.app[NODE_KEY]
    service = request.app[RESEARCH_KEY]
    doc = await msgpack_body(request, 64 * 1024)
    req = ExtractRequest.from_dict(doc, node.chain_id)
    return json_response(await service.coordinate(req))


async def post_research_step(request: web.Request) -> web.Response:
    """A coordinator's countersigned step at this custodian: prepare or record."""
    node = request.app[NODE_KEY]
    service = request.app[RESEARCH_KEY]
    step = request.match_info["step"]
    envelope = await msgpack_body(request, 2 * 1024 * 1024)
    payload, coordinator = service.check_coordinator(envelope)
    req = ExtractRequest.from_dict(payload.get("request"), node.chain_id)
    if step == "prepare":
        return json_response(service.prepare(req, coordinator))
    included, resources, release_hash = payload.get("included"), payload.get("resources"), payload.get("release_hash")
    if not (isinstance(included, list) and len(included) <= 100_000 and all(isinstance(x, str) for x in included)
            and isinstance(resources, int) and isinstance(release_hash, bytes) and len(release_hash) == 32):
        raise ApiError(400, "malformed_request", "included, resources and release_hash are required")
    return json_response({"tx": await service.record(req, coordinator, included, release_hash)})
