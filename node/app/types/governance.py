"""`governance.admit_institution`: the validators vote a new institution in.

Each validator of the current set (`validator_sets.validator_ids_at` the block's height; the
genesis set until a change) sends one approval for a candidate key, name and kind (one of
`fields.INSTITUTION_KINDS`; optional, for clients older than kinds: absent is "unspecified").
The first approval fixes the name and the kind; an approval for another name is refused
("name_mismatch"), one for another kind ("kind_mismatch": approvals for different kinds never
add up). The kind is stored on the proposal and the identity only when given, so chains made
before kinds replay to the same state. When the
number of distinct approving validators reaches the quorum of the validator set (the formula of
`consensus.validators.ValidatorSet.quorum`: floor((n + f) / 2) + 1 with f = (n - 1) // 3, i.e.
2f + 1 when n = 3f + 1), the candidate is registered with the role institution in the same
transaction. Approvals do not expire and cannot be withdrawn; an approval by a validator that
has since left the set no longer counts. `require_validator` and `add_approval` are that
bookkeeping, shared with the other votes (validator_add.py, validator_remove.py).
"""

from __future__ import annotations

from typing import Any

from node.chain.tx import Transaction

from node.app import keys
from node.app.fields import UNSPECIFIED, check_id, check_kind, check_text
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, identity_of
from node.app.state import StateReader
from node.app.stored import read, write
from node.app.validator_sets import latest_ids, quorum, validator_ids_at

__all__ = ["ADMIT_INSTITUTION", "add_approval", "quorum", "require_validator", "validators"]

MAX_NAME = 64


def validators(state: StateReader) -> list[bytes]:
    """The validator ids of the last scheduled set (the genesis ones until a change), in order."""
    return latest_ids(state)


def require_validator(ctx: ExecContext, action: str) -> list[bytes]:
    """The validators who vote on governance in this block (the set of its height), when the
    sender is one of them (else refused with `not_a_validator`: "only a validator <action>")."""
    voters = validator_ids_at(ctx.state, ctx.height)
    if ctx.tx.sender not in voters:
        raise ExecFailed("not_a_validator", f"only a validator {action}")
    return voters


def add_approval(ctx: ExecContext, proposal: dict[str, Any], voters: list[bytes], what: str) -> bool:
    """Count the sender's approval in `proposal` (its sorted list `approvals`); True once the
    distinct approvals of members of `voters` reach their quorum (an approval by a validator
    that has left the set no longer counts). A validator approves once (`already_approved`:
    "this validator already approved <what>"). The caller writes the proposal back."""
    if ctx.tx.sender in proposal["approvals"]:
        raise ExecFailed("already_approved", f"this validator already approved {what}")
    proposal["approvals"] = sorted([*proposal["approvals"], ctx.tx.sender])
    return len([a for a in proposal["approvals"] if a in voters]) >= quorum(voters)


def _check(tx: Transaction) -> None:
    require_fields(tx.body, {"institution": bytes, "name": str}, {"kind": str})
    check_id(tx.body, "institution")
    check_text(tx.body, "name", limit=MAX_NAME, required=True)
    if "kind" in tx.body:
        check_kind(tx.body["kind"])


def _execute(ctx: ExecContext) -> None:
    candidate, name = ctx.tx.body["institution"], ctx.tx.body["name"]
    voters = require_validator(ctx, "approves a new institution")
    if identity_of(ctx.state, candidate) is not None:
        raise ExecFailed("already_registered", "this identity is already registered")
    key = keys.ADMISSION + candidate
    kind = ctx.tx.body.get("kind", UNSPECIFIED)
    proposal = read(ctx.state, key)
    if proposal is None:
        proposal = {"name": name, "approvals": [], "height": ctx.height}
        if kind != UNSPECIFIED:
            proposal["kind"] = kind
    if proposal["name"] != name:
        raise ExecFailed("name_mismatch", f"the candidate was proposed as {proposal['name']!r}")
    proposed_kind = proposal.get("kind", UNSPECIFIED)
    if proposed_kind != kind:
        raise ExecFailed("kind_mismatch", f"the candidate was proposed as kind {proposed_kind!r}, not {kind!r}")
    if add_approval(ctx, proposal, voters, "the candidate"):
        proposal.update(admitted_height=ctx.height, admitted_ms=ctx.timestamp_ms)
        record: dict[str, Any] = {"role": INSTITUTION, "label": name, "height": ctx.height}
        if kind != UNSPECIFIED:
            record["kind"] = kind
        write(ctx, keys.identity(candidate), record)
    write(ctx, key, proposal)


ADMIT_INSTITUTION = register(
    TxType(name="governance.admit_institution", summary="a validator approves admitting a new institution",
           check_body=_check, execute=_execute)
)
