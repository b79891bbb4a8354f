"""FHIR R4 exports of audit entries and consents: the mapping, and (when fhir.resources is
installed) validation against the R4B models."""

from __future__ import annotations

import json
import re

import pytest

from node.app import queries
from node.app.audit import AUDIT_EVENTS
from node.app.fhir_export import audit_event, bundle, consent_resource, instant

from tests.unit.app.harness import CARE_KINDS, CHAIN, DAY, Ledger, ident, rid


@pytest.fixture(scope="module")
def story():
    """A ledger where every kind of audit event happened to one patient (and some to another)."""
    ledger = Ledger(kinds=CARE_KINDS)
    pat, parent = ledger.patient("pat"), ledger.patient("parent")
    doc_a, doc_b, doc_c = ledger.staff("doc-a", "A"), ledger.staff("doc-b", "B"), ledger.staff("doc-c", "C")
    res = ledger.staff("res", "A", "researcher")
    obs = ledger.add_record(doc_a, pat, "obs-1")
    mh = ledger.add_record(doc_a, pat, "mh-1", resource_type="QuestionnaireResponse")
    ledger.send(pat, "patient.set_guardian", {"guardian": parent.public_key})
    _, c1 = ledger.grant(pat, ident("B").public_key, types=["*"], deny=["QuestionnaireResponse"])
    _, c2 = ledger.grant(pat, doc_c.public_key, kind="practitioner", types=["Observation"], records=[mh],
                         purposes=["treatment", "emergency"], sender=parent)
    ledger.request(doc_b, obs)
    ledger.request(doc_b, mh)
    ledger.send(pat, "consent.revoke", {"consent": c2})
    ledger.send(pat, "consent.breakglass", {"opt_out": True})
    ledger.send(pat, "consent.breakglass", {"opt_out": False})
    _, bg = ledger.request(ident("doc-c"), mh, purpose="emergency", reason="unconscious")
    ledger.send(ident("A"), "breakglass.review", {"access": bg, "outcome": "justified"})
    _, bg2 = ledger.request(ident("doc-c"), obs, purpose="emergency", reason="lacks_capacity")
    ledger.send(ident("A"), "breakglass.review", {"access": bg2, "outcome": "unjustified", "suspend": True})
    ledger.send(pat, "record.contest", {"record": mh, "reason": "inaccurate"})
    ledger.send(ident("A"), "study.register", {"study": "S1", "title": "t", "ethics_ref": "IRB-1", "until_ms": ledger.now + DAY})
    ledger.send(ident("A"), "study.add_researcher", {"study": "S1", "researcher": res.public_key})
    _, c3 = ledger.grant(pat, "S1", kind="study", purposes=["research"], types=["*"])
    ledger.send(ident("A"), "research.release", {"study": "S1", "custodian": ident("A").public_key, "researcher": res.public_key,
                                                 "patients": [pat.public_key], "resources": 3, "release_hash": bytes(32)})
    ledger.send(pat, "standing.grant", {"permission": "pharmacy", "institution": ident("C").public_key})
    ledger.send(pat, "standing.revoke", {"permission": "pharmacy"})
    ref = {"record": rid("ref-1"), "patient": pat.public_key, "resource_type": "ServiceRequest", "hash": bytes(32),
           "custodian": ident("A").public_key, "recipient": ident("B").public_key, "until_ms": ledger.now + DAY}
    assert ledger.send(doc_a, "record.add", ref) == "ok"
    ledger.send(pat, "request.accept", {"record": rid("ref-1")})
    ledger.send(pat, "record.erase", {"record": obs})
    ledger.send(pat, "patient.set_guardian", {"guardian": None})
    return ledger, pat, (c1, c2, c3)


