"""Care workflows on the ledger (issue 19, point 3): a prescription read by the nominated pharmacy
and dispensed once; a Claim read by the patient's insurer with only what it lists; a referral
read by the clinic while it lasts, once accepted; a lab order read by the lab once accepted and
its result read back by whoever ordered. Each refusal the workflows imply, and the audit trail."""

from __future__ import annotations

from typing import Any

import pytest

from node.app import queries
from node.app.policies.check import canonical_form
from node.app.registry import check_tx_body
from node.chain.tx import TxRejected
from node.core.crypto import sha256

from tests.unit.app.harness import CARE_KINDS, DAY, Ledger, ident, rid
from tests.unit.app.test_agreement_access import in_force, staff


def put(ledger: Ledger, author: Any, patient: Any, name: str, rtype: str, custodian: str, **workflow: Any) -> str:
    """record.add with workflow fields, checked as a node checks a transaction it receives."""
    body = {"record": rid(name), "patient": patient.public_key, "resource_type": rtype,
            "hash": sha256(name.encode()), "custodian": ident(custodian).public_key, **workflow}
    return ledger.send(author, "record.add", body, verify=True)


def read(ledger: Ledger, who: Any, name: str, purpose: str = "treatment", under: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"record": rid(name), "purpose": purpose}
    if under:
        body["under"] = rid(under)
    t = ledger.tx(who, "access.request", body)
    result = ledger.block(t)[0]
    assert result in ("ok", "denied"), result
    return ledger.decision(t.hash)


STAFF = (("doc", "A", "physician"), ("doc2", "A", "physician"), ("clin", "B", "physician"), ("nurse", "B", "nurse"),
         ("pharm", "C", "pharmacist"), ("pharm-f", "F", "pharmacist"), ("officer", "D", "claims-officer"),
         ("tech", "E", "lab-technician"))


@pytest.fixture()
def care() -> dict[str, Any]:
    """A hospital A (physicians doc, doc2), clinic B (physician, nurse), pharmacies C and F, an
    insurer D (claims officer), a lab E (technician); a patient registered at A."""
    ledger = Ledger(validators=("A", "B", "C", "D", "E", "F"), kinds=CARE_KINDS)
    w: dict[str, Any] = dict(ledger=ledger, pat=ledger.patient("pat"))
    for name, inst, profession in STAFF:
        w[name] = staff(ledger, name, inst, profession)
    return w


def test_prescription_goes_to_the_nominated_pharmacy_and_is_dispensed_once(care):
    ledger, pat = care["ledger"], care["pat"]
    assert ledger.send(pat, "standing.grant", {"permission": "pharmacy", "institution": ident("C").public_key}) == "ok"
    assert put(ledger, care["doc"], pat, "rx", "MedicationRequest", "A") == "ok"
    assert [r["id"] for r in queries.inbox(ledger.state, ident("C").public_key)] == [rid("rx").hex()]
    seen = read(ledger, care["pharm"], "rx")
    assert (seen["decision"], seen["rule"], seen["policies"]) == ("granted", "standing_permission",
                                                                  ["standing.nominated-pharmacy@1#0"])
    assert seen["standing"]["permission"] == "pharmacy"
    other = read(ledger, care["pharm-f"], "rx")  # a pharmacy the patient did not nominate
    assert (other["decision"], other["rule"]) == ("denied", "no_consent")
    assert read(ledger, care["pharm"], "rx", purpose="payment")["decision"] == "denied"
    # the other pharmacy cannot dispense it; the nominated one does, once
    assert put(ledger, care["pharm-f"], pat, "disp-f", "MedicationDispense", "F", based_on=rid("rx")) == "not_nominated_pharmacy"
    assert put(ledger, care["pharm"], pat, "disp", "MedicationDispense", "C", based_on=rid("rx")) == "ok"
    assert queries.record(ledger.state, rid("rx"))["workflow"]["status"] == "completed"
    assert queries.record(ledger.state, rid("disp"))["basis"] == "prescription"
    assert put(ledger, care["pharm"], pat, "disp-2", "MedicationDispense", "C", based_on=rid("rx")) == "already_dispensed"
    # the prescriber reads the dispense back (it was posted on its order); another physician does not
    back = read(ledger, care["doc"], "disp")
    assert (back["decision"], back["policies"]) == ("granted", ["standing.lab-order@1#1"])
    assert read(ledger, care["doc2"], "disp")["decision"] == "denied"
    # withdrawing the nomination ends what the pharmacy may still fetch under it
    assert queries.active_grant(ledger.state, care["pharm"].public_key, rid("rx"), ledger.now) is not None
    assert ledger.send(pat, "standing.revoke", {"permission": "pharmacy"}) == "ok"
    assert queries.active_grant(ledger.state, care["pharm"].public_key, rid("rx"), ledger.now) is None
    assert read(ledger, care["pharm"], "rx")["rule"] == "no_consent"
    events = ledger.audit_events(pat)
    assert events.count("standing.granted") == 1 and events.count("standing.revoked") == 1


