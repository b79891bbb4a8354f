"""Routes of the chain itself: blocks, the commit feed, and the node's status, health and metrics.

These are public: a block shows each transaction whole only to a caller entitled to it
(node/api/explorer.py), to anyone else its hash, index and result.
"""

from __future__ import annotations

from aiohttp import web

from node.api import explorer
from node.api.common import NODE_KEY, ApiError, int_param, json_response, wait_param
from node.api.signed import optional_signer
from node.chain.block import decode_block
from node.chain.tx import decode_tx
from node.core.crypto import sha256
from node.runtime.metrics import get_metrics as metrics_response
from node.runtime.runtime import Node


async def get_status(request: web.Request) -> web.Response:
    """The node's status (`Node.status`): public, and readable from any origin."""
    response = json_response(request.app[NODE_KEY].status())
    response.headers["Access-Control-Allow-Origin"] = "*"  # public; the dashboard reads every validator's
    return response


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format (unsigned, like /v1/status: it holds no health data)."""
    return await metrics_response(request, request.app[NODE_KEY].metrics)


async def get_health(request: web.Request) -> web.Response:
    """The API answers."""
    return json_response({"ok": True})


def block_or_404(node: Node, height: int) -> bytes:
    """The stored block at `height` (404 `unknown_block` when there is none)."""
    raw = node.store.block_bytes(height) if 1 <= height <= node.store.height else None
    if raw is None:
        raise ApiError(404, "unknown_block", f"no block at height {height} (current height {node.store.height})")
    return raw


async def get_block(request: web.Request) -> web.Response:
    """A block: header, certificate and its transactions, each whole only where the caller is
    entitled to it (node/api/explorer.py); to anyone else hash, index and result."""
    node = request.app[NODE_KEY]
    text = request.match_info["height"]
    height = node.store.height if text == "latest" else int_param(text, "height")
    signer = await optional_signer(request)
    raw = block_or_404(node, height)
    block = decode_block(raw, stored=True)
    state = node.state_reader()
    txs = []
    for index, encoded in enumerate(block.txs):
        tx = decode_tx(encoded, chain_id=node.chain_id)
        loc = node.store.tx_location(tx.hash)
        whole = explorer.entitled(state, signer, tx, node.identity.public_key)
        txs.append(explorer.tx_view(tx, index=index, result=loc.result if loc else None, whole=whole))
    cert = node.store.certificate(height)
    return json_response({"height": height, "hash": block.hash.hex(), "header": block.header.to_json(),
                          "certificate": cert.hex() if cert else None, "txs": txs})


async def get_commits(request: web.Request) -> web.Response:
    """Blocks from `since` on, with their transaction hashes (and, with `results=1`, each one's
    result); long-polls up to `wait` seconds."""
    node = request.app[NODE_KEY]
    since = int_param(request.query.get("since", "1"), "since")
    limit = min(int_param(request.query.get("limit", "100"), "limit"), 1000)
    wait = request.query.get("wait")
    with_results = request.query.get("results") in ("1", "true")
    if wait is not None and node.store.height < since:
        await node.wait_height(since, wait_param(wait))
    blocks = []
    for height in range(max(since, 1), min(node.store.height, since + limit - 1) + 1):
        raw = node.store.block_bytes(height)
        if raw is None:
            break
        block = decode_block(raw, stored=True)
        hashes = [sha256(t) for t in block.txs]
        entry = {"height": height, "hash": block.hash.hex(), "timestamp_ms": block.header.timestamp_ms,
                 "txs": [h.hex() for h in hashes]}
        if with_results:
            entry["results"] = [loc.result if (loc := node.store.tx_location(h)) else None for h in hashes]
        blocks.append(entry)
    return json_response({"height": node.store.height, "blocks": blocks})
