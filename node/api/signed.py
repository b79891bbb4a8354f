"""Signed reads: how a route that reads health data checks who is asking.

The caller signs the request (node/api/auth.py) with a fresh nonce, within its signer's rate.
`signed(authorize)` wraps a route so that `authorize(request, signer)` must hold, else 403; the
explorer's public reads call `optional_signer` instead, which answers an unsigned caller (or one the
ledger does not know) with None, for the public view.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from aiohttp import web

from node.api import auth
from node.api.common import NODE_KEY, NONCES_KEY, SIGNER_LIMIT_KEY, ApiError, rate_limited
from node.api.middleware import Handler
from node.app import queries

Authorize = Callable[[web.Request, bytes], bool]
FORBIDDEN_MESSAGE = ("there is nothing here this signer may read (it does not exist, or the ledger does not let this "
                     "signer read it); sign with the key of the patient, its guardian or a grant holder")


async def _signed_read(request: web.Request, authorize: Authorize, refuse: bool) -> bytes | None:
    """Check a signed request (node/api/auth.py) within its signer's rate; if `authorize(request,
    signer)` holds, remember its nonce and return the signer. An unauthorised one is refused
    (403, `refuse`) or answered as unsigned (None). Authorise before remembering: a refused request
    leaves nothing in the replay guard, and a signer that may not read a thing is not told whether
    it exists."""
    node = request.app[NODE_KEY]
    body = await request.read()
    now_ms = node.clock_ms()
    # an AuthError (a CodedError) answers with its own status and code (errors_middleware)
    req = auth.verify_headers(request.headers, chain_id=node.chain_id, node_id=node.identity.id,
                              method=request.method, path_qs=request.raw_path, body=body, now_ms=now_ms)
    wait = request.app[SIGNER_LIMIT_KEY].check(req.signer, time.monotonic())
    if wait > 0:
        raise rate_limited(wait, "signer")
    if not authorize(request, req.signer):
        if refuse:
            raise ApiError(403, "forbidden", FORBIDDEN_MESSAGE)
        return None
    auth.remember_nonce(request.app[NONCES_KEY], req, now_ms)
    return req.signer


def signed(authorize: Authorize) -> Callable[[Handler], Handler]:
    """A route that reads health data: the caller signs it (node/api/auth.py), within its signer's
    rate, with a fresh nonce, and `authorize(request, signer)` must say it may read this."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            await _signed_read(request, authorize, refuse=True)
            return await handler(request)

        return checked

    return wrap


async def signer_of(request: web.Request, authorize: Authorize) -> bytes:
    """The verified signer of a signed request that `authorize` lets through (else 401/403), for
    the routes that act on who asked (node/api/routes_trials.py)."""
    signer = await _signed_read(request, authorize, refuse=True)
    assert signer is not None  # refuse=True: an unauthorised signer raised
    return signer


def _known_signer(request: web.Request, signer: bytes) -> bool:
    """A key with an identity on the ledger, or this node's own."""
    node = request.app[NODE_KEY]
    return signer == node.identity.public_key or queries.identity(node.state_reader(), signer) is not None


async def optional_signer(request: web.Request) -> bytes | None:
    """The verified signer of a public read that may be signed (None when it is not): the
    explorer answers an unsigned caller with the public view, a signed one with what that signer
    is entitled to (node/api/explorer.py). A signature that is there but does not hold is a 401, as
    on the signed routes, and it counts against the signer's rate and nonces the same way. A key
    with no identity on the ledger is entitled to the public view only, and leaves nothing in the
    replay guard."""
    if not any(request.headers.get(h) for h in auth.HEADERS):
        return None
    return await _signed_read(request, _known_signer, refuse=False)
