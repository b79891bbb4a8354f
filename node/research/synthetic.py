"""Synthetic FHIR R4 data for tests and demos: patients full of what de-identification removes.

`generate` makes people, each the patient of one institution and sometimes of a second one
(same person, another medical record number and other local ids), with records that carry every
kind of identifier Safe Harbor names: names, street addresses, cities and 5-digit ZIP codes (each
institution serves a region, including some of the restricted three-digit prefixes), phone
numbers, e-mail addresses, medical record numbers, SSN-like numbers, photo URLs, full birth dates
(some patients over 89), timestamps, narrative text and notes that repeat the patient's name,
references with display names, a device serial number. The clinical content is plausible: vital
signs and labs with LOINC codes and UCUM units, conditions with SNOMED CT codes, prescriptions
with RxNorm codes, procedures, lab reports.

Everything comes from one ``random.Random(seed)`` and a fixed "as of" date, so a seed always
gives the same data. SSNs start with 9 and phone numbers are 555-01xx: neither is ever real.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

AS_OF = date(2024, 6, 30)
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

GIVEN_FEMALE = ("Amara", "Sofia", "Priya", "Ingrid", "Aisha", "Elena", "Chloe", "Zara", "Beatriz", "Mei", "Fatima",
                "Olga", "Nadia", "Yuki", "Carmen", "Leila", "Hannah", "Grace", "Maeve", "Thandiwe")
GIVEN_MALE = ("Mateo", "Liam", "Kenji", "Olusegun", "Tomasz", "Diego", "Hiroshi", "Rafael", "Nikolai", "Samuel",
              "Arjun", "Kwame", "Lars", "Omar", "Finn", "Yusuf", "Pedro", "Dmitri", "Jamal", "Henrik")
FAMILY = ("Garcia", "Nguyen", "Okafor", "Kowalski", "Johansson", "Patel", "Rossi", "Yamamoto", "Schmidt",
          "Fitzgerald", "Delgado", "Haddad", "Ivanova", "Mensah", "O'Brien", "Novak", "Larsen", "Moreau", "Kaur",
          "Abernathy", "Lindqvist", "Papadopoulos", "Castillo", "Osei", "Takahashi", "Wojcik", "Brennan", "Eriksen")
CLINICIANS = ("Helena Marsh", "Victor Whitaker", "Ruth Adeyemi", "Anton Villanueva", "Marisol Kerrigan",
              "Declan Bjornsson")
STREETS = ("Maple Street", "Oak Avenue", "Elm Road", "Birch Lane", "Cedar Court", "Willow Way", "Juniper Drive",
           "Aspen Place", "Chestnut Terrace", "Sycamore Boulevard")


@dataclass(frozen=True, slots=True)
class _Place:
    zip: str
    city: str
    state: str
    weight: int


@dataclass(frozen=True, slots=True)
class _Region:
    name: str
    area_codes: tuple[str, ...]
    utc_offset: str
    places: tuple[_Place, ...]


# Each institution serves a region; most of its patients live in a few common ZIP codes, some in
# low-population three-digit prefixes that Safe Harbor turns into "000".
REGIONS = (
    _Region("Massachusetts General", ("617", "508", "781"), "-05:00", (
        _Place("02139", "Cambridge", "MA", 30), _Place("02115", "Boston", "MA", 30), _Place("02144", "Somerville", "MA", 15),
        _Place("01605", "Worcester", "MA", 15), _Place("06390", "Fishers Island", "NY", 5))),
    _Region("Granite State Health", ("603", "802"), "-05:00", (
        _Place("03301", "Concord", "NH", 30), _Place("03101", "Manchester", "NH", 30), _Place("05401", "Burlington", "VT", 20),
        _Place("03601", "Acworth", "NH", 10), _Place("05901", "Averill", "VT", 10))),
    _Region("High Plains Medical", ("307", "775"), "-07:00", (
        _Place("82001", "Cheyenne", "WY", 35), _Place("89101", "Las Vegas", "NV", 25), _Place("83001", "Jackson", "WY", 10),
        _Place("82301", "Rawlins", "WY", 10), _Place("89301", "Ely", "NV", 10),
        _Place("87901", "Truth or Consequences", "NM", 5), _Place("88401", "Tucumcari", "NM", 5))),
)

# (code, display, unit, low, high, decimals, normal low, normal high)
LABS = (
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 210, 0, 70, 99),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.6, 9.8, 1, 4.0, 5.6),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 130, 290, 0, 0, 199),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 1.8, 2, 0.6, 1.3),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 10.5, 17.5, 1, 12.0, 17.0),
)

# (SNOMED code, display, chronic, prescription (RxNorm code, display) or None)
CONDITIONS = (
    ("44054006", "Diabetes mellitus type 2 (disorder)", True,
     ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet")),
    ("38341003", "Hypertensive disorder, systemic arterial (disorder)", True, ("314076", "lisinopril 10 MG Oral Tablet")),
    ("55822004", "Hyperlipidemia (disorder)", True, ("312961", "simvastatin 20 MG Oral Tablet")),
    ("195967001", "Asthma (disorder)", True, ("745679", "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler")),
    ("49436004", "Atrial fibrillation (disorder)", True, ("855332", "Warfarin Sodium 5 MG Oral Tablet")),
    ("35489007", "Depressive disorder (disorder)", True, None),
    ("239873007", "Osteoarthritis of knee (disorder)", True, ("310965", "Ibuprofen 200 MG Oral Tablet")),
    ("444814009", "Viral sinusitis (disorder)", False, None),
    ("10509002", "Acute bronchitis (disorder)", False, None),
)

PROCEDURES = (
    ("73761001", "Colonoscopy (procedure)"),
    ("430193006", "Medication reconciliation (procedure)"),
    ("171207006", "Depression screening (procedure)"),
)

ENCOUNTER_KINDS = (
    ("AMB", "ambulatory", "185349003", "Encounter for check up (procedure)", 70),
    ("AMB", "ambulatory", "185345009", "Encounter for symptom (procedure)", 15),
    ("EMER", "emergency", "50849002", "Emergency room admission (procedure)", 10),
    ("IMP", "inpatient encounter", "32485007", "Hospital admission (procedure)", 5),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyntheticData:
    """Resources per institution (0-based index) and where each person is a patient."""

    institutions: dict[int, list[dict[str, Any]]]
    # person key -> {institution index: local Patient id}
    persons: dict[str, dict[int, str]]
    as_of: date = AS_OF

    def resources(self) -> list[dict[str, Any]]:
        """Every resource of every institution."""
        return [r for index in sorted(self.institutions) for r in self.institutions[index]]


@dataclass(slots=True)
class _Person:
    key: str
    given: list[str]
    family: str
    gender: str
    birth: date
    died: datetime | None
    line: list[str]
    place: _Place
    old_place: _Place | None
    phone: str
    email: str
    ssn: str
    kin: tuple[str, str, str]  # given, family, phone
    institutions: list[int] = field(default_factory=list)


class _Builder:
    """Makes the resources of one person at one institution."""

    def __init__(self, rng: random.Random, person: _Person, institution: int, as_of: date) -> None:
        self.rng = rng
        self.person = person
        self.institution = institution
        self.region = REGIONS[institution % len(REGIONS)]
        self.as_of = as_of
        self.host = f"hospital{institution + 1}.example.org"
        self.patient_id = self.new_id()
        self.out: list[dict[str, Any]] = []

    # -- helpers --
    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def name(self) -> str:
        return f"{' '.join(self.person.given)} {self.person.family}"

    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.patient_id}", "display": self.name()}

    def clinician(self) -> dict[str, str]:
        return {"reference": f"Practitioner/{self.new_id()}", "display": f"Dr. {self.rng.choice(CLINICIANS)}"}

    def stamp(self, when: datetime) -> str:
        return when.strftime("%Y-%m-%dT%H:%M:%S") + self.region.utc_offset

    def identifier(self, kind: str) -> dict[str, str]:
        return {"system": f"https://{self.host}/fhir/{kind}", "value": f"{kind.upper()}-{self.rng.randrange(10**7, 10**8)}"}

    def moment_between(self, start: date, end: date) -> datetime:
        days = max((end - start).days, 0)
        day = start + timedelta(days=self.rng.randrange(days + 1))
        return datetime(day.year, day.month, day.day, self.rng.randrange(7, 19), self.rng.randrange(60),
                        self.rng.randrange(60))

    # -- resources --
    def patient(self, mrn: str) -> dict[str, Any]:
        p = self.person
        address: list[dict[str, Any]] = [{
            "use": "home", "type": "both", "line": p.line, "city": p.place.city, "district": f"{p.place.city} County",
            "state": p.place.state, "postalCode": p.place.zip, "country": "US",
        }]
        if p.old_place is not None:
            address.append({"use": "old", "line": [f"{self.rng.randrange(1, 999)} {self.rng.choice(STREETS)}"],
                            "city": p.old_place.city, "state": p.old_place.state, "postalCode": p.old_place.zip,
                            "country": "US", "period": {"start": "2009-04-01", "end": "2016-08-31"}})
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "id": self.patient_id,
            "meta": {"versionId": "3", "lastUpdated": self.stamp(self.moment_between(self.as_of - timedelta(days=90), self.as_of)),
                     "source": f"https://{self.host}/fhir",
                     "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
            "text": {"status": "generated",
                     "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{self.name()}, MRN {mrn}, born '
                            f"{p.birth.isoformat()}, {p.line[0]}, {p.place.city} {p.place.state} {p.place.zip}</div>"},
            "extension": [{
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                "valueCode": "F" if p.gender == "female" else "M" if p.gender == "male" else "UNK",
            }],
            "identifier": [
                {"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                                          "text": "Medical Record Number"},
                 "system": f"https://{self.host}/fhir/mrn", "value": mrn},
                {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
                 "system": SSN_SYSTEM, "value": p.ssn},
            ],
            "active": True,
            "name": [{"use": "official", "family": p.family, "given": p.given, "text": self.name()}],
            "telecom": [{"system": "phone", "value": p.phone, "use": "home"},
                        {"system": "email", "value": p.email}],
            "gender": p.gender,
            "birthDate": p.birth.isoformat(),
            "address": address,
            "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                          "code": self.rng.choice("MSWD")}]},
            "multipleBirthBoolean": False,
            "photo": [{"contentType": "image/jpeg", "url": f"https://{self.host}/photos/{mrn}.jpg"}],
            "contact": [{
                "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
                "name": {"family": p.kin[1], "given": [p.kin[0]]},
                "telecom": [{"system": "phone", "value": p.kin[2]}],
            }],
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}], "text": "English"}}],
            "generalPractitioner": [self.clinician()],
            "managingOrganization": {"reference": f"Organization/{self.new_id()}", "display": self.region.name},
        }
        if p.died is not None:
            resource["deceasedDateTime"] = self.stamp(p.died)
        return resource

    def encounter(self, kind: tuple[str, str, str, str, int], start: datetime) -> dict[str, Any]:
        klass, klass_display, code, display, _ = kind
        hours = self.rng.randrange(48, 120) if klass == "IMP" else self.rng.randrange(1, 4)
        encounter: dict[str, Any] = {
            "resourceType": "Encounter", "id": self.new_id(),
            "identifier": [self.identifier("visit")],
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass, "display": klass_display},
            "type": [{"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display}],
            "subject": self.subject(),
            "participant": [{"individual": self.clinician()}],
            "period": {"start": self.stamp(start), "end": self.stamp(start + timedelta(hours=hours))},
            "reasonCode": [{"text": f"{self.person.given[0]} called about feeling unwell"}],
            "serviceProvider": {"reference": f"Organization/{self.new_id()}", "display": self.region.name},
            "location": [{"location": {"reference": f"Location/{self.new_id()}", "display": f"{self.region.name}, ward 4"}}],
        }
        if klass == "IMP":
            encounter["hospitalization"] = {
                "preAdmissionIdentifier": self.identifier("preadmit"),
                "admitSource": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/admit-source", "code": "emd"}]},
                "dischargeDisposition": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                                                     "code": "home"}]},
            }
        return encounter

    def observation(self, encounter: dict[str, Any], when: datetime, code: str, display: str, category: str,
                    **value: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation", "id": self.new_id(),
            "meta": {"lastUpdated": self.stamp(when + timedelta(hours=2))},
            "identifier": [self.identifier("obs")],
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": self.subject(),
            "encounter": {"reference": f"Encounter/{encounter['id']}"},
            "effectiveDateTime": self.stamp(when),
            "issued": self.stamp(when + timedelta(minutes=self.rng.randrange(5, 600))),
            "performer": [self.clinician()],
            **value,
        }

    def quantity(self, value: float, unit: str, code: str | None = None) -> dict[str, Any]:
        return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}

    def vitals(self, encounter: dict[str, Any], when: datetime, age: int) -> list[dict[str, Any]]:
        rng = self.rng
        height = round(rng.uniform(150, 190) if age >= 18 else rng.uniform(60, 170), 1)
        weight = round(rng.uniform(50, 110) if age >= 18 else rng.uniform(6, 65), 1)
        out = [
            self.observation(encounter, when, "8302-2", "Body height", "vital-signs", valueQuantity=self.quantity(height, "cm")),
            self.observation(encounter, when, "29463-7", "Body weight", "vital-signs", valueQuantity=self.quantity(weight, "kg")),
            self.observation(encounter, when, "39156-5", "Body mass index (BMI) [Ratio]", "vital-signs",
                             valueQuantity=self.quantity(round(weight / (height / 100) ** 2, 1), "kg/m2")),
            self.observation(encounter, when, "8867-4", "Heart rate", "vital-signs",
                             valueQuantity=self.quantity(rng.randrange(55, 105), "beats/minute", "/min")),
        ]
        bp = self.observation(encounter, when, "85354-9", "Blood pressure panel with all children optional", "vital-signs",
                              component=[
                                  {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                                   "valueQuantity": self.quantity(rng.randrange(100, 165), "mmHg", "mm[Hg]")},
                                  {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                                   "valueQuantity": self.quantity(rng.randrange(60, 100), "mmHg", "mm[Hg]")},
                              ])
        bp["device"] = {"display": f"Omron HEM-7120 serial {rng.randrange(10**6, 10**7)}"}
        bp["note"] = [{"text": f"Taken twice; {self.name()} was anxious at first. Call {self.person.phone} with results."}]
        out.append(bp)
        return out

    def labs(self, encounter: dict[str, Any], when: datetime) -> list[dict[str, Any]]:
        observations = []
        for code, display, unit, low, high, decimals, normal_low, normal_high in self.rng.sample(LABS, self.rng.randrange(2, 5)):
            value = round(self.rng.uniform(low, high), decimals)
            flag = "H" if value > normal_high else "L" if value < normal_low else "N"
            observations.append(self.observation(
                encounter, when, code, display, "laboratory", valueQuantity=self.quantity(value, unit),
                interpretation=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                             "code": flag}]}],
                referenceRange=[{"low": self.quantity(normal_low, unit), "high": self.quantity(normal_high, unit),
                                 "text": f"{normal_low}-{normal_high} {unit}"}],
            ))
        report = {
            "resourceType": "DiagnosticReport", "id": self.new_id(),
            "identifier": [self.identifier("accession")],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB",
                                      "display": "Laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": "51990-0", "display": "Basic metabolic panel - Blood"}]},
            "subject": self.subject(),
            "encounter": {"reference": f"Encounter/{encounter['id']}"},
            "effectiveDateTime": self.stamp(when),
            "issued": self.stamp(when + timedelta(hours=6)),
            "performer": [self.clinician()],
            "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
            "conclusion": f"Results reviewed with {self.name()} ({self.person.email}).",
        }
        return [*observations, report]

    def condition(self, spec: tuple[str, str, bool, Any], onset: datetime, encounter: dict[str, Any]) -> dict[str, Any]:
        code, display, chronic, _ = spec
        resolved = not chronic
        condition: dict[str, Any] = {
            "resourceType": "Condition", "id": self.new_id(),
            "identifier": [self.identifier("problem")],
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "resolved" if resolved else "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "problem-list-item" if chronic else "encounter-diagnosis"}]}],
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}],
                     "text": f"{display.split(' (')[0]}, per {self.name()}'s account"},
            "subject": self.subject(),
            "encounter": {"reference": f"Encounter/{encounter['id']}"},
            "onsetDateTime": self.stamp(onset),
            "recordedDate": self.stamp(onset + timedelta(days=self.rng.randrange(0, 30))),
            "recorder": self.clinician(),
            "note": [{"text": f"{self.person.given[0]} {self.person.family} lives at {self.person.line[0]}."}],
        }
        if resolved:
            condition["abatementDateTime"] = self.stamp(onset + timedelta(days=self.rng.randrange(7, 40)))
        return condition

    def prescription(self, rx: tuple[str, str], condition: dict[str, Any], when: datetime) -> dict[str, Any]:
        return {
            "resourceType": "MedicationRequest", "id": self.new_id(),
            "identifier": [self.identifier("rx")],
            "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rx[0], "display": rx[1]}], "text": rx[1]},
            "subject": self.subject(),
            "encounter": condition["encounter"],
            "authoredOn": self.stamp(when),
            "requester": self.clinician(),
            "reasonReference": [{"reference": f"Condition/{condition['id']}"}],
            "note": [{"text": f"Pharmacy to call {self.person.phone} when ready."}],
            "dosageInstruction": [{
                "sequence": 1,
                "text": "Take one daily",
                "patientInstruction": f"{self.person.given[0]}, take it with breakfast",
                "timing": {"event": [self.stamp(when)], "repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
            }],
            "dispenseRequest": {"validityPeriod": {"start": when.date().isoformat(),
                                                   "end": (when.date() + timedelta(days=365)).isoformat()},
                                "numberOfRepeatsAllowed": 3},
        }

    def procedure(self, encounter: dict[str, Any], when: datetime) -> dict[str, Any]:
        code, display = self.rng.choice(PROCEDURES)
        return {
            "resourceType": "Procedure", "id": self.new_id(),
            "identifier": [self.identifier("proc")],
            "status": "completed",
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
            "subject": self.subject(),
            "encounter": {"reference": f"Encounter/{encounter['id']}"},
            "performedPeriod": {"start": self.stamp(when), "end": self.stamp(when + timedelta(minutes=40))},
            "performer": [{"actor": self.clinician()}],
            "location": {"reference": f"Location/{self.new_id()}", "display": f"{self.region.name} day unit"},
            "note": [{"text": f"Consent signed by {self.name()}."}],
        }

    def build(self) -> list[dict[str, Any]]:
        rng, p = self.rng, self.person
        mrn = f"MRN{rng.randrange(10**7, 10**8)}"
        self.out.append(self.patient(mrn))
        last = p.died.date() if p.died is not None else self.as_of
        first = max(p.birth, last - timedelta(days=6 * 365))
        visits = sorted(self.moment_between(first, last) for _ in range(rng.randrange(1, 4)))
        encounters = [self.encounter(rng.choices(ENCOUNTER_KINDS, weights=[k[4] for k in ENCOUNTER_KINDS])[0], when)
                      for when in visits]
        self.out.extend(encounters)
        for encounter, when in zip(encounters, visits):
            age = (when.date() - p.birth).days // 365
            self.out.extend(self.vitals(encounter, when, age))
            if age >= 18 and rng.random() < 0.6:
                self.out.extend(self.labs(encounter, when + timedelta(minutes=30)))
            if rng.random() < 0.3:
                self.out.append(self.procedure(encounter, when + timedelta(minutes=45)))
        for spec in rng.sample(CONDITIONS, rng.randrange(0, 4)):
            # Chronic conditions may have started long ago (for the oldest patients, more than 90
            # years back); acute ones start at a visit.
            onset = self.moment_between(p.birth, visits[0].date()) if spec[2] else visits[-1]
            condition = self.condition(spec, onset, encounters[0] if spec[2] else encounters[-1])
            self.out.append(condition)
            if spec[3] is not None:
                self.out.append(self.prescription(spec[3], condition, visits[0]))
        return self.out


def _person(rng: random.Random, index: int, institutions: int, as_of: date) -> _Person:
    gender = rng.choices(("female", "male", "other", "unknown"), weights=(49, 49, 1, 1))[0]
    names = GIVEN_FEMALE if gender == "female" else GIVEN_MALE if gender == "male" else GIVEN_FEMALE + GIVEN_MALE
    given = rng.sample(names, 2 if rng.random() < 0.3 else 1)
    family = rng.choice(FAMILY)
    low, high = rng.choices(((0, 17), (18, 39), (40, 64), (65, 89), (90, 104)), weights=(12, 25, 30, 23, 10))[0]
    age = rng.randint(low, high)
    birth = as_of - timedelta(days=age * 365 + rng.randrange(365))
    died = None
    if rng.random() < (0.25 if age >= 80 else 0.03):
        died = datetime.combine(as_of - timedelta(days=rng.randrange(30, 3 * 365)), datetime.min.time()) + timedelta(
            hours=rng.randrange(24), minutes=rng.randrange(60))
    home = rng.randrange(institutions)
    region = REGIONS[home % len(REGIONS)]
    place = rng.choices(region.places, weights=[pl.weight for pl in region.places])[0]
    other_places = [pl for r in REGIONS for pl in r.places if pl.zip != place.zip]
    line = [f"{rng.randrange(1, 9999)} {rng.choice(STREETS)}"] + ([f"Apt {rng.randrange(1, 40)}{rng.choice('ABCD')}"]
                                                               if rng.random() < 0.3 else [])
    area = rng.choice(region.area_codes)
    person = _Person(
        key=f"person-{index + 1:04d}", given=given, family=family, gender=gender, birth=birth, died=died, line=line,
        place=place, old_place=rng.choice(other_places) if rng.random() < 0.2 else None,
        phone=f"({area}) 555-01{rng.randrange(100):02d}",
        email=f"{given[0].lower()}.{family.lower().replace(chr(39), '')}{rng.randrange(10, 99)}@example.com",
        ssn=f"9{rng.randrange(10, 99)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}",
        kin=(rng.choice(GIVEN_FEMALE + GIVEN_MALE), family, f"({area}) 555-01{rng.randrange(100):02d}"),
        institutions=[home],
    )
    if institutions > 1 and rng.random() < 0.15:
        person.institutions.append(rng.choice([i for i in range(institutions) if i != home]))
    return person


def generate(patients: int, seed: int, institutions: int = 3, *, as_of: date = AS_OF) -> SyntheticData:
    """Synthetic FHIR R4 records of ``patients`` people over ``institutions`` institutions."""
    if patients < 0 or institutions < 1:
        raise ValueError("patients must be >= 0 and institutions >= 1")
    rng = random.Random(seed)
    by_institution: dict[int, list[dict[str, Any]]] = {i: [] for i in range(institutions)}
    persons: dict[str, dict[int, str]] = {}
    for index in range(patients):
        person = _person(rng, index, institutions, as_of)
        persons[person.key] = {}
        for institution in person.institutions:
            builder = _Builder(rng, person, institution, as_of)
            by_institution[institution].extend(builder.build())
            persons[person.key][institution] = builder.patient_id
    return SyntheticData(institutions=by_institution, persons=persons, as_of=as_of)


def institution_name(index: int) -> str:
    """The directory name of an institution in a demo folder: institution-<n> is the devnet's
    node<n> (whose genesis names it institution-<n>), so `demo-data --load` puts it there."""
    return f"institution-{index}"


def write_demo(directory: Path, patients: int, seed: int, institutions: int = 3) -> list[Path]:
    """Write synthetic data to a new or empty directory; return the files written.

    Layout: ``institution-<n>/<ResourceType>-<id>.json`` (one resource per file) for each
    institution, and ``persons.json`` mapping each person key to ``{"institution-<n>": <local
    Patient id>}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty")
    data = generate(patients, seed, institutions)
    written = []
    for index, resources in sorted(data.institutions.items()):
        folder = directory / institution_name(index)
        folder.mkdir()
        for resource in resources:
            path = folder / f"{resource['resourceType']}-{resource['id']}.json"
            path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(path)
    persons = {key: {institution_name(i): pid for i, pid in sorted(places.items())} for key, places in data.persons.items()}
    index_path = directory / "persons.json"
    index_path.write_text(json.dumps(persons, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(index_path)
    return written