def test_every_audit_event_kind_maps(story):
    ledger, pat, _ = story
    trail = queries.patient_audit(ledger.state, pat.public_key)
    events = [audit_event(e, chain_id=CHAIN) for e in trail]
    kinds = {e["event"] for e in trail}
    assert kinds == set(AUDIT_EVENTS)  # the story covers every kind
    assert len({e["id"] for e in events}) == len(events)
    for entry, ev in zip(trail, events, strict=True):
        assert ev["resourceType"] == "AuditEvent" and ev["recorded"] == instant(entry["time_ms"])
        assert ev["agent"][0]["who"]["identifier"]["value"] == entry["actor"]
        assert {"system": "urn:medledger:event", "code": entry["event"], "display": entry["event"]} in ev["subtype"]
        json.dumps(ev)
    by_event = {e["event"]: ev for e, ev in zip(trail, events)}
    denied = by_event["access.denied"]
    assert denied["outcome"] == "4" and "type_excluded" in denied["outcomeDesc"]
    assert denied["purposeOfEvent"][0]["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                        "code": "TREAT", "display": "treatment"}
    bg = by_event["access.breakglass"]
    assert bg["outcome"] == "0" and bg["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert "lacks_capacity" in bg["outcomeDesc"]  # the last break-glass: a coded reason, no free text
    assert by_event["research.released"]["purposeOfEvent"][0]["coding"][0]["code"] == "HRESCH"
    assert by_event["record.erased"]["action"] == "D"
    on_behalf = next(ev for e, ev in zip(trail, events) if e.get("on_behalf"))
    assert on_behalf["agent"][0]["role"][0]["coding"][0]["code"] == "GUARD"


def test_consents_map(story):
    ledger, pat, (c1, c2, c3) = story
    r1 = consent_resource(queries.consent(ledger.state, c1, ledger.now))
    assert r1["status"] == "active" and r1["scope"]["coding"][0]["code"] == "patient-privacy"
    assert r1["provision"]["type"] == "permit" and "class" not in r1["provision"]  # "*": every type
    assert r1["provision"]["provision"] == [{"type": "deny", "class": [{"system": "http://hl7.org/fhir/resource-types",
                                                                         "code": "QuestionnaireResponse"}]}]
    assert r1["provision"]["actor"][0]["reference"]["type"] == "Organization"
    r2 = consent_resource(queries.consent(ledger.state, c2, ledger.now))
    assert r2["status"] == "inactive"  # revoked
    assert r2["provision"]["type"] == "deny" and [p["type"] for p in r2["provision"]["provision"]] == ["permit", "permit"]
    assert [c["code"] for c in r2["provision"]["provision"][0]["purpose"]] == ["TREAT", "ETREAT"]
    r3 = consent_resource(queries.consent(ledger.state, c3, ledger.now))
    assert r3["scope"]["coding"][0]["code"] == "research"
    assert r3["provision"]["actor"][0]["reference"]["identifier"] == {"system": "urn:medledger:study", "value": "S1"}
    # R4 allows no ResearchStudy as a provision's actor: the study's researchers as a Group, the
    # study itself in the HL7 extension made for it
    actor_types = {"Device", "Group", "CareTeam", "Organization", "Patient", "Practitioner", "RelatedPerson", "PractitionerRole"}
    for consent in (r1, r2, r3):
        for provision in _provisions(consent["provision"]):
            assert all(a["reference"]["type"] in actor_types for a in provision.get("actor", []))
    assert r3["provision"]["actor"][0]["reference"]["type"] == "Group"
    assert r3["provision"]["extension"] == [{
        "url": "http://hl7.org/fhir/StructureDefinition/consent-ResearchStudyContext",
        "valueReference": {"identifier": {"system": "urn:medledger:study", "value": "S1"}, "type": "ResearchStudy"}}]
    assert r3["provision"]["purpose"][0]["code"] == "HRESCH"
    expired = consent_resource(queries.consent(ledger.state, c1, ledger.now + 365 * DAY))
    assert expired["status"] == "inactive"


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _provisions(p):
    yield p
    for sub in p.get("provision", []):
        yield from _provisions(sub)


def test_codes_and_ids_are_within_their_value_sets(story):
    """fhir.resources checks structure, not bindings: check the required ones here."""
    ledger, pat, _ = story
    trail = queries.patient_audit(ledger.state, pat.public_key)
    for ev in (audit_event(e, chain_id=CHAIN) for e in trail):
        assert FHIR_ID.fullmatch(ev["id"])
        assert ev["action"] in {"C", "R", "U", "D", "E"} and ev["outcome"] in {"0", "4", "8", "12"}
        assert all(("name" in ent) + ("query" in ent) <= 1 for ent in ev["entity"])  # sev-1
    for c in queries.patient_consents(ledger.state, pat.public_key, ledger.now):
        doc = consent_resource(c)
        assert FHIR_ID.fullmatch(doc["id"])
        assert doc["status"] in {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
        assert "policyRule" in doc or "policy" in doc  # ppc-1
        assert all(p["type"] in {"deny", "permit"} for p in _provisions(doc["provision"]))


def test_instant():
    assert instant(0) == "1970-01-01T00:00:00.000Z"
    assert instant(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def test_exports_validate_against_fhir_r4b(story):
    r4b = pytest.importorskip("fhir.resources.R4B")
    from fhir.resources.R4B.auditevent import AuditEvent
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.consent import Consent

    assert r4b
    ledger, pat, consents = story
    trail = queries.patient_audit(ledger.state, pat.public_key)
    disclosures = queries.disclosures(ledger.state, ident("A").public_key, 0, ledger.now)
    events = [audit_event(e, chain_id=CHAIN) for e in trail + disclosures]
    for ev in events:
        AuditEvent.model_validate(ev)
    docs = [consent_resource(c) for c in queries.patient_consents(ledger.state, pat.public_key, ledger.now)]
    assert len(docs) == 3
    for doc in docs:
        Consent.model_validate(doc)
    Bundle.model_validate(bundle(events + docs))
