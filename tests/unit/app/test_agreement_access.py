"""Agreements in an access decision (issue 19, point 2): after the consent, the policies of the
agreements in force for the requester's institution or the custodian narrow (a forbid) or route
(permits) the grant, never widen it; the stored decision and the audit entry name the statements;
with no agreement in force nothing is evaluated and nothing changes; break-glass is not narrowed;
the same block gives the same root."""

from __future__ import annotations

from typing import Any

import pytest

from node.app import agreement_access, queries
from node.app.executor import execute_block, genesis_state_root, genesis_writes
from node.app.policies.check import canonical_form
from node.app.state import FuncReader
from node.app.types.identity import attest
from node.chain.genesis import Genesis, InstitutionInfo
from node.core.crypto import Identity

from tests.unit.app.harness import CHAIN, DAY, Ledger, ident, make_genesis
from tests.unit.app.test_agreements import policy_digest_of
from storage.chain import ChainStore
from storage.kv import MemoryStore

KINDS = {"A": "hospital", "B": "clinic", "C": "pharmacy", "D": "insurer"}
A, B, C = (ident(n) for n in "ABC")
NURSES = canonical_form("""
forbid (principal, action == Action::"read", resource)
when { principal.profession == "nurse" && principal.institution.kind == "clinic" && resource.resource_type == "Observation" };
""")
ROUTING = canonical_form("""
permit (principal, action == Action::"read", resource)
when { principal.profession == "pharmacist" && resource.resource_type == "MedicationRequest" };
""")


class KindedLedger(Ledger):
    """The harness ledger with a genesis naming its institutions' kinds."""

    def __init__(self) -> None:
        super().__init__()
        base = make_genesis()
        self.genesis = Genesis(chain_id=base.chain_id, genesis_time_ms=base.genesis_time_ms, validators=base.validators,
                               institutions=tuple(InstitutionInfo(id=i.id, name=i.name, kind=KINDS[i.name[-1]])
                                                  for i in base.institutions))
        self.store = ChainStore(MemoryStore())
        self.store.init_genesis(self.genesis.hash(), genesis_writes(self.genesis), genesis_state_root(self.genesis))
        self.state = FuncReader(self.store.state_get, self.store.state_items)


def staff(ledger: Ledger, name: str, institution: str, profession: str) -> Identity:
    who, inst = ident(name), ident(institution)
    body = {"role": "practitioner", "institution": inst.public_key, "profession": profession,
            "attestation": attest(inst, chain_id=CHAIN, registrant=who.public_key, role="practitioner", profession=profession)}
    assert ledger.send(who, "identity.register", body) == "ok"
    return who


def in_force(ledger: Ledger, agreement: str, policy: str, first: Identity, second: Identity,
             purposes: tuple[str, ...] = ("treatment",)) -> None:
    body: dict[str, Any] = {"agreement": agreement, "version": 1, "parties": sorted([first.public_key, second.public_key]),
                            "purposes": list(purposes), "policy": policy}
    assert ledger.send(first, "agreement.propose", body) == "ok"
    sign = {"agreement": agreement, "version": 1, "digest": policy_digest_of(policy)}
    assert ledger.send(second, "agreement.sign", sign) == "ok"
    assert queries.agreement(ledger.state, agreement)["status"] == "in_force"  # type: ignore[index]


@pytest.fixture()
def world() -> dict[str, Any]:
    """A hospital A keeping a patient's Observation and MedicationRequest, written by its
    physician; the patient consents clinic B and pharmacy C to both for treatment."""
    ledger = KindedLedger()
    pat = ledger.patient("pat")
    doc = staff(ledger, "doc-a", "A", "physician")
    w: dict[str, Any] = dict(ledger=ledger, pat=pat, doc=doc, nurse=staff(ledger, "nurse-b", "B", "nurse"),
                             physician=staff(ledger, "doc-b", "B", "physician"),
                             pharmacist=staff(ledger, "pharm-c", "C", "pharmacist"),
                             obs=ledger.add_record(doc, pat, "obs-1"),
                             rx=ledger.add_record(doc, pat, "rx-1", resource_type="MedicationRequest"))
    for inst in (B, C):
        assert ledger.grant(pat, inst.public_key, types=("Observation", "MedicationRequest"))[0] == "ok"
    return w


def decided(ledger: Ledger, who: Identity, record: bytes, purpose: str = "treatment", **kw: Any) -> dict[str, Any]:
    _, tx = ledger.request(who, record, purpose, **kw)
    return ledger.decision(tx)


def test_without_an_agreement_nothing_is_evaluated_and_nothing_changes(world, monkeypatch):
    def no_engine(*_: Any, **__: Any) -> Any:
        raise AssertionError("the engine was called with no agreement in force")

    monkeypatch.setattr(agreement_access, "evaluate", no_engine)
    ledger = world["ledger"]
    found = decided(ledger, world["nurse"], world["obs"])
    assert (found["decision"], found["rule"]) == ("granted", "consent") and "policies" not in found
    assert "policies" not in queries.patient_audit(ledger.state, world["pat"].public_key)[-1]


