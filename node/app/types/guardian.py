"""`patient.set_guardian`: a patient names (or removes) the guardian who may act for it.

A guardian (a parent of a minor, a proxy) sends `consent.*` and `record.erase` with
`on_behalf_of` set to the patient. Only the patient names a guardian (a guardian cannot name
another); the patient, or the guardian itself (stepping down), clears it. Naming a new guardian
replaces the old one.
"""

from __future__ import annotations

from node.chain.tx import Transaction, TxRejected

from node.app import keys
from node.app.audit import audit
from node.app.fields import check_id, check_on_behalf_of
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, acting_patient, guardian_of, role_of
from node.app.stored import write


def _check(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"guardian": (bytes, type(None))}, {"on_behalf_of": bytes})
    check_on_behalf_of(body)
    guardian = body["guardian"]
    if guardian is not None:
        check_id(body, "guardian")
        if "on_behalf_of" in body:
            raise TxRejected("invalid_body", "only the patient names a guardian")
        if guardian == tx.sender:
            raise TxRejected("invalid_body", "a patient cannot be its own guardian")


def _execute(ctx: ExecContext) -> None:
    patient = acting_patient(ctx)
    new = ctx.tx.body["guardian"]
    old = guardian_of(ctx.state, patient)
    if new is None:
        if old is None:
            raise ExecFailed("no_guardian", "this patient has no guardian")
        ctx.state.delete(keys.GUARDIAN + patient)
        ctx.state.delete(keys.GUARDIAN_OF + old + patient)
        audit(ctx, patient, "guardian.cleared", guardian=old, on_behalf=patient != ctx.tx.sender or None)
        return
    role = role_of(ctx.state, new)
    if role is None or role == INSTITUTION:
        raise ExecFailed("unknown_guardian", "a guardian is a registered person (not an institution)")
    if old is not None:
        ctx.state.delete(keys.GUARDIAN_OF + old + patient)
    write(ctx, keys.GUARDIAN + patient, {"guardian": new, "height": ctx.height, "time_ms": ctx.timestamp_ms})
    write(ctx, keys.GUARDIAN_OF + new + patient, {"height": ctx.height})
    audit(ctx, patient, "guardian.set", guardian=new)


SET_GUARDIAN = register(
    TxType(name="patient.set_guardian", summary="name or clear the guardian who may act for a patient",
           check_body=_check, execute=_execute)
)
