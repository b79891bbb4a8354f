"""`combine`: the one place a policy decision meets the patient's consent.

The rule (docs/policies.md, "Policies narrow, the patient decides"): the policies of the
agreements that govern a request are only ever ANDed with the consent decision, never ORed, so
they can narrow access (a forbid) or route it (permits: which staff of a consented institution
may use the consent, for what), but never grant what consent refused. The single exception is a
standing permission the patient opted in to: the caller evaluates the policies the patient named
(by id, with their version) on their own, and a permit of theirs grants without consent. The
agreements' forbids still apply to it. Break-glass is decided before this, by
node/app/access.py, and stays the only way past consent.

`agreements` is the decision of the agreements governing the request (None when none does),
`standing` that of the patient's opted-in standing permissions (None when there are none):

    consent granted:
      1. an agreement statement erred             -> denied, "policy_error" (fail closed)
      2. an agreement forbids                     -> denied, "policy_forbids"
      3. no agreement, agreements of forbids only,
         or an agreement permit matched           -> granted, with the consent's rule
      4. agreements route, none permits           -> denied, "policy_not_permitted"
    consent refused:
      5. no standing permission permits           -> denied, with the consent's own rule
      6. one does, but a statement (agreement or
         standing) erred or forbids               -> denied, "policy_error" / "policy_forbids"
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


NOTHING = Decision(allowed=False)  # the decision of no policy at all


def combine(*, consent_granted: bool, consent_rule: str, agreements: Decision | None = None,
            standing: Decision | None = None) -> Outcome:
    """Consent AND the agreements' policies; only the patient's `standing` permissions widen."""
    governing = agreements or NOTHING
    if consent_granted:
        if governing.errors:
            return Outcome(granted=False, rule="policy_error", statements=governing.errors)
        if governing.forbids:
            return Outcome(granted=False, rule="policy_forbids", statements=governing.forbids)
        if not governing.routes or governing.permits:
            return Outcome(granted=True, rule=consent_rule, statements=governing.permits)
        return Outcome(granted=False, rule="policy_not_permitted")
    opted = standing or NOTHING
    if not opted.permits:
        return Outcome(granted=False, rule=consent_rule)
    if governing.errors or opted.errors:
        return Outcome(granted=False, rule="policy_error", statements=tuple(sorted({*governing.errors, *opted.errors})))
    if governing.forbids or opted.forbids:
        return Outcome(granted=False, rule="policy_forbids", statements=tuple(sorted({*governing.forbids, *opted.forbids})))
    return Outcome(granted=True, rule="standing_permission", statements=opted.permits)
