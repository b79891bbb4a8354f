"""`standing.grant` and `standing.revoke`: a patient (or its guardian) names, or stops naming,
the institution a standing permission goes to.

A standing permission is the one way past consent a patient opts in to (docs/policies.md,
"Policies narrow, the patient decides"): the patient names an institution for a role, and the
protocol's standing policy for that role (node/app/standing.py) then lets that institution's
staff read what the role needs without a consent per record:

    pharmacy  the nominated pharmacy's pharmacists read the prescriptions (MedicationRequest)
              written for the patient, for treatment, and dispense them
    insurer   the insurer's claims officers read a Claim submitted to it for the patient, and
              the records that Claim lists, for payment (the minimum necessary)
    screening the institution may screen the patient's records it keeps for clinical trials:
              count the patient in feasibility queries and invite it (node/app/trials.py); it
              reads nothing new and tells the sponsor nothing but counts

The institution must be of the role's kind ("kind_mismatch"). Naming another replaces the
earlier one; revoking stops it, and grants made under it are no longer honoured by custodians
(`queries.active_grant`). Both are in the patient's audit trail.
"""

from __future__ import annotations

from node.chain.tx import Transaction, TxRejected

from node.app import keys
from node.app.audit import audit
from node.app.care import kind_of, standing_of
from node.app.fields import check_id, check_on_behalf_of
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import acting_patient
from node.app.stored import write

# permission -> the institution kinds it may name
PERMISSIONS = {"pharmacy": ("pharmacy",), "insurer": ("insurer",), "screening": ("hospital", "clinic", "lab", "research")}


def _check_permission(tx: Transaction) -> None:
    if tx.body.get("permission") not in PERMISSIONS:
        raise TxRejected("invalid_permission", f"a standing permission is one of {', '.join(PERMISSIONS)}")
    check_on_behalf_of(tx.body)


def _check_grant(tx: Transaction) -> None:
    require_fields(tx.body, {"permission": str, "institution": bytes}, {"on_behalf_of": bytes})
    check_id(tx.body, "institution")
    _check_permission(tx)


def _check_revoke(tx: Transaction) -> None:
    require_fields(tx.body, {"permission": str}, {"on_behalf_of": bytes})
    _check_permission(tx)


def _grant(ctx: ExecContext) -> None:
    body = ctx.tx.body
    patient = acting_patient(ctx)
    wanted = PERMISSIONS[body["permission"]]
    kind = kind_of(ctx.state, body["institution"])
    if kind is None:
        raise ExecFailed("unknown_institution", "the institution named is not a registered institution")
    if kind not in wanted:
        raise ExecFailed("kind_mismatch", f"a {body['permission']} nomination names an institution of kind "
                         f"{' or '.join(wanted)}, not {kind}")
    standing = standing_of(ctx.state, patient)
    if body["permission"] == "screening":
        if "screening" in standing:
            ctx.state.delete(keys.SCREENING + standing["screening"]["institution"] + patient)
        ctx.state.put(keys.SCREENING + body["institution"] + patient, b"\x01")
    standing[body["permission"]] = {"institution": body["institution"], "height": ctx.height, "time_ms": ctx.timestamp_ms}
    write(ctx, keys.STANDING + patient, standing)
    audit(ctx, patient, "standing.granted", permission=body["permission"], grantee=body["institution"],
          on_behalf=(patient != ctx.tx.sender) or None)


def _revoke(ctx: ExecContext) -> None:
    body = ctx.tx.body
    patient = acting_patient(ctx)
    standing = standing_of(ctx.state, patient)
    if body["permission"] not in standing:
        raise ExecFailed("no_standing_permission", f"you have no {body['permission']} nomination to revoke")
    gone = standing.pop(body["permission"])
    if body["permission"] == "screening":
        ctx.state.delete(keys.SCREENING + gone["institution"] + patient)
    if standing:
        write(ctx, keys.STANDING + patient, standing)
    else:
        ctx.state.delete(keys.STANDING + patient)
    audit(ctx, patient, "standing.revoked", permission=body["permission"], grantee=gone["institution"],
          on_behalf=(patient != ctx.tx.sender) or None)


STANDING_GRANT = register(
    TxType(name="standing.grant", summary="a patient nominates its pharmacy or insurer (a standing permission)",
           check_body=_check_grant, execute=_grant)
)
STANDING_REVOKE = register(
    TxType(name="standing.revoke", summary="a patient withdraws a nomination (a standing permission)",
           check_body=_check_revoke, execute=_revoke)
)
