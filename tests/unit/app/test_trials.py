"""Clinical trials on the ledger (issue 21, ledger rules): registration with checked criteria,
amendments as protocol versions, feasibility counts with small counts hidden, consent and
withdrawal signed by the participant's pseudonym (never the patient's identity), enrolment, data
refused without re-consent or after withdrawal, and the lock's Merkle root over every submission."""

from __future__ import annotations

import json
from typing import Any

import pytest

from node.app import trials
from node.app.registry import check_tx_body
from node.app.trial_criteria import SYSTEMS, canonical
from node.chain.tx import TxRejected
from node.core.crypto import Identity, sha256
from node.core.merkle import merkle_root

from tests.unit.app.harness import CARE_KINDS, CHAIN, DAY, Ledger, ident
from tests.unit.app.test_agreement_access import staff

CRITERIA = canonical({"version": 1, "age": {"min": 40, "max": 75},
                      "include": [{"resource": "Condition", "system": SYSTEMS["snomed"], "codes": ["44054006"]}]}).decode()
T = "DIAB-RX-2027"


def register(ledger: Ledger, sponsor: Identity, **change: Any) -> str:
    body = {"trial": T, "registry_id": "NCT01234567", "ethics_ref": "IRB-2026-114", "protocol_hash": sha256(b"protocol v1"),
            "sites": [ident("A").public_key, ident("B").public_key], "criteria": CRITERIA,
            "until_ms": ledger.now + 365 * DAY, **change}
    return ledger.send(sponsor, "trial.register", body, verify=True)


def refused_at_admission(ledger: Ledger, who: Identity, type_: str, body: dict[str, Any]) -> str:
    with pytest.raises(TxRejected) as refused:
        check_tx_body(ledger.tx(who, type_, body))
    return refused.value.code


def pseudonym(name: str) -> Identity:
    return ident(f"pseudonym/{name}")


def consent(ledger: Ledger, site: Identity, who: Identity, version: int = 1) -> str:
    sig = who.sign(trials.consent_message(CHAIN, T, version, who.public_key))
    return ledger.send(site, "trial.consent", {"trial": T, "version": version, "pseudonym": who.public_key, "signature": sig},
                       verify=True)


def submit(ledger: Ledger, site: Identity, who: Identity, name: str) -> str:
    body = {"trial": T, "pseudonym": who.public_key, "submission": sha256(name.encode()),
            "hash": trials.submission_hash(b"salt-" + name.encode(), name.encode()), "resource_type": "Observation"}
    return ledger.send(site, "trial.submit", body, verify=True)


@pytest.fixture()
def world() -> dict[str, Any]:
    ledger = Ledger(validators=("A", "B", "C", "D", "E"), kinds={**CARE_KINDS, "E": "research"})
    return dict(ledger=ledger, sponsor=ident("E"), a=ident("A"), b=ident("B"), c=ident("C"),
                investigator=staff(ledger, "inv-a", "A", "physician"), outsider=staff(ledger, "doc-c", "C", "physician"))


def test_registration_checks_its_criteria_sites_and_investigators(world):
    ledger, sponsor = world["ledger"], world["sponsor"]
    loose = json.dumps(json.loads(CRITERIA), indent=1)
    body = {"trial": T, "registry_id": "NCT01234567", "ethics_ref": "IRB-1", "protocol_hash": bytes(32), "sites": [],
            "criteria": CRITERIA, "until_ms": 1 << 50}
    assert refused_at_admission(ledger, sponsor, "trial.register", {**body, "sites": [ident("A").public_key],
                                                                     "criteria": loose}) == "invalid_criteria"
    assert refused_at_admission(ledger, sponsor, "trial.register", {**body, "sites": [ident("A").public_key],
                                                                     "criteria": '{"version":1}'}) == "invalid_criteria"
    assert refused_at_admission(ledger, sponsor, "trial.register", body) == "invalid_body"  # no site
    assert refused_at_admission(ledger, sponsor, "trial.register", {**body, "sites": [ident("A").public_key],
                                                                     "registry_id": "a trial about Jane"}) == "invalid_body"
    assert refused_at_admission(ledger, sponsor, "trial.register", {**body, "sites": [ident("A").public_key],
                                                                     "threshold": 2}) == "invalid_threshold"
    assert register(ledger, sponsor, investigators=[world["outsider"].public_key]) == "investigator_not_at_site"
    assert register(ledger, world["investigator"]) == "role_not_allowed"
    assert register(ledger, sponsor, investigators=[world["investigator"].public_key]) == "ok"
    assert register(ledger, sponsor) == "trial_exists"
    found = trials.load_trial(ledger.state, T)
    assert found is not None and found["sponsor"] == sponsor.public_key and trials.current_version(found) == 1


