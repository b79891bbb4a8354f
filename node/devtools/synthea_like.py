"""Patients shaped like Synthea's R4 output: one transaction Bundle per patient, seeded.

Synthea (https://github.com/synthetichealth/synthea, Apache-2.0) writes each simulated patient as
a FHIR R4 transaction Bundle: every entry has a `urn:uuid:` fullUrl and a `request` (POST to its
type), the resources point at each other by those placeholders (`subject`, `encounter`,
`result`, `context`...), and practitioners and organisations are named by conditional
references (`Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|...`). A bundle holds the
Patient (with the US Core race/ethnicity/birth-sex extensions and MR/SS/DL identifiers),
Encounters, Conditions, Observations (vital signs and labs with LOINC codes and UCUM units),
DiagnosticReports over them, MedicationRequests, Immunizations (CVX), Procedures, allergy
records, clinical-note DocumentReferences, and the resources this server does not hold (Claim,
ExplanationOfBenefit, CareTeam, CarePlan, Provenance), which a load must refuse with a reason.

The project may not commit Synthea's output itself (third-party material), so the tests and
`medledger bench --fhir` use bundles made here, in that shape, from one `random.Random(seed)`:
a seed always gives the same bundles. The same code paths run on real Synthea output: point
MEDLEDGER_SYNTHEA_DIR at a folder of Synthea `fhir/*.json` files (tests/data/README.md).
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
SYNTHEA_ORG = "https://github.com/synthetichealth/synthea"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ID_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
AS_OF = datetime(2024, 6, 30, 12, 0, tzinfo=timezone.utc)

HELD_TYPES = ("Patient", "Encounter", "Condition", "Observation", "DiagnosticReport", "MedicationRequest",
              "Immunization", "Procedure", "AllergyIntolerance", "DocumentReference")
"""The types of a generated bundle this server holds; the others are refused on load."""
NOT_HELD_TYPES = ("Claim", "ExplanationOfBenefit", "CareTeam", "CarePlan", "Provenance")

GIVEN = ("Ana", "Joao", "Marta", "Samir", "Amara", "Kenji", "Ingrid", "Olusegun", "Priya", "Mateo", "Leila", "Tomasz")
FAMILY = ("Kuhn", "Rempel", "Sauer", "Bogan", "Okafor", "Yamamoto", "Larsen", "Delgado", "Haddad", "Novak")
CITIES = (("Boston", "02108"), ("Springfield", "01103"), ("Worcester", "01608"), ("Lowell", "01852"))
VITALS = (("8302-2", "Body Height", "cm", 150, 195), ("29463-7", "Body Weight", "kg", 45, 120),
          ("8867-4", "Heart rate", "/min", 55, 110), ("9279-1", "Respiratory rate", "/min", 12, 22),
          ("8310-5", "Body temperature", "Cel", 36, 38))
LABS = (("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 180),
        ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4, 10),
        ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 280),
        ("38483-4", "Creatinine [Mass/volume] in Blood", "mg/dL", 1, 2))
CONDITIONS = (("44054006", "Diabetes mellitus type 2 (disorder)"), ("38341003", "Hypertensive disorder (disorder)"),
              ("195662009", "Acute viral pharyngitis (disorder)"), ("10509002", "Acute bronchitis (disorder)"),
              ("162864005", "Body mass index 30+ - obesity (finding)"))
MEDICATIONS = (("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"),
               ("314076", "lisinopril 10 MG Oral Tablet"), ("313782", "Acetaminophen 325 MG Oral Tablet"))
VACCINES = (("140", "Influenza, seasonal, injectable, preservative free"), ("208", "SARS-COV-2 (COVID-19) vaccine"),
            ("113", "Td (adult) preservative free"))
PROCEDURES = (("430193006", "Medication Reconciliation (procedure)"), ("710824005", "Assessment of health and social care needs (procedure)"),
              ("171207006", "Depression screening (procedure)"))
ALLERGIES = (("300916003", "Latex allergy (finding)"), ("419474003", "Allergy to mould (finding)"))
ENCOUNTER_TYPES = (("185349003", "Encounter for check up (procedure)"), ("162673000", "General examination of patient (procedure)"))


@dataclass(frozen=True)
class GeneratedPatient:
    """One patient's transaction Bundle, and how many of its entries are of a held type."""

    name: str
    bundle: dict[str, Any]

    @property
    def resources(self) -> int:
        return len(self.bundle["entry"])

    @property
    def held(self) -> int:
        return sum(1 for e in self.bundle["entry"] if e["resource"]["resourceType"] in HELD_TYPES)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


class _Builder:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.entries: list[dict[str, Any]] = []

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, resource: dict[str, Any]) -> str:
        rid = self.uid()
        resource = {"resourceType": resource.pop("resourceType"), "id": rid, **resource}
        self.entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": resource,
                             "request": {"method": "POST", "url": resource["resourceType"]}})
        return f"urn:uuid:{rid}"


