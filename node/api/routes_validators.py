"""Routes of the validator set: who validates now, what is scheduled, what awaits approvals.

GET /v1/validators answers `medledger validators`, with `history` (every set, the height it took
effect at and the block that decided it: what a joiner walks to verify a snapshot's set);
with `?proofs=1` also `changes`, the evidence of each change (node/runtime/snapshots.py);
GET /v1/validators?height=H answers the set of height H (what a client checking a commit
certificate of block H needs: `medledger audit verify`); GET /v1/validators/proposals/{kind}/{id}
answers `medledger validator add|remove` after an approval (the proposal, its approvals, how
many are needed and, once reached, the height it takes effect at). Both are public reads: the
validator set and its governance are on the ledger for every member to see.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.api.common import NODE_KEY, ApiError, id_param, int_param, json_response
from node.app import validator_sets
from node.app.stored import read
from node.chain.tx import jsonable
from node.runtime.runtime import Node
from node.runtime.snapshots import change_evidence

KINDS = {"add": validator_sets.KIND_ADD, "remove": validator_sets.KIND_REMOVE}


def _proposal_view(node: Node, value: dict[str, Any]) -> dict[str, Any]:
    voters = node.membership.at(node.store.height + 1).validators
    counted = [a for a in value.get("approvals", []) if a in voters]
    return {**jsonable(value), "counted": len(counted), "needed": validator_sets.quorum(list(voters))}


def overview(node: Node) -> dict[str, Any]:
    """The set deciding the next block, the sets scheduled after it, and pending proposals.

    `epoch` is the number of validator-set changes in force at the next height (0: the genesis
    set); `since` is the height the current set took effect at."""
    state = node.state_reader()
    nxt = node.store.height + 1
    epoch, since = node.membership.epoch(nxt)
    return {
        "height": node.store.height,
        "epoch": epoch,
        "since": since,
        "validators": node.validator_list(),
        "scheduled": [{"effective_height": effective, "validators": [v.hex() for v in s.validators]}
                      for effective, s in node.membership.scheduled_after(nxt)],
        "pending": [_proposal_view(node, p) for p in validator_sets.pending(state)],
        "history": [{"effective_height": effective, "decided_height": effective - validator_sets.CHANGE_DELAY
                     if effective > 1 else None, "validators": [v.hex() for v in ids]}
                    for effective, ids in validator_sets.history(state)],
    }


def at_height(node: Node, height: int) -> dict[str, Any]:
    """The set that decides (and certifies) block `height`: any height from 1 to the committed
    height + 2 (a change takes effect two blocks after the one deciding it)."""
    if height < 1:
        raise ApiError(400, "bad_height", "height must be at least 1")
    if height > node.store.height + validator_sets.CHANGE_DELAY:
        raise ApiError(404, "unknown_block", f"the set of height {height} is not decided yet "
                                             f"(known up to {node.store.height + validator_sets.CHANGE_DELAY})")
    epoch, since = node.membership.epoch(height)
    return {"height": height, "epoch": epoch, "since": since, "validators": node.validator_list(height)}


async def get_validators(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    height = request.query.get("height")
    if height is not None:
        doc = at_height(node, int_param(height, "height"))
    else:
        doc = overview(node)
        if request.query.get("proofs") in ("1", "true"):
            sets = validator_sets.history(node.state_reader())
            doc["changes"] = [c.to_json() for c in change_evidence(node.store, node.chain_id, sets)]
    response = json_response(doc)
    response.headers["Access-Control-Allow-Origin"] = "*"  # public, like /v1/status
    return response


async def get_proposal(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    kind = KINDS.get(request.match_info["kind"])
    if kind is None:
        raise ApiError(404, "unknown_proposal", "a proposal kind is add or remove")
    target = id_param(request)
    value = read(node.state_reader(), validator_sets.proposal_key(kind, target))
    if not isinstance(value, dict):
        raise ApiError(404, "unknown_proposal", "no validator-set proposal for that id")
    return json_response(_proposal_view(node, value))
