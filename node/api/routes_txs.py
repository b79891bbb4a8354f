"""Routes of transactions: submitting them (`POST /v1/txs`), their status and their inclusion proofs.

A body holds one transaction or an array of them (msgpack); each is admitted by the runtime, which
checks it once. One refused transaction answers with its code and the status in `ADMISSION_STATUS`;
a batch answers 202 with a result per transaction, or 503 with `Retry-After` when the mempool was
full for some of them (the admitted ones have their hash in the results; send the others again). `?wait=` long-polls for the commit.
"""

from __future__ import annotations


from aiohttp import web

from node.api import explorer
from node.api.common import MSGPACK_TYPES, NODE_KEY, ApiError, hash_param, json_response, wait_param
from node.api.routes_chain import block_or_404
from node.api.signed import optional_signer
from node.chain.block import decode_block
from node.chain.tx import decode_tx
from node.core.encoding import DecodeError, decode
from node.core.merkle import inclusion_proof, leaf_hash, verify_inclusion

RETRY_AFTER_S = 1  # what a full mempool asks a client to wait before sending its refused transactions again
ADMISSION_STATUS = {"mempool_full": 503, "already_committed": 409, "nonce_replayed": 409, "already_registered": 409,
                    "not_registered": 403, "sender_limit": 429}
"""HTTP status of a refused single transaction by its code (others are 400)."""


async def post_txs(request: web.Request) -> web.Response:
    """Submit one transaction or a batch (msgpack)."""
    node = request.app[NODE_KEY]
    if request.content_type not in MSGPACK_TYPES:
        raise ApiError(415, "unsupported_media_type", "send transactions as msgpack (Content-Type: application/msgpack)")
    limit = node.config.api.max_body_bytes
    data = await request.read()
    try:
        value = decode(data, max_bytes=limit, max_items=max(node.config.api.max_txs_per_request, 16))
    except DecodeError as exc:
        raise ApiError(400, "malformed_msgpack", str(exc)) from None
    if not isinstance(value, list) or not value:
        raise ApiError(400, "malformed_tx", "body must be one transaction (an array of 6 fields) or a non-empty array of them")
    single = not isinstance(value[0], list)
    items = [value] if single else value
    if len(items) > node.config.api.max_txs_per_request:
        raise ApiError(413, "too_many_txs", f"at most {node.config.api.max_txs_per_request} transactions per request")
    # the signatures are verified on the node's verifying processes with the loop free; then the
    # transactions are admitted in order, votes and proposals getting the loop between chunks
    results = await node.admit_async(items)
    rendered = [
        {"hash": r.hash.hex(), "status": "pending"} if r.error is None and r.hash is not None
        else {"error": r.error, "message": r.message, **({"hash": r.hash.hex()} if r.hash else {})}
        for r in results
    ]
    if single:
        r = results[0]
        if r.error is not None:
            status = ADMISSION_STATUS.get(r.error, 400)
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status in (429, 503) else None
            raise ApiError(status, r.error, r.message, headers=headers, **({"hash": r.hash.hex()} if r.hash else {}))
        wait = request.query.get("wait")
        if wait is not None and r.hash is not None:
            await node.wait_committed(r.hash, wait_param(wait))
            return json_response(node.tx_status(r.hash), status=200)
        return json_response(rendered[0], status=202)
    accepted = sum(1 for r in results if r.error is None)
    doc = {"accepted": accepted, "rejected": len(results) - accepted, "results": rendered}
    if any(r.error == "mempool_full" for r in results):
        # overload: what was admitted is in `results` (with its hash); the rest may come again
        response = json_response(doc, status=503)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    return json_response(doc, status=202 if accepted else 400)


async def get_tx(request: web.Request) -> web.Response:
    """A transaction's status: pending, committed (with its result) or unknown (404)."""
    node = request.app[NODE_KEY]
    tx_hash = hash_param(request)
    wait = request.query.get("wait")
    if wait is not None:
        await node.wait_committed(tx_hash, wait_param(wait))
    status = node.tx_status(tx_hash)
    if status["status"] == "unknown":
        raise ApiError(404, "unknown_tx", "no such transaction in the chain or the mempool", hash=tx_hash.hex(), status="unknown")
    return json_response(status)


async def get_tx_proof(request: web.Request) -> web.Response:
    """A committed transaction's Merkle inclusion proof. Everyone gets the leaf's hash, which is
    all the proof needs; the leaf itself (the encoded transaction, whose SHA-256 is the tx hash)
    only a caller entitled to the transaction (node/api/explorer.py)."""
    node = request.app[NODE_KEY]
    tx_hash = hash_param(request)
    signer = await optional_signer(request)
    loc = node.store.tx_location(tx_hash)
    if loc is None:
        raise ApiError(404, "unknown_tx", "transaction is not committed", hash=tx_hash.hex())
    block = decode_block(block_or_404(node, loc.height), stored=True)
    path = inclusion_proof(block.txs, loc.index)
    leaf = block.txs[loc.index]
    assert verify_inclusion(leaf, loc.index, len(block.txs), path, block.header.tx_root)
    tx = decode_tx(leaf, chain_id=node.chain_id)
    whole = explorer.entitled(node.state_reader(), signer, tx, node.identity.public_key)
    return json_response({
        "hash": tx_hash.hex(), "height": loc.height, "index": loc.index, "size": len(block.txs),
        **({"leaf": leaf.hex()} if whole else {"leaf_withheld": explorer.WITHHELD}),
        "leaf_hash": leaf_hash(leaf).hex(), "path": [p.hex() for p in path], "tx_root": block.header.tx_root.hex(),
        "block_hash": block.hash.hex(), "header": block.header.to_json(),
        "leaf_hash_is": "sha256(0x00 || leaf); nodes sha256(0x01 || left || right) (RFC 6962)",
    })
