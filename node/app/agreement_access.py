"""The agreements' say on one access decision: the consent decision narrowed by the policies in force.

`narrow` takes the consent decision of `node.app.access.decide` and, when it granted by consent,
the policies of the agreements in force at block time for the requester's
institution or the record's custodian (for the request's purpose, `policies_in_force`). With
none in force it returns the decision untouched and evaluates nothing, so a ledger without
agreements pays one index read per institution. Otherwise it builds the entities the decision
needs (the practitioner with its profession and institution, that institution with its kind,
the record with its type, patient and custodian, the custodian with its kind, the patient
without attributes), evaluates them (`node.app.policies.evaluate`) and combines the answer with
the consent (`combine`: policies only narrow). A denial keeps the consent it overrode and names
the statements that refused it; an input the engine refuses fails closed ("policy_error",
naming the policies). Break-glass and an author's read of its own record are never narrowed,
and break-glass stays flagged and reviewable; a denial is never widened by an agreement.

Standing permissions. A consent refusal (one of access.CONSENT_FAILURES) is looked at once more
when the patient opted in to a standing permission that could apply (node/app/standing.py: a
nominated pharmacy or insurer, an accepted referral or lab order among the entities, a record
posted back on an order): those policies are evaluated on their own, and a permit of theirs
grants ("standing_permission", naming its statements), unless an agreement in force forbids or
errs. The grant expires like a consent's (ACCESS_WINDOW_MS), and never after a referral's end; a
nomination's grant names the nomination (`standing`), so a custodian stops honouring it when
the patient withdraws it (`queries.active_grant`).

The request may be made under a Claim or a referral (`under`, or the record itself when it is
one): the policies then see it as `context.claim` / `context.referral`. A request's recipient
attribute is set only once the patient accepted it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from node.app import care
from node.app.access import ACCESS_WINDOW_MS, CONSENT_FAILURES, Decision, Record, Request
from node.app.agreements import policies_in_force
from node.app.fields import UNSPECIFIED
from node.app.policies import inputs
from node.app.policies.check import PolicyRefused
from node.app.policies.combine import Outcome, combine
from node.app.policies.evaluate import Decision as PolicyDecision
from node.app.policies.evaluate import Policy, evaluate
from node.app.roles import identity_of
from node.app.standing import BY_PERMISSION, opted_in
from node.app.state import StateReader
from node.app.stored import read
from node.app import keys

# the grants agreements can narrow: a consent's. Break-glass stays the reviewable exception, and
# an author reads back what it wrote itself (an agreement has nothing to withhold from it)
NARROWED_RULES = ("consent",)
STANDING_RULE = "standing_permission"
_PERMISSION_OF = {policy.id: permission for permission, policy in BY_PERMISSION.items()}


@dataclass(frozen=True, slots=True)
class Narrowed:
    """The decision after the agreements and the standing permissions, the policy statements it
    rests on (None: no policy applied, so nothing was evaluated), and the nomination a standing
    grant rests on ({"permission", "height"}), if any."""

    decision: Decision
    policies: tuple[str, ...] | None = None
    standing: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """The record asked for as the policies see it: its stored metadata, and the Claim or
    referral the request is made under (id and metadata), if any."""

    stored: dict[str, Any]
    under: tuple[bytes, dict[str, Any]] | None = None


def _kind(state: StateReader, institution: bytes) -> str:
    found = identity_of(state, institution)
    return str(found.get("kind", UNSPECIFIED)) if found else UNSPECIFIED


def _hex(value: Any) -> str | None:
    return value.hex() if isinstance(value, bytes) else None


def _accepted(state: StateReader, record_id: bytes) -> bool:
    found = care.workflow(state, record_id)
    return found is not None and "accepted_ms" in found


def record_entity(state: StateReader, record_id: bytes, stored: dict[str, Any]) -> inputs.Entity:
    """A stored record as a policy entity (the recipient only once the patient accepted)."""
    recipient = stored.get("recipient") if _accepted(state, record_id) else None
    return inputs.record(record_id.hex(), stored["resource_type"], stored["patient"].hex(), stored["custodian"].hex(),
                         payer=_hex(stored.get("payer")), recipient=_hex(recipient), until_ms=stored.get("until_ms"),
                         lists=[r.hex() for r in stored.get("lists", ())], author=_hex(stored.get("author")),
                         based_on=_hex(stored.get("based_on")))


@dataclass(frozen=True, slots=True)
class _Inputs:
    query: inputs.Request
    entities: list[inputs.Entity]
    accepted_request: bool
    fulfils_order: bool


def _inputs(state: StateReader, record: Record, subject: Subject, request: Request, requester_institution: bytes,
            profession: str, standing: dict[str, Any]) -> _Inputs:
    stored, custodian = subject.stored, subject.stored["custodian"]
    home, keeper = requester_institution.hex(), custodian.hex()
    entities = [
        inputs.practitioner(request.requester.hex(), profession, home),
        inputs.institution(home, _kind(state, requester_institution)),
        record_entity(state, record.id, stored),
        inputs.patient(record.patient.hex(), nominated_pharmacy=_hex(standing.get("pharmacy", {}).get("institution")),
                       insurer=_hex(standing.get("insurer", {}).get("institution"))),
    ]
    if keeper != home:
        entities.append(inputs.institution(keeper, _kind(state, custodian)))
    context_id, context = subject.under or (record.id, stored)
    claim = referral = None
    if context["resource_type"] == "Claim" and "payer" in context:
        claim = inputs.Ref("Record", context_id.hex())
    elif context["resource_type"] == "ServiceRequest" and "recipient" in context:
        referral = inputs.Ref("Record", context_id.hex())
    if subject.under is not None and (claim or referral):
        entities.append(record_entity(state, context_id, context))
    order = stored.get("based_on")
    if order is not None and order != context_id:
        found = read(state, keys.record(order))
        if found is not None:
            entities.append(record_entity(state, order, found))
    accepted = referral is not None and _accepted(state, context_id)
    query = inputs.Request(principal=inputs.Ref("Practitioner", request.requester.hex()), action="read",
                           resource=inputs.Ref("Record", record.id.hex()), purpose=request.purpose, now_ms=request.now_ms,
                           claim=claim, referral=referral)
    return _Inputs(query, entities, accepted, order is not None)


def _decide(policies: list[Policy], given: _Inputs) -> PolicyDecision:
    """The policies' decision; an input the engine refuses fails closed, naming the documents."""
    try:
        return evaluate(policies, given.query, given.entities)
    except PolicyRefused:
        return PolicyDecision(allowed=False, routes=True, errors=tuple(sorted(p.id for p in policies)))


