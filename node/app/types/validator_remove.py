"""`validator.remove`: the validators vote one of them out of the validator set.

Each validator of the set deciding the block sends one approval naming the validator to remove;
the one to be removed need not take part, so the remaining quorum can vote out an unresponsive
or misbehaving validator. The approval that reaches the quorum schedules the set without it
from the block's height + 2, unless that would leave fewer than four validators or a set whose
quorum the approving validators cannot form (`validator_sets.schedule_change`). Its record
keeps its name and gains `until`, the first height it no longer votes at.
"""

from __future__ import annotations

from node.chain.tx import Transaction

from node.app.fields import check_id
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.stored import write
from node.app.types.governance import add_approval, require_validator
from node.app.validator_sets import KIND_REMOVE, latest_ids, open_proposal, record, record_key, schedule_change


def _check(tx: Transaction) -> None:
    require_fields(tx.body, {"validator": bytes})
    check_id(tx.body, "validator")


def _execute(ctx: ExecContext) -> None:
    target = ctx.tx.body["validator"]
    voters = require_validator(ctx, "approves removing a validator")
    latest = latest_ids(ctx.state)
    if target not in latest:
        raise ExecFailed("unknown_validator", "that id is not a validator (or is already scheduled to leave)")
    key, proposal = open_proposal(ctx, KIND_REMOVE, target, {"kind": "remove", "target": target})
    if add_approval(ctx, proposal, voters, "removing this validator"):
        live = {a for a in proposal["approvals"] if a in voters}
        effective = schedule_change(ctx, [v for v in latest if v != target], live=live)
        proposal.update(effective_height=effective, decided_height=ctx.height)
        known = record(ctx.state, target) or {}
        write(ctx, record_key(target), {**known, "until": effective})
    write(ctx, key, proposal)


VALIDATOR_REMOVE = register(
    TxType(name="validator.remove", summary="a validator approves removing a validator from the set",
           check_body=_check, execute=_execute)
)
