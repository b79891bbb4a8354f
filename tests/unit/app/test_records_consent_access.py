"""record.add, consent.grant/revoke/breakglass and access.request through the executor: happy
paths, each refusal with its code, and what the queries show afterwards."""

from __future__ import annotations

import pytest

from node.app import queries
from node.app.access import ACCESS_WINDOW_MS, BREAKGLASS_WINDOW_MS
from node.app.executor import UnregisteredSender
from node.app.registry import check_tx_body
from node.core.crypto import sha256
from node.chain.tx import TxRejected

from tests.unit.app.harness import DAY, HOUR, ident, record_world, rid


@pytest.fixture
def world():
    """A patient, a practitioner at each of A, B and C, and one Observation written at A."""
    return record_world()


def body_rejected(ledger, who, type_, body) -> str:
    with pytest.raises(TxRejected) as err:
        check_tx_body(ledger.tx(who, type_, body, nonce=1))
    return err.value.code


# -- record.add ------------------------------------------------------------------------------

def test_record_add_and_queries(world):
    ledger, pat, doc_a, *_ , obs = world
    got = queries.record(ledger.state, obs)
    assert got["patient"] == pat.public_key.hex() and got["author"] == doc_a.public_key.hex()
    assert got["custodian"] == ident("A").public_key.hex() and got["resource_type"] == "Observation"
    assert got["hash"] == sha256(b"obs-1").hex() and got["erased"] is False
    assert [r["id"] for r in queries.patient_records(ledger.state, pat.public_key)] == [obs.hex()]
    assert queries.record(ledger.state, rid("nope")) is None


def test_record_add_refusals(world):
    ledger, pat, doc_a, doc_b, _, obs = world
    researcher = ledger.staff("res", "A", "researcher")
    base = {"record": rid("new"), "patient": pat.public_key, "resource_type": "Observation",
            "hash": sha256(b"x"), "custodian": ident("A").public_key}
    assert ledger.send(doc_b, "record.add", base) == "not_custodian_staff"
    assert ledger.send(researcher, "record.add", base) == "role_not_allowed"
    assert ledger.send(pat, "record.add", base) == "role_not_allowed"
    assert ledger.send(ident("A"), "record.add", base) == "role_not_allowed"
    with pytest.raises(UnregisteredSender):  # a block holding it is rejected; admission refuses it before
        ledger.send(ident("ghost"), "record.add", base)
    assert ledger.send(doc_a, "record.add", {**base, "patient": doc_b.public_key}) == "unknown_patient"
    assert ledger.send(doc_a, "record.add", {**base, "record": obs}) == "record_exists"
    assert body_rejected(ledger, doc_a, "record.add", {**base, "resource_type": "observation"}) == "invalid_resource_type"
    assert body_rejected(ledger, doc_a, "record.add", {**base, "hash": b"short"}) == "invalid_body"
    assert body_rejected(ledger, doc_a, "record.add", {**base, "extra": 1}) == "invalid_body"
    assert len(queries.patient_records(ledger.state, pat.public_key)) == 1


# -- consent.grant / revoke ------------------------------------------------------------------

def test_consent_grant_body_checks(world):
    ledger, pat, _, doc_b, *_ = world
    good = {"grantee_kind": "practitioner", "grantee": doc_b.public_key, "purposes": ["treatment"],
            "resource_types": ["Observation"], "valid_until": ledger.now + DAY}
    check_tx_body(ledger.tx(pat, "consent.grant", good, nonce=1))
    cases = [
        ({"grantee_kind": "friend"}, "invalid_body"),
        ({"grantee": b"short"}, "invalid_body"),
        ({"purposes": []}, "invalid_purpose"),
        ({"purposes": ["fun"]}, "invalid_purpose"),
        ({"purposes": ["treatment", "treatment"]}, "invalid_body"),
        ({"resource_types": []}, "empty_scope"),
        ({"resource_types": ["observation"]}, "invalid_resource_type"),
        ({"deny_types": ["*"]}, "invalid_resource_type"),
        ({"record_ids": [b"x"]}, "invalid_body"),
        ({"valid_from": good["valid_until"]}, "invalid_period"),
        ({"valid_until": -1}, "invalid_body"),
        ({"valid_until": True}, "invalid_body"),
        ({"grantee_kind": "study", "grantee": "bad id!", "purposes": ["research"]}, "invalid_study_id"),
        ({"grantee_kind": "study", "grantee": "S1", "purposes": ["treatment"]}, "invalid_purpose"),
        ({"on_behalf_of": b"x"}, "invalid_body"),
    ]
    for change, code in cases:
        assert body_rejected(ledger, pat, "consent.grant", {**good, **change}) == code, change