def test_a_prescription_written_as_before_workflows_writes_what_it_wrote_then(care):
    """Without a nomination a MedicationRequest's record.add stores no workflow state (a chain
    of that time replays to the same roots); it reads as active, and dispensing it still works."""
    from node.app import keys

    ledger, pat = care["ledger"], care["pat"]
    assert put(ledger, care["doc"], pat, "old-rx", "MedicationRequest", "A") == "ok"
    assert list(ledger.state.items(keys.WORKFLOW)) == [] and list(ledger.state.items(keys.INBOX)) == []
    assert queries.record(ledger.state, rid("old-rx"))["workflow"] == {"status": "active"}
    assert ledger.send(pat, "standing.grant", {"permission": "pharmacy", "institution": ident("C").public_key}) == "ok"
    assert put(ledger, care["pharm"], pat, "old-disp", "MedicationDispense", "C", based_on=rid("old-rx")) == "ok"
    assert queries.record(ledger.state, rid("old-rx"))["workflow"]["status"] == "completed"
    assert put(ledger, care["pharm"], pat, "old-disp-2", "MedicationDispense", "C", based_on=rid("old-rx")) \
        == "already_dispensed"


def test_a_nomination_names_an_institution_of_the_right_kind(care):
    ledger, pat = care["ledger"], care["pat"]
    assert ledger.send(pat, "standing.grant", {"permission": "pharmacy", "institution": ident("D").public_key}) == "kind_mismatch"
    assert ledger.send(pat, "standing.grant", {"permission": "insurer", "institution": ident("C").public_key}) == "kind_mismatch"
    assert ledger.send(pat, "standing.revoke", {"permission": "insurer"}) == "no_standing_permission"
    assert ledger.send(care["doc"], "standing.grant", {"permission": "pharmacy", "institution": ident("C").public_key}) \
        == "role_not_allowed"


PAYER_MINIMUM = canonical_form("""
forbid (principal, action == Action::"read", resource)
when { context.purpose == "payment" && principal.institution.kind == "insurer" &&
       !(["Claim", "Encounter", "Procedure"].contains(resource.resource_type)) };
""")


def test_the_insurer_sees_the_claim_and_only_what_it_lists(care):
    ledger, pat = care["ledger"], care["pat"]
    for name, rtype in (("enc", "Encounter"), ("proc", "Procedure"), ("obs", "Observation"), ("enc-2", "Encounter")):
        assert put(ledger, care["doc"], pat, name, rtype, "A") == "ok"
    assert put(ledger, care["doc"], pat, "bad-claim", "Claim", "A", payer=ident("C").public_key) == "not_an_insurer"
    assert put(ledger, care["doc"], pat, "claim", "Claim", "A", payer=ident("D").public_key,
               lists=[rid("enc"), rid("proc"), rid("obs")]) == "ok"
    assert [r["id"] for r in queries.inbox(ledger.state, ident("D").public_key)] == [rid("claim").hex()]
    officer = care["officer"]
    assert read(ledger, officer, "claim", "payment")["rule"] == "no_consent"  # no insurer named yet
    assert ledger.send(pat, "standing.grant", {"permission": "insurer", "institution": ident("D").public_key}) == "ok"
    claim = read(ledger, officer, "claim", "payment")
    assert (claim["decision"], claim["policies"]) == ("granted", ["standing.insurer@1#0"])
    listed = read(ledger, officer, "enc", "payment", under="claim")
    assert (listed["decision"], listed["policies"]) == ("granted", ["standing.insurer@1#1"])
    assert read(ledger, officer, "enc-2", "payment", under="claim")["rule"] == "no_consent"  # not on the claim
    assert read(ledger, officer, "enc", "payment")["rule"] == "no_consent"  # not under the claim
    assert read(ledger, officer, "enc", "treatment", under="claim")["rule"] == "no_consent"  # not for payment
    # the payer agreement's minimum necessary: a listed Observation stays out
    assert read(ledger, officer, "obs", "payment", under="claim")["decision"] == "granted"
    in_force(ledger, "payer-min", PAYER_MINIMUM, ident("A"), ident("D"), purposes=("payment",))
    refused = read(ledger, officer, "obs", "payment", under="claim")
    assert (refused["decision"], refused["rule"], refused["policies"]) == ("denied", "policy_forbids", ["payer-min@1#0"])
    assert read(ledger, officer, "proc", "payment", under="claim")["decision"] == "granted"
    # the insurer answers the claim once
    assert put(ledger, officer, pat, "resp", "ClaimResponse", "D", based_on=rid("claim")) == "ok"
    assert queries.record(ledger.state, rid("claim"))["workflow"]["status"] == "completed"
    assert put(ledger, officer, pat, "resp-2", "ClaimResponse", "D", based_on=rid("claim")) == "already_completed"
    # a request under another patient's claim, or under a record that is no claim, is refused
    ledger.patient("other")
    t = ledger.tx(officer, "access.request", {"record": rid("enc"), "purpose": "payment", "under": rid("obs")})
    assert ledger.block(t)[0] == "under_mismatch"


