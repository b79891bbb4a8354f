"""Issue 15, findings 1 and 2, through the ledger rules: a researcher never gets a raw record
from `access.request`, and break-glass is limited, coded, reviewable and revocable."""

from __future__ import annotations

import pytest

from node.app import queries
from node.app.access import (
    BREAKGLASS_LIMIT_WINDOW_MS,
    BREAKGLASS_MAX_PATIENTS_PER_PRACTITIONER,
    BREAKGLASS_MAX_PER_PATIENT,
    BREAKGLASS_MAX_PER_PRACTITIONER,
    BREAKGLASS_SUSPENSION_MS,
)
from node.app.registry import check_tx_body
from node.core.crypto import sha256
from node.chain.tx import TxRejected

from tests.unit.app.harness import HOUR, Ledger, ident, rid

A = ident("A").public_key


@pytest.fixture
def world():
    """A patient with three records at A (written by doc-a), a study the patient consented to
    with a researcher on it, and a practitioner at an unrelated institution C."""
    ledger = Ledger()
    pat = ledger.patient("pat", attested_by="A")
    doc_a = ledger.staff("doc-a", "A")
    doc_c = ledger.staff("doc-c", "C")
    records = [ledger.add_record(doc_a, pat, f"obs-{i}") for i in range(3)]
    return ledger, pat, doc_a, doc_c, records


def emergency(ledger: Ledger, who, record: bytes, reason: str = "unconscious"):
    t = ledger.tx(who, "access.request", {"record": record, "purpose": "emergency", "reason": reason})
    return t


# -- finding 1 -----------------------------------------------------------------------------------

def test_researcher_cannot_read_raw_record_via_access_request(world):
    ledger, pat, doc_a, _, records = world
    until = ledger.now + 100 * HOUR
    assert ledger.send(ident("A"), "study.register", {"study": "S", "title": "t", "ethics_ref": "e", "until_ms": until}) == "ok"
    res = ledger.staff("res", "A", "researcher")
    assert ledger.send(ident("A"), "study.add_researcher", {"study": "S", "researcher": res.public_key}) == "ok"
    assert ledger.grant(pat, "S", kind="study", purposes=["research"], types=["*"])[0] == "ok"
    code, _ = ledger.request(res, records[0], purpose="research")
    assert code == "research_extract_only"
    # the custodian's check finds nothing to serve the researcher
    assert queries.active_grant(ledger.state, res.public_key, records[0], ledger.now) is None
    assert queries.patient_audit(ledger.state, pat.public_key)[-1]["event"] == "consent.granted"


# -- finding 2 -----------------------------------------------------------------------------------

def test_breakglass_reason_must_be_a_code_and_free_text_stays_off_the_chain(world):
    ledger, pat, _, doc_c, records = world
    with pytest.raises(TxRejected) as err:
        check_tx_body(emergency(ledger, doc_c, records[0], reason="x"))
    assert err.value.code == "reason_not_coded" and "note_hash" in err.value.message
    note = sha256(b"16 random bytes!" + b"found on the floor of the waiting room")
    t = ledger.tx(doc_c, "access.request", {"record": records[0], "purpose": "emergency", "reason": "unconscious",
                                            "note_hash": note})
    check_tx_body(t)
    assert ledger.block(t) == ["ok"]
    assert ledger.decision(t.hash)["note_hash"] == note.hex()
    assert queries.patient_audit(ledger.state, pat.public_key)[-1]["reason"] == "unconscious"


def test_one_practitioner_cannot_break_the_glass_43_times_in_one_block(world):
    ledger, pat, doc_a, doc_c, records = world
    # many records of one patient, as in the attack: 43 emergency requests in one block
    more = [ledger.add_record(doc_a, pat, f"more-{i}") for i in range(40)]
    txs = [emergency(ledger, doc_c, r) for r in records + more]
    results = ledger.block(*txs)
    assert results.count("ok") == BREAKGLASS_MAX_PER_PRACTITIONER
    assert results[:BREAKGLASS_MAX_PER_PRACTITIONER] == ["ok"] * BREAKGLASS_MAX_PER_PRACTITIONER
    assert {ledger.decision(t.hash)["rule"] for t in txs[BREAKGLASS_MAX_PER_PRACTITIONER:]} == {"breakglass_limit_practitioner"}
    # the window rolls in block time: a day later the practitioner may break the glass again
    code, _ = ledger.request(doc_c, more[-1], purpose="emergency", reason="unconscious",
                             at_ms=ledger.now + BREAKGLASS_LIMIT_WINDOW_MS + 1)
    assert code == "ok"


