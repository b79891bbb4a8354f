"""Routes of the custodian: off-chain records uploaded, fetched under a grant, and discarded.

A practitioner's client uploads a record's ciphertext and wrapped keys; a reader fetches it with a
signed request the custodian checks against the ledger's grants (node/records/custodian.py); an
institution fetches for one of its practitioners with a delegated fetch (`fetch-delegated`). A
fetch for a record another validator holds is forwarded to that custodian's API.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from node.api.common import (
    CLIENT_SSL_KEY,
    CUSTODIAN_KEY,
    NODE_KEY,
    SIGNER_LIMIT_KEY,
    ApiError,
    id_param,
    json_response,
    msgpack_body,
    rate_limited,
)
from node.api.middleware import take_address_token
from node.api.signed import signed
from node.app import queries
from node.core.encoding import DecodeError, decode
from node.records.protocol import DelegatedFetch, Fetch, ProtocolError, Release, Upload
from node.research.service import custodian_api
from node.runtime.runtime import Node

MAX_RECORD_UPLOAD = 3 * 1024 * 1024


async def post_record(request: web.Request) -> web.Response:
    """A practitioner's client stores a record's ciphertext and wrapped keys at its custodian."""
    node = request.app[NODE_KEY]
    custodian = request.app[CUSTODIAN_KEY]
    doc = await msgpack_body(request, MAX_RECORD_UPLOAD)
    upload = Upload.from_wire(doc, node.chain_id)
    custodian.accept_upload(upload)
    return json_response({"record_id": upload.record_id.hex(), "custodian": node.identity.id, "status": "stored"},
                         status=201)


def _may_discard_upload(request: web.Request, signer: bytes) -> bool:
    return request.app[CUSTODIAN_KEY].may_discard(signer, id_param(request, "rid"))


@signed(_may_discard_upload)
async def delete_record_upload(request: web.Request) -> web.Response:
    """The patient (or guardian, or the author) discards an upload no record.add announced."""
    rid = id_param(request, "rid")
    request.app[CUSTODIAN_KEY].discard_upload(rid)
    return json_response({"record_id": rid.hex(), "status": "erased"})


async def post_record_fetch(request: web.Request) -> web.StreamResponse:
    """A reader's signed request for a record it holds a committed grant for.

    Its rate is the signer's, not the address's (the route is left out of the per-address
    middleware): a fetch proxied by another node arrives from that node's address, and every
    reader behind it would otherwise share one bucket. Only a fetch whose signature holds and
    whose requester is registered is counted against its signer; anything else (malformed,
    forged, an unregistered key, which costs nothing to make) against the address."""
    return await _serve_fetch(request, "fetch", Fetch.from_wire, lambda f: f.requester,
                              request.app[CUSTODIAN_KEY].serve)  # an unknown record: the same 403 as no grant


async def post_record_fetch_delegated(request: web.Request) -> web.StreamResponse:
    """An institution's signed request for a record on behalf of one of its practitioners, who
    holds the committed grant (node/records/custodian.py `serve_delegated`); rated by its signer,
    the institution, as a fetch is by its requester."""
    return await _serve_fetch(request, "fetch-delegated", DelegatedFetch.from_wire, lambda f: f.institution,
                              request.app[CUSTODIAN_KEY].serve_delegated)


M = TypeVar("M", Fetch, DelegatedFetch)


async def _serve_fetch(request: web.Request, action: str, parse: Callable[[Any, str], M], signer: Callable[[M], bytes],
                       serve: Callable[[M, int], Release]) -> web.StreamResponse:
    """Decode, rate, and serve (or forward to the record's custodian) a signed fetch."""
    node = request.app[NODE_KEY]
    rid = id_param(request, "rid")
    raw = await request.read()
    try:
        doc = decode(raw, max_bytes=4096, max_items=16)
        fetch = parse(doc, node.chain_id)
    except DecodeError as exc:
        take_address_token(request)
        raise ApiError(400, "malformed_msgpack", str(exc)) from None
    except ProtocolError:
        take_address_token(request)
        raise
    state = node.state_reader()
    if queries.identity(state, signer(fetch)) is None:
        take_address_token(request)
    else:
        wait = request.app[SIGNER_LIMIT_KEY].check(signer(fetch), time.monotonic())
        if wait > 0:
            raise rate_limited(wait, "signer")
    if fetch.record_id != rid:
        raise ApiError(400, "malformed_request", "the signed record id differs from the URL's")
    meta = queries.record(state, rid)
    if meta is not None and meta["custodian"] != node.identity.id:
        return await _proxy_fetch(request, node, meta["custodian"], raw, action)
    release = serve(fetch, node.clock_ms())
    return web.Response(body=release.to_wire(), content_type="application/msgpack")


async def _proxy_fetch(request: web.Request, node: Node, custodian_hex: str, raw: bytes,
                       action: str) -> web.StreamResponse:
    """Forward a signed fetch to the custodian's node (the answer is signed by the custodian)."""
    api = custodian_api(node, custodian_hex)
    if api is None:
        raise ApiError(502, "custodian_unknown", "the record's custodian publishes no API address (validator records, genesis)")
    import aiohttp

    client_ssl: ssl.SSLContext | None = request.app.get(CLIENT_SSL_KEY)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            async with session.post(f"{api}/v1/records/{request.match_info['rid']}/{action}", data=raw,
                                    ssl=client_ssl if client_ssl is not None else True,
                                    headers={"Content-Type": "application/msgpack"}) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, content_type=resp.content_type)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(502, "custodian_unreachable", f"the record's custodian did not answer: {exc}") from None