def test_a_referral_is_read_by_the_clinic_once_accepted_and_while_it_lasts(care):
    ledger, pat = care["ledger"], care["pat"]
    assert put(ledger, care["doc"], pat, "cond", "Condition", "A") == "ok"
    assert put(ledger, care["doc"], pat, "obs", "Observation", "A") == "ok"
    until = ledger.now + 7 * DAY
    assert put(ledger, care["doc"], pat, "ref-x", "ServiceRequest", "A", recipient=ident("B").public_key) \
        == "referral_needs_until"
    assert put(ledger, care["doc"], pat, "ref", "ServiceRequest", "A", recipient=ident("B").public_key, until_ms=until,
               lists=[rid("cond")]) == "ok"
    clin = care["clin"]
    assert read(ledger, clin, "ref")["rule"] == "no_consent"  # not accepted yet
    assert queries.inbox(ledger.state, ident("B").public_key) == []
    assert put(ledger, clin, pat, "note-early", "Observation", "B") == "no_treatment_relationship"
    assert ledger.send(pat, "request.accept", {"record": rid("ref")}) == "ok"
    assert ledger.send(pat, "request.accept", {"record": rid("ref")}) == "already_accepted"
    assert [r["id"] for r in queries.inbox(ledger.state, ident("B").public_key)] == [rid("ref").hex()]
    seen = read(ledger, clin, "ref")
    assert (seen["decision"], seen["policies"], seen["expires_ms"]) == ("granted", ["standing.referral@1#0"],
                                                                          min(until, ledger.now + DAY))
    assert read(ledger, clin, "cond", under="ref")["decision"] == "granted"
    assert read(ledger, clin, "obs", under="ref")["rule"] == "no_consent"  # not in the summary
    assert read(ledger, care["nurse"], "cond", under="ref")["rule"] == "no_consent"  # physicians only
    assert put(ledger, clin, pat, "note", "Observation", "B") == "ok"
    assert queries.record(ledger.state, rid("note"))["basis"] == "referral"
    # after the referral's end: nothing more
    ledger.block(at_ms=until + 1)
    assert read(ledger, clin, "cond", under="ref")["rule"] == "no_consent"
    assert put(ledger, clin, pat, "note-late", "Observation", "B") == "no_treatment_relationship"
    assert "request.accepted" in ledger.audit_events(pat)


def test_a_lab_order_and_its_result_back_to_the_orderer(care):
    ledger, pat = care["ledger"], care["pat"]
    assert put(ledger, care["doc"], pat, "order", "ServiceRequest", "A", recipient=ident("E").public_key) == "ok"
    tech = care["tech"]
    assert read(ledger, tech, "order")["rule"] == "no_consent"
    assert put(ledger, tech, pat, "early", "DiagnosticReport", "E", based_on=rid("order")) == "order_not_accepted"
    assert ledger.send(pat, "request.accept", {"record": rid("order")}) == "ok"
    seen = read(ledger, tech, "order")
    assert (seen["decision"], seen["policies"]) == ("granted", ["standing.lab-order@1#0"])
    assert put(ledger, tech, pat, "hb", "Observation", "E", based_on=rid("order")) == "ok"
    assert queries.record(ledger.state, rid("order"))["workflow"]["status"] == "active"
    assert put(ledger, tech, pat, "report", "DiagnosticReport", "E", based_on=rid("order")) == "ok"
    assert queries.record(ledger.state, rid("order"))["workflow"]["status"] == "completed"
    assert put(ledger, care["pharm"], pat, "x", "DiagnosticReport", "C", based_on=rid("order")) == "not_the_recipient"
    assert {r["id"] for r in queries.inbox(ledger.state, ident("A").public_key)} == {rid("hb").hex(), rid("report").hex()}
    back = read(ledger, care["doc"], "report")
    assert (back["decision"], back["rule"], back["policies"]) == ("granted", "standing_permission", ["standing.lab-order@1#1"])
    assert read(ledger, care["doc2"], "report")["rule"] == "no_consent"  # not the one who ordered
    audit = [e for e in queries.patient_audit(ledger.state, pat.public_key) if e["event"] == "access.granted"]
    assert audit[-1]["rule"] == "standing_permission" and audit[-1]["policies"] == ["standing.lab-order@1#1"]


