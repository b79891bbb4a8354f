"""Each Safe Harbor rule on hand-made resources, and the pseudonyms that keep references linked."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.research.pseudonyms import ExistingPseudonyms, KeyedPseudonyms, derive_study_key
from node.research.deid_rules import AGE_GROUP_EXTENSION, RESTRICTED_ZIP3, ResourceWithheld, zip3_of
from node.research.safe_harbor import TYPE_RULES, Deidentifier, deidentify
from tests.unit.research.support import assert_valid_r4, strings_in, text_of

KEY = b"study-one-key-0123456789abcdef!!"
OTHER_KEY = b"study-two-key-0123456789abcdef!!"
YEAR = 2024
LOINC = "http://loinc.org"


def deid(resource: dict[str, Any], *, key: bytes = KEY, **kwargs: Any) -> dict[str, Any]:
    out = deidentify(resource, study_key=key, reference_date_year=YEAR, **kwargs)
    assert_valid_r4(out)
    return out


def patient(**extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Patient", "id": "pat-1",
        "meta": {"versionId": "7", "lastUpdated": "2024-02-03T04:05:06Z", "source": "https://ehr.example.org",
                 "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
                 "tag": [{"system": "urn:tags", "code": "vip-Whitmore"}]},
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Eleanor Whitmore</div>'},
        "identifier": [{"system": "https://ehr.example.org/mrn", "value": "MRN77012345"},
                       {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "987-65-4321"}],
        "active": True,
        "name": [{"family": "Whitmore", "given": ["Eleanor", "Ruth"], "text": "Eleanor Ruth Whitmore"}],
        "telecom": [{"system": "phone", "value": "(617) 555-0187"}, {"system": "email", "value": "eleanor@example.com"},
                    {"system": "url", "value": "https://eleanor.example.net"}],
        "gender": "female",
        "birthDate": "1961-07-14",
        "address": [{"use": "home", "line": ["44 Quarry Hill Road", "Apt 2"], "city": "Cambridge",
                     "district": "Middlesex", "state": "MA", "postalCode": "02139-4307", "country": "US",
                     "period": {"start": "2015-03-01"}}],
        "maritalStatus": {"text": "married to Harold Whitmore"},
        "photo": [{"url": "https://ehr.example.org/photo/77012345.jpg"}],
        "contact": [{"name": {"text": "Harold Whitmore"}, "telecom": [{"system": "phone", "value": "(617) 555-0111"}]}],
        "communication": [{"language": {"text": "English"}}],
        "generalPractitioner": [{"reference": "Practitioner/dr-9", "display": "Dr. Ada Quill"}],
        "managingOrganization": {"reference": "Organization/org-1", "display": "Quarry Hill Clinic"},
        "link": [{"other": {"reference": "Patient/pat-2"}, "type": "seealso"}],
        "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                       "extension": [{"url": "text", "valueString": "Eleanor's stated race"}]}],
        "multipleBirthInteger": 2,
    }
    resource.update(extra)
    return resource


def observation(**extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Observation", "id": "obs-1",
        "identifier": [{"value": "ACC-556677"}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}], "text": "HR per Eleanor"},
        "subject": {"reference": "Patient/pat-1", "display": "Eleanor Whitmore"},
        "encounter": {"reference": "Encounter/enc-1"},
        "effectiveDateTime": "2023-11-05T08:30:00-05:00",
        "issued": "2023-11-05T09:00:00-05:00",
        "performer": [{"reference": "Practitioner/dr-9", "display": "Dr. Ada Quill"}],
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "N"}], "text": "normal for Eleanor"}],
        "note": [{"authorString": "Nurse Bell", "text": "Eleanor Whitmore was calm"}],
        "device": {"reference": "Device/dev-1", "display": "Monitor serial SN-4471"},
        "specimen": {"reference": "Specimen/sp-1"},
        "referenceRange": [{"low": {"value": 60, "unit": "/min"}, "high": {"value": 100, "unit": "/min"},
                            "text": "60-100, per Dr. Quill"}],
    }
    resource.update(extra)
    return resource


NAMES_AND_CONTACTS = ["Eleanor", "Whitmore", "Ruth", "Harold", "Quill", "Bell", "Quarry Hill", "Cambridge", "Middlesex",
                      "555-0187", "555-0111", "eleanor@example.com", "eleanor.example.net", "MRN77012345",
                      "987-65-4321", "ACC-556677", "SN-4471", "photo/", "ehr.example.org", "pat-1", "obs-1", "enc-1"]


def assert_none_of(needles: list[str], resource: dict[str, Any]) -> None:
    text = text_of(resource)
    leaked = [needle for needle in needles if needle in text]
    assert not leaked, f"leaked {leaked}: {text}"


# --- identifiers, names, contacts, narrative ------------------------------------------------------


def test_patient_keeps_only_allowed_demographics():
    out = deid(patient())
    assert_none_of(NAMES_AND_CONTACTS, out)
    assert set(out) == {"resourceType", "id", "gender", "birthDate", "address"}
    assert out["gender"] == "female" and out["birthDate"] == "1961"
    assert out["address"] == [{"state": "MA", "postalCode": "021", "country": "US"}]


def test_observation_loses_identifiers_free_text_and_people():
    out = deid(observation())
    assert_none_of(NAMES_AND_CONTACTS, out)
    for element in ("identifier", "issued", "performer", "note", "device", "specimen", "text", "meta"):
        assert element not in out
    assert "text" not in out["code"] and "text" not in out["interpretation"][0]
    assert "text" not in out["referenceRange"][0]
    assert out["valueQuantity"] == {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org",
                                    "code": "/min"}


@pytest.mark.parametrize("free_text", [
    {"valueString": "Eleanor says hi"},
    {"dataAbsentReason": {"text": "Eleanor refused"}},
    {"component": [{"code": {"text": "Eleanor's own code"}, "valueString": "x"}]},
])
def test_free_text_values_are_dropped(free_text):
    source = observation(**free_text)
    source.pop("valueQuantity", None)
    out = deid(source)
    assert "Eleanor" not in text_of(out)
    assert not {"valueString", "dataAbsentReason", "component"} & set(out)


def test_coding_display_kept_only_for_standard_terminologies():
    source = observation(code={"coding": [
        {"system": LOINC, "code": "8867-4", "display": "Heart rate"},
        {"system": "urn:oid:1.2.3.4.5", "code": "HR-LOCAL", "display": "HR taken by Eleanor"},
        {"system": "urn:oid:1.2.3.4.5", "display": "no code, only Eleanor's words"},
        {"system": LOINC, "code": "has whitespace Eleanor"},
    ]})
    out = deid(source)
    assert out["code"]["coding"] == [
        {"system": LOINC, "code": "8867-4", "display": "Heart rate"},
        {"system": "urn:oid:1.2.3.4.5", "code": "HR-LOCAL"},
    ]


def test_a_required_element_that_was_only_free_text_withholds_the_resource():
    with pytest.raises(ResourceWithheld, match=r"Observation\.code missing"):
        deidentify(observation(code={"text": "heart rate per Eleanor"}), study_key=KEY, reference_date_year=YEAR)
    with pytest.raises(ResourceWithheld, match=r"Observation\.status missing"):
        deidentify(observation(status="Eleanor"), study_key=KEY, reference_date_year=YEAR)


def test_unknown_elements_extensions_and_primitive_extensions_are_dropped():
    source = observation(futureElement="Eleanor", _effectiveDateTime={"extension": [{"url": "u", "valueString": "Eleanor"}]},
                         extension=[{"url": "http://example.org/x", "valueString": "Eleanor"}], contained=[patient()],
                         language="en", implicitRulesNot="x")
    out = deid(source)
    assert "Eleanor" not in text_of(out)
    assert not {"futureElement", "_effectiveDateTime", "extension", "contained", "language", "implicitRulesNot"} & set(out)


@pytest.mark.parametrize("modifier", [{"modifierExtension": [{"url": "http://example.org/not", "valueBoolean": True}]},
                                      {"implicitRules": "http://example.org/rules"}])
def test_modifiers_withhold_the_resource(modifier):
    with pytest.raises(ResourceWithheld, match="modifier"):
        deidentify(observation(**modifier), study_key=KEY, reference_date_year=YEAR)


def test_a_modifier_extension_in_a_backbone_element_drops_that_element():
    source = observation(component=[
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 120},
         "modifierExtension": [{"url": "http://example.org/refuted", "valueBoolean": True}]},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 80}},
    ])
    out = deid(source)
    assert [c["code"]["coding"][0]["code"] for c in out["component"]] == ["8462-4"]


# --- dates, ages ------------------------------------------------------------------------------------

FULL_DATE = re.compile(r"\d{4}-\d{2}")


def test_dates_are_reduced_to_the_year_everywhere():
    resources = [
        observation(effectiveDateTime=None, effectivePeriod={"start": "2023-01-02T10:00:00Z", "end": "2023-01-03"},
                    valueQuantity=None, valueDateTime="2022-05-06"),
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/pat-1"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
         "onsetDateTime": "2001-02-03T04:05:06+01:00", "abatementPeriod": {"start": "2010-01-01", "end": "2011-12"},
         "recordedDate": "2001-03-04", "evidence": [{"code": [{"coding": [{"code": "x"}]}]}]},
        {"resourceType": "Encounter", "id": "e1", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
         "subject": {"reference": "Patient/pat-1"}, "period": {"start": "2020-12-31T23:00:00-05:00", "end": "2021-01-04"},
         "statusHistory": [{"status": "arrived", "period": {"start": "2020-12-31"}}],
         "length": {"value": 4, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}},
        {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/pat-1"}, "authoredOn": "2022-08-09",
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"}]},
         "dosageInstruction": [{"text": "as told by Eleanor", "timing": {"event": ["2022-08-09T08:00:00Z"],
                                "repeat": {"boundsPeriod": {"start": "2022-08-09"}, "frequency": 1, "period": 1,
                                           "periodUnit": "d"}}}],
         "dispenseRequest": {"validityPeriod": {"start": "2022-08-09", "end": "2023-08-09"}}},
        {"resourceType": "Procedure", "id": "p1", "status": "completed", "subject": {"reference": "Patient/pat-1"},
         "performedPeriod": {"start": "2019-04-05T06:07:08Z", "end": "2019-04-05T07:07:08Z"}},
        {"resourceType": "DiagnosticReport", "id": "d1", "status": "final", "code": {"coding": [{"code": "51990-0"}]},
         "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2018-01-01T00:00:00Z",
         "issued": "2018-01-02T00:00:00Z", "conclusion": "Eleanor is fine"},
        {"resourceType": "Immunization", "id": "i1", "status": "completed",
         "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
         "patient": {"reference": "Patient/pat-1"}, "occurrenceDateTime": "2023-10-01", "recorded": "2023-10-02",
         "lotNumber": "LOT-99812", "expirationDate": "2024-06-30"},
        {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/pat-1"},
         "onsetDateTime": "2015-05-05", "recordedDate": "2015-05-06", "lastOccurrence": "2016-06-06",
         "reaction": [{"manifestation": [{"coding": [{"system": "http://snomed.info/sct", "code": "39579001"}]}],
                       "onset": "2015-05-05", "description": "Eleanor swelled up"}]},
        patient(deceasedDateTime="2023-03-04T05:06:07Z"),
    ]
    for source in resources:
        source = {name: value for name, value in source.items() if value is not None}
        out = deid(source)
        text = text_of(out)
        assert not FULL_DATE.search(text), text
        assert "Eleanor" not in text and "LOT-99812" not in text
    years = deid(resources[2])
    assert years["period"] == {"start": "2020", "end": "2021"}
    assert deid(resources[-1])["deceasedDateTime"] == "2023"


def test_effective_instant_becomes_a_year_and_issued_is_dropped():
    source = observation(effectiveDateTime=None, effectiveInstant="2023-11-05T08:30:00.123Z")
    del source["effectiveDateTime"]
    out = deid(source)
    assert out["effectiveDateTime"] == "2023" and "effectiveInstant" not in out and "issued" not in out


@pytest.mark.parametrize(("birth", "expect_year"), [("1935-01-01", "1935"), ("1935-12-31", "1935"),
                                                    ("1934-12-31", None), ("1934", None), ("1900-06-01", None)])
def test_ages_over_89_become_the_90_plus_group(birth, expect_year):
    out = deid(patient(birthDate=birth))
    if expect_year is None:
        assert "birthDate" not in out
        assert out["extension"] == [{"url": AGE_GROUP_EXTENSION, "valueRange": {
            "low": {"value": 90, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}}]
        assert birth[:4] not in text_of(out)
    else:
        assert out["birthDate"] == expect_year and "extension" not in out


def test_years_that_show_an_age_over_89_are_dropped_everywhere():
    # In 2024 a condition from 1934 shows the patient is at least 90.
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/pat-1"},
                 "onsetDateTime": "1934-05-01", "recordedDate": "1935-01-01"}
    out = deid(condition)
    assert "onsetDateTime" not in out and out["recordedDate"] == "1935"
    died = deid(patient(birthDate="1920-01-01", deceasedDateTime="1931-01-01"))
    assert died["deceasedBoolean"] is True and "1931" not in text_of(died)


def test_ages_in_quantities_over_89_are_capped():
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/pat-1"},
                 "onsetAge": {"value": 93, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"},
                 "abatementRange": {"low": {"value": 85, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
                                    "high": {"value": 95, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}}
    out = deid(condition)
    assert out["onsetAge"]["value"] == 89 and out["onsetAge"]["comparator"] == ">"
    assert out["abatementRange"] == {"low": {"value": 85, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}
    age_obs = observation(valueQuantity={"value": 97, "unit": "a"})
    assert deid(age_obs)["valueQuantity"] == {"value": 89, "comparator": ">", "unit": "a"}
    spelled_out = observation(valueQuantity={"value": 97, "unit": "Years old"})
    assert deid(spelled_out)["valueQuantity"] == {"value": 89, "comparator": ">"}
    young = observation(valueQuantity={"value": 97, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"})
    assert deid(young)["valueQuantity"]["value"] == 97


# --- geography -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", sorted(RESTRICTED_ZIP3))
def test_restricted_zip_prefixes_become_000(prefix):
    out = deid(patient(address=[{"postalCode": f"{prefix}42", "state": "XX", "city": "Tinytown"}]))
    assert out["address"] == [{"state": "XX", "postalCode": "000"}]
    assert prefix + "42" not in text_of(out)


@pytest.mark.parametrize(("postal", "expected"), [("02139", "021"), ("02139-4307", "021"), ("021394307", "021"),
                                                  (" 10001 ", "100"), ("021", "021"), ("03601", "000"), ("036", "000"),
                                                  ("SW1A 1AA", None), ("1234", None), ("0213", None), ("", None)])
def test_zip3_of(postal, expected):
    assert zip3_of(postal) == expected


def test_the_current_home_address_is_the_one_kept():
    out = deid(patient(address=[
        {"use": "old", "postalCode": "10001", "state": "NY"},
        {"use": "work", "postalCode": "02139", "state": "MA"},
        {"use": "home", "postalCode": "94110", "state": "CA", "period": {"end": "2019-01-01"}},
        {"use": "home", "postalCode": "60614", "state": "IL", "line": ["1 Lake St"], "city": "Chicago"},
    ]))
    assert out["address"] == [{"state": "IL", "postalCode": "606"}]


@settings(derandomize=True)
@given(st.from_regex(r"\d{5}", fullmatch=True))
def test_any_zip5_becomes_its_prefix_or_000(zip5):
    out = zip3_of(zip5)
    assert out == ("000" if zip5[:3] in RESTRICTED_ZIP3 else zip5[:3])


# --- references and pseudonyms -----------------------------------------------------------------------


def test_references_are_pseudonymised_consistently_within_a_study():
    pat, obs = deid(patient()), deid(observation())
    assert obs["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert re.fullmatch(r"[0-9a-f]{32}", pat["id"]) and pat["id"] != obs["id"]
    encounter = deid({"resourceType": "Encounter", "id": "enc-1", "status": "finished",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})
    assert obs["encounter"] == {"reference": f"Encounter/{encounter['id']}"}


def test_pseudonyms_differ_across_studies_and_custodians():
    one, two = deid(observation()), deid(observation(), key=OTHER_KEY)
    assert one["id"] != two["id"] and one["subject"] != two["subject"]
    here, there = deid(observation(), namespace="hospital-a"), deid(observation(), namespace="hospital-b")
    assert here["id"] != there["id"] and here["subject"] != there["subject"]


def test_a_person_gets_one_pseudonym_at_every_custodian():
    a = deid(observation(subject={"reference": "Patient/local-a"}), namespace="hospital-a", persons={"local-a": "person-7"})
    b = deid(patient(id="local-b"), namespace="hospital-b", persons={"local-b": "person-7"})
    assert a["subject"]["reference"] == f"Patient/{b['id']}"
    assert b["id"] == KeyedPseudonyms(KEY).person("person-7")


def test_absolute_and_versioned_references_are_resolved_and_others_dropped():
    base = deid(observation())
    absolute = deid(observation(subject={"reference": "https://ehr.example.org/fhir/Patient/pat-1/_history/3"}))
    assert absolute["subject"] == base["subject"]
    for bad in ({"reference": "#contained"}, {"reference": "urn:uuid:0c3b8a1e-0000-4000-8000-000000000000"},
                {"identifier": {"value": "MRN77012345"}}, {"display": "Eleanor Whitmore"},
                {"reference": "Group/g1"}, {"reference": "Patient/has space"}):
        out = deid(observation(subject=bad))
        assert "subject" not in out and "Eleanor" not in text_of(out) and "MRN" not in text_of(out)


def test_references_to_types_never_released_are_dropped():
    out = deid({"resourceType": "Encounter", "id": "e1", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "participant": [{"individual": {"reference": "Practitioner/dr-9"}}],
                "serviceProvider": {"reference": "Organization/org-1"},
                "location": [{"location": {"reference": "Location/l1"}}],
                "diagnosis": [{"condition": {"reference": "Condition/c1"}, "rank": 1},
                              {"condition": {"reference": "Practitioner/dr-9"}, "rank": 2}]})
    assert set(out) == {"resourceType", "id", "status", "class", "diagnosis"}
    assert len(out["diagnosis"]) == 1 and out["diagnosis"][0]["condition"]["reference"].startswith("Condition/")


def test_study_keys_are_checked_and_derived():
    with pytest.raises(ValueError):
        KeyedPseudonyms(b"short")
    assert derive_study_key(b"s" * 32, "study-1") != derive_study_key(b"s" * 32, "study-2")
    assert len(derive_study_key(b"s" * 32, "study-1")) == 32


@settings(derandomize=True)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=64),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=64))
def test_pseudonyms_are_deterministic_keyed_and_distinct(first, second):
    study = KeyedPseudonyms(KEY, namespace="h")
    assert study.pseudonym("Patient", first) == study.pseudonym("Patient", first)
    assert study.pseudonym("Patient", first) != KeyedPseudonyms(OTHER_KEY, namespace="h").pseudonym("Patient", first)
    assert (study.pseudonym("Patient", first) == study.pseudonym("Patient", second)) == (first == second)


# --- types --------------------------------------------------------------------------------------------


def test_each_released_type_has_a_rule():
    assert set(TYPE_RULES) | {"Patient"} == {
        "Patient", "Observation", "Condition", "Encounter", "DiagnosticReport", "MedicationRequest", "Procedure",
        "AllergyIntolerance", "Immunization", "CarePlan", "MedicationAdministration", "MedicationDispense"}


def test_medication_request_named_only_by_reference_is_withheld():
    source = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
              "subject": {"reference": "Patient/pat-1"}, "medicationReference": {"reference": "Medication/x"}}
    with pytest.raises(ResourceWithheld, match="medicationCodeableConcept"):
        deidentify(source, study_key=KEY, reference_date_year=YEAR)


def test_other_types_get_the_conservative_default_when_valid():
    flag = deid({"resourceType": "Flag", "id": "f1", "status": "active", "subject": {"reference": "Patient/pat-1"},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": "225915006"}], "text": "Eleanor bites"},
                 "period": {"start": "2020-01-01"}, "author": {"reference": "Practitioner/dr-9"}})
    assert set(flag) == {"resourceType", "id", "status", "subject", "code"}
    with pytest.raises(ResourceWithheld, match="not valid"):
        # FamilyMemberHistory requires relationship, which the default does not keep.
        deidentify({"resourceType": "FamilyMemberHistory", "id": "f1", "status": "completed",
                    "patient": {"reference": "Patient/pat-1"}, "name": "Harold Whitmore",
                    "relationship": {"coding": [{"code": "FTH"}]}}, study_key=KEY, reference_date_year=YEAR)
    for bad, reason in (({"resourceType": "Nonsense", "id": "x"}, "not a FHIR R4"), ({"id": "x"}, "not a FHIR resource"),
                        ({"resourceType": "Observation"}, "no id")):
        with pytest.raises(ResourceWithheld, match=reason):
            deidentify(bad, study_key=KEY, reference_date_year=YEAR)


def test_the_source_resource_is_not_modified():
    source = patient()
    before = copy.deepcopy(source)
    deid(source)
    assert source == before


# --- idempotence: the researcher's re-check leaves a correct release unchanged ---------------------


SAMPLES = [patient(), patient(birthDate="1920"), observation(),
           observation(valueQuantity={"value": 93, "unit": "a"}, effectiveDateTime="1930-01-01")]


@pytest.mark.parametrize("source", SAMPLES)
def test_rechecking_a_release_changes_nothing(source):
    once = deid(source)
    assert Deidentifier(ExistingPseudonyms(), reference_year=YEAR).resource(once) == once


def test_rechecking_refuses_ids_that_are_not_pseudonyms():
    with pytest.raises(ResourceWithheld, match="not a pseudonym"):
        Deidentifier(ExistingPseudonyms(), reference_year=YEAR).resource(observation())
    out = Deidentifier(ExistingPseudonyms(), reference_year=YEAR).resource(observation(id="a" * 32))
    assert "subject" not in out and "encounter" not in out


# Element names: random ones and the ones resources really have (coding.display aside: a
# terminology's display is kept by design, see the module doc).
ELEMENT_NAMES = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=20),
    st.sampled_from(["name", "text", "note", "identifier", "value", "telecom", "address", "line", "city", "state",
                     "country", "postalCode", "code", "coding", "system", "subject", "reference", "unit", "status",
                     "gender", "birthDate", "valueString", "valueQuantity", "component", "category", "extension",
                     "url", "contact", "photo", "conclusion", "dosageInstruction", "patientInstruction", "div"]),
)
JSON_LEAVES = st.one_of(st.just("Zq SECRET qZ"), st.integers(), st.booleans(), st.just("Patient/p1"))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(ELEMENT_NAMES, inner, max_size=3)),
                           max_leaves=8)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from(["Patient", "Observation", "Condition", "Encounter", "MedicationRequest"]),
       st.dictionaries(ELEMENT_NAMES, JSON_VALUES, max_size=6))
def test_no_string_outside_the_allow_list_passes_through(rtype, junk):
    # Whatever elements and values a resource has, free text (here: with spaces) never reaches
    # the output; what does is a code, a system, a unit or a pseudonymous reference.
    source = {**junk, "resourceType": rtype, "id": "x1"}
    try:
        out = deidentify(source, study_key=KEY, reference_date_year=YEAR)
    except ResourceWithheld:
        return
    assert "SECRET" not in text_of(out)
    for value in strings_in(out):
        assert value == rtype or re.fullmatch(r"[0-9a-f]{32}|\S{1,64}", value), value


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.datetimes(min_value=datetime(1850, 1, 1), max_value=datetime(2024, 12, 31)),
       st.sampled_from(["date", "datetime"]))
def test_any_date_becomes_a_year_or_nothing(moment, shape):
    value = moment.date().isoformat() if shape == "date" else moment.isoformat(timespec="seconds") + "+02:00"
    out = deid(observation(effectiveDateTime=value))
    if YEAR - moment.year >= 90:
        assert "effectiveDateTime" not in out
    else:
        assert out["effectiveDateTime"] == f"{moment.year:04d}"
