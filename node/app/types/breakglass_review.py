"""`breakglass.review`: the custodian institution reviews a break-glass access to its record.

Break-glass grants are queued under the custodian (`queries.breakglass_pending`) until it
records its finding, "justified" or "unjustified", with an optional note. The review is kept on
the access decision and shown in the patient's audit trail.
"""

from __future__ import annotations

from node.tx import Transaction, TxRejected

from .. import keys
from ..audit import audit
from ..fields import check_id, check_text
from ..registry import ExecContext, ExecFailed, TxType, register, require_fields
from ..roles import INSTITUTION, sender_as
from ..stored import read, write

OUTCOMES = ("justified", "unjustified")


def _check(tx: Transaction) -> None:
    require_fields(tx.body, {"access": bytes, "outcome": str}, {"note": str})
    check_id(tx.body, "access")
    if tx.body["outcome"] not in OUTCOMES:
        raise TxRejected("invalid_body", f"outcome must be one of {', '.join(OUTCOMES)}")
    check_text(tx.body, "note")


def _execute(ctx: ExecContext) -> None:
    sender_as(ctx, INSTITUTION)
    request_tx = ctx.tx.body["access"]
    decision = read(ctx.state, keys.access(request_tx))
    if decision is None:
        raise ExecFailed("unknown_access", "no access decision for this transaction")
    if decision["custodian"] != ctx.tx.sender:
        raise ExecFailed("not_custodian", "only the custodian institution reviews access to its records")
    if decision["rule"] != "breakglass":
        raise ExecFailed("not_breakglass", "this access was not a break-glass access")
    if "reviewed_ms" in decision:
        raise ExecFailed("already_reviewed", "this break-glass access was already reviewed")
    outcome, note = ctx.tx.body["outcome"], ctx.tx.body.get("note", "")
    decision.update(reviewed_ms=ctx.timestamp_ms, reviewed_height=ctx.height, review_outcome=outcome, review_note=note)
    write(ctx, keys.access(request_tx), decision)
    ctx.state.delete(keys.BREAKGLASS_PENDING + ctx.tx.sender + keys.position(decision["height"], decision["index"]))
    audit(ctx, decision["patient"], "breakglass.reviewed", record=decision["record"], request=request_tx,
          outcome=outcome, note=note or None)


BREAKGLASS_REVIEW = register(
    TxType(name="breakglass.review", summary="the custodian records its review of a break-glass access",
           check_body=_check, execute=_execute)
)
