"""`breakglass.review`: the custodian institution reviews a break-glass access to its record.

Break-glass grants are queued under the custodian (`queries.breakglass_pending`) until it
records its finding, "justified" or "unjustified". The review is kept on the access decision and
shown in the patient's audit trail.

An "unjustified" finding revokes the reviewed grant and the same practitioner's other open
break-glass grants on this patient's records held by this custodian: the custodian stops serving
them at once (`queries.active_grant`). With `suspend: true` it also suspends the practitioner
from break-glass for `access.BREAKGLASS_SUSPENSION_MS` of block time (its later emergency
requests are denied "breakglass_suspended") and revokes every open break-glass grant the
practitioner holds. Each revocation and the suspension are entries in the patient's audit trail
("access.revoked", "breakglass.suspended"), so the patient is told.

No free text on the chain: the reviewer's note stays in its own files; the body may carry its
commitment (`note_hash`, the SHA-256 of a random salt and the text).
"""

from __future__ import annotations

from node.chain.tx import Transaction, TxRejected

from node.app import breakglass, keys
from node.app.access import BREAKGLASS_SUSPENSION_MS
from node.app.audit import audit, next_seq
from node.app.fields import check_id
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, sender_as
from node.app.stored import read, write

OUTCOMES = ("justified", "unjustified")


def _check(tx: Transaction) -> None:
    body = tx.body
    if "note" in body:
        raise TxRejected("free_text_off_chain", "a review note stays off the chain: keep it in your files and "
                         "send its salted SHA-256 as note_hash")
    require_fields(body, {"access": bytes, "outcome": str}, {"note_hash": bytes, "suspend": bool})
    check_id(body, "access")
    if body["outcome"] not in OUTCOMES:
        raise TxRejected("invalid_body", f"outcome must be one of {', '.join(OUTCOMES)}")
    if "note_hash" in body:
        check_id(body, "note_hash")
    if body.get("suspend") and body["outcome"] != "unjustified":
        raise TxRejected("invalid_body", "only an unjustified finding suspends the practitioner")


def _revoke(ctx: ExecContext, request_tx: bytes) -> None:
    """Revoke one granted break-glass decision (once) and tell its patient."""
    decision = read(ctx.state, keys.access(request_tx))
    if decision is None or decision["decision"] != "granted" or "revoked_ms" in decision:
        return
    decision.update(revoked_ms=ctx.timestamp_ms, revoked_by=ctx.tx.sender, revoke_tx=ctx.tx.hash)
    write(ctx, keys.access(request_tx), decision)
    audit(ctx, decision["patient"], "access.revoked", seq=next_seq(ctx, decision["patient"]),
          record=decision["record"], request=request_tx, custodian=decision["custodian"], rule=decision["rule"])


def _execute(ctx: ExecContext) -> None:
    sender_as(ctx, INSTITUTION)
    body = ctx.tx.body
    request_tx = body["access"]
    decision = read(ctx.state, keys.access(request_tx))
    if decision is None:
        raise ExecFailed("unknown_access", "no access decision for this transaction")
    if decision["custodian"] != ctx.tx.sender:
        raise ExecFailed("not_custodian", "only the custodian institution reviews access to its records")
    if decision["rule"] != "breakglass":
        raise ExecFailed("not_breakglass", "this access was not a break-glass access")
    if "reviewed_ms" in decision:
        raise ExecFailed("already_reviewed", "this break-glass access was already reviewed")
    outcome, suspend = body["outcome"], bool(body.get("suspend"))
    decision.update(reviewed_ms=ctx.timestamp_ms, reviewed_height=ctx.height, review_outcome=outcome)
    if "note_hash" in body:
        decision["review_note_hash"] = body["note_hash"]
    write(ctx, keys.access(request_tx), decision)
    ctx.state.delete(keys.BREAKGLASS_PENDING + ctx.tx.sender + keys.position(decision["height"], decision["index"]))
    patient, practitioner = decision["patient"], decision["requester"]
    audit(ctx, patient, "breakglass.reviewed", record=decision["record"], request=request_tx, outcome=outcome,
          suspended=suspend or None)
    if outcome != "unjustified":
        return
    revoke = [request_tx]
    for grant in breakglass.open_grants(ctx, practitioner):
        if suspend or (grant["patient"] == patient and grant["custodian"] == ctx.tx.sender):
            revoke.append(grant["request"])
    for tx_hash in dict.fromkeys(revoke):  # in order, once each
        _revoke(ctx, tx_hash)
    if suspend:
        until = ctx.timestamp_ms + BREAKGLASS_SUSPENSION_MS
        breakglass.suspend(ctx, practitioner, until, request_tx)
        audit(ctx, patient, "breakglass.suspended", seq=next_seq(ctx, patient), request=request_tx,
              practitioner=practitioner, until_ms=until)


BREAKGLASS_REVIEW = register(
    TxType(name="breakglass.review", summary="the custodian records its review of a break-glass access",
           check_body=_check, execute=_execute)
)
