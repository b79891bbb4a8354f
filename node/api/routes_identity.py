"""Routes of identities: an account (identity and nonce) and an identity as the explorer shows it.

Both are public reads that may be signed: a signer entitled to more (the identity itself, its
guardian, this node) sees more, anyone else the public view (node/api/explorer.py).
"""

from __future__ import annotations

from aiohttp import web

from node.api import explorer
from node.api.common import NODE_KEY, ApiError, id_param, json_response, parse_hex32
from node.api.signed import optional_signer
from node.app.executor import read_nonce
from node.app.roles import guardian_of
from node.app.types.identity import identity_key
from node.chain.tx import jsonable
from node.core.encoding import decode


async def get_account(request: web.Request) -> web.Response:
    """An identity's record and its last nonce (both partly hidden from the public)."""
    node = request.app[NODE_KEY]
    pk = parse_hex32(request.match_info["id"])
    if pk is None:
        raise ApiError(400, "bad_id", "identity id must be 64 hex characters")
    signer = await optional_signer(request)
    state = node.state_reader()
    raw = state.get(identity_key(pk))
    identity = jsonable(decode(raw)) if raw else None
    nonce: int | None = read_nonce(state, pk)
    if signer is None or signer not in (pk, node.identity.public_key, guardian_of(state, pk)):
        identity = explorer.account_identity_view(identity)
        if explorer.nonce_is_private(identity):
            nonce = None  # clients set nonces to the clock: a patient's last one says when they last acted
    return json_response({"id": pk.hex(), "nonce": nonce, "identity": identity})


async def get_identity(request: web.Request) -> web.Response:
    """An identity: role and label for anyone; a patient's guardian, break-glass choice and
    attestation, and a practitioner's wards, only to those entitled (node/api/explorer.py)."""
    node = request.app[NODE_KEY]
    ident = id_param(request)
    signer = await optional_signer(request)
    found = explorer.identity_view(node.state_reader(), ident, signer, node.identity.public_key)
    if found is None:
        raise ApiError(404, "unknown_identity", "no such identity on the ledger")
    return json_response(found)
