"""The access decision as a pure function: each rule by example, then properties over generated
requests, records and consents (fixed derandomised seeds, so a failure reproduces)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.app.access import (
    ACCESS_WINDOW_MS,
    BREAKGLASS_WINDOW_MS,
    CONSENT_FAILURES,
    DENIED_RULES,
    GRANTED_RULES,
    MATCH,
    Consent,
    Record,
    Request,
    consent_verdict,
    decide,
)
from node.app.fields import PURPOSES

PAT, OTHER_PAT = b"P" * 32, b"Q" * 32
DOC, INST, AUTHOR = b"D" * 32, b"I" * 32, b"W" * 32
REC = Record(id=b"R" * 32, patient=PAT, resource_type="Observation", author=AUTHOR, erased=False)
NOW = 1_000_000


def req(**kw) -> Request:
    base = dict(requester=DOC, role="practitioner", grantees=frozenset({("practitioner", DOC), ("institution", INST)}),
                purpose="treatment", reason="", now_ms=NOW)
    return Request(**{**base, **kw})


def con(i: int = 1, **kw) -> Consent:
    base = dict(id=bytes([i]) * 32, patient=PAT, grantee_kind="institution", grantee=INST, purposes=frozenset({"treatment"}),
                resource_types=frozenset({"Observation"}), record_ids=frozenset(), deny_types=frozenset(),
                valid_from=0, valid_until=NOW + 10, revoked=False)
    return Consent(**{**base, **kw})


@pytest.mark.parametrize("change, verdict", [
    ({}, MATCH),
    ({"patient": OTHER_PAT}, "no_consent"),
    ({"grantee": b"X" * 32}, "no_consent"),
    ({"grantee_kind": "practitioner"}, "no_consent"),
    ({"resource_types": frozenset({"Condition"})}, "out_of_scope"),
    ({"resource_types": frozenset({"*"})}, MATCH),
    ({"resource_types": frozenset(), "record_ids": frozenset({REC.id})}, MATCH),
    ({"resource_types": frozenset(), "record_ids": frozenset({b"S" * 32})}, "out_of_scope"),
    ({"deny_types": frozenset({"Observation"})}, "type_excluded"),
    ({"record_ids": frozenset({REC.id}), "deny_types": frozenset({"Observation"})}, "type_excluded"),
    ({"purposes": frozenset({"payment", "research"})}, "purpose_not_consented"),
    ({"valid_from": NOW + 1}, "consent_not_yet_valid"),
    ({"valid_from": NOW}, MATCH),
    ({"valid_until": NOW}, MATCH),
    ({"valid_until": NOW - 1}, "consent_expired"),
    ({"revoked": True}, "consent_revoked"),
    ({"revoked": True, "valid_until": NOW - 1}, "consent_expired"),
    ({"deny_types": frozenset({"Observation"}), "revoked": True}, "type_excluded"),
])
def test_consent_verdicts(change, verdict):
    assert consent_verdict(con(**change), REC, req()) == verdict


def test_decision_rules_in_order():
    assert decide(req(), replace(REC, erased=True), [con()], opted_out=False).rule == "erased"
    assert decide(req(requester=AUTHOR), replace(REC, erased=True), [], opted_out=False).rule == "erased"
    d = decide(req(requester=AUTHOR), REC, [], opted_out=False)
    assert (d.granted, d.rule, d.expires_ms) == (True, "author", NOW + ACCESS_WINDOW_MS)
    d = decide(req(), REC, [con(1, revoked=True), con(2), con(3)], opted_out=False)
    assert (d.granted, d.rule, d.consent, d.expires_ms) == (True, "consent", con(2).id, NOW + 10)
    d = decide(req(), REC, [con(valid_until=NOW + 10 * ACCESS_WINDOW_MS)], opted_out=False)
    assert d.expires_ms == NOW + ACCESS_WINDOW_MS
    assert decide(req(), REC, [], opted_out=False).rule == "no_consent"
    # the closest failure is reported; ties go to the newest
    d = decide(req(), REC, [con(1, resource_types=frozenset({"X"})), con(2, valid_until=0), con(3, purposes=frozenset({"payment"}))], opted_out=False)
    assert (d.granted, d.rule, d.consent) == (False, "consent_expired", None)
    assert decide(req(), REC, [con(1, valid_until=0), con(2, valid_from=NOW + 5)], opted_out=False).rule == "consent_not_yet_valid"
    assert decide(req(), REC, [con(1, valid_from=NOW + 5), con(2, valid_until=0)], opted_out=False).rule == "consent_expired"
    assert decide(req(), REC, [con(1, revoked=True), con(2, valid_until=0)], opted_out=False).rule == "consent_expired"
    assert decide(req(), REC, [con(1, valid_until=0), con(2, revoked=True)], opted_out=False).rule == "consent_revoked"
    assert decide(req(), REC, [con(1, purposes=frozenset({"payment"})), con(2, resource_types=frozenset({"X"}))],
                  opted_out=False).rule == "purpose_not_consented"


def test_breakglass_rules():
    emergency = req(purpose="emergency", reason="unconscious")
    d = decide(emergency, REC, [], opted_out=False)
    assert (d.granted, d.rule, d.review, d.expires_ms) == (True, "breakglass", True, NOW + BREAKGLASS_WINDOW_MS)
    assert decide(emergency, REC, [], opted_out=True).rule == "breakglass_opted_out"
    assert decide(replace(emergency, reason=" "), REC, [], opted_out=False).rule == "reason_required"
    assert decide(replace(emergency, role="researcher"), REC, [], opted_out=False).rule == "breakglass_not_allowed"
    d = decide(emergency, REC, [con(purposes=frozenset({"emergency"}))], opted_out=True)
    assert (d.granted, d.rule, d.review) == (True, "consent", False)
    assert decide(req(purpose="treatment", reason="unconscious"), REC, [], opted_out=False).rule == "no_consent"


# -- properties ----------------------------------------------------------------------------------

IDS = st.sampled_from([DOC, INST, b"X" * 32])
TYPES = st.sampled_from(["Observation", "Condition", "QuestionnaireResponse"])
GRANTEES = st.sampled_from([("practitioner", DOC), ("institution", INST), ("practitioner", b"X" * 32), ("study", "S1"), ("study", "S2")])
TIMES = st.integers(min_value=NOW - 20, max_value=NOW + 20)


@st.composite
def consents(draw, i: int) -> Consent:
    kind, grantee = draw(GRANTEES)
    start = draw(TIMES)
    return Consent(
        id=i.to_bytes(32, "big"), patient=draw(st.sampled_from([PAT, PAT, OTHER_PAT])), grantee_kind=kind, grantee=grantee,
        purposes=frozenset(draw(st.sets(st.sampled_from(PURPOSES), min_size=1))),
        resource_types=frozenset(draw(st.sets(st.sampled_from(["Observation", "Condition", "*"]), max_size=2))),
        record_ids=frozenset(draw(st.sets(st.sampled_from([REC.id, b"S" * 32]), max_size=1))),
        deny_types=frozenset(draw(st.sets(TYPES, max_size=1))),
        valid_from=start, valid_until=start + draw(st.integers(min_value=1, max_value=30)), revoked=draw(st.booleans()),
    )


@st.composite
def cases(draw):
    n = draw(st.integers(min_value=0, max_value=6))
    cs = [draw(consents(i)) for i in range(n)]
    role = draw(st.sampled_from(["practitioner", "researcher"]))
    grantees = {("practitioner", DOC), ("institution", INST)} if role == "practitioner" else {("study", "S1")}
    request = Request(requester=draw(st.sampled_from([DOC, AUTHOR])), role=role, grantees=frozenset(grantees),
                      purpose=draw(st.sampled_from(PURPOSES)), reason=draw(st.sampled_from(["", "why"])), now_ms=NOW)
    record = replace(REC, resource_type=draw(TYPES), erased=draw(st.booleans()))
    return request, record, cs, draw(st.booleans())


@settings(max_examples=400, derandomize=True, deadline=None)
@given(cases())
def test_decision_properties(case):
    request, record, cs, opted_out = case
    d = decide(request, record, cs, opted_out=opted_out)
    verdicts = [consent_verdict(c, record, request) for c in cs]
    assert d.rule in (GRANTED_RULES if d.granted else DENIED_RULES)
    assert d == decide(request, record, list(cs), opted_out=opted_out)  # a pure function
    if record.erased:
        assert not d.granted and d.rule == "erased"
        return
    if d.granted:
        assert d.expires_ms is not None and d.expires_ms >= request.now_ms
        assert d.review == (d.rule == "breakglass")
    else:
        assert d.expires_ms is None and d.consent is None
    if request.requester == record.author:
        assert d.rule == "author"
        return
    if MATCH in verdicts:
        first = cs[verdicts.index(MATCH)]
        assert d.rule == "consent" and d.consent == first.id  # the oldest matching consent
        assert d.expires_ms == min(first.valid_until, request.now_ms + ACCESS_WINDOW_MS)
        assert first.patient == record.patient and (first.grantee_kind, first.grantee) in request.grantees
        return
    # no consent matched: only break-glass may grant, and only on its terms
    if d.granted:
        assert d.rule == "breakglass" and request.purpose == "emergency" and request.role == "practitioner"
        assert request.reason and not opted_out
    elif request.purpose != "emergency":
        def rank(reason):
            return min(CONSENT_FAILURES.index(reason), 4)  # the status reasons rank equal

        ranks = [rank(v) for v in verdicts]
        assert rank(d.rule) == max(ranks, default=0)
        if verdicts:  # of the closest, the newest speaks
            assert d.rule == [v for v in verdicts if rank(v) == max(ranks)][-1]


@settings(max_examples=250, derandomize=True, deadline=None)
@given(cases(), st.data())
def test_revoking_or_adding_foreign_consents_never_grants_more(case, data):
    request, record, cs, opted_out = case
    before = decide(request, record, cs, opted_out=opted_out)
    if cs:
        i = data.draw(st.integers(min_value=0, max_value=len(cs) - 1))
        revoked = cs[:i] + [replace(cs[i], revoked=True)] + cs[i + 1:]
        after = decide(request, record, revoked, opted_out=opted_out)
        assert not after.granted or before.granted
    foreign = [replace(c, patient=OTHER_PAT, id=b"\xff" + c.id[1:]) for c in cs]
    mixed = [x for pair in zip(foreign, cs) for x in pair]
    assert decide(request, record, mixed, opted_out=opted_out) == before
    if not opted_out:  # opting out takes away break-glass and nothing else
        opted = decide(request, record, cs, opted_out=True)
        assert opted == before or (before.rule, opted.rule) == ("breakglass", "breakglass_opted_out")
