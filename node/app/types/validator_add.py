"""`validator.add`: the validators vote an admitted institution into the validator set.

Each validator of the set deciding the block sends one approval for a candidate (an institution
already admitted, e.g. by `governance.admit_institution`) with its peer address (HOST:PORT) and
API URL; the first approval fixes them, a differing one is refused (`proposal_mismatch`). The
approval that reaches the quorum of that set schedules the new set, the old one with the
candidate appended, from the block's height + 2 (`validator_sets`), and writes the candidate's
validator record. The bookkeeping is `governance.require_validator` and `add_approval`, with
`validator_sets.open_proposal`. Until then the candidate's node only follows the chain.
"""

from __future__ import annotations

import re

from node.chain.tx import Transaction, TxRejected

from node.app.fields import check_id, check_text
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import identity_of, require_institution
from node.app.stored import write
from node.app.types.governance import add_approval, require_validator
from node.app.validator_sets import KIND_ADD, latest_ids, open_proposal, record_key, schedule_change

MAX_ADDRESS = 256
_ADDRESS = re.compile(r"[^\s:/]+:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}")
_API = re.compile(r"https?://[^\s]+")


def check_address(value: str) -> None:
    if len(value) > MAX_ADDRESS or not _ADDRESS.fullmatch(value):
        raise TxRejected("invalid_body", "body field 'address' must be HOST:PORT")


def _check(tx: Transaction) -> None:
    require_fields(tx.body, {"candidate": bytes, "address": str, "api": str})
    check_id(tx.body, "candidate")
    check_address(tx.body["address"])
    check_text(tx.body, "api", limit=MAX_ADDRESS)
    if tx.body["api"] and not _API.fullmatch(tx.body["api"]):
        raise TxRejected("invalid_body", "body field 'api' must be an http:// or https:// URL")


def _execute(ctx: ExecContext) -> None:
    candidate, address, api = ctx.tx.body["candidate"], ctx.tx.body["address"], ctx.tx.body["api"]
    voters = require_validator(ctx, "approves adding a validator")
    require_institution(ctx.state, candidate, "unknown_institution")
    if candidate in latest_ids(ctx.state):
        raise ExecFailed("already_validator", "the candidate is a validator already (or is scheduled to become one)")
    key, proposal = open_proposal(ctx, KIND_ADD, candidate, {"kind": "add", "target": candidate, "address": address,
                                                             "api": api})
    if add_approval(ctx, proposal, voters, "adding this validator"):
        live = {a for a in proposal["approvals"] if a in voters} | {candidate}
        effective = schedule_change(ctx, [*latest_ids(ctx.state), candidate], live=live)
        proposal.update(effective_height=effective, decided_height=ctx.height)
        found = identity_of(ctx.state, candidate) or {}
        write(ctx, record_key(candidate), {"name": str(found.get("label", "")), "address": address, "api": api,
                                           "since": effective})
    write(ctx, key, proposal)


VALIDATOR_ADD = register(
    TxType(name="validator.add", summary="a validator approves adding an institution to the validator set",
           check_body=_check, execute=_execute)
)
