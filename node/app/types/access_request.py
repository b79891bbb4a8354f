"""`access.request`: a practitioner asks to read a record; the ledger decides.

The decision (`node.app.access.decide`, then the data-sharing agreements in force for the
requester's institution or the custodian, `node.app.agreement_access.narrow`, which may refuse a
consent or author grant and never widens one; break-glass is not narrowed) is recorded whichever
way it goes: result "ok" when granted, "denied" when not (its writes are kept: the decision, the
patient's audit entry). A
granted decision is indexed for the custodian (`queries.active_grant`), logged as a disclosure
of the custodian institution, and, for break-glass, queued for the custodian's review and
counted against the break-glass limits (`node.app.breakglass`). When an agreement applied, the
decision and the audit entry name its statements (`policies`: `<agreement>@<version>#<n>`).
A consent refusal may still be granted by a standing permission the patient opted in to
(rule "standing_permission", its statements named the same way: `standing.<name>@<version>#<n>`,
node/app/standing.py). A request may be made under a Claim or a referral of the same patient
(`under`), which the policies then see as the request's context.

Only practitioners read records this way. A researcher never receives a patient's raw record:
research data leaves only as a de-identified extract (`medledger research extract`), so a
researcher's request fails with "research_extract_only" and nothing is granted.

An institution may ask for one of its practitioners (`on_behalf_of`, node/app/roles.py
`acting_staff`): the request is decided exactly as if the practitioner had signed it (grantees:
the practitioner and its institution), the grant is the practitioner's (`queries.active_grant`
for the practitioner), and the decision, the audit entry and the disclosure name the
institution as `via`. `assess` is the decision without writing, which a node also uses to
predict one (node/records/node_delegate.py).

The body holds no free text. An emergency request names a coded reason (`reason`, one of
`access.BREAKGLASS_REASONS`); the practitioner's own words stay off the chain, in its
institution's notes, and the chain may carry their commitment (`note_hash`: SHA-256 of a random
salt followed by the text), so the custodian reviewing the access can check the note it is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.chain.tx import Transaction, TxRejected

from node.app import breakglass, keys
from node.app.agreement_access import Subject, narrow
from node.app.access import (BREAKGLASS_REASONS, FRESH, BreakglassStanding, Decision, Grantee, Record, Request,
                             decide)
from node.app.audit import audit, disclose
from node.app.consents import candidate_consents
from node.app.fields import UNSPECIFIED, check_id, check_on_behalf_of, check_purpose
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import PRACTITIONER, RESEARCHER, acting_staff
from node.app.state import StateReader
from node.app.stored import read, write

RESULT_DENIED = "denied"
NOTE_HASH_SIZE = 32


def _present(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


def _listed(policies: tuple[str, ...] | None) -> list[str] | None:
    return None if policies is None else list(policies)


def check_request(body: dict[str, Any]) -> None:
    """The stateless checks of an `access.request` body (TxRejected with the code)."""
    require_fields(body, {"record": bytes, "purpose": str},
                   {"reason": str, "note_hash": bytes, "on_behalf_of": bytes, "under": bytes})
    check_id(body, "record")
    if "under" in body:
        check_id(body, "under")
    check_on_behalf_of(body)
    check_purpose(body["purpose"])
    reason = body.get("reason", "")
    if body["purpose"] == "emergency" and not reason.strip():
        raise TxRejected("reason_required", "an emergency (break-glass) request needs a reason code: one of "
                         + ", ".join(BREAKGLASS_REASONS))
    if reason and body["purpose"] != "emergency":
        raise TxRejected("invalid_body", "a reason code goes with purpose emergency only")
    if reason and reason not in BREAKGLASS_REASONS:
        raise TxRejected("reason_not_coded", "the reason must be one of " + ", ".join(BREAKGLASS_REASONS)
                         + "; free text stays off the chain (keep it in your notes and send its salted SHA-256 as note_hash)")
    if "note_hash" in body and len(body["note_hash"]) != NOTE_HASH_SIZE:
        raise TxRejected("invalid_body", f"note_hash must be {NOTE_HASH_SIZE} bytes (a SHA-256)")


def _check(tx: Transaction) -> None:
    check_request(tx.body)


@dataclass(frozen=True, slots=True)
class Assessment:
    """A practitioner's request as the ledger decides it: the stored record, the decision's inputs,
    the decision (consent, then the agreements in force) and the policy statements it rests on
    (None: no agreement applied)."""

    stored: dict[str, Any]
    record: Record
    request: Request
    decision: Decision
    policies: tuple[str, ...] | None = None
    standing: dict[str, Any] | None = None


def _under(state: StateReader, under: bytes | None, patient: bytes) -> tuple[bytes, dict[str, Any]] | None:
    """The Claim or referral a request is made under: of the same patient ("under_mismatch");
    an erased one counts as none."""
    if under is None:
        return None
    found = read(state, keys.record(under))
    if found is None:
        raise ExecFailed("unknown_record", "under names no record on the chain")
    if found["patient"] != patient or (found["resource_type"], bool({"payer", "recipient"} & found.keys())) \
            not in (("Claim", True), ("ServiceRequest", True)):
        raise ExecFailed("under_mismatch", "under names a Claim or a referral of the same patient")
    return None if "erased_ms" in found else (under, found)


def assess(state: StateReader, requester: bytes, identity: dict[str, Any], record_id: bytes, purpose: str,
           reason: str, now_ms: int, standing: Callable[[bytes], BreakglassStanding],
           under: bytes | None = None) -> Assessment:
    """Decide a practitioner's request for `record_id` at block time `now_ms` without writing
    anything: what `access.request` records, and what a node predicts before asking
    (node/records/node_delegate.py). `standing(patient)` is the requester's break-glass use.
    Raises ExecFailed("unknown_record")."""
    stored = read(state, keys.record(record_id))
    if stored is None:
        raise ExecFailed("unknown_record", "no record with this id")
    patient = stored["patient"]
    grantees: set[Grantee] = {("practitioner", requester)}
    if identity.get("institution") is not None:
        grantees.add(("institution", identity["institution"]))
    record = Record(id=record_id, patient=patient, resource_type=stored["resource_type"],
                    author=stored["author"], erased="erased_ms" in stored)
    request = Request(requester=requester, role=identity["role"], grantees=frozenset(grantees), purpose=purpose,
                      reason=reason, now_ms=now_ms)
    consents = candidate_consents(state, patient, sorted(grantees, key=lambda g: keys.grantee_part(*g)))
    opted_out = state.get(keys.OPTOUT + patient) is not None
    breakglass_use = standing(patient) if purpose == "emergency" else FRESH
    decision = decide(request, record, consents, opted_out=opted_out, standing=breakglass_use)
    subject = Subject(stored, _under(state, under, patient))
    narrowed = narrow(state, decision, record, request, requester_institution=identity.get("institution"),
                      profession=str(identity.get("profession", UNSPECIFIED)), subject=subject)
    return Assessment(stored, record, request, narrowed.decision, narrowed.policies, narrowed.standing)


def _execute(ctx: ExecContext) -> str | None:
    body = ctx.tx.body
    requester_id, requester, via = acting_staff(ctx, PRACTITIONER, RESEARCHER)
    role, purpose = requester["role"], body["purpose"]
    if role == RESEARCHER:
        if purpose != "research":
            raise ExecFailed("purpose_not_allowed", "a researcher may request access for research only")
        raise ExecFailed("research_extract_only", "a researcher never reads a raw record: research data leaves "
                         "only as a de-identified extract (medledger research extract)")
    found = assess(ctx.state, requester_id, requester, body["record"], purpose, body.get("reason", ""),
                   ctx.timestamp_ms, lambda patient: breakglass.standing(ctx, requester_id, patient), body.get("under"))
    stored, record, request, decision = found.stored, found.record, found.request, found.decision
    patient = record.patient

    custodian = stored["custodian"]
    outcome = "granted" if decision.granted else "denied"
    write(ctx, keys.access(ctx.tx.hash), _present({
        "requester": requester_id, "requester_role": role, "requester_institution": requester.get("institution"),
        "via": via, "record": record.id, "patient": patient, "custodian": custodian,
        "resource_type": record.resource_type, "purpose": purpose, "reason": request.reason,
        "note_hash": body.get("note_hash"), "decision": outcome, "rule": decision.rule, "consent": decision.consent,
        "policies": _listed(found.policies), "standing": found.standing, "under": body.get("under"), "expires_ms": decision.expires_ms, "review": decision.review,
        "height": ctx.height, "index": ctx.index, "time_ms": ctx.timestamp_ms,
    }))
    event = "access.breakglass" if decision.rule == "breakglass" else f"access.{outcome}"
    details = dict(record=record.id, resource_type=record.resource_type, custodian=custodian, purpose=purpose,
                   reason=request.reason or None, decision=outcome, rule=decision.rule, consent=decision.consent,
                   policies=_listed(found.policies), standing=(found.standing or {}).get("permission"), under=body.get("under"),
                   expires_ms=decision.expires_ms, actor=requester_id, via=via)
    audit(ctx, patient, event, **details)
    if not decision.granted:
        return RESULT_DENIED
    ctx.state.put(keys.GRANT + requester_id + record.id + ctx.position, ctx.tx.hash)
    disclose(ctx, custodian, event, patient=patient, requester_institution=requester.get("institution"), **details)
    if decision.review:
        assert decision.expires_ms is not None
        ctx.state.put(keys.BREAKGLASS_PENDING + custodian + ctx.position, ctx.tx.hash)
        breakglass.note_grant(ctx, requester_id, patient, record.id, custodian, decision.expires_ms)
    return None


ACCESS_REQUEST = register(
    TxType(name="access.request", summary="ask to read a record; the ledger decides and records it",
           check_body=_check, execute=_execute)
)
