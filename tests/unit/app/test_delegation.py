"""An institution acting for its practitioners (`on_behalf_of` on record.add and access.request):
the practitioner is author or requester exactly as if it had signed, the institution is named
as `via`, and nobody else may act for a practitioner."""

from __future__ import annotations

from typing import Any

import pytest

from node.app import queries
from node.app.registry import check_tx_body
from node.chain.tx import TxRejected
from node.core.crypto import sha256

from tests.unit.app.harness import Ledger, ident, record_world, rid


@pytest.fixture
def world():
    return record_world()


def add_body(patient: bytes, name: str, custodian: str = "A", **extra: Any) -> dict[str, Any]:
    return {"record": rid(name), "patient": patient, "resource_type": "Observation", "hash": sha256(name.encode()),
            "custodian": ident(custodian).public_key, **extra}


def test_record_add_for_a_practitioner_names_author_and_institution(world):
    ledger, pat, doc_a, *_ = world
    inst_a = ident("A")
    assert ledger.send(inst_a, "record.add", add_body(pat.public_key, "by-a", on_behalf_of=doc_a.public_key)) == "ok"
    got = queries.record(ledger.state, rid("by-a"))
    assert got["author"] == doc_a.public_key.hex() and got["via"] == inst_a.public_key.hex()
    assert got["basis"] == "registered"
    entry = queries.patient_audit(ledger.state, pat.public_key)[-1]
    assert entry["event"] == "record.added"
    assert entry["actor"] == doc_a.public_key.hex() and entry["via"] == inst_a.public_key.hex()
    # without the field nothing changes: no via
    plain = queries.record(ledger.state, rid("obs-1"))
    assert "via" not in plain and plain["author"] == doc_a.public_key.hex()


def test_record_add_delegation_refusals(world):
    ledger, pat, doc_a, doc_b, *_ = world
    # another institution's practitioner
    assert ledger.send(ident("A"), "record.add", add_body(pat.public_key, "x", on_behalf_of=doc_b.public_key)) \
        == "not_our_practitioner"
    # a practitioner cannot act for another
    assert ledger.send(doc_a, "record.add", add_body(pat.public_key, "x", on_behalf_of=doc_b.public_key)) \
        == "role_not_allowed"
    # on behalf of a patient or an unknown key
    assert ledger.send(ident("A"), "record.add", add_body(pat.public_key, "x", on_behalf_of=pat.public_key)) \
        == "not_our_practitioner"
    assert ledger.send(ident("A"), "record.add", add_body(pat.public_key, "x", on_behalf_of=ident("ghost").public_key)) \
        == "not_our_practitioner"
    # the checks of the author apply to the practitioner: B's doctor is not staff of custodian A...
    assert ledger.send(ident("B"), "record.add", add_body(pat.public_key, "x", on_behalf_of=doc_b.public_key)) \
        == "not_custodian_staff"
    # ...and at its own custodian B it has no treatment relationship with A's patient
    assert ledger.send(ident("B"), "record.add", add_body(pat.public_key, "x", "B", on_behalf_of=doc_b.public_key)) \
        == "no_treatment_relationship"
    with pytest.raises(TxRejected):
        check_tx_body(ledger.tx(ident("A"), "record.add", add_body(pat.public_key, "x", on_behalf_of=b"short"), nonce=1))


def test_access_request_for_a_practitioner_is_decided_for_it(world):
    ledger, pat, doc_a, doc_b, doc_c, obs = world
    inst_b = ident("B")
    body = {"record": obs, "purpose": "treatment", "on_behalf_of": doc_b.public_key}
    t = ledger.tx(inst_b, "access.request", body)
    assert ledger.block(t) == ["denied"]
    denied = ledger.decision(t.hash)
    assert denied["rule"] == "no_consent" and denied["requester"] == doc_b.public_key.hex()
    assert denied["via"] == inst_b.public_key.hex()
    # a consent to the practitioner (not to the institution that signs) grants it
    assert ledger.grant(pat, doc_b.public_key, kind="practitioner")[0] == "ok"
    t = ledger.tx(inst_b, "access.request", body)
    assert ledger.block(t) == ["ok"]
    granted = ledger.decision(t.hash)
    assert granted["rule"] == "consent" and granted["requester_institution"] == inst_b.public_key.hex()
    # the grant is the practitioner's, not the institution's
    now = ledger.now
    assert queries.active_grant(ledger.state, doc_b.public_key, obs, now)["request_tx"] == t.hash.hex()
    assert queries.active_grant(ledger.state, inst_b.public_key, obs, now) is None
    trail = queries.patient_audit(ledger.state, pat.public_key)
    assert [(e["event"], e["actor"], e.get("via")) for e in trail if e["event"].startswith("access.")] == [
        ("access.denied", doc_b.public_key.hex(), inst_b.public_key.hex()),
        ("access.granted", doc_b.public_key.hex(), inst_b.public_key.hex())]
    [disclosed] = queries.disclosures(ledger.state, ident("A").public_key, 0, now)
    assert disclosed["actor"] == doc_b.public_key.hex() and disclosed["via"] == inst_b.public_key.hex()


def test_access_request_consent_to_the_institution_covers_its_practitioner(world):
    ledger, pat, _, doc_b, doc_c, obs = world
    assert ledger.grant(pat, ident("B").public_key)[0] == "ok"
    body = {"record": obs, "purpose": "treatment"}
    assert ledger.send(ident("B"), "access.request", {**body, "on_behalf_of": doc_b.public_key}) == "ok"
    assert ledger.send(ident("C"), "access.request", {**body, "on_behalf_of": doc_c.public_key}) == "denied"
    assert ledger.send(ident("B"), "access.request", {**body, "on_behalf_of": doc_c.public_key}) == "not_our_practitioner"
    assert ledger.send(doc_c, "access.request", {**body, "on_behalf_of": doc_b.public_key}) == "role_not_allowed"
    # an institution signing for itself without on_behalf_of is still refused
    assert ledger.send(ident("B"), "access.request", body) == "role_not_allowed"


