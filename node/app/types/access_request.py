"""`access.request`: a practitioner or researcher asks to read a record; the ledger decides.

The decision (`node.app.access.decide`) is recorded whichever way it goes: result "ok" when
granted, "denied" when not (its writes are kept: the decision, the patient's audit entry). A
granted decision is indexed for the custodian (`queries.active_grant`), logged as a disclosure
of the custodian institution, and, for break-glass, queued for the custodian's review.

Practitioners may ask for any purpose; researchers for "research" only, and they answer for the
studies they were added to. The reason is free text kept on the chain: it must say why, never
what is wrong with the patient.
"""

from __future__ import annotations

from typing import Any

from node.tx import Transaction, TxRejected

from .. import keys
from ..access import Grantee, Record, Request, decide
from ..audit import audit, disclose
from ..consents import candidate_consents
from ..fields import check_id, check_purpose, check_text
from ..registry import ExecContext, ExecFailed, TxType, register, require_fields
from ..roles import PRACTITIONER, RESEARCHER, sender_as
from ..stored import read, write
from ..studies import researcher_studies

RESULT_DENIED = "denied"


def _present(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


def _check(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"record": bytes, "purpose": str}, {"reason": str})
    check_id(body, "record")
    check_purpose(body["purpose"])
    check_text(body, "reason")
    if body["purpose"] == "emergency" and not body.get("reason", "").strip():
        raise TxRejected("reason_required", "an emergency (break-glass) request needs a reason")


def _execute(ctx: ExecContext) -> str | None:
    body = ctx.tx.body
    requester = sender_as(ctx, PRACTITIONER, RESEARCHER)
    role, purpose = requester["role"], body["purpose"]
    if role == RESEARCHER and purpose != "research":
        raise ExecFailed("purpose_not_allowed", "a researcher may request access for research only")
    stored = read(ctx.state, keys.record(body["record"]))
    if stored is None:
        raise ExecFailed("unknown_record", "no record with this id")
    patient = stored["patient"]
    grantees: set[Grantee] = set()
    if role == PRACTITIONER:
        grantees = {("practitioner", ctx.tx.sender)}
        if requester.get("institution") is not None:
            grantees.add(("institution", requester["institution"]))
    else:
        grantees = {("study", study_id) for study_id in researcher_studies(ctx.state, ctx.tx.sender)}
    record = Record(id=body["record"], patient=patient, resource_type=stored["resource_type"],
                    author=stored["author"], erased="erased_ms" in stored)
    request = Request(requester=ctx.tx.sender, role=role, grantees=frozenset(grantees), purpose=purpose,
                      reason=body.get("reason", ""), now_ms=ctx.timestamp_ms)
    consents = candidate_consents(ctx.state, patient, sorted(grantees, key=lambda g: keys.grantee_part(*g)))
    opted_out = ctx.state.get(keys.OPTOUT + patient) is not None
    decision = decide(request, record, consents, opted_out=opted_out)

    custodian = stored["custodian"]
    outcome = "granted" if decision.granted else "denied"
    write(ctx, keys.access(ctx.tx.hash), _present({
        "requester": ctx.tx.sender, "requester_role": role, "requester_institution": requester.get("institution"),
        "record": record.id, "patient": patient, "custodian": custodian, "resource_type": record.resource_type,
        "purpose": purpose, "reason": request.reason, "decision": outcome, "rule": decision.rule,
        "consent": decision.consent, "expires_ms": decision.expires_ms, "review": decision.review,
        "height": ctx.height, "index": ctx.index, "time_ms": ctx.timestamp_ms,
    }))
    event = "access.breakglass" if decision.rule == "breakglass" else f"access.{outcome}"
    details = dict(record=record.id, resource_type=record.resource_type, custodian=custodian, purpose=purpose,
                   reason=request.reason or None, decision=outcome, rule=decision.rule, consent=decision.consent,
                   expires_ms=decision.expires_ms)
    audit(ctx, patient, event, **details)
    if not decision.granted:
        return RESULT_DENIED
    ctx.state.put(keys.GRANT + ctx.tx.sender + record.id + ctx.position, ctx.tx.hash)
    disclose(ctx, custodian, event, patient=patient, requester_institution=requester.get("institution"), **details)
    if decision.review:
        ctx.state.put(keys.BREAKGLASS_PENDING + custodian + ctx.position, ctx.tx.hash)
    return None


ACCESS_REQUEST = register(
    TxType(name="access.request", summary="ask to read a record; the ledger decides and records it",
           check_body=_check, execute=_execute)
)
