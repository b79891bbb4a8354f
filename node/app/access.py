"""The access decision: a pure function of a request, a record, the patient's candidate consents
and the patient's break-glass choice. No state, no clock (the block time comes in the request).

Theory of operation, in order:

1. The record is erased                                  -> denied, "erased"
2. The requester wrote the record                        -> granted, "author"
3. A consent matches (oldest first; see `consent_verdict`) -> granted, "consent", naming it
4. The purpose is "emergency":
     requester is not a practitioner                      -> denied, "breakglass_not_allowed"
     no reason given                                      -> denied, "reason_required"
     the patient opted out of break-glass                 -> denied, "breakglass_opted_out"
     the requester is suspended from break-glass          -> denied, "breakglass_suspended"
     the requester used up its break-glass limit          -> denied, "breakglass_limit_practitioner"
       (BREAKGLASS_MAX_PER_PRACTITIONER grants, or BREAKGLASS_MAX_PATIENTS_PER_PRACTITIONER
       distinct patients, in the last BREAKGLASS_LIMIT_WINDOW_MS of block time)
     the patient's records were opened by break-glass     -> denied, "breakglass_limit_patient"
       BREAKGLASS_MAX_PER_PATIENT times in that window
     otherwise                                            -> granted, "breakglass", flagged for review
5. Otherwise                                             -> denied, with the reason of the consent
   that came closest to matching (ties: the newest), or "no_consent" if none names the requester.

A consent is checked in this order, and the first check it fails is its reason; a later check
means it came closer: patient and grantee ("no_consent"), scope ("out_of_scope"), deny exceptions
("type_excluded"), purpose ("purpose_not_consented"), then its status: period
("consent_not_yet_valid", "consent_expired") and revocation ("consent_revoked"), which rank
equal. So a consent that covers the request but is no longer in force is reported by its own
status, and of several such the newest speaks: after a revoked consent and a later one that
expired, the denial says "consent_expired". A deny exception wins over a record id listed in the
scope. The validity period is inclusive at both ends: valid_from <= t <= valid_until.

Every grant expires (inclusive, block time in ms): a consent grant at the earlier of the
consent's valid_until and t + ACCESS_WINDOW_MS; an author's at t + ACCESS_WINDOW_MS; a
break-glass grant at t + BREAKGLASS_WINDOW_MS.

Break-glass limits count granted break-glass decisions only (a denial costs nothing), in block
time, so every replica counts the same; the caller (`types/access_request.py`) reads them from
the ledger into a `BreakglassStanding`. The reason of an emergency request is a code from
BREAKGLASS_REASONS (checked at admission): free text never goes on the chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ACCESS_WINDOW_MS = 24 * 60 * 60 * 1000
BREAKGLASS_WINDOW_MS = 60 * 60 * 1000

# Break-glass limits (block time). A real emergency needs a handful of records of one or two
# patients in a shift; a sweep through many charts is what the limits stop.
BREAKGLASS_LIMIT_WINDOW_MS = 24 * 60 * 60 * 1000  # the rolling window the limits count over
BREAKGLASS_MAX_PER_PRACTITIONER = 10  # break-glass grants per practitioner per window
BREAKGLASS_MAX_PATIENTS_PER_PRACTITIONER = 3  # distinct patients per practitioner per window
BREAKGLASS_MAX_PER_PATIENT = 20  # break-glass grants on one patient's records per window (all requesters)
BREAKGLASS_SUSPENSION_MS = 30 * 24 * 60 * 60 * 1000  # an `unjustified` review's suspension lasts this long

# Coded break-glass reasons, after HL7 v3 ActReason / the FHIR break-glass guidance (ETREAT:
# emergency treatment): why consent could not be asked, never what is wrong with the patient.
BREAKGLASS_REASONS = {
    "unconscious": "the patient is unconscious or unresponsive",
    "life_threatening": "a life- or limb-threatening condition needs treatment now",
    "lacks_capacity": "the patient is conscious but lacks the capacity to consent",
    "guardian_unreachable": "the patient's guardian or representative cannot be reached in time",
    "imminent_harm": "there is an imminent risk of serious harm to the patient or others",
}

# "standing_permission": granted after this decision, by a standing policy the patient opted in to
# (node/app/agreement_access.py); decide never returns it
GRANTED_RULES = ("author", "consent", "breakglass", "standing_permission")
CONSENT_FAILURES = (  # in the order a consent is checked: a later failure came closer to matching
    "no_consent",
    "out_of_scope",
    "type_excluded",
    "purpose_not_consented",
    "consent_not_yet_valid",
    "consent_expired",
    "consent_revoked",
)
BREAKGLASS_DENIALS = ("breakglass_not_allowed", "reason_required", "breakglass_opted_out", "breakglass_suspended",
                      "breakglass_limit_practitioner", "breakglass_limit_patient")
# the refusals of an agreement's policy, after this decision (node/app/agreement_access.py,
# node/app/policies/combine.py POLICY_DENIALS): decide never returns them
POLICY_DENIALS = ("policy_error", "policy_forbids", "policy_not_permitted")
DENIED_RULES = ("erased", *CONSENT_FAILURES, *BREAKGLASS_DENIALS, *POLICY_DENIALS)
MATCH = "match"
_RANK = {reason: min(rank, 4) for rank, reason in enumerate(CONSENT_FAILURES)}  # status reasons rank equal


Grantee = tuple[str, bytes | str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    """What the decision needs of a consent rule."""

    id: bytes
    patient: bytes
    grantee_kind: str
    grantee: bytes | str
    purposes: frozenset[str]
    resource_types: frozenset[str]
    record_ids: frozenset[bytes]
    deny_types: frozenset[str]
    valid_from: int
    valid_until: int
    revoked: bool

    @classmethod
    def from_state(cls, consent_id: bytes, value: dict[str, Any], *, until_cap: int | None = None) -> "Consent":
        """Build from a stored consent; `until_cap` ends it earlier (a study's end date)."""
        until = value["valid_until"] if until_cap is None else min(value["valid_until"], until_cap)
        return cls(
            id=consent_id, patient=value["patient"], grantee_kind=value["grantee_kind"], grantee=value["grantee"],
            purposes=frozenset(value["purposes"]), resource_types=frozenset(value.get("resource_types", ())),
            record_ids=frozenset(value.get("record_ids", ())), deny_types=frozenset(value.get("deny_types", ())),
            valid_from=value["valid_from"], valid_until=until, revoked="revoked_ms" in value,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    id: bytes
    patient: bytes
    resource_type: str
    author: bytes
    erased: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """An access request at block time `now_ms`; `grantees` are the identities the requester
    answers to (itself, its institution, the active studies it is on)."""

    requester: bytes
    role: str
    grantees: frozenset[Grantee]
    purpose: str
    reason: str
    now_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakglassStanding:
    """What the ledger knows of recent break-glass use, for the limits: the requester's granted
    break-glass requests in the window and the patients they were for, the patient's break-glass
    grants in the window, and whether the requester is suspended."""

    requester_grants: int = 0
    requester_patients: frozenset[bytes] = frozenset()
    patient_grants: int = 0
    suspended: bool = False


FRESH = BreakglassStanding()


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    granted: bool
    rule: str  # one of GRANTED_RULES when granted, of DENIED_RULES when denied
    consent: bytes | None = None
    expires_ms: int | None = None
    review: bool = False


def consent_verdict(consent: Consent, record: Record, request: Request) -> str:
    """MATCH, or the first check `consent` fails for this record and request."""
    if consent.patient != record.patient or (consent.grantee_kind, consent.grantee) not in request.grantees:
        return "no_consent"
    if record.id not in consent.record_ids and not ({"*", record.resource_type} & consent.resource_types):
        return "out_of_scope"
    if record.resource_type in consent.deny_types:
        return "type_excluded"
    if request.purpose not in consent.purposes:
        return "purpose_not_consented"
    if request.now_ms < consent.valid_from:
        return "consent_not_yet_valid"
    if request.now_ms > consent.valid_until:
        return "consent_expired"
    if consent.revoked:
        return "consent_revoked"
    return MATCH


def breakglass_limit(standing: BreakglassStanding, patient: bytes) -> str | None:
    """The break-glass denial `standing` calls for on a request for `patient`, or None."""
    if standing.suspended:
        return "breakglass_suspended"
    if standing.requester_grants >= BREAKGLASS_MAX_PER_PRACTITIONER:
        return "breakglass_limit_practitioner"
    if patient not in standing.requester_patients and \
            len(standing.requester_patients) >= BREAKGLASS_MAX_PATIENTS_PER_PRACTITIONER:
        return "breakglass_limit_practitioner"
    if standing.patient_grants >= BREAKGLASS_MAX_PER_PATIENT:
        return "breakglass_limit_patient"
    return None


def decide(request: Request, record: Record, consents: Iterable[Consent], *, opted_out: bool,
           standing: BreakglassStanding = FRESH) -> Decision:
    """Decide an access request; `consents` are the patient's candidates, oldest first;
    `standing` is the recent break-glass use the limits count."""
    now = request.now_ms
    if record.erased:
        return Decision(granted=False, rule="erased")
    if request.requester == record.author:
        return Decision(granted=True, rule="author", expires_ms=now + ACCESS_WINDOW_MS)
    closest = "no_consent"
    for consent in consents:
        verdict = consent_verdict(consent, record, request)
        if verdict == MATCH:
            return Decision(granted=True, rule="consent", consent=consent.id,
                            expires_ms=min(consent.valid_until, now + ACCESS_WINDOW_MS))
        if _RANK[verdict] >= _RANK[closest]:  # ties: the newer consent speaks
            closest = verdict
    if request.purpose == "emergency":
        if request.role != "practitioner":
            return Decision(granted=False, rule="breakglass_not_allowed")
        if not request.reason.strip():
            return Decision(granted=False, rule="reason_required")
        if opted_out:
            return Decision(granted=False, rule="breakglass_opted_out")
        limit = breakglass_limit(standing, record.patient)
        if limit is not None:
            return Decision(granted=False, rule=limit)
        return Decision(granted=True, rule="breakglass", expires_ms=now + BREAKGLASS_WINDOW_MS, review=True)
    return Decision(granted=False, rule=closest)