def _patient(b: _Builder, index: int) -> tuple[str, str, date]:
    rng = b.rng
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    gender = rng.choice(("female", "male"))
    born = (AS_OF - timedelta(days=rng.randrange(2 * 365, 85 * 365))).date()
    city, zip_code = rng.choice(CITIES)
    mrn = b.uid()
    ref = b.add({
        "resourceType": "Patient",
        "meta": {"profile": [f"{US_CORE}/us-core-patient"]},
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{given} {family}</div>'},
        "extension": [
            {"url": f"{US_CORE}/us-core-race", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
                {"url": "text", "valueString": "White"}]},
            {"url": f"{US_CORE}/us-core-ethnicity", "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2186-5",
                                                       "display": "Not Hispanic or Latino"}},
                {"url": "text", "valueString": "Not Hispanic or Latino"}]},
            {"url": f"{US_CORE}/us-core-birthsex", "valueCode": "F" if gender == "female" else "M"},
            {"url": "http://synthetichealth.github.io/synthea/disability-adjusted-life-years",
             "valueDecimal": round(rng.random() * 2, 6)},
        ],
        "identifier": [
            {"system": SYNTHEA_ORG, "value": mrn},
            {"type": _concept(ID_TYPE, "MR", "Medical Record Number"), "system": "http://hospital.smarthealthit.org", "value": mrn},
            {"type": _concept(ID_TYPE, "SS", "Social Security Number"), "system": "http://hl7.org/fhir/sid/us-ssn",
             "value": f"999-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"},
            {"type": _concept(ID_TYPE, "DL", "Driver's license number"), "system": "urn:oid:2.16.840.1.113883.4.3.25",
             "value": f"S999{rng.randrange(10000, 99999)}"},
        ],
        "name": [{"use": "official", "family": f"{family}{index % 1000}", "given": [f"{given}{rng.randrange(100, 999)}"],
                  "prefix": ["Ms." if gender == "female" else "Mr."]}],
        "telecom": [{"system": "phone", "value": f"555-01{rng.randrange(10, 99)}", "use": "home"}],
        "gender": gender,
        "birthDate": born.isoformat(),
        "address": [{"line": [f"{rng.randrange(1, 999)} {rng.choice(FAMILY)} Street"], "city": city, "state": "MA",
                     "postalCode": zip_code, "country": "US"}],
        "maritalStatus": _concept("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"),
        "multipleBirthBoolean": False,
        "communication": [{"language": _concept("urn:ietf:bcp:47", "en-US", "English (United States)")}],
    })
    return ref, f"{given} {family}", born


def _encounter(b: _Builder, patient: str, start: datetime, npi: str, org: str) -> str:
    code, display = b.rng.choice(ENCOUNTER_TYPES)
    return b.add({
        "resourceType": "Encounter", "meta": {"profile": [f"{US_CORE}/us-core-encounter"]},
        "identifier": [{"use": "official", "system": SYNTHEA_ORG, "value": b.uid()}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [_concept(SNOMED, code, display)],
        "subject": {"reference": patient},
        "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|{npi}", "display": "Dr. Synthetic"}}],
        "period": {"start": _when(start), "end": _when(start + timedelta(minutes=30))},
        "serviceProvider": {"reference": f"Organization?identifier={SYNTHEA_ORG}|{org}", "display": "GOOD HEALTH CLINIC"},
    })


def _observation(b: _Builder, patient: str, encounter: str, at: datetime, row: tuple[str, str, str, int, int],
                 category: str) -> str:
    code, display, unit, low, high = row
    value = round(low + (high - low) * b.rng.random(), 1)
    return b.add({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": _concept(LOINC, code, display), "subject": {"reference": patient}, "encounter": {"reference": encounter},
        "effectiveDateTime": _when(at), "issued": _when(at),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    })