def test_consent_grant_execution_refusals(world):
    ledger, pat, doc_a, doc_b, _, obs = world
    other = ledger.patient("other")
    other_rec = ledger.add_record(doc_a, other, "other-obs")
    assert ledger.grant(pat, doc_b.public_key, kind="practitioner")[0] == "ok"
    assert ledger.grant(pat, ident("A").public_key, kind="practitioner")[0] == "unknown_grantee"
    assert ledger.grant(pat, doc_b.public_key, kind="institution")[0] == "unknown_grantee"
    assert ledger.grant(pat, "NO-SUCH-STUDY", kind="study", purposes=["research"])[0] == "unknown_study"
    assert ledger.grant(pat, ident("B").public_key, until=ledger.now)[0] == "invalid_period"
    assert ledger.grant(pat, ident("B").public_key, records=[other_rec])[0] == "record_not_patients"
    assert ledger.grant(pat, ident("B").public_key, records=[rid("nope")])[0] == "record_not_patients"
    assert ledger.grant(doc_a, ident("B").public_key)[0] == "role_not_allowed"
    assert ledger.grant(pat, ident("B").public_key, sender=other)[0] == "not_guardian"
    consents = queries.patient_consents(ledger.state, pat.public_key)
    assert len(consents) == 1 and consents[0]["grantee"] == doc_b.public_key.hex()


def test_consent_revoke(world):
    ledger, pat, _, doc_b, _, obs = world
    other = ledger.patient("other")
    _, cid = ledger.grant(pat, ident("B").public_key)
    assert ledger.send(other, "consent.revoke", {"consent": cid}) == "not_your_consent"
    assert ledger.send(pat, "consent.revoke", {"consent": sha256(b"none")}) == "unknown_consent"
    assert ledger.send(doc_b, "consent.revoke", {"consent": cid}) == "role_not_allowed"
    assert ledger.send(pat, "consent.revoke", {"consent": cid}) == "ok"
    assert ledger.send(pat, "consent.revoke", {"consent": cid}) == "already_revoked"
    got = queries.consent(ledger.state, cid, ledger.now)
    assert got["status"] == "revoked" and got["revoked_by"] == pat.public_key.hex()


# -- access.request --------------------------------------------------------------------------

def test_author_is_granted_and_others_are_denied_without_consent(world):
    ledger, pat, doc_a, doc_b, _, obs = world
    code, tx = ledger.request(doc_a, obs)
    assert code == "ok" and ledger.decision(tx)["rule"] == "author"
    assert ledger.decision(tx)["expires_ms"] == ledger.now + ACCESS_WINDOW_MS
    code, tx = ledger.request(doc_b, obs)
    assert code == "denied"
    d = ledger.decision(tx)
    assert (d["decision"], d["rule"]) == ("denied", "no_consent") and "consent" not in d
    assert queries.active_grant(ledger.state, doc_b.public_key, obs, ledger.now) is None


def test_institution_consent_grants_its_practitioners_until_it_expires(world):
    ledger, pat, _, doc_b, doc_c, obs = world
    doc_b2 = ledger.staff("doc-b2", "B")
    until = ledger.now + 10_000
    _, cid = ledger.grant(pat, ident("B").public_key, until=until)
    for doc in (doc_b, doc_b2):
        code, tx = ledger.request(doc, obs)
        d = ledger.decision(tx)
        assert code == "ok" and d["rule"] == "consent" and d["consent"] == cid.hex()
        assert d["expires_ms"] == until  # the consent ends before the access window
    assert ledger.request(doc_c, obs)[0] == "denied"
    grant = queries.active_grant(ledger.state, doc_b.public_key, obs, ledger.now)
    assert grant is not None and grant["consent"] == cid.hex()
    assert queries.active_grant(ledger.state, doc_b.public_key, obs, until + 1) is None
    code, tx = ledger.request(doc_b, obs, at_ms=until + 1)
    assert code == "denied" and ledger.decision(tx)["rule"] == "consent_expired"
    assert code == "denied"


def test_validity_period_is_inclusive(world):
    ledger, pat, _, doc_b, _, obs = world
    start = ledger.now + 5 * 1000
    _, cid = ledger.grant(pat, ident("B").public_key, valid_from=start, until=start + 10_000)
    assert ledger.decision(ledger.request(doc_b, obs, at_ms=start - 1)[1])["rule"] == "consent_not_yet_valid"
    assert ledger.request(doc_b, obs, at_ms=start)[0] == "ok"
    assert ledger.request(doc_b, obs, at_ms=start + 10_000)[0] == "ok"
    assert ledger.decision(ledger.request(doc_b, obs, at_ms=start + 10_001)[1])["rule"] == "consent_expired"


