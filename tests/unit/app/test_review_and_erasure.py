"""breakglass.review by the custodian, and record.erase by the patient or its guardian."""

from __future__ import annotations

import pytest

from node.app import queries
from node.app.registry import check_tx_body
from node.core.crypto import sha256
from node.chain.tx import TxRejected

from tests.unit.app.harness import ident, record_world, rid


@pytest.fixture
def world():
    """A patient, a practitioner at each of A, B and C, and one Observation written at A."""
    return record_world()


def test_custodian_reviews_a_breakglass_access(world):
    ledger, pat, doc_a, doc_b, doc_c, obs = world
    _, bg = ledger.request(doc_c, obs, purpose="emergency", reason="unconscious")
    _, normal = ledger.request(doc_a, obs)
    body = {"access": bg, "outcome": "justified", "note_hash": sha256(b"salt" + b"ED admission confirmed")}
    assert ledger.send(ident("B"), "breakglass.review", body) == "not_custodian"
    assert ledger.send(doc_a, "breakglass.review", body) == "role_not_allowed"
    assert ledger.send(ident("A"), "breakglass.review", {**body, "access": normal}) == "not_breakglass"
    assert ledger.send(ident("A"), "breakglass.review", {**body, "access": rid("none")}) == "unknown_access"
    assert ledger.send(ident("A"), "breakglass.review", body) == "ok"
    assert ledger.send(ident("A"), "breakglass.review", body) == "already_reviewed"
    assert queries.breakglass_pending(ledger.state, ident("A").public_key) == []
    d = ledger.decision(bg)
    assert (d["review_outcome"], d["review_note_hash"]) == ("justified", body["note_hash"].hex())
    last = queries.patient_audit(ledger.state, pat.public_key)[-1]
    assert (last["event"], last["request"], last["outcome"]) == ("breakglass.reviewed", bg.hex(), "justified")
    with pytest.raises(TxRejected):
        check_tx_body(ledger.tx(ident("A"), "breakglass.review", {**body, "outcome": "fine"}, nonce=1))
    with pytest.raises(TxRejected) as err:  # a free-text note stays off the chain
        check_tx_body(ledger.tx(ident("A"), "breakglass.review", {**body, "note": "ED admission confirmed"}, nonce=1))
    assert err.value.code == "free_text_off_chain"


def test_review_queue_is_per_custodian_and_in_order(world):
    ledger, pat, doc_a, doc_b, doc_c, obs = world
    ledger.grant(pat, ident("B").public_key, types=["Condition"])  # B treats the patient (not for Observations)
    doc_b_rec = ledger.add_record(doc_b, pat, "b-obs", custodian="B")
    _, first = ledger.request(doc_c, obs, purpose="emergency", reason="unconscious")
    _, second = ledger.request(doc_c, doc_b_rec, purpose="emergency", reason="unconscious")
    _, third = ledger.request(doc_b, obs, purpose="emergency", reason="unconscious")
    assert [p["request_tx"] for p in queries.breakglass_pending(ledger.state, ident("A").public_key)] == [first.hex(), third.hex()]
    assert [p["request_tx"] for p in queries.breakglass_pending(ledger.state, ident("B").public_key)] == [second.hex()]
    assert ledger.send(ident("A"), "breakglass.review", {"access": third, "outcome": "unjustified"}) == "ok"
    assert [p["request_tx"] for p in queries.breakglass_pending(ledger.state, ident("A").public_key)] == [first.hex()]


def test_patient_erases_a_record(world):
    ledger, pat, doc_a, doc_b, _, obs = world
    ledger.grant(pat, ident("B").public_key)
    assert ledger.request(doc_b, obs)[0] == "ok"
    assert queries.active_grant(ledger.state, doc_b.public_key, obs, ledger.now) is not None
    other = ledger.patient("other")
    assert ledger.send(other, "record.erase", {"record": obs}) == "not_your_record"
    assert ledger.send(doc_a, "record.erase", {"record": obs}) == "role_not_allowed"
    assert ledger.send(pat, "record.erase", {"record": rid("none")}) == "unknown_record"
    assert ledger.send(pat, "record.erase", {"record": obs}) == "ok"
    assert ledger.send(pat, "record.erase", {"record": obs}) == "already_erased"
    got = queries.record(ledger.state, obs)
    assert got["erased"] is True and got["hash"]  # the hash stays on the chain
    # standing grants end, new requests are denied "erased", even the author's and break-glass
    assert queries.active_grant(ledger.state, doc_b.public_key, obs, ledger.now) is None
    assert queries.active_grant(ledger.state, pat.public_key, obs, ledger.now) is None
    for who, purpose, reason in ((doc_b, "treatment", ""), (doc_a, "treatment", ""), (doc_b, "emergency", "unconscious")):
        code, tx = ledger.request(who, obs, purpose=purpose, reason=reason)
        assert code == "denied" and ledger.decision(tx)["rule"] == "erased"
    assert [r["id"] for r in queries.erasures(ledger.state, ident("A").public_key)] == [obs.hex()]
    assert queries.erasures(ledger.state, ident("A").public_key, since_ms=ledger.now + 1) == []
    assert queries.erasures(ledger.state, ident("B").public_key) == []
    assert ledger.audit_events(pat)[-4:] == ["record.erased", "access.denied", "access.denied", "access.denied"]


def test_guardian_erases_for_the_patient(world):
    ledger, pat, doc_a, *_ = world
    obs = rid("obs-1")
    parent = ledger.patient("parent")
    assert ledger.send(parent, "record.erase", {"record": obs, "on_behalf_of": pat.public_key}) == "not_guardian"
    ledger.send(pat, "patient.set_guardian", {"guardian": parent.public_key})
    assert ledger.send(parent, "record.erase", {"record": obs, "on_behalf_of": pat.public_key}) == "ok"
    entry = queries.patient_audit(ledger.state, pat.public_key)[-1]
    assert entry["event"] == "record.erased" and entry["actor"] == parent.public_key.hex() and entry["on_behalf"] is True