def test_feasibility_counts_hide_small_numbers(world):
    ledger, sponsor, a, b, c = (world[k] for k in ("ledger", "sponsor", "a", "b", "c"))
    assert register(ledger, sponsor) == "ok"
    query = sha256(b"q1")
    assert ledger.send(a, "trial.feasibility", {"trial": T, "query": query}) == "not_the_sponsor"
    assert ledger.send(sponsor, "trial.feasibility", {"trial": T, "query": query}) == "ok"
    assert ledger.send(sponsor, "trial.feasibility", {"trial": T, "query": query}) == "query_exists"
    assert ledger.send(a, "trial.count", {"trial": T, "query": query, "count": 9}) == "count_below_threshold"
    assert ledger.send(a, "trial.count", {"trial": T, "query": query, "count": 42}) == "ok"
    assert ledger.send(a, "trial.count", {"trial": T, "query": query, "count": 43}) == "already_answered"
    assert ledger.send(b, "trial.count", {"trial": T, "query": query, "fewer_than": True}) == "ok"
    assert ledger.send(c, "trial.count", {"trial": T, "query": query, "count": 12}) == "not_a_site"
    assert refused_at_admission(ledger, b, "trial.count", {"trial": T, "query": query, "count": 1, "fewer_than": True}) \
        == "invalid_body"
    from node.app.stored import read

    answers = read(ledger.state, trials.query_key(T, query))["counts"]
    assert answers == {a.public_key.hex(): {"count": 42}, b.public_key.hex(): {"fewer_than": 10}}
    assert ledger.send(a, "trial.invited", {"trial": T, "count": 42}) == "ok"
    for n in range(trials.MAX_QUERIES - 1):  # the first was asked above
        assert ledger.send(sponsor, "trial.feasibility", {"trial": T, "query": sha256(b"q-more-%d" % n)}) == "ok"
    assert ledger.send(sponsor, "trial.feasibility", {"trial": T, "query": sha256(b"one too many")}) == "too_many_queries"
    assert trials.load_trial(ledger.state, T)["invited"] == {a.public_key.hex(): 42}


def test_participants_are_pseudonyms_that_sign_for_themselves(world):
    ledger, sponsor, a, b = (world[k] for k in ("ledger", "sponsor", "a", "b"))
    assert register(ledger, sponsor, investigators=[world["investigator"].public_key]) == "ok"
    p1, p2 = pseudonym("one"), pseudonym("two")
    forged = p2.sign(trials.consent_message(CHAIN, T, 1, p1.public_key))
    assert refused_at_admission(ledger, a, "trial.consent", {"trial": T, "version": 1, "pseudonym": p1.public_key,
                                                             "signature": forged}) == "bad_signature"
    assert consent(ledger, world["outsider"], p1) == "not_a_site"
    assert consent(ledger, a, p1) == "ok"
    assert consent(ledger, a, p1) == "already_consented"
    assert consent(ledger, b, p1) == "not_your_participant"
    assert submit(ledger, a, p1, "early") == "not_enrolled"
    assert ledger.send(b, "trial.enrol", {"trial": T, "pseudonym": p1.public_key}) == "not_your_participant"
    assert ledger.send(world["investigator"], "trial.enrol", {"trial": T, "pseudonym": p1.public_key}) == "ok"
    assert ledger.send(a, "trial.enrol", {"trial": T, "pseudonym": p2.public_key}) == "not_consented"
    assert submit(ledger, a, p1, "hb-1") == "ok"
    assert submit(ledger, b, p1, "hb-x") == "not_your_participant"