def test_revocation_denies_and_ends_standing_grants(world):
    ledger, pat, _, doc_b, _, obs = world
    _, cid = ledger.grant(pat, doc_b.public_key, kind="practitioner")
    assert ledger.request(doc_b, obs)[0] == "ok"
    assert queries.active_grant(ledger.state, doc_b.public_key, obs, ledger.now) is not None
    assert ledger.send(pat, "consent.revoke", {"consent": cid}) == "ok"
    assert queries.active_grant(ledger.state, doc_b.public_key, obs, ledger.now) is None
    code, tx = ledger.request(doc_b, obs)
    assert code == "denied" and ledger.decision(tx)["rule"] == "consent_revoked"


def test_scope_purpose_and_deny_exceptions(world):
    ledger, pat, doc_a, doc_b, _, obs = world
    mh = ledger.add_record(doc_a, pat, "mh-1", resource_type="QuestionnaireResponse")
    cond = ledger.add_record(doc_a, pat, "cond-1", resource_type="Condition")
    # everything but mental-health questionnaires, for treatment
    ledger.grant(pat, ident("B").public_key, types=["*"], deny=["QuestionnaireResponse"])
    assert ledger.request(doc_b, obs)[0] == "ok"
    assert ledger.request(doc_b, cond)[0] == "ok"
    assert ledger.decision(ledger.request(doc_b, mh)[1])["rule"] == "type_excluded"
    assert ledger.decision(ledger.request(doc_b, obs, purpose="payment")[1])["rule"] == "purpose_not_consented"
    # a consent naming one record id covers that record only; a deny exception still wins
    doc_c = ident("doc-c")
    ledger.grant(pat, doc_c.public_key, kind="practitioner", types=[], records=[cond, mh], deny=["QuestionnaireResponse"])
    assert ledger.request(doc_c, cond)[0] == "ok"
    assert ledger.decision(ledger.request(doc_c, obs)[1])["rule"] == "out_of_scope"
    assert ledger.decision(ledger.request(doc_c, mh)[1])["rule"] == "type_excluded"


def test_oldest_matching_consent_is_named(world):
    ledger, pat, _, doc_b, _, obs = world
    _, first = ledger.grant(pat, ident("B").public_key, until=ledger.now + DAY)
    _, second = ledger.grant(pat, doc_b.public_key, kind="practitioner", until=ledger.now + 2 * DAY)
    assert ledger.decision(ledger.request(doc_b, obs)[1])["consent"] == first.hex()
    ledger.send(pat, "consent.revoke", {"consent": first})
    assert ledger.decision(ledger.request(doc_b, obs)[1])["consent"] == second.hex()


def test_researcher_may_only_ask_for_research(world):
    ledger, pat, _, _, _, obs = world
    res = ledger.staff("res", "B", "researcher")
    assert ledger.request(res, obs, purpose="treatment")[0] == "purpose_not_allowed"
    assert ledger.request(res, obs, purpose="emergency", reason="unconscious")[0] == "purpose_not_allowed"
    # a researcher never reads a raw record, consent or not: research data leaves as an extract
    assert ledger.request(res, obs, purpose="research")[0] == "research_extract_only"
    ledger.grant(pat, ident("B").public_key, purposes=["research"])
    assert ledger.request(res, obs, purpose="research")[0] == "research_extract_only"


def test_access_request_refusals(world):
    ledger, pat, doc_a, *_ = world
    assert ledger.request(doc_a, rid("nope"))[0] == "unknown_record"
    assert ledger.request(pat, rid("obs-1"))[0] == "role_not_allowed"
    assert ledger.request(ident("B"), rid("obs-1"))[0] == "role_not_allowed"
    assert body_rejected(ledger, doc_a, "access.request", {"record": rid("obs-1"), "purpose": "curiosity"}) == "invalid_purpose"
    assert body_rejected(ledger, doc_a, "access.request", {"record": rid("obs-1"), "purpose": "emergency"}) == "reason_required"
    assert body_rejected(ledger, doc_a, "access.request", {"record": rid("obs-1"), "purpose": "emergency", "reason": "  "}) == "reason_required"
    assert body_rejected(ledger, doc_a, "access.request", {"record": rid("obs-1"), "purpose": "treatment", "reason": "unconscious"}) == "invalid_body"
    assert body_rejected(ledger, doc_a, "access.request", {"record": rid("obs-1"), "purpose": "emergency", "reason": "x" * 257}) == "reason_not_coded"
    assert body_rejected(ledger, doc_a, "access.request", {"record": rid("obs-1"), "purpose": "emergency", "reason": "unconscious",
                                                           "note_hash": b"short"}) == "invalid_body"


# -- break-glass -----------------------------------------------------------------------------

