"""Routes for new institutions joining from a snapshot (docs/api.md, "Snapshots"): the genesis,
the list of this node's state snapshots, and their chunks.

The genesis is public (it holds what `/v1/status` already shows: the chain id, the validators
and the member institutions). Snapshots are not: the state holds no health data in the clear,
but it does hold patient-linkable metadata (identities, consents, record metadata, audit
entries), so only an institution admitted on the ledger (or this node itself) may fetch them,
by a signed request (node/api/auth.py) within its signer's rate and the IP rate; a chunk is at
most a few MiB and is read off the event loop. See docs/security-compliance.md.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from node.api.common import NODE_KEY, ApiError, int_param, json_response
from node.api.signed import signed
from node.app import queries
from node.app.roles import INSTITUTION
from storage.snapshots import SnapshotInvalid, attestations, list_snapshots, read_chunk


def _admitted_institution(request: web.Request, signer: bytes) -> bool:
    """This node's own key, or a key the ledger registers as an institution (admitted by a quorum)."""
    node = request.app[NODE_KEY]
    if signer == node.identity.public_key:
        return True
    found = queries.identity(node.state_reader(), signer)
    return found is not None and found.get("role") == INSTITUTION


async def get_genesis(request: web.Request) -> web.Response:
    """The genesis document of this network (what `node init --join` starts from)."""
    return json_response(request.app[NODE_KEY].genesis.to_json())


@signed(_admitted_institution)
async def get_snapshots(request: web.Request) -> web.Response:
    """This node's complete snapshots, newest first, each with its block, certificate and the
    validators' attestations of its entries."""
    node = request.app[NODE_KEY]
    root = node.snapshots.directory
    out = []
    for info in await asyncio.to_thread(list_snapshots, root) if root is not None else []:
        assert root is not None
        signed_by = await asyncio.to_thread(attestations, root, info.height)
        out.append({**info.to_json(), "chain_id": info.chain_id, "block": info.block.hex(),
                    "certificate": info.certificate.hex(), "state_sum": info.state_sum.hex(),
                    "attestations": [{"validator": s.hex(), "signature": sig.hex()} for s, sig in signed_by]})
    return json_response({"interval": node.snapshots.interval, "snapshots": out})


@signed(_admitted_institution)
async def get_snapshot_chunk(request: web.Request) -> web.Response:
    """Chunk `i` of the snapshot at `height`: its bytes (application/octet-stream)."""
    node = request.app[NODE_KEY]
    height = int_param(request.match_info["height"], "height")
    index = int_param(request.match_info["index"], "index")
    root = node.snapshots.directory
    try:
        if root is None:
            raise SnapshotInvalid("this node takes no snapshots")
        data = await asyncio.to_thread(read_chunk, root, height, index)
    except (SnapshotInvalid, OSError) as exc:
        raise ApiError(404, "unknown_snapshot", f"no such snapshot chunk here: {exc}") from None
    return web.Response(body=data, content_type="application/octet-stream")

