"""identity.register and patient.set_guardian: who may register in which role, attestations
checked once at admission, institutions only from genesis, guardians acting for patients."""

from __future__ import annotations

import pytest

from node.app import queries
from node.app.executor import BlockRejected, UnregisteredSender
from node.app.registry import check_tx_body
from node.app.types.identity import attest
from node.chain.tx import TxRejected

from tests.unit.app.harness import CHAIN, Ledger, ident


def rejected(ledger: Ledger, who, type_: str, body: dict) -> str:
    with pytest.raises(TxRejected) as err:
        check_tx_body(ledger.tx(who, type_, body, nonce=1))
    return err.value.code


def test_genesis_institutions_and_validators_are_in_state():
    ledger = Ledger()
    a = queries.identity(ledger.state, ident("A").public_key)
    assert a is not None and a["role"] == "institution" and a["label"] == "inst-A"
    assert queries.identity(ledger.state, ident("nobody").public_key) is None


def test_patient_self_registers_and_may_be_attested():
    ledger = Ledger()
    p = ledger.patient("pat")
    q = ledger.patient("pat2", attested_by="B")
    assert queries.identity(ledger.state, p.public_key)["role"] == "patient"
    got = queries.identity(ledger.state, q.public_key)
    assert got["attested_by"] == ident("B").public_key.hex() and "institution" not in got
    assert got["guardian"] is None and got["breakglass_opt_out"] is False
    assert ledger.audit_events(q) == []


@pytest.mark.parametrize("role", ["practitioner", "researcher"])
def test_staff_register_with_their_institutions_attestation(role):
    ledger = Ledger()
    doc = ledger.staff("doc", "A", role)
    got = queries.identity(ledger.state, doc.public_key)
    assert got["role"] == role and got["institution"] == ident("A").public_key.hex()


def test_staff_without_attestation_or_with_a_forged_one_is_refused_at_admission():
    ledger = Ledger()
    doc, inst, other = ident("doc"), ident("A"), ident("B")
    assert ledger.send(doc, "identity.register", {"role": "practitioner"}) == "attestation_required"
    assert ledger.send(ident("res"), "identity.register", {"role": "researcher", "label": "x"}) == "attestation_required"
    good = attest(inst, chain_id=CHAIN, registrant=doc.public_key, role="practitioner")
    cases = {
        "signed by another institution": (inst.public_key, attest(other, chain_id=CHAIN, registrant=doc.public_key, role="practitioner")),
        "for another registrant": (inst.public_key, attest(inst, chain_id=CHAIN, registrant=ident("x").public_key, role="practitioner")),
        "for another role": (inst.public_key, attest(inst, chain_id=CHAIN, registrant=doc.public_key, role="researcher")),
        "for another chain": (inst.public_key, attest(inst, chain_id="other-chain", registrant=doc.public_key, role="practitioner")),
        "garbage": (inst.public_key, b"\x00" * 64),
        "short": (inst.public_key, good[:10]),
    }
    for name, (institution, sig) in cases.items():
        code = rejected(ledger, doc, "identity.register", {"role": "practitioner", "institution": institution, "attestation": sig})
        assert code == "bad_attestation", name
    assert rejected(ledger, doc, "identity.register", {"role": "practitioner", "institution": b"x" * 5, "attestation": good}) == "invalid_body"
    assert rejected(ledger, doc, "identity.register", {"role": "patient", "institution": inst.public_key}) == "invalid_body"
    # a block carrying the forged registration (a node that never saw it verifies it) is refused
    forged = ledger.tx(doc, "identity.register", {"role": "practitioner", "institution": inst.public_key,
                                                  "attestation": cases["for another role"][1]})
    with pytest.raises(BlockRejected, match="bad_attestation"):
        ledger.block(forged, verify=True)


def test_institution_role_only_from_genesis_or_governance():
    ledger = Ledger()
    assert ledger.send(ident("new"), "identity.register", {"role": "institution", "label": "Clinic"}) == "role_not_allowed"
    assert queries.identity(ledger.state, ident("new").public_key) is None
    assert rejected(ledger, ident("new"), "identity.register", {"role": "king"}) == "invalid_role"


def test_attestation_by_an_unregistered_institution_fails_at_execution():
    ledger = Ledger()
    fake, doc = ident("fake-inst"), ident("doc")
    body = {"role": "practitioner", "institution": fake.public_key,
            "attestation": attest(fake, chain_id=CHAIN, registrant=doc.public_key, role="practitioner")}
    assert ledger.send(doc, "identity.register", body) == "unknown_institution"
    # an attestation signed by a patient's key is no institution's either
    pat = ledger.patient("pat")
    body = {"role": "practitioner", "institution": pat.public_key,
            "attestation": attest(pat, chain_id=CHAIN, registrant=doc.public_key, role="practitioner")}
    assert ledger.send(doc, "identity.register", body) == "unknown_institution"
    assert queries.identity(ledger.state, doc.public_key) is None


