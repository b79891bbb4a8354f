"""FHIR R4 views of the ledger's audit entries and consents, as pure functions of query answers.

`audit_event(entry, chain_id=...)` turns one entry of `queries.patient_audit` (or of
`queries.disclosures`) into an AuditEvent; `consent_resource(consent)` turns one
answer of `queries.consent`/`patient_consents` into a Consent; `bundle(resources)` wraps them in
a collection Bundle. Nothing here reads state or a clock: the same entries give the same JSON.

Identities, records, consents, studies and transactions are not FHIR resources on any server, so
they are referenced by identifier, with these systems:

    urn:medledger:identity   hex Ed25519 key of a patient, practitioner, researcher, institution
    urn:medledger:record     hex record id            urn:medledger:consent   hex consent id
    urn:medledger:study      study id                 urn:medledger:tx        hex transaction hash
    urn:medledger:chain      chain id (the AuditEvent's source observer)

Purposes of use map to HL7 v3 PurposeOfUse codes (`fields.PURPOSE_CODES`): treatment TREAT,
payment HPAYMT, operations HOPERAT, research HRESCH, emergency ETREAT.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from node.core.crypto import sha256

from node.app.fields import PURPOSE_CODES

JSON = dict[str, Any]

SYS_IDENTITY = "urn:medledger:identity"
SYS_RECORD = "urn:medledger:record"
SYS_CONSENT = "urn:medledger:consent"
SYS_STUDY = "urn:medledger:study"
SYS_TX = "urn:medledger:tx"
SYS_CHAIN = "urn:medledger:chain"
SYS_EVENT = "urn:medledger:event"

V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ISO_LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
LOINC = "http://loinc.org"
RESEARCH_STUDY_CONTEXT = "http://hl7.org/fhir/StructureDefinition/consent-ResearchStudyContext"

PURPOSE_DISPLAY = {
    "TREAT": "treatment", "HPAYMT": "healthcare payment", "HOPERAT": "healthcare operations",
    "HRESCH": "healthcare research", "ETREAT": "emergency treatment",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# event -> (DICOM event type, display), FHIR action, ISO 21089 lifecycle event or None
_EVENTS: dict[str, tuple[tuple[str, str], str, str | None]] = {
    "record.added": (("110110", "Patient Record"), "C", "originate"),
    "record.erased": (("110110", "Patient Record"), "D", "destroy"),
    "consent.granted": (("110110", "Patient Record"), "C", None),
    "consent.revoked": (("110110", "Patient Record"), "U", None),
    "breakglass.opted_out": (("110110", "Patient Record"), "U", None),
    "breakglass.opted_in": (("110110", "Patient Record"), "U", None),
    "access.granted": (("110110", "Patient Record"), "E", "access"),
    "access.denied": (("110110", "Patient Record"), "E", "access"),
    "access.breakglass": (("110113", "Security Alert"), "E", "access"),
    "breakglass.reviewed": (("110110", "Patient Record"), "E", "verify"),
    "breakglass.suspended": (("110113", "Security Alert"), "U", None),
    "access.revoked": (("110113", "Security Alert"), "U", None),
    "record.contested": (("110110", "Patient Record"), "U", None),
    "research.released": (("110106", "Export"), "R", "disclose"),
    "guardian.set": (("110110", "Patient Record"), "U", None),
    "guardian.cleared": (("110110", "Patient Record"), "U", None),
    "standing.granted": (("110110", "Patient Record"), "C", None),
    "standing.revoked": (("110110", "Patient Record"), "U", None),
    "request.accepted": (("110110", "Patient Record"), "U", None),
}


def instant(ms: int) -> str:
    """A FHIR instant (UTC, millisecond precision) for ms since the epoch."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def purpose_coding(purpose: str) -> JSON:
    code = PURPOSE_CODES[purpose]
    return {"system": V3_ACT_REASON, "code": code, "display": PURPOSE_DISPLAY[code]}


def _ident(system: str, value: str, display: str | None = None) -> JSON:
    ref: JSON = {"identifier": {"system": system, "value": value}}
    if display:
        ref["display"] = display
    return ref