def _referral_end(given: _Inputs, subject: Subject) -> int | None:
    if given.query.referral is None:
        return None
    context = subject.under[1] if subject.under is not None else subject.stored
    end = context.get("until_ms")
    return end if isinstance(end, int) else None


def narrow(state: StateReader, decision: Decision, record: Record, request: Request, *,
           requester_institution: bytes | None, profession: str, subject: Subject) -> Narrowed:
    """`decision` narrowed by the agreements in force, or widened by a standing permission the
    patient opted in to (module docstring)."""
    if requester_institution is None:
        return Narrowed(decision)
    custodian = subject.stored["custodian"]
    if decision.granted:
        if decision.rule not in NARROWED_RULES:
            return Narrowed(decision)
        policies = policies_in_force(state, {requester_institution, custodian}, now_ms=request.now_ms,
                                     purpose=request.purpose)
        if not policies:
            return Narrowed(decision)
        given = _inputs(state, record, subject, request, requester_institution, profession, {})
        outcome = combine(consent_granted=True, consent_rule="consent", agreements=_decide(policies, given))
        if outcome.granted:
            return Narrowed(decision, tuple(sorted(outcome.statements)))
        refused = dataclasses.replace(decision, granted=False, rule=outcome.rule, expires_ms=None, review=False)
        return Narrowed(refused, tuple(sorted(outcome.statements)))
    if decision.rule not in CONSENT_FAILURES:
        return Narrowed(decision)
    return _standing(state, decision, record, request, requester_institution, profession, subject)


def _standing(state: StateReader, decision: Decision, record: Record, request: Request, requester_institution: bytes,
              profession: str, subject: Subject) -> Narrowed:
    nominations = care.standing_of(state, record.patient)
    context = subject.under[1] if subject.under is not None else subject.stored
    if not nominations and "based_on" not in subject.stored and "recipient" not in context:
        return Narrowed(decision)  # no opt-in can apply: nothing is built or evaluated
    given = _inputs(state, record, subject, request, requester_institution, profession, nominations)
    chosen = opted_in(set(nominations), accepted_request=given.accepted_request, fulfils_order=given.fulfils_order)
    if not chosen:
        return Narrowed(decision)
    agreements = policies_in_force(state, {requester_institution, subject.stored["custodian"]}, now_ms=request.now_ms,
                                   purpose=request.purpose)
    outcome: Outcome = combine(consent_granted=False, consent_rule=decision.rule,
                               agreements=_decide(agreements, given) if agreements else None,
                               standing=_decide(chosen, given))
    statements = tuple(sorted(outcome.statements))
    if not outcome.granted:
        if outcome.rule == decision.rule:
            return Narrowed(decision)
        return Narrowed(dataclasses.replace(decision, rule=outcome.rule), statements)
    expires = request.now_ms + ACCESS_WINDOW_MS
    end = _referral_end(given, subject)
    if end is not None:
        expires = min(expires, end)
    permitting = sorted({s.rpartition("#")[0] for s in statements})
    nomination = next((_PERMISSION_OF[p] for p in permitting if p in _PERMISSION_OF), None)
    standing = None
    if nomination is not None:
        standing = {"permission": nomination, "height": nominations[nomination]["height"]}
    granted = Decision(granted=True, rule=STANDING_RULE, expires_ms=expires)
    return Narrowed(granted, statements, standing)