def _visit(b: _Builder, patient: str, name: str, at: datetime, npi: str, org: str, first: bool) -> None:
    rng = b.rng
    enc = _encounter(b, patient, at, npi, org)
    for row in VITALS:
        _observation(b, patient, enc, at, row, "vital-signs")
    labs = [_observation(b, patient, enc, at, row, "laboratory") for row in rng.sample(LABS, 2)]
    b.add({"resourceType": "DiagnosticReport", "status": "final",
           "category": [_concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")],
           "code": _concept(LOINC, "51990-0", "Basic metabolic panel - Blood"), "subject": {"reference": patient},
           "encounter": {"reference": enc}, "effectiveDateTime": _when(at), "issued": _when(at),
           "result": [{"reference": r} for r in labs]})
    condition = None
    if first or rng.random() < 0.4:
        code, display = rng.choice(CONDITIONS)
        condition = b.add({
            "resourceType": "Condition",
            "clinicalStatus": _concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
            "verificationStatus": _concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
            "category": [_concept("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")],
            "code": _concept(SNOMED, code, display), "subject": {"reference": patient}, "encounter": {"reference": enc},
            "onsetDateTime": _when(at), "recordedDate": _when(at)})
    code, display = rng.choice(MEDICATIONS)
    b.add({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
           "medicationCodeableConcept": _concept(RXNORM, code, display), "subject": {"reference": patient},
           "encounter": {"reference": enc}, "authoredOn": _when(at),
           "requester": {"reference": f"Practitioner?identifier={NPI}|{npi}", "display": "Dr. Synthetic"},
           **({"reasonReference": [{"reference": condition}]} if condition else {})})
    code, display = rng.choice(VACCINES)
    b.add({"resourceType": "Immunization", "status": "completed", "vaccineCode": _concept(CVX, code, display),
           "patient": {"reference": patient}, "encounter": {"reference": enc}, "occurrenceDateTime": _when(at),
           "primarySource": True})
    code, display = rng.choice(PROCEDURES)
    b.add({"resourceType": "Procedure", "status": "completed", "code": _concept(SNOMED, code, display),
           "subject": {"reference": patient}, "encounter": {"reference": enc},
           "performedPeriod": {"start": _when(at), "end": _when(at + timedelta(minutes=15))}})
    note = f"{at.date().isoformat()}\n\n# Chief Complaint\nNo complaints.\n\n# History of Present Illness\n{name} is a patient."
    b.add({"resourceType": "DocumentReference", "status": "current",
           "type": _concept(LOINC, "34117-2", "History and physical note"),
           "category": [_concept("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note")],
           "subject": {"reference": patient}, "date": _when(at),
           "author": [{"reference": f"Practitioner?identifier={NPI}|{npi}", "display": "Dr. Synthetic"}],
           "custodian": {"reference": f"Organization?identifier={SYNTHEA_ORG}|{org}", "display": "GOOD HEALTH CLINIC"},
           "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                       "data": base64.b64encode(note.encode()).decode()}}],
           "context": {"encounter": [{"reference": enc}],
                       "period": {"start": _when(at), "end": _when(at + timedelta(minutes=30))}}})
    claim = b.add({"resourceType": "Claim", "status": "active",
                   "type": _concept("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "professional"),
                   "use": "claim", "patient": {"reference": patient},
                   "billablePeriod": {"start": _when(at), "end": _when(at + timedelta(minutes=30))}, "created": _when(at),
                   "provider": {"reference": f"Organization?identifier={SYNTHEA_ORG}|{org}"},
                   "priority": _concept("http://terminology.hl7.org/CodeSystem/processpriority", "normal", "normal"),
                   "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicaid"}}],
                   "item": [{"sequence": 1, "productOrService": _concept(SNOMED, "185349003", "Encounter for check up"),
                             "encounter": [{"reference": enc}]}],
                   "total": {"value": 129.16, "currency": "USD"}})
    b.add({"resourceType": "ExplanationOfBenefit", "status": "active",
           "type": _concept("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "professional"),
           "use": "claim", "patient": {"reference": patient}, "created": _when(at),
           "insurer": {"display": "Medicaid"}, "provider": {"reference": f"Practitioner?identifier={NPI}|{npi}"},
           "claim": {"reference": claim}, "outcome": "complete",
           "insurance": [{"focal": True, "coverage": {"display": "Medicaid"}}]})


def generate_patient(rng: random.Random, index: int, *, visits: int = 3) -> GeneratedPatient:
    """One patient's bundle: the Patient, an allergy, `visits` encounters with their records,
    a CareTeam, a CarePlan and the bundle's Provenance."""
    b = _Builder(rng)
    patient, name, born = _patient(b, index)
    npi, org = f"99999{rng.randrange(10000, 99999)}", b.uid()
    code, display = rng.choice(ALLERGIES)
    b.add({"resourceType": "AllergyIntolerance",
           "clinicalStatus": _concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
           "verificationStatus": _concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
           "type": "allergy", "category": ["environment"], "criticality": "low", "code": _concept(SNOMED, code, display),
           "patient": {"reference": patient}, "recordedDate": _when(AS_OF - timedelta(days=rng.randrange(400, 4000)))})
    start = AS_OF - timedelta(days=365 * visits)
    for v in range(visits):
        at = start + timedelta(days=365 * v + rng.randrange(0, 300), hours=rng.randrange(8, 17))
        _visit(b, patient, name, at, npi, org, first=v == 0)
    b.add({"resourceType": "CareTeam", "status": "active", "subject": {"reference": patient},
           "participant": [{"member": {"reference": f"Practitioner?identifier={NPI}|{npi}"}}]})
    b.add({"resourceType": "CarePlan", "status": "active", "intent": "order", "subject": {"reference": patient},
           "category": [_concept(SNOMED, "736271009", "Outpatient care plan")]})
    b.add({"resourceType": "Provenance", "target": [{"reference": e["fullUrl"]} for e in b.entries],
           "recorded": _when(AS_OF),
           "agent": [{"type": _concept("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"),
                      "who": {"reference": f"Practitioner?identifier={NPI}|{npi}"}}]})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": b.entries}
    return GeneratedPatient(name=name, bundle=bundle)


def generate(patients: int, seed: int, *, visits: int = 3) -> list[GeneratedPatient]:
    """`patients` bundles from one seed (the same seed gives the same bundles)."""
    rng = random.Random(seed)
    return [generate_patient(rng, i, visits=visits) for i in range(patients)]


def bundle_bytes(patient: GeneratedPatient) -> bytes:
    return json.dumps(patient.bundle, separators=(",", ":")).encode()