def test_registering_twice_and_replaying_a_nonce():
    ledger = Ledger()
    p = ledger.patient("pat", attested_by=None)
    assert ledger.send(p, "identity.register", {"role": "patient"}) == "already_registered"
    # the very same transaction again is a repeat the block is refused for
    first = ledger.tx(p, "identity.register", {"role": "patient"}, nonce=1)
    with pytest.raises(BlockRejected, match="repeated"):
        ledger.block(first)
    # another transaction under a used nonce is recorded as a replay and does nothing
    replay = ledger.tx(p, "consent.breakglass", {"opt_out": True}, nonce=1)
    assert ledger.block(replay, verify=True) == ["nonce_replayed"]
    assert queries.identity(ledger.state, p.public_key)["breakglass_opt_out"] is False


def test_guardian_set_act_and_clear():
    ledger = Ledger()
    child, parent, stranger = ledger.patient("child"), ledger.patient("parent"), ledger.patient("stranger")
    assert ledger.send(child, "patient.set_guardian", {"guardian": parent.public_key}) == "ok"
    assert queries.identity(ledger.state, child.public_key)["guardian"] == parent.public_key.hex()
    assert queries.identity(ledger.state, parent.public_key)["guardian_of"] == [child.public_key.hex()]
    # the guardian acts for the child; a stranger may not
    assert ledger.send(parent, "consent.breakglass", {"opt_out": True, "on_behalf_of": child.public_key}) == "ok"
    assert ledger.send(stranger, "consent.breakglass", {"opt_out": False, "on_behalf_of": child.public_key}) == "not_guardian"
    assert queries.identity(ledger.state, child.public_key)["breakglass_opt_out"] is True
    # a guardian cannot name another guardian, but may step down
    assert rejected(ledger, parent, "patient.set_guardian", {"guardian": stranger.public_key, "on_behalf_of": child.public_key}) == "invalid_body"
    assert ledger.send(parent, "patient.set_guardian", {"guardian": None, "on_behalf_of": child.public_key}) == "ok"
    assert ledger.send(parent, "consent.breakglass", {"opt_out": False, "on_behalf_of": child.public_key}) == "not_guardian"
    assert ledger.send(child, "patient.set_guardian", {"guardian": None}) == "no_guardian"
    assert queries.identity(ledger.state, parent.public_key).get("guardian_of") is None
    events = ledger.audit_events(child)
    assert events == ["guardian.set", "breakglass.opted_out", "guardian.cleared"]
    entry = queries.patient_audit(ledger.state, child.public_key)[1]
    assert entry["actor"] == parent.public_key.hex() and entry["on_behalf"] is True


def test_guardian_rules():
    ledger = Ledger()
    child = ledger.patient("child")
    doc = ledger.staff("doc", "A")
    assert rejected(ledger, child, "patient.set_guardian", {"guardian": child.public_key}) == "invalid_body"
    assert ledger.send(child, "patient.set_guardian", {"guardian": ident("ghost").public_key}) == "unknown_guardian"
    assert ledger.send(child, "patient.set_guardian", {"guardian": ident("A").public_key}) == "unknown_guardian"
    assert ledger.send(doc, "patient.set_guardian", {"guardian": child.public_key}) == "role_not_allowed"
    with pytest.raises(UnregisteredSender):  # a block holding it is rejected; admission refuses it before
        ledger.send(ident("ghost"), "patient.set_guardian", {"guardian": child.public_key})
    # replacing a guardian moves the reverse index
    p1, p2 = ledger.patient("p1"), ledger.patient("p2")
    assert ledger.send(child, "patient.set_guardian", {"guardian": p1.public_key}) == "ok"
    assert ledger.send(child, "patient.set_guardian", {"guardian": p2.public_key}) == "ok"
    assert "guardian_of" not in queries.identity(ledger.state, p1.public_key)
    assert queries.identity(ledger.state, p2.public_key)["guardian_of"] == [child.public_key.hex()]
    assert ledger.send(p1, "consent.breakglass", {"opt_out": True, "on_behalf_of": child.public_key}) == "not_guardian"
    assert ledger.send(p2, "consent.breakglass", {"opt_out": True, "on_behalf_of": ident("ghost").public_key}) == "unknown_patient"