def test_delegated_breakglass_counts_for_the_practitioner():
    ledger = Ledger()
    pat = ledger.patient("pat")
    doc_a, doc_b = ledger.staff("doc-a", "A"), ledger.staff("doc-b", "B")
    obs = ledger.add_record(doc_a, pat, "obs-1")
    body = {"record": obs, "purpose": "emergency", "reason": "unconscious", "on_behalf_of": doc_b.public_key}
    t = ledger.tx(ident("B"), "access.request", body)
    assert ledger.block(t) == ["ok"]
    decision = ledger.decision(t.hash)
    assert decision["rule"] == "breakglass" and decision["review"] is True
    pending = queries.breakglass_pending(ledger.state, ident("A").public_key)
    assert [p["requester"] for p in pending] == [doc_b.public_key.hex()]


# -- versions (supersedes) ---------------------------------------------------------------------

def test_versions_chain_and_queries(world):
    ledger, pat, doc_a, *_, obs = world
    assert ledger.send(doc_a, "record.add", add_body(pat.public_key, "v2", supersedes=obs)) == "ok"
    assert ledger.send(ident("A"), "record.add", add_body(pat.public_key, "v3", supersedes=rid("v2"),
                                                          on_behalf_of=doc_a.public_key)) == "ok"
    v2, v3 = queries.record(ledger.state, rid("v2")), queries.record(ledger.state, rid("v3"))
    assert (v2["version_of"], v2["version"]) == (obs.hex(), 2)
    assert (v3["version_of"], v3["version"]) == (obs.hex(), 3)
    first = queries.record(ledger.state, obs)
    assert "version_of" not in first and "version" not in first
    for any_version in (obs, rid("v2"), rid("v3")):
        assert [v["id"] for v in queries.record_versions(ledger.state, any_version)] == [
            obs.hex(), rid("v2").hex(), rid("v3").hex()]
        assert queries.latest_version(ledger.state, any_version)["id"] == rid("v3").hex()
    assert queries.record_versions(ledger.state, rid("nope")) == []
    assert queries.latest_version(ledger.state, rid("nope")) is None
    alone = ledger.add_record(doc_a, pat, "alone")
    assert [v["id"] for v in queries.record_versions(ledger.state, alone)] == [alone.hex()]
    assert queries.latest_version(ledger.state, alone)["id"] == alone.hex()


def test_supersedes_refusals(world):
    ledger, pat, doc_a, *_, obs = world
    other = ledger.patient("other")
    assert ledger.send(doc_a, "record.add", add_body(pat.public_key, "x", supersedes=rid("nope"))) == "unknown_record"
    assert ledger.send(doc_a, "record.add", add_body(other.public_key, "x", supersedes=obs)) == "version_mismatch"
    assert ledger.send(doc_a, "record.add", {**add_body(pat.public_key, "x", supersedes=obs),
                                             "resource_type": "Condition"}) == "version_mismatch"
    assert ledger.send(doc_a, "record.add", add_body(pat.public_key, "v2", supersedes=obs)) == "ok"
    assert ledger.send(doc_a, "record.add", add_body(pat.public_key, "x", supersedes=obs)) == "not_latest_version"
    assert ledger.send(pat, "record.erase", {"record": rid("v2")}) == "ok"
    assert ledger.send(doc_a, "record.add", add_body(pat.public_key, "x", supersedes=rid("v2"))) == "erased"
    with pytest.raises(TxRejected):
        check_tx_body(ledger.tx(doc_a, "record.add", add_body(pat.public_key, "x", supersedes=b"short"), nonce=1))


def test_two_new_versions_of_one_record_in_a_block(world):
    ledger, pat, doc_a, *_, obs = world
    first = ledger.tx(doc_a, "record.add", add_body(pat.public_key, "v2a", supersedes=obs))
    second = ledger.tx(ident("A"), "record.add", add_body(pat.public_key, "v2b", supersedes=obs,
                                                          on_behalf_of=doc_a.public_key))
    assert ledger.block(first, second) == ["ok", "not_latest_version"]
    assert queries.record(ledger.state, rid("v2b")) is None
    assert queries.latest_version(ledger.state, obs)["id"] == rid("v2a").hex()


def test_fhir_audit_event_names_the_institution_too(world):
    from node.app.fhir_export import audit_event

    ledger, pat, _, doc_b, _, obs = world
    assert ledger.send(ident("B"), "access.request", {"record": obs, "purpose": "treatment",
                                                      "on_behalf_of": doc_b.public_key}) == "denied"
    entry = queries.patient_audit(ledger.state, pat.public_key)[-1]
    event = audit_event(entry, chain_id="test-chain")
    who = [(a["who"]["identifier"]["value"], a["requestor"]) for a in event["agent"]]
    assert (doc_b.public_key.hex(), True) in who and (ident("B").public_key.hex(), False) in who


def test_the_practitioner_acted_for_reads_the_whole_transaction(world):
    from node.api.explorer import entitled

    ledger, pat, _, doc_b, doc_c, obs = world
    t = ledger.tx(ident("B"), "access.request", {"record": obs, "purpose": "treatment", "on_behalf_of": doc_b.public_key})
    ledger.block(t)
    node_key = ident("D").public_key
    assert entitled(ledger.state, doc_b.public_key, t, node_key)
    assert entitled(ledger.state, ident("B").public_key, t, node_key)
    assert not entitled(ledger.state, doc_c.public_key, t, node_key)
