"""study.register, study.add_researcher, research access through study consents, and
research.release recorded in every included patient's trail."""

from __future__ import annotations

import pytest

from node.app import queries
from node.app.registry import check_tx_body
from node.core.crypto import sha256
from node.chain.tx import TxRejected

from tests.unit.app.harness import DAY, Ledger, ident

A = ident("A").public_key


@pytest.fixture
def world():
    ledger = Ledger()
    pats = [ledger.patient(f"p{i}") for i in range(3)]
    doc = ledger.staff("doc-a", "A")
    res = ledger.staff("res", "A", "researcher")
    res_b = ledger.staff("res-b", "B", "researcher")
    until = ledger.now + 100 * DAY
    body = {"study": "DIAB-1", "title": "Diabetes outcomes", "ethics_ref": "IRB-2024-17", "until_ms": until}
    assert ledger.send(ident("A"), "study.register", body) == "ok"
    assert ledger.send(ident("A"), "study.add_researcher", {"study": "DIAB-1", "researcher": res.public_key}) == "ok"
    records = [ledger.add_record(doc, p, f"obs-{i}") for i, p in enumerate(pats)]
    return ledger, pats, doc, res, res_b, records, until


def release_body(patients, **over):
    body = {"study": "DIAB-1", "custodian": A, "researcher": ident("res").public_key,
            "patients": sorted(p.public_key for p in patients), "resources": 7, "release_hash": sha256(b"extract")}
    return {**body, **over}


def test_study_register_and_add_researcher_refusals(world):
    ledger, pats, doc, res, res_b, _, until = world
    body = {"study": "S2", "title": "t", "ethics_ref": "e", "until_ms": until}
    assert ledger.send(ident("A"), "study.register", {**body, "study": "DIAB-1"}) == "study_exists"
    assert ledger.send(doc, "study.register", body) == "role_not_allowed"
    assert ledger.send(ident("B"), "study.register", {**body, "until_ms": ledger.now}) == "invalid_period"
    for change, code in (({"study": "has space"}, "invalid_study_id"), ({"title": " "}, "invalid_body"),
                         ({"until_ms": "soon"}, "invalid_body")):
        with pytest.raises(TxRejected) as err:
            check_tx_body(ledger.tx(ident("A"), "study.register", {**body, **change}, nonce=1))
        assert err.value.code == code
    add = {"study": "DIAB-1", "researcher": res_b.public_key}
    assert ledger.send(ident("B"), "study.add_researcher", add) == "not_study_owner"
    assert ledger.send(ident("A"), "study.add_researcher", {**add, "study": "NOPE"}) == "unknown_study"
    assert ledger.send(ident("A"), "study.add_researcher", {**add, "researcher": doc.public_key}) == "not_a_researcher"
    assert ledger.send(ident("A"), "study.add_researcher", {**add, "researcher": res.public_key}) == "already_added"
    assert ledger.send(ident("A"), "study.add_researcher", add) == "ok"  # a researcher of another institution
    got = queries.study(ledger.state, "DIAB-1", ledger.now)
    assert got["active"] is True and got["institution"] == A.hex() and got["ethics_ref"] == "IRB-2024-17"
    assert sorted(got["researchers"]) == sorted([res.public_key.hex(), res_b.public_key.hex()])
    assert queries.researcher_studies(ledger.state, res_b.public_key) == ["DIAB-1"]
    assert ledger.send(ident("A"), "study.add_researcher", {**add, "researcher": ledger.staff("late", "A", "researcher").public_key},
                       at_ms=until + 1) == "study_ended"


def test_a_study_consent_opens_no_raw_record_to_anyone(world):
    ledger, pats, doc, res, res_b, records, until = world
    p0 = pats[0]
    code, cid = ledger.grant(p0, "DIAB-1", kind="study", purposes=["research"], types=["*"], until=until + 10 * DAY)
    assert code == "ok"
    # researchers get extracts, never raw records: on the study or not
    assert ledger.request(res, records[0], purpose="research")[0] == "research_extract_only"
    assert ledger.request(res_b, records[0], purpose="research")[0] == "research_extract_only"
    # a practitioner gains nothing from a study consent
    assert ledger.request(doc, records[0], purpose="research")[0] == "ok"  # doc is the author
    doc2 = ledger.staff("doc2", "A")
    assert ledger.request(doc2, records[0], purpose="research")[0] == "denied"


