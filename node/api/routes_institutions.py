"""Route of the network's institutions: who takes part, of which kind, and who validates.

GET /v1/institutions answers a page of the ledger's institutions (those of the genesis and
those admitted by a governance vote), sorted by id: each one's id, name, kind (`unspecified`
when recorded without one), whether it is in the validator set deciding the next block, and
how many agreements in force name it. `?limit=N` (1 to 100, default 100) and `?after=<id>` (the
`next` of the previous page) page through them. Public, like the validator set and the
agreements: an institution's name and kind are on the ledger for every member to see
(docs/api.md). The dashboard's network page groups them by kind.
"""

from __future__ import annotations

from aiohttp import web

from node.api.common import NODE_KEY, ApiError, int_param, json_response, parse_hex32
from node.app import queries


def limit_param(request: web.Request) -> int:
    """`?limit=N`: a page size from 1 to `queries.MAX_PAGE` (default the maximum)."""
    text = request.query.get("limit")
    if text is None:
        return queries.MAX_PAGE
    limit = int_param(text, "limit")
    if not 1 <= limit <= queries.MAX_PAGE:
        raise ApiError(400, "bad_limit", f"limit must be from 1 to {queries.MAX_PAGE}")
    return limit


async def get_institutions(request: web.Request) -> web.Response:
    """A page of institutions: {"height", "institutions": [{id, name, kind, validator,
    agreements_in_force}], "next": id of the last one when more follow, else null}."""
    node = request.app[NODE_KEY]
    after = None
    if "after" in request.query:
        after = parse_hex32(request.query["after"])
        if after is None:
            raise ApiError(400, "bad_after", "after must be an institution id (64 hex characters)")
    limit = limit_param(request)
    genesis = node.genesis
    genesis_ids = [i.id for i in genesis.institutions] + [v.id for v in genesis.validators]
    height = node.store.height
    validators = frozenset(node.membership.at(height + 1).validators)
    found, nxt = queries.institutions(node.state_reader(), genesis_ids, validators, node.now_ms(),
                                      after=after, limit=limit)
    return json_response({"height": height, "institutions": found, "next": None if nxt is None else nxt.hex()})
