"""Routes of the chain itself: blocks, the commit feed, and the node's status, health and metrics.

These are public: a block shows each transaction whole only to a caller entitled to it
(node/api/explorer.py), to anyone else its hash, index and result. A block's transactions come
in pages (`?tx_offset=&tx_limit=`, the explorer's paging over a 700-transaction block), and the
commit feed can leave out the transaction hashes (`?hashes=0`: heights, times and counts only,
what the network page's chart needs at any block rate).
"""

from __future__ import annotations

from typing import Any

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


MAX_TX_PAGE = 1000  # transactions of a block in one answer when the caller asks for a page


async def get_block(request: web.Request) -> web.Response:
    """A block: header, certificate and its transactions, each whole only where the caller is
    entitled to it (node/api/explorer.py); to anyone else hash, index and result.

    Without `tx_offset`/`tx_limit` every transaction is listed (what the CLI reads); with either,
    `tx_limit` (1..1000, default 100) transactions from `tx_offset` (default 0). `tx_count` is
    the block's number of transactions and `tx_offset` the index of the first one listed, always."""
    node = request.app[NODE_KEY]
    text = request.match_info["height"]
    height = node.store.height if text == "latest" else int_param(text, "height")
    paged = "tx_offset" in request.query or "tx_limit" in request.query
    offset = int_param(request.query.get("tx_offset", "0"), "tx_offset")
    limit = min(max(int_param(request.query.get("tx_limit", "100"), "tx_limit"), 1), MAX_TX_PAGE)
    signer = await optional_signer(request)
    raw = block_or_404(node, height)
    block = decode_block(raw, stored=True)
    state = node.state_reader()
    window = range(offset, min(len(block.txs), offset + limit)) if paged else range(len(block.txs))
    txs = []
    for index in window:
        tx = decode_tx(block.txs[index], chain_id=node.chain_id)
        loc = node.store.tx_location(tx.hash)
        whole = explorer.entitled(state, signer, tx, node.identity.public_key)
        txs.append(explorer.tx_view(tx, index=index, result=loc.result if loc else None, whole=whole))
    cert = node.store.certificate(height)
    return json_response({"height": height, "hash": block.hash.hex(), "header": block.header.to_json(),
                          "certificate": cert.hex() if cert else None, "tx_count": len(block.txs),
                          "tx_offset": window.start if paged else 0, "txs": txs,
                          "committed_height": node.store.height})


async def get_commits(request: web.Request) -> web.Response:
    """Blocks from `since` on, with their time, transaction count and hashes (and, with
    `results=1`, each one's result; with `hashes=0`, no hashes nor results: heights, times and
    counts only); long-polls up to `wait` seconds."""
    node = request.app[NODE_KEY]
    since = int_param(request.query.get("since", "1"), "since")
    limit = min(int_param(request.query.get("limit", "100"), "limit"), 1000)
    wait = request.query.get("wait")
    with_hashes = request.query.get("hashes") not in ("0", "false")
    with_results = with_hashes and request.query.get("results") in ("1", "true")
    if wait is not None and node.store.height < since:
        await node.wait_height(since, wait_param(wait))
    blocks = []
    for height in range(max(since, 1), min(node.store.height, since + limit - 1) + 1):
        raw = node.store.block_bytes(height)
        if raw is None:
            break
        block = decode_block(raw, stored=True)
        entry: dict[str, Any] = {"height": height, "hash": block.hash.hex(), "timestamp_ms": block.header.timestamp_ms,
                                 "proposer": block.header.proposer.hex(), "tx_count": len(block.txs)}
        if not with_hashes:
            blocks.append(entry)
            continue
        hashes = [sha256(t) for t in block.txs]
        entry["txs"] = [h.hex() for h in hashes]
        if with_results:
            known = node.blocks.results_of(height)
            entry["results"] = list(known) if known is not None else [
                loc.result if (loc := node.store.tx_location(h)) else None for h in hashes]
        blocks.append(entry)
    return json_response({"height": node.store.height, "blocks": blocks})
