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
naming the policies). Break-glass, an author's read of its own record and denials are never
touched: a denial stays the consent's
own, and break-glass stays flagged and reviewable. Standing permissions (a patient's opt-in)
are not evaluated yet (`standing=None`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from node.app.access import Decision, Record, Request
from node.app.agreements import policies_in_force
from node.app.fields import UNSPECIFIED
from node.app.policies import inputs
from node.app.policies.check import PolicyRefused
from node.app.policies.combine import Outcome, combine
from node.app.policies.evaluate import Policy, evaluate
from node.app.roles import identity_of
from node.app.state import StateReader

# the grants agreements can narrow: a consent's. Break-glass stays the reviewable exception, and
# an author reads back what it wrote itself (an agreement has nothing to withhold from it)
NARROWED_RULES = ("consent",)


@dataclass(frozen=True, slots=True)
class Narrowed:
    """The decision after the agreements, and the policy statements it rests on (None: no
    agreement applied, so nothing was evaluated)."""

    decision: Decision
    policies: tuple[str, ...] | None = None


def _kind(state: StateReader, institution: bytes) -> str:
    found = identity_of(state, institution)
    return str(found.get("kind", UNSPECIFIED)) if found else UNSPECIFIED


def _evaluate(state: StateReader, policies: list[Policy], record: Record, request: Request, requester_institution: bytes,
              profession: str, custodian: bytes) -> Outcome:
    home, keeper = requester_institution.hex(), custodian.hex()
    entities = [
        inputs.practitioner(request.requester.hex(), profession, home),
        inputs.institution(home, _kind(state, requester_institution)),
        inputs.record(record.id.hex(), record.resource_type, record.patient.hex(), keeper),
        inputs.patient(record.patient.hex()),
    ]
    if keeper != home:
        entities.append(inputs.institution(keeper, _kind(state, custodian)))
    query = inputs.Request(principal=inputs.Ref("Practitioner", request.requester.hex()), action="read",
                           resource=inputs.Ref("Record", record.id.hex()), purpose=request.purpose, now_ms=request.now_ms)
    try:
        said = evaluate(policies, query, entities)
    except PolicyRefused:  # fail closed, naming the documents
        return Outcome(granted=False, rule="policy_error", statements=tuple(p.id for p in policies))
    return combine(consent_granted=True, consent_rule="consent", agreements=said)


def narrow(state: StateReader, decision: Decision, record: Record, request: Request, *,
           requester_institution: bytes | None, profession: str, custodian: bytes) -> Narrowed:
    """`decision` narrowed by the agreements in force (module docstring)."""
    if not decision.granted or decision.rule not in NARROWED_RULES or requester_institution is None:
        return Narrowed(decision)
    policies = policies_in_force(state, {requester_institution, custodian}, now_ms=request.now_ms, purpose=request.purpose)
    if not policies:
        return Narrowed(decision)
    outcome = _evaluate(state, policies, record, request, requester_institution, profession, custodian)
    if outcome.granted:
        return Narrowed(decision, tuple(sorted(outcome.statements)))
    refused = dataclasses.replace(decision, granted=False, rule=outcome.rule, expires_ms=None, review=False)
    return Narrowed(refused, tuple(sorted(outcome.statements)))