def test_amendment_reconsent_withdrawal_and_lock(world):
    ledger, sponsor, a = world["ledger"], world["sponsor"], world["a"]
    assert register(ledger, sponsor) == "ok"
    p1, p2 = pseudonym("one"), pseudonym("two")
    for p in (p1, p2):
        assert consent(ledger, a, p) == "ok"
        assert ledger.send(a, "trial.enrol", {"trial": T, "pseudonym": p.public_key}) == "ok"
    assert submit(ledger, a, p1, "s1") == "ok"
    amend = {"trial": T, "version": 2, "protocol_hash": sha256(b"protocol v2"), "reconsent": True}
    assert ledger.send(sponsor, "trial.amend", {**amend, "version": 3}, verify=True) == "wrong_version"
    assert ledger.send(sponsor, "trial.amend", amend, verify=True) == "ok"
    assert submit(ledger, a, p1, "s2") == "reconsent_required"  # collected after the amendment, no re-consent
    assert consent(ledger, a, p1, version=1) == "wrong_version"
    assert consent(ledger, a, p1, version=2) == "ok"
    assert submit(ledger, a, p1, "s2") == "ok"
    # an amendment without re-consent leaves consents standing
    assert ledger.send(sponsor, "trial.amend", {**amend, "version": 3, "reconsent": False,
                                                "protocol_hash": sha256(b"v3")}, verify=True) == "ok"
    assert submit(ledger, a, p1, "s3") == "ok"
    # withdrawal, signed by the pseudonym and relayed by anyone, stops all further collection
    sig = p2.sign(trials.withdraw_message(CHAIN, T, p2.public_key))
    assert ledger.send(world["c"], "trial.withdraw", {"trial": T, "pseudonym": p2.public_key, "signature": sig},
                       verify=True) == "ok"
    assert submit(ledger, a, p2, "after") == "participant_withdrawn"
    assert consent(ledger, a, p2, version=3) == "participant_withdrawn"
    # the lock: the Merkle root over every submission, in chain order; nothing after it
    assert ledger.send(a, "trial.lock", {"trial": T}) == "not_the_sponsor"
    assert ledger.send(sponsor, "trial.lock", {"trial": T}) == "ok"
    lock = trials.load_trial(ledger.state, T)["lock"]
    listed = trials.submissions(ledger.state, T)
    assert lock["count"] == 3 == len(listed)
    assert lock["root"] == merkle_root([trials.submission_leaf(s["submission"], s["hash"]) for s in listed])
    assert [s["version"] for s in listed] == [1, 2, 2]
    assert submit(ledger, a, p1, "late") == "trial_locked"
    assert ledger.send(sponsor, "trial.lock", {"trial": T}) == "trial_locked"


def test_a_screening_opt_in_is_indexed_for_its_institution(world):
    from node.app import queries

    ledger, a, b = world["ledger"], world["a"], world["b"]
    pat = ledger.patient("pat")
    assert ledger.send(pat, "standing.grant", {"permission": "screening", "institution": world["c"].public_key}) \
        == "kind_mismatch"  # a pharmacy does not screen for trials
    assert ledger.send(pat, "standing.grant", {"permission": "screening", "institution": a.public_key}) == "ok"
    assert queries.screened_patients(ledger.state, a.public_key) == [pat.public_key]
    assert ledger.send(pat, "standing.grant", {"permission": "screening", "institution": b.public_key}) == "ok"
    assert queries.screened_patients(ledger.state, a.public_key) == []
    assert queries.screened_patients(ledger.state, b.public_key) == [pat.public_key]
    assert ledger.send(pat, "standing.revoke", {"permission": "screening"}) == "ok"
    assert queries.screened_patients(ledger.state, b.public_key) == []
