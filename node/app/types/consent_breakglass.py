"""`consent.breakglass`: a patient (or its guardian) opts out of, or back into, break-glass.

Opted out, an emergency request without a matching consent is denied ("breakglass_opted_out");
a consent that covers the purpose "emergency" still applies.
"""

from __future__ import annotations

from node.chain.tx import Transaction

from node.app import keys
from node.app.audit import audit
from node.app.fields import check_on_behalf_of
from node.app.registry import ExecContext, TxType, register, require_fields
from node.app.roles import acting_patient
from node.app.stored import write


def _check(tx: Transaction) -> None:
    require_fields(tx.body, {"opt_out": bool}, {"on_behalf_of": bytes})
    check_on_behalf_of(tx.body)


def _execute(ctx: ExecContext) -> None:
    patient = acting_patient(ctx)
    on_behalf = (patient != ctx.tx.sender) or None
    if ctx.tx.body["opt_out"]:
        write(ctx, keys.OPTOUT + patient, {"height": ctx.height, "time_ms": ctx.timestamp_ms, "by": ctx.tx.sender})
        audit(ctx, patient, "breakglass.opted_out", on_behalf=on_behalf)
    else:
        ctx.state.delete(keys.OPTOUT + patient)
        audit(ctx, patient, "breakglass.opted_in", on_behalf=on_behalf)


CONSENT_BREAKGLASS = register(
    TxType(name="consent.breakglass", summary="a patient opts out of (or back into) break-glass access",
           check_body=_check, execute=_execute)
)