def _entity(system: str, value: str, *, entity_type: tuple[str, str], role: tuple[str, str], name: str | None = None,
            details: Iterable[tuple[str, Any]] = ()) -> JSON:
    out: JSON = {
        "what": _ident(system, value),
        "type": {"system": ENTITY_TYPE, "code": entity_type[0], "display": entity_type[1]},
        "role": {"system": OBJECT_ROLE, "code": role[0], "display": role[1]},
    }
    if name:
        out["name"] = name
    detail = [{"type": k, "valueString": str(v)} for k, v in details if v is not None]
    if detail:
        out["detail"] = detail
    return out


def audit_event(entry: JSON, *, chain_id: str) -> JSON:
    """A FHIR R4 AuditEvent for one audit or disclosure entry (a query answer, ids in hex)."""
    event = entry["event"]
    (type_code, type_display), action, lifecycle = _EVENTS[event]
    patient = entry.get("patient")
    subtype = [{"system": SYS_EVENT, "code": event, "display": event}]
    if lifecycle:
        subtype.insert(0, {"system": ISO_LIFECYCLE, "code": lifecycle, "display": lifecycle})
    actor: JSON = {"who": _ident(SYS_IDENTITY, entry["actor"]), "requestor": True}
    if entry.get("on_behalf"):  # a guardian acted for the patient
        actor["role"] = [{"coding": [{"system": V3_ROLE, "code": "GUARD", "display": "guardian"}]}]
    agents = [actor]
    if entry.get("custodian") and entry["custodian"] != entry["actor"]:
        agents.append({"type": {"coding": [{"system": V3_PARTICIPATION, "code": "CST", "display": "custodian"}]},
                       "who": _ident(SYS_IDENTITY, entry["custodian"]), "requestor": False})
    if entry.get("researcher"):
        agents.append({"type": {"coding": [{"system": V3_PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
                       "who": _ident(SYS_IDENTITY, entry["researcher"]), "requestor": False})
    if entry.get("via"):
        # a delegated research extract: the researcher's institution asked for them (a requestor);
        # else an institution signed for its practitioner (on_behalf_of), the practitioner being the actor
        agents.append({"type": {"coding": [{"system": V3_PARTICIPATION, "code": "RESP", "display": "responsible party"}]},
                       "who": _ident(SYS_IDENTITY, entry["via"]), "requestor": event == "research.released"})
    if entry.get("grantee") and entry.get("grantee_kind") != "study":
        agents.append({"type": {"coding": [{"system": V3_PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
                       "who": _ident(SYS_IDENTITY, entry["grantee"]), "requestor": False})
    entities = []
    if patient:
        entities.append(_entity(SYS_IDENTITY, patient, entity_type=("1", "Person"), role=("1", "Patient")))
    if entry.get("record"):
        entities.append(_entity(SYS_RECORD, entry["record"], entity_type=("2", "System Object"), role=("4", "Domain Resource"),
                                details=[("resourceType", entry.get("resource_type"))]))
    if entry.get("consent"):
        entities.append(_entity(SYS_CONSENT, entry["consent"], entity_type=("2", "System Object"), role=("4", "Domain Resource"),
                                name="Consent"))
    study = entry.get("study") or (entry.get("grantee") if entry.get("grantee_kind") == "study" else None)
    if study:
        entities.append(_entity(SYS_STUDY, study, entity_type=("2", "System Object"), role=("4", "Domain Resource"),
                                name="ResearchStudy",
                                details=[("patients", entry.get("patients")), ("resources", entry.get("resources")),
                                         ("releaseHash", entry.get("release_hash"))]))
    entities.append(_entity(SYS_TX, entry["tx"], entity_type=("2", "System Object"), role=("20", "Job"),
                            name="ledger transaction",
                            details=[("height", entry["height"]), ("index", entry["index"]), ("rule", entry.get("rule")),
                                     ("expires", instant(entry["expires_ms"]) if entry.get("expires_ms") else None),
                                     ("reviewedRequest", entry.get("request")), ("reviewOutcome", entry.get("outcome"))]))
    out: JSON = {
        "resourceType": "AuditEvent",
        # one transaction may write several entries of one kind for a patient (a review revoking
        # several grants): the request they concern tells them apart
        "id": sha256(bytes.fromhex(entry["tx"]) + bytes.fromhex(patient or "") + event.encode()
                     + (bytes.fromhex(entry["request"]) if event == "access.revoked" else b"")).hex(),
        "type": {"system": DCM, "code": type_code, "display": type_display},
        "subtype": subtype,
        "action": action,
        "recorded": instant(entry["time_ms"]),
        "outcome": "4" if entry.get("decision") == "denied" else "0",
        "agent": agents,
        "source": {"site": chain_id, "observer": _ident(SYS_CHAIN, chain_id, "MedLedger"),
                   "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
        "entity": entities,
    }
    if entry.get("decision") == "denied":
        out["outcomeDesc"] = f"access denied: {entry.get('rule')}"
    elif entry.get("reason"):
        label = "contested" if event == "record.contested" else entry.get("rule", "granted")
        out["outcomeDesc"] = f"{label}: {entry['reason']}"
    purpose = entry.get("purpose") or ("research" if event == "research.released" else None)
    if purpose:
        out["purposeOfEvent"] = [{"coding": [purpose_coding(purpose)]}]
    return out


def _grantee_reference(consent: JSON) -> JSON:
    # R4 allows Device, Group, CareTeam, Organization, Patient, Practitioner, RelatedPerson and
    # PractitionerRole as a provision's actor: a study's recipients are the Group of its
    # researchers; the study itself is named by RESEARCH_STUDY_CONTEXT.
    kind, grantee = consent["grantee_kind"], consent["grantee"]
    if kind == "study":
        return {**_ident(SYS_STUDY, grantee, f"researchers of study {grantee}"), "type": "Group"}
    return {**_ident(SYS_IDENTITY, grantee), "type": "Practitioner" if kind == "practitioner" else "Organization"}


def _types(types: Iterable[str]) -> list[JSON]:
    return [{"system": RESOURCE_TYPES, "code": t} for t in types if t != "*"]


def consent_resource(consent: JSON) -> JSON:
    """A FHIR R4 Consent for one consent rule (a `queries.consent` answer, ids in hex).

    The ledger's scope is "these resource types OR these records"; FHIR ANDs the criteria of one
    provision, so with both kinds the base provision denies and two nested provisions permit,
    each carrying the deny exceptions as its own nested deny (the usual "all but" pattern).
    """
    is_study = consent["grantee_kind"] == "study"
    deny = [{"type": "deny", "class": _types(consent["deny_types"])}] if consent["deny_types"] else []
    common: JSON = {
        "period": {"start": instant(consent["valid_from"]), "end": instant(consent["valid_until"])},
        "actor": [{"role": {"coding": [{"system": V3_PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
                   "reference": _grantee_reference(consent)}],
        "purpose": [purpose_coding(p) for p in consent["purposes"]],
    }
    if is_study:  # the HL7 extension for the research study a research-scope Consent is for
        common["extension"] = [{"url": RESEARCH_STUDY_CONTEXT,
                                "valueReference": {**_ident(SYS_STUDY, consent["grantee"]), "type": "ResearchStudy"}}]
    by_type: JSON = {"type": "permit", **common}
    if types := _types(consent["resource_types"]):
        by_type["class"] = types
    by_record: JSON = {"type": "permit", **common,
                       "data": [{"meaning": "instance", "reference": _ident(SYS_RECORD, r)} for r in consent["record_ids"]]}
    for permit in (by_type, by_record):
        if deny:
            permit["provision"] = deny
    if consent["resource_types"] and consent["record_ids"]:
        provision: JSON = {"type": "deny", "provision": [by_type, by_record]}
    else:
        provision = by_type if consent["resource_types"] else by_record
    status = consent.get("status", "active")
    return {
        "resourceType": "Consent",
        "id": consent["id"],
        "identifier": [{"system": SYS_CONSENT, "value": consent["id"]}],
        "status": "inactive" if status in ("revoked", "expired") else "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "research" if is_study else "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": _ident(SYS_IDENTITY, consent["patient"]),
        "dateTime": instant(consent["time_ms"]),
        "performer": [_ident(SYS_IDENTITY, consent["granted_by"])],
        "policyRule": {"coding": [{"system": V3_ACT_CODE, "code": "OPTIN", "display": "opt-in"}]},
        "provision": provision,
    }


def bundle(resources: Iterable[JSON]) -> JSON:
    """A FHIR collection Bundle of the given resources, in order."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