def test_breakglass_granted_for_an_hour_and_queued_for_review(world):
    ledger, pat, _, _, doc_c, obs = world
    code, tx = ledger.request(doc_c, obs, purpose="emergency", reason="unconscious")
    d = ledger.decision(tx)
    assert code == "ok" and d["rule"] == "breakglass" and d["review"] is True
    assert d["expires_ms"] == ledger.now + BREAKGLASS_WINDOW_MS
    pending = queries.breakglass_pending(ledger.state, ident("A").public_key)
    assert [p["request_tx"] for p in pending] == [tx.hex()]
    assert queries.active_grant(ledger.state, doc_c.public_key, obs, ledger.now + HOUR)["rule"] == "breakglass"
    assert queries.active_grant(ledger.state, doc_c.public_key, obs, ledger.now + HOUR + 1) is None
    entry = queries.patient_audit(ledger.state, pat.public_key)[-1]
    assert entry["event"] == "access.breakglass" and entry["reason"] == "unconscious"


def test_breakglass_opt_out_is_respected_but_an_emergency_consent_still_applies(world):
    ledger, pat, _, _, doc_c, obs = world
    assert ledger.send(pat, "consent.breakglass", {"opt_out": True}) == "ok"
    code, tx = ledger.request(doc_c, obs, purpose="emergency", reason="unconscious")
    assert code == "denied" and ledger.decision(tx)["rule"] == "breakglass_opted_out"
    assert queries.breakglass_pending(ledger.state, ident("A").public_key) == []
    _, cid = ledger.grant(pat, ident("C").public_key, purposes=["emergency"])
    code, tx = ledger.request(doc_c, obs, purpose="emergency", reason="unconscious")
    d = ledger.decision(tx)
    assert code == "ok" and d["rule"] == "consent" and d["review"] is False
    assert ledger.send(pat, "consent.breakglass", {"opt_out": False}) == "ok"
    assert queries.identity(ledger.state, pat.public_key)["breakglass_opt_out"] is False


# -- audit and disclosures -------------------------------------------------------------------

def test_audit_trail_and_disclosures(world):
    ledger, pat, doc_a, doc_b, _, obs = world
    start = ledger.now
    _, cid = ledger.grant(pat, ident("B").public_key)
    ok_tx = ledger.request(doc_b, obs)[1]
    ledger.send(pat, "consent.revoke", {"consent": cid})
    denied_tx = ledger.request(doc_b, obs)[1]
    trail = queries.patient_audit(ledger.state, pat.public_key)
    assert [e["event"] for e in trail] == ["record.added", "consent.granted",
                                           "access.granted", "consent.revoked", "access.denied"]
    assert [e["height"] for e in trail] == sorted(e["height"] for e in trail)
    granted, denied = trail[2], trail[4]
    assert granted["actor"] == doc_b.public_key.hex() and granted["consent"] == cid.hex()
    assert granted["tx"] == ok_tx.hex() and granted["purpose"] == "treatment" and granted["decision"] == "granted"
    assert denied["tx"] == denied_tx.hex() and denied["rule"] == "consent_revoked" and denied["decision"] == "denied"
    # A holds the record: its accounting of disclosures lists the granted access only
    log = queries.disclosures(ledger.state, ident("A").public_key, start, ledger.now)
    assert [(e["event"], e["tx"]) for e in log] == [("access.granted", ok_tx.hex())]
    assert log[0]["requester_institution"] == ident("B").public_key.hex()
    assert queries.disclosures(ledger.state, ident("A").public_key, ledger.now + 1, ledger.now + DAY) == []
    assert queries.disclosures(ledger.state, ident("B").public_key, start, ledger.now) == []
    assert [e["event"] for e in queries.patient_audit(ledger.state, pat.public_key, since_ms=start + 1)][0] == "consent.granted"


def test_guardian_grants_and_revokes_for_the_patient(world):
    ledger, pat, _, doc_b, _, obs = world
    parent = ledger.patient("parent")
    ledger.send(pat, "patient.set_guardian", {"guardian": parent.public_key})
    code, cid = ledger.grant(pat, ident("B").public_key, sender=parent)
    assert code == "ok"
    assert queries.consent(ledger.state, cid)["granted_by"] == parent.public_key.hex()
    assert ledger.request(doc_b, obs)[0] == "ok"
    assert ledger.send(parent, "consent.revoke", {"consent": cid, "on_behalf_of": pat.public_key}) == "ok"
    assert ledger.request(doc_b, obs)[0] == "denied"
    assert queries.active_grant(ledger.state, parent.public_key, obs, ledger.now)["rule"] == "guardian"
    assert queries.active_grant(ledger.state, pat.public_key, obs, ledger.now)["rule"] == "patient"
