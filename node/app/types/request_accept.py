"""`request.accept`: a patient (or its guardian) accepts a referral or a lab order addressed to
another institution.

Until the patient accepts, the recipient sees nothing of it. Accepted, the request is in the
recipient's inbox; a lab's technicians read the order and post its results back (node/app/care.py),
and a referred clinic's physicians read the referral and the summary it lists, and may add to the
patient's chart, for the referral's period (standing policies, node/app/standing.py). The
acceptance is in the patient's audit trail.
"""

from __future__ import annotations

from node.chain.tx import Transaction

from node.app.audit import audit
from node.app.care import accept
from node.app.fields import check_patient_act
from node.app.registry import ExecContext, TxType, register
from node.app.roles import acting_patient


def _check(tx: Transaction) -> None:
    check_patient_act(tx.body, "record")


def _execute(ctx: ExecContext) -> None:
    patient = acting_patient(ctx)
    found = accept(ctx, patient, ctx.tx.body["record"])
    audit(ctx, patient, "request.accepted", record=ctx.tx.body["record"], resource_type=found["resource_type"],
          grantee=found["recipient"], until_ms=found.get("until_ms"), on_behalf=(patient != ctx.tx.sender) or None)


REQUEST_ACCEPT = register(
    TxType(name="request.accept", summary="a patient accepts a referral or a lab order addressed to an institution",
           check_body=_check, execute=_execute)
)