def test_a_forbid_denies_a_consented_request_naming_the_statement(world):
    ledger = world["ledger"]
    in_force(ledger, "nurses", NURSES, A, B)
    found = decided(ledger, world["nurse"], world["obs"])
    assert (found["decision"], found["rule"], found["policies"]) == ("denied", "policy_forbids", ["nurses@1#0"])
    assert found["consent"] is not None and "expires_ms" not in found  # the consent it overrode is named beside
    entry = queries.patient_audit(ledger.state, world["pat"].public_key)[-1]
    assert (entry["event"], entry["rule"], entry["policies"]) == ("access.denied", "policy_forbids", ["nurses@1#0"])
    assert entry["consent"] == found["consent"]
    other = decided(ledger, world["physician"], world["obs"])  # a forbid only narrows: others keep the consent
    assert (other["decision"], other["rule"], other["policies"]) == ("granted", "consent", [])
    rx = decided(ledger, world["nurse"], world["rx"])
    assert rx["decision"] == "granted"


def test_a_routing_agreement_permits_only_what_it_names(world):
    ledger = world["ledger"]
    in_force(ledger, "routing", ROUTING, A, C)
    rx = decided(ledger, world["pharmacist"], world["rx"])
    assert (rx["decision"], rx["rule"], rx["policies"]) == ("granted", "consent", ["routing@1#0"])
    obs = decided(ledger, world["pharmacist"], world["obs"])
    assert (obs["decision"], obs["rule"], obs["policies"]) == ("denied", "policy_not_permitted", [])
    assert decided(ledger, world["pharmacist"], world["obs"], "operations")["rule"] == "purpose_not_consented"


def test_a_permit_never_grants_without_consent(world):
    ledger = world["ledger"]
    in_force(ledger, "routing", ROUTING, A, C)
    other = ledger.patient("pat-2")
    rx = ledger.add_record(world["doc"], other, "rx-2", resource_type="MedicationRequest")
    found = decided(ledger, world["pharmacist"], rx)
    assert (found["decision"], found["rule"]) == ("denied", "no_consent") and "policies" not in found


def test_revoking_the_agreement_restores_the_consent_only_decision(world):
    ledger = world["ledger"]
    in_force(ledger, "nurses", NURSES, A, B)
    assert decided(ledger, world["nurse"], world["obs"])["rule"] == "policy_forbids"
    assert ledger.send(B, "agreement.revoke", {"agreement": "nurses", "version": 1}) == "ok"
    found = decided(ledger, world["nurse"], world["obs"])
    assert (found["decision"], found["rule"]) == ("granted", "consent") and "policies" not in found


def test_an_author_reads_back_its_own_record_whatever_the_agreements(world):
    ledger = world["ledger"]
    hospital = canonical_form("""
forbid (principal, action == Action::"read", resource)
when { principal.institution.kind == "hospital" };
""")
    in_force(ledger, "hospital", hospital, A, B)
    found = decided(ledger, world["doc"], world["obs"])  # doc-a wrote it at hospital A
    assert (found["decision"], found["rule"]) == ("granted", "author") and "policies" not in found


def test_break_glass_is_not_narrowed(world):
    ledger = world["ledger"]
    in_force(ledger, "nurses", NURSES, A, B, purposes=("treatment", "emergency"))
    stranger = ledger.patient("pat-3")
    obs = ledger.add_record(world["doc"], stranger, "obs-3")
    found = decided(ledger, world["nurse"], obs, "emergency", reason="unconscious")
    assert (found["decision"], found["rule"], found["review"]) == ("granted", "breakglass", True)
    assert "policies" not in found


def test_predict_gives_the_ledgers_answer(world):
    from node.app import breakglass
    from node.app.types.access_request import assess

    ledger = world["ledger"]
    in_force(ledger, "nurses", NURSES, A, B)
    nurse = world["nurse"].public_key
    found = assess(ledger.state, nurse, {"role": "practitioner", "institution": B.public_key, "profession": "nurse"},
                   world["obs"], "treatment", "", ledger.now + 1, lambda p: breakglass.standing_at(ledger.state, nurse, p, ledger.now))
    assert (found.decision.granted, found.decision.rule, found.policies) == (False, "policy_forbids", ("nurses@1#0",))


def test_the_same_block_executed_twice_gives_the_same_root(world):
    ledger = world["ledger"]
    in_force(ledger, "nurses", NURSES, A, B)
    in_force(ledger, "routing", ROUTING, A, C)
    txs = [ledger.tx(world["nurse"], "access.request", {"record": world["obs"], "purpose": "treatment"}),
           ledger.tx(world["pharmacist"], "access.request", {"record": world["rx"], "purpose": "treatment"}),
           ledger.tx(world["pharmacist"], "access.request", {"record": world["obs"], "purpose": "treatment"})]
    pool = {t.hash: t for t in txs}
    runs = [execute_block(ledger.state, ledger.store.state_root, [t.encoded for t in txs], chain_id=CHAIN,
                          height=ledger.store.height + 1, timestamp_ms=ledger.now + DAY, known=pool.get,
                          committed=ledger.store.has_tx) for _ in range(2)]
    assert runs[0].results == ["denied", "ok", "denied"]
    assert runs[0].state_root == runs[1].state_root and runs[0].writes == runs[1].writes


def test_the_policy_denials_are_known_denial_rules_with_advice():
    from node.app.access import DENIED_RULES, POLICY_DENIALS
    from node.app.policies import combine
    from node.core.advice import ADVICE

    assert POLICY_DENIALS == combine.POLICY_DENIALS
    assert set(POLICY_DENIALS) <= set(DENIED_RULES) and all(r in ADVICE for r in POLICY_DENIALS)