def test_breakglass_limits_distinct_patients_per_practitioner_and_grants_per_patient(world):
    ledger, pat, doc_a, doc_c, records = world
    others = [ledger.patient(f"other-{i}", attested_by="A") for i in range(BREAKGLASS_MAX_PATIENTS_PER_PRACTITIONER)]
    their_records = [ledger.add_record(doc_a, p, f"other-obs-{i}") for i, p in enumerate(others)]
    results = ledger.block(*[emergency(ledger, doc_c, r) for r in [records[0], *their_records]])
    assert results == ["ok"] * BREAKGLASS_MAX_PATIENTS_PER_PRACTITIONER + ["denied"]
    # per patient: many practitioners, each within its own limit, still stop at the patient's
    more = [ledger.add_record(doc_a, pat, f"p-{i}") for i in range(BREAKGLASS_MAX_PER_PATIENT)]
    staff = [ledger.staff(f"er-{i}", "B") for i in range(BREAKGLASS_MAX_PER_PATIENT // 5 + 1)]
    txs = [emergency(ledger, staff[i // 5], r) for i, r in enumerate(more)]
    results = ledger.block(*txs)
    used = 1  # doc-c's grant on records[0] above
    assert results.count("ok") == BREAKGLASS_MAX_PER_PATIENT - used
    assert ledger.decision(txs[-1].hash)["rule"] == "breakglass_limit_patient"


def test_unjustified_breakglass_review_revokes_the_grant_and_suspends_the_practitioner(world):
    ledger, pat, _, doc_c, records = world
    txs = [emergency(ledger, doc_c, r) for r in records]
    assert ledger.block(*txs) == ["ok", "ok", "ok"]
    assert all(queries.active_grant(ledger.state, doc_c.public_key, r, ledger.now) for r in records)
    body = {"access": txs[0].hash, "outcome": "unjustified", "suspend": True}
    check_tx_body(ledger.tx(ident("A"), "breakglass.review", body, nonce=1))
    assert ledger.send(ident("A"), "breakglass.review", body) == "ok"
    # every open break-glass grant of the practitioner is revoked: the custodian serves none
    for r in records:
        assert queries.active_grant(ledger.state, doc_c.public_key, r, ledger.now) is None
    assert all("revoked_ms" in ledger.decision(t.hash) for t in txs)
    # the patient is told: the review, each revocation, the suspension
    trail = queries.patient_audit(ledger.state, pat.public_key)
    tail = [e["event"] for e in trail[-5:]]
    assert tail == ["breakglass.reviewed", "access.revoked", "access.revoked", "access.revoked", "breakglass.suspended"]
    assert {e["request"] for e in trail[-4:-1]} == {t.hash.hex() for t in txs}
    assert trail[-1]["practitioner"] == doc_c.public_key.hex()
    # suspended: the next emergency request is denied, until the suspension ends
    code, tx = ledger.request(doc_c, records[0], purpose="emergency", reason="life_threatening")
    assert code == "denied" and ledger.decision(tx)["rule"] == "breakglass_suspended"
    code, _ = ledger.request(doc_c, records[0], purpose="emergency", reason="life_threatening",
                             at_ms=ledger.now + BREAKGLASS_SUSPENSION_MS + 1)
    assert code == "ok"


def test_unjustified_review_without_suspension_revokes_that_patients_grants_here_only(world):
    ledger, pat, doc_a, doc_c, records = world
    other = ledger.patient("other", attested_by="A")
    theirs = ledger.add_record(doc_a, other, "theirs")
    txs = [emergency(ledger, doc_c, r) for r in (records[0], records[1], theirs)]
    assert ledger.block(*txs) == ["ok", "ok", "ok"]
    assert ledger.send(ident("A"), "breakglass.review", {"access": txs[0].hash, "outcome": "unjustified"}) == "ok"
    assert queries.active_grant(ledger.state, doc_c.public_key, records[0], ledger.now) is None
    assert queries.active_grant(ledger.state, doc_c.public_key, records[1], ledger.now) is None
    assert queries.active_grant(ledger.state, doc_c.public_key, theirs, ledger.now) is not None
    assert ledger.request(doc_c, records[2], purpose="emergency", reason="unconscious")[0] == "ok"  # not suspended
    with pytest.raises(TxRejected):  # a justified finding suspends no one
        check_tx_body(ledger.tx(ident("A"), "breakglass.review", {"access": txs[2].hash, "outcome": "justified",
                                                                   "suspend": True}, nonce=1))


def test_custodian_refuses_a_fetch_under_a_revoked_breakglass_grant(world):
    """Through the custodian: after an unjustified review the plaintext is not served."""
    from node.records.custodian import Custodian, UploadLimits, CustodianRefusal
    from node.records.envelope import seal_record
    from node.records.protocol import Fetch, Upload
    from storage.kv import MemoryStore
    from storage.offchain import OffchainStore

    ledger, pat, doc_a, doc_c, _ = world
    inst = ident("A")

    class FakeNode:  # what the custodian needs of its node: identity, chain, state, clock
        identity, chain_id = inst, "test-chain"

        def state_reader(self):
            return ledger.state

        def now_ms(self):
            return ledger.now

        def clock_ms(self):
            return ledger.now

    custodian = Custodian(FakeNode(), OffchainStore(MemoryStore()), UploadLimits())
    record_id = rid("served")
    ciphertext, wrapped = seal_record(b'{"resourceType": "Observation"}', {"patient": pat.public_key, "custodian": inst.public_key})
    custodian.accept_upload(Upload.create(doc_a, chain_id="test-chain", record_id=record_id, patient=pat.public_key,
                                          resource_type="Observation", ciphertext=ciphertext, wrapped=wrapped,
                                          timestamp_ms=ledger.now))
    assert ledger.send(doc_a, "record.add", {"record": record_id, "patient": pat.public_key, "resource_type": "Observation",
                                             "hash": sha256(ciphertext), "custodian": inst.public_key}) == "ok"
    t = emergency(ledger, doc_c, record_id)
    assert ledger.block(t) == ["ok"]

    def fetch():
        return custodian.serve(Fetch.create(doc_c, chain_id="test-chain", record_id=record_id, timestamp_ms=ledger.now),
                               ledger.now)

    assert fetch().ciphertext == ciphertext
    assert ledger.send(inst, "breakglass.review", {"access": t.hash, "outcome": "unjustified"}) == "ok"
    with pytest.raises(CustodianRefusal) as err:
        fetch()
    assert err.value.code == "no_grant"
