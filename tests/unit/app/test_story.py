"""The issue's done-when story, at the ledger level: write at A, B denied, consent, B granted,
revoke, B denied, expired grant denied, break-glass at C, the patient's trail in order, erasure;
and forged, replayed, expired and wrong-role requests refused."""

from __future__ import annotations

import pytest

from node.app import queries
from node.app.executor import BlockRejected, execute_block
from node.core.encoding import canonical

from tests.unit.app.harness import CHAIN, HOUR, Ledger, ident


def test_done_when_story():
    ledger = Ledger()
    pat = ledger.patient("pat")
    doc_a, doc_b, doc_c = ledger.staff("doc-a", "A"), ledger.staff("doc-b", "B"), ledger.staff("doc-c", "C")
    A, B = ident("A").public_key, ident("B").public_key

    obs = ledger.add_record(doc_a, pat, "obs-1", resource_type="Observation", custodian="A")
    assert ledger.request(doc_b, obs)[0] == "denied"
    code, grant = ledger.grant(pat, B, kind="institution", purposes=["treatment"], types=["Observation"],
                               until=ledger.now + 30 * 24 * HOUR)
    assert code == "ok"
    code, granted_tx = ledger.request(doc_b, obs)
    assert code == "ok" and queries.active_grant(ledger.state, doc_b.public_key, obs, ledger.now)["request_tx"] == granted_tx.hex()
    assert ledger.send(pat, "consent.revoke", {"consent": grant}) == "ok"
    assert ledger.request(doc_b, obs)[0] == "denied"
    code, short = ledger.grant(pat, B, until=ledger.now + 5_000)
    assert code == "ok"
    code, expired_tx = ledger.request(doc_b, obs, at_ms=ledger.now + 60_000)
    assert code == "denied" and ledger.decision(expired_tx)["rule"] == "consent_expired"
    code, bg = ledger.request(doc_c, obs, purpose="emergency", reason="unconscious")
    assert code == "ok" and ledger.decision(bg)["rule"] == "breakglass"
    assert [p["request_tx"] for p in queries.breakglass_pending(ledger.state, A)] == [bg.hex()]

    trail = queries.patient_audit(ledger.state, pat.public_key)
    assert [(e["event"], e.get("rule")) for e in trail] == [
        ("record.added", None),
        ("access.denied", "no_consent"),
        ("consent.granted", None),
        ("access.granted", "consent"),
        ("consent.revoked", None),
        ("access.denied", "consent_revoked"),
        ("consent.granted", None),
        ("access.denied", "consent_expired"),
        ("access.breakglass", "breakglass"),
    ]
    assert [e["actor"] for e in trail if e["event"].startswith("access.")] == [doc_b.public_key.hex()] * 4 + [doc_c.public_key.hex()]
    assert [(e["height"], e["index"]) for e in trail] == sorted((e["height"], e["index"]) for e in trail)
    assert [e["event"] for e in queries.disclosures(ledger.state, A, 0, ledger.now)] == ["access.granted", "access.breakglass"]

    assert ledger.send(pat, "record.erase", {"record": obs}) == "ok"
    assert ledger.audit_events(pat)[-1] == "record.erased"
    assert queries.active_grant(ledger.state, doc_c.public_key, obs, ledger.now) is None


def test_forged_replayed_expired_and_wrong_role_requests_are_refused():
    ledger = Ledger()
    pat = ledger.patient("pat")
    doc_a, doc_b = ledger.staff("doc-a", "A"), ledger.staff("doc-b", "B")
    res = ledger.staff("res", "B", "researcher")
    obs = ledger.add_record(doc_a, pat, "obs-1")
    # forged: doc_b's signature on a request it did not sign (another record/purpose) is refused
    real = ledger.tx(doc_b, "access.request", {"record": obs, "purpose": "treatment"})
    forged = canonical([CHAIN, real.type, real.sender, real.nonce, {"record": obs, "purpose": "emergency", "reason": "unconscious"}, real.signature])
    with pytest.raises(BlockRejected, match="bad_signature"):
        execute_block(ledger.state, ledger.store.state_root, [forged], chain_id=CHAIN, height=ledger.store.height + 1,
                      timestamp_ms=ledger.now + 1, known=lambda h: None, committed=ledger.store.has_tx)
    # replayed: the same nonce again, under another body, is not executed
    assert ledger.block(real) == ["denied"]
    replay = ledger.tx(doc_b, "access.request", {"record": obs, "purpose": "payment"}, nonce=real.nonce)
    assert ledger.block(replay, verify=True) == ["nonce_replayed"]
    assert queries.access_grant(ledger.state, replay.hash) is None
    # expired: a consent past its end grants nothing
    ledger.grant(pat, ident("B").public_key, until=ledger.now + 2_000)
    code, tx = ledger.request(doc_b, obs, at_ms=ledger.now + 10_000)
    assert code == "denied" and ledger.decision(tx)["rule"] == "consent_expired"
    # wrong role: a patient, an institution, a researcher for treatment
    assert ledger.request(pat, obs)[0] == "role_not_allowed"
    assert ledger.request(ident("A"), obs)[0] == "role_not_allowed"
    assert ledger.request(res, obs, purpose="treatment")[0] == "purpose_not_allowed"
