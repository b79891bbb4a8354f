"""`consent.revoke`: a patient (or its guardian) withdraws a consent.

The consent stays on the ledger marked revoked (so later denials can say "consent_revoked",
and the custodian stops honouring grants made under it: see `queries.active_grant`).
"""

from __future__ import annotations

from node.chain.tx import Transaction

from node.app import keys
from node.app.audit import audit
from node.app.consents import load_consent
from node.app.fields import check_patient_act
from node.app.registry import ExecContext, ExecFailed, TxType, register
from node.app.roles import acting_patient
from node.app.stored import write


def _check(tx: Transaction) -> None:
    check_patient_act(tx.body, "consent")


def _execute(ctx: ExecContext) -> None:
    consent_id = ctx.tx.body["consent"]
    consent = load_consent(ctx.state, consent_id)
    if consent is None:
        raise ExecFailed("unknown_consent", "no consent with this id")
    patient = acting_patient(ctx)
    if consent["patient"] != patient:
        raise ExecFailed("not_your_consent", "this consent was given by another patient")
    if "revoked_ms" in consent:
        raise ExecFailed("already_revoked", "this consent is already revoked")
    consent.update(revoked_ms=ctx.timestamp_ms, revoked_height=ctx.height, revoked_by=ctx.tx.sender, revoke_tx=ctx.tx.hash)
    write(ctx, keys.consent(consent_id), consent)
    audit(ctx, patient, "consent.revoked", consent=consent_id, grantee_kind=consent["grantee_kind"],
          grantee=consent["grantee"], on_behalf=(patient != ctx.tx.sender) or None)


CONSENT_REVOKE = register(
    TxType(name="consent.revoke", summary="a patient withdraws a consent", check_body=_check, execute=_execute)
)
