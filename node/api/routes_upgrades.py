"""Route of the protocol upgrades: what is scheduled on the ledger, and what this node supports.

Public like /v1/status: an operator (`medledger node upgrade-check`) compares the schedule with
the versions their binary supports before the upgrade height comes.
"""

from __future__ import annotations

from aiohttp import web

from node.api.common import NODE_KEY, json_response
from node.app.upgrades import upgrades_json


async def get_upgrades(request: web.Request) -> web.Response:
    """The version of the next height, the scheduled upgrades and the pending proposals, with
    the chain's height and the versions this node's binary supports."""
    node = request.app[NODE_KEY]
    height = node.store.height
    body = {"height": height, "supported_versions": list(node.blocks.supported),
            **upgrades_json(node.state_reader(), height + 1)}
    return json_response(body)
