"""`combine`: the one place a policy decision meets the patient's consent.

The rule (docs/policies.md, "Policies narrow, the patient decides"): an agreement's policies
are only ever ANDed with the consent decision, never ORed, so they can narrow access (a forbid,
or a set of permits the access must fall within) or route it (which staff of a consented
institution may use the consent), but never grant what consent refused. The single exception
is a standing permission the patient opted in to: a permit statement of a policy the patient
named (its id, with its version) grants on its own. Break-glass is decided before this, by
node/app/access.py, and stays the only way past consent.

    consent granted:
      1. a policy statement erred                 -> denied, "policy_error" (fail closed)
      2. a forbid matched                         -> denied, "policy_forbids"
      3. no policy in force for the request, or a
         permit matched                           -> granted, with the consent's rule
      4. policies in force, none permits          -> denied, "policy_not_permitted"
    consent refused:
      5. no permit of a policy the patient opted
         in to matched                            -> denied, with the consent's own rule
      6. one did, but a statement erred or a
         forbid matched                           -> denied, "policy_error" / "policy_forbids"
      7. otherwise                                -> granted, "standing_permission"
"""

from __future__ import annotations

from dataclasses import dataclass

from node.app.policies.evaluate import Decision

POLICY_DENIALS = ("policy_error", "policy_forbids", "policy_not_permitted")


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The combined answer: granted or not, the rule that decided, and the policy statements
    (`<policy id>#<n>`) it rests on, for the audit trail."""

    granted: bool
    rule: str
    statements: tuple[str, ...] = ()


def combine(*, consent_granted: bool, consent_rule: str, policies_in_force: bool, decision: Decision,
            standing: frozenset[str] = frozenset()) -> Outcome:
    """Consent AND policies; `standing` holds the ids of the policies the patient opted in to as
    standing permissions; `policies_in_force` says whether any policy applied to the request
    (with none, consent alone decides)."""
    if consent_granted:
        if decision.errors:
            return Outcome(granted=False, rule="policy_error", statements=decision.errors)
        if decision.forbids:
            return Outcome(granted=False, rule="policy_forbids", statements=decision.forbids)
        if not policies_in_force or decision.permits:
            return Outcome(granted=True, rule=consent_rule, statements=decision.permits)
        return Outcome(granted=False, rule="policy_not_permitted")
    standing_permits = tuple(s for s in decision.permits if s.rpartition("#")[0] in standing)
    if not standing_permits:
        return Outcome(granted=False, rule=consent_rule)
    if decision.errors:
        return Outcome(granted=False, rule="policy_error", statements=decision.errors)
    if decision.forbids:
        return Outcome(granted=False, rule="policy_forbids", statements=decision.forbids)
    return Outcome(granted=True, rule="standing_permission", statements=standing_permits)