def test_study_consents_and_consenting_patients(world):
    ledger, pats, doc, res, res_b, records, until = world
    assert ledger.grant(pats[0], "NOPE", kind="study", purposes=["research"])[0] == "unknown_study"
    _, c0 = ledger.grant(pats[0], "DIAB-1", kind="study", purposes=["research"], types=["Observation"], deny=["Condition"])
    _, c1 = ledger.grant(pats[1], "DIAB-1", kind="study", purposes=["research"], types=["*"], until=ledger.now + 5_000)
    _, c2 = ledger.grant(pats[2], "DIAB-1", kind="study", purposes=["research"], types=["*"])
    ledger.send(pats[2], "consent.revoke", {"consent": c2})
    now = ledger.now
    got = queries.study_consenting_patients(ledger.state, "DIAB-1", now)
    assert {g["patient"] for g in got} == {pats[0].public_key.hex(), pats[1].public_key.hex()}
    assert [g["patient"] for g in got] == sorted(g["patient"] for g in got)
    first = next(g for g in got if g["consent"] == c0.hex())
    assert first["resource_types"] == ["Observation"] and first["deny_types"] == ["Condition"]
    later = queries.study_consenting_patients(ledger.state, "DIAB-1", now + 10_000)
    assert [g["patient"] for g in later] == [pats[0].public_key.hex()]
    assert queries.study_consenting_patients(ledger.state, "DIAB-1", until + 1) == []
    assert queries.study_consenting_patients(ledger.state, "NOPE", now) == []


def test_research_release(world):
    ledger, pats, doc, res, res_b, records, until = world
    for p in pats[:2]:
        ledger.grant(p, "DIAB-1", kind="study", purposes=["research"], types=["*"])
    start = ledger.now
    t = ledger.tx(ident("A"), "research.release", release_body(pats[:2]))
    assert ledger.block(t) == ["ok"]
    rel = queries.release(ledger.state, t.hash)
    assert (rel["patients"], rel["resources"], rel["study"]) == (2, 7, "DIAB-1")
    for p in pats[:2]:
        entry = queries.patient_audit(ledger.state, p.public_key)[-1]
        assert entry["event"] == "research.released" and entry["tx"] == t.hash.hex()
        assert entry["release_hash"] == sha256(b"extract").hex() and entry["researcher"] == res.public_key.hex()
    assert queries.patient_audit(ledger.state, pats[2].public_key)[-1]["event"] == "record.added"
    log = queries.disclosures(ledger.state, A, start, ledger.now)
    assert [(e["event"], e["patients"]) for e in log] == [("research.released", 2)]


def test_research_release_refusals(world):
    ledger, pats, doc, res, res_b, records, until = world
    for p in pats[:2]:
        ledger.grant(p, "DIAB-1", kind="study", purposes=["research"], types=["*"])
    assert ledger.send(ident("A"), "research.release", release_body(pats)) == "patient_not_consenting"
    assert ledger.send(ident("B"), "research.release", release_body(pats[:2])) == "not_custodian"
    assert ledger.send(ident("B"), "research.release", release_body(pats[:2], custodian=ident("B").public_key)) == "patient_not_held"
    assert ledger.send(doc, "research.release", release_body(pats[:2])) == "role_not_allowed"
    assert ledger.send(ident("A"), "research.release", release_body(pats[:2], study="NOPE")) == "unknown_study"
    assert ledger.send(ident("A"), "research.release", release_body(pats[:2], researcher=res_b.public_key)) == "researcher_not_on_study"
    assert ledger.send(ident("A"), "research.release", release_body(pats[:2]), at_ms=until + 1) == "study_ended"
    for change in ({"patients": []}, {"patients": [pats[0].public_key] * 2}, {"resources": 0},
                   {"patients": sorted((p.public_key for p in pats), reverse=True)}, {"release_hash": b"x"}):
        with pytest.raises(TxRejected) as err:
            check_tx_body(ledger.tx(ident("A"), "research.release", {**release_body(pats), **change}, nonce=1))
        assert err.value.code == "invalid_body", change


def test_study_register_refuses_a_min_k_below_the_network_floor(world):
    """Issue 15, finding 5: the study fixes its minimum k when registered, never below K_FLOOR."""
    from node.app.studies import K_FLOOR, study_min_k

    ledger, *_, until = world
    body = {"study": "K-1", "title": "t", "ethics_ref": "e", "until_ms": until}
    for bad in (1, K_FLOOR - 1, 1001, True):
        with pytest.raises(TxRejected) as err:
            check_tx_body(ledger.tx(ident("A"), "study.register", {**body, "min_k": bad}, nonce=1))
        assert err.value.code in ("invalid_min_k", "invalid_body"), bad
    assert ledger.send(ident("A"), "study.register", {**body, "min_k": 11}) == "ok"
    assert study_min_k(queries.study(ledger.state, "K-1")) == 11
    assert ledger.send(ident("A"), "study.register", {**body, "study": "K-2"}) == "ok"
    assert queries.study(ledger.state, "K-2")["min_k"] == K_FLOOR
