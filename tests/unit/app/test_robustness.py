"""Whatever a client puts in a body that passes admission, execution ends in a result code: it
never raises, since an exception in the state machine would stop every validator alike."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.app.executor import UnregisteredSender, execute_transactions
from node.app.agreements import check_stored_policy
from node.app.policies.check import canonical_form
from node.app.types.identity import identity_key
from node.app.registry import check_tx_body, load_types
from node.chain.tx import TxRejected

from tests.unit.app.harness import DAY, Ledger, ident, rid

NAMES = ["pat", "pat2", "doc-a", "doc-b", "res", "A", "B", "E", "ghost"]


POLICY = canonical_form('permit (principal, action == Action::"read", resource) when { principal.profession == "nurse" };')
AB = sorted([ident("A").public_key, ident("B").public_key])


def build_world() -> Ledger:
    ledger = Ledger()
    pat, pat2 = ledger.patient("pat"), ledger.patient("pat2")
    doc_a, doc_b = ledger.staff("doc-a", "A"), ledger.staff("doc-b", "B")
    res = ledger.staff("res", "A", "researcher")
    ledger.add_record(doc_a, pat, "r1")
    ledger.add_record(doc_a, pat2, "r2", resource_type="Condition")
    ledger.send(ident("A"), "study.register", {"study": "S", "title": "t", "ethics_ref": "e", "until_ms": ledger.now + DAY})
    ledger.send(ident("A"), "study.add_researcher", {"study": "S", "researcher": res.public_key})
    ledger.grant(pat, "S", kind="study", purposes=["research"], types=["*"])
    ledger.grant(pat, ident("B").public_key, types=["*"], deny=["Condition"])
    ledger.send(pat, "patient.set_guardian", {"guardian": pat2.public_key})
    ledger.request(doc_b, rid("r1"), purpose="emergency", reason="unconscious")
    ledger.send(ident("A"), "agreement.propose", {"agreement": "G", "version": 1, "parties": AB, "purposes": ["treatment"],
                                                  "policy": POLICY})
    return ledger


WORLD = build_world()
IDS = st.sampled_from([ident(n).public_key for n in NAMES] + [rid("r1"), rid("r2"), bytes(32)])
VALUES = st.one_of(
    IDS, st.sampled_from(["S", "T", "*", "Observation", "Condition", "treatment", "research", "emergency", "patient",
                          "practitioner", "institution", "study", "justified", ""]),
    st.integers(min_value=-1, max_value=1 << 62), st.booleans(), st.none(),
    st.lists(st.one_of(IDS, st.sampled_from(["Observation", "*", "treatment", "research"])), max_size=3),
)
P, R1 = ident("pat").public_key, rid("r1")
TEMPLATES = {
    "identity.register": ({"role": "patient"}, {"label": "x", "institution": ident("A").public_key, "attestation": bytes(64)}),
    "patient.set_guardian": ({"guardian": ident("pat2").public_key}, {"on_behalf_of": P}),
    "record.add": ({"record": rid("new"), "patient": P, "resource_type": "Observation", "hash": bytes(32),
                    "custodian": ident("A").public_key}, {"based_on": R1}),
    "record.erase": ({"record": R1}, {"on_behalf_of": P}),
    "consent.grant": ({"grantee_kind": "institution", "grantee": ident("B").public_key, "purposes": ["treatment"],
                       "resource_types": ["*"], "valid_until": 1 << 50},
                      {"record_ids": [R1], "deny_types": ["Condition"], "valid_from": 0, "on_behalf_of": P}),
    "consent.revoke": ({"consent": bytes(32)}, {"on_behalf_of": P}),
    "consent.breakglass": ({"opt_out": True}, {"on_behalf_of": P}),
    "access.request": ({"record": R1, "purpose": "treatment"}, {"note_hash": bytes(32), "under": R1}),
    "breakglass.review": ({"access": bytes(32), "outcome": "justified"}, {"note_hash": bytes(32)}),
    "record.contest": ({"record": R1}, {"reason": "not_my_record", "on_behalf_of": P}),
    "study.register": ({"study": "T", "title": "t", "ethics_ref": "e", "until_ms": 1 << 50}, {}),
    "study.add_researcher": ({"study": "S", "researcher": ident("res").public_key}, {}),
    "research.release": ({"study": "S", "custodian": ident("A").public_key, "researcher": ident("res").public_key,
                          "patients": [P], "resources": 1, "release_hash": bytes(32)}, {}),
    "validator.add": ({"candidate": ident("E").public_key, "address": "10.0.0.5:7000", "api": "http://10.0.0.5:8700"}, {}),
    "validator.remove": ({"validator": ident("B").public_key}, {}),
    "validator.rotate": ({"new_key": ident("E").public_key, "proof": bytes(64)}, {}),
    "governance.admit_institution": ({"institution": ident("E").public_key, "name": "E"}, {}),
    "governance.schedule_upgrade": ({"version": 2, "height": 100}, {}),
    "agreement.propose": ({"agreement": "G", "version": 2, "parties": AB, "purposes": ["treatment"], "policy": POLICY},
                          {"valid_until_ms": 1 << 50}),
    "agreement.sign": ({"agreement": "G", "version": 1, "digest": check_stored_policy(POLICY)}, {}),
    "agreement.revoke": ({"agreement": "G", "version": 1}, {}),
    "standing.grant": ({"permission": "pharmacy", "institution": ident("C").public_key}, {"on_behalf_of": P}),
    "standing.revoke": ({"permission": "insurer"}, {"on_behalf_of": P}),
    "request.accept": ({"record": R1}, {"on_behalf_of": P}),
    "trial.register": ({"trial": "T", "registry_id": "NCT1", "ethics_ref": "IRB-1", "protocol_hash": bytes(32),
                        "sites": [ident("A").public_key], "until_ms": 1 << 50,
                        "criteria": '{"age":{"min":18},"version":1}'}, {"threshold": 10, "investigators": []}),
    "trial.amend": ({"trial": "T", "version": 2, "protocol_hash": bytes(32), "reconsent": True}, {}),
    "trial.feasibility": ({"trial": "T", "query": bytes(32)}, {}),
    "trial.count": ({"trial": "T", "query": bytes(32), "count": 12}, {}),
    "trial.invited": ({"trial": "T", "count": 3}, {}),
    "trial.consent": ({"trial": "T", "version": 1, "pseudonym": P, "signature": bytes(64)}, {}),
    "trial.enrol": ({"trial": "T", "pseudonym": P}, {}),
    "trial.withdraw": ({"trial": "T", "pseudonym": P, "signature": bytes(64)}, {}),
    "trial.submit": ({"trial": "T", "pseudonym": P, "submission": bytes(32), "hash": bytes(32), "resource_type": "Observation"}, {}),
    "trial.lock": ({"trial": "T"}, {}),
}


@st.composite
def bodies(draw):
    type_ = draw(st.sampled_from(sorted(load_types())))
    required, optional = TEMPLATES[type_]
    body = dict(required)
    for name in draw(st.sets(st.sampled_from(sorted(optional)))) if optional else ():
        body[name] = optional[name]
    for name in draw(st.sets(st.sampled_from(sorted(body)), max_size=3)):
        body[name] = draw(VALUES)
    if isinstance(body.get("patients"), list):
        body["patients"] = sorted({p for p in body["patients"] if isinstance(p, bytes)})
    return type_, body


def test_every_type_has_a_template():
    assert set(TEMPLATES) == set(load_types())


@settings(max_examples=1500, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), st.sampled_from(NAMES))
def test_admitted_bodies_execute_to_a_result_code(case, sender):
    type_, body = case
    tx = WORLD.tx(ident(sender), type_, body, nonce=1_000_000)
    try:
        check_tx_body(tx)
    except TxRejected:
        return
    try:
        results, _ = execute_transactions(WORLD.state, [tx], height=WORLD.store.height + 1, timestamp_ms=WORLD.now + 1)
    except UnregisteredSender:  # no block may hold it: only an unregistered sender's registration is executed
        assert type_ != "identity.register" and WORLD.state.get(identity_key(tx.sender)) is None
        return
    assert isinstance(results[0], str) and results[0]