def admission(ledger: Ledger, author: Any, patient: Any, rtype: str, **workflow: Any) -> str:
    """The code a node answers at admission for a record.add with these workflow fields."""
    body = {"record": rid("x"), "patient": patient.public_key, "resource_type": rtype, "hash": sha256(b"x"),
            "custodian": ident("A").public_key, **workflow}
    with pytest.raises(TxRejected) as refused:
        check_tx_body(ledger.tx(author, "record.add", body))
    return refused.value.code


def test_workflow_fields_are_checked_at_admission(care):
    ledger, pat, doc = care["ledger"], care["pat"], care["doc"]
    assert admission(ledger, doc, pat, "Observation", payer=ident("D").public_key) == "invalid_workflow"
    assert admission(ledger, doc, pat, "Observation", recipient=ident("B").public_key) == "invalid_workflow"
    assert admission(ledger, doc, pat, "Condition", based_on=rid("x")) == "invalid_workflow"
    assert admission(ledger, doc, pat, "Claim", payer=ident("D").public_key, lists=[b"x"]) == "invalid_workflow"
    assert admission(ledger, doc, pat, "Claim", lists=[rid("y")]) == "invalid_workflow"
    assert admission(ledger, doc, pat, "Observation", until_ms=5) == "invalid_workflow"
    assert admission(ledger, doc, pat, "Claim", payer=b"short") == "invalid_body"
    assert put(ledger, doc, pat, "c", "Claim", "A", payer=ident("D").public_key, lists=[rid("nope")]) \
        == "invalid_listed_record"
    assert put(ledger, doc, pat, "s", "ServiceRequest", "A", recipient=ident("C").public_key) == "invalid_recipient"
    assert put(ledger, doc, pat, "s", "ServiceRequest", "A", recipient=ident("A").public_key) == "invalid_recipient"
    assert put(ledger, doc, pat, "s", "ServiceRequest", "A", recipient=ident("B").public_key, until_ms=ledger.now - 1) \
        == "referral_ended"
    assert put(ledger, doc, pat, "s", "ServiceRequest", "A", recipient=ident("B").public_key,
               until_ms=ledger.now + 400 * DAY) == "referral_too_long"


# every workflow above, as one script: its state root and its decisions, printed as JSON
CARE_SCRIPT = """
import json
from tests.unit.app import test_care as t
from tests.unit.app.harness import CARE_KINDS, Ledger
from tests.unit.app.test_agreement_access import staff
out = []
for test in (t.test_prescription_goes_to_the_nominated_pharmacy_and_is_dispensed_once,
             t.test_the_insurer_sees_the_claim_and_only_what_it_lists,
             t.test_a_referral_is_read_by_the_clinic_once_accepted_and_while_it_lasts,
             t.test_a_lab_order_and_its_result_back_to_the_orderer):
    ledger = Ledger(validators=("A", "B", "C", "D", "E", "F"), kinds=CARE_KINDS)
    w = dict(ledger=ledger, pat=ledger.patient("pat"))
    for name, inst, profession in t.STAFF:
        w[name] = staff(ledger, name, inst, profession)
    test(w)
    out.append(ledger.store.state_root.hex())
print(json.dumps(out))
"""


def test_two_validators_with_different_hash_seeds_reach_the_same_roots():
    """The workflows' decisions (standing policies, entities built from state) do not depend on
    the process: two interpreters with different hash seeds end every workflow at the same root."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    runs = [subprocess.run([sys.executable, "-c", CARE_SCRIPT], cwd=root, env={**os.environ, "PYTHONHASHSEED": seed},
                           capture_output=True, text=True, timeout=120, check=True).stdout for seed in ("1", "2")]
    assert runs[0] == runs[1]
    assert len(set(json.loads(runs[0]))) == 4


def test_the_documented_standing_policies_are_the_protocols():
    """docs/examples/policies holds the standing policies as the ledger evaluates them."""
    from pathlib import Path

    from node.app import standing

    examples = Path(__file__).resolve().parents[3] / "docs" / "examples" / "policies"
    for name, policy in (("pharmacy-nomination", standing.NOMINATED_PHARMACY), ("insurer", standing.INSURER),
                         ("referral", standing.REFERRAL), ("lab-order", standing.LAB_ORDER)):
        assert canonical_form((examples / f"{name}.cedar").read_text()) == canonical_form(policy.text), name
