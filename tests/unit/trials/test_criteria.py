"""Trial eligibility criteria (issue 21, point 1): their checked, canonical form, and their
evaluation over a patient's FHIR resources — age band, sex, coded inclusions with value ranges,
exclusions; inactive and erroneous resources do not count; the order of resources never matters."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.app.trial_criteria import SYSTEMS, CriteriaInvalid, age_on, canonical, matches, parse

ON = date(2026, 12, 3)
DIABETES = {"version": 1, "age": {"min": 40, "max": 75}, "sex": ["female", "male"],
            "include": [{"resource": "Condition", "system": SYSTEMS["snomed"], "codes": ["44054006"]},
                        {"resource": "Observation", "system": SYSTEMS["loinc"], "codes": ["4548-4"],
                         "value": {"min": "7.0", "max": "10", "unit": "%"}}],
            "exclude": [{"resource": "MedicationRequest", "system": SYSTEMS["rxnorm"], "codes": ["253182"]}]}


def person(birth: str = "1970-05-01", gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "birthDate": birth, "gender": gender}


def condition(code: str = "44054006", status: str = "active") -> dict[str, Any]:
    return {"resourceType": "Condition", "code": {"coding": [{"system": SYSTEMS["snomed"], "code": code}]},
            "clinicalStatus": {"coding": [{"code": status}]}}


def hba1c(value: Any, unit: str = "%", status: str = "final") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": status, "code": {"coding": [{"system": SYSTEMS["loinc"], "code": "4548-4"}]},
            "valueQuantity": {"value": value, "unit": unit, "code": unit}}


def insulin() -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": SYSTEMS["rxnorm"], "code": "253182"}]}}


def test_a_matching_patient_and_each_reason_not_to_match():
    c = parse(DIABETES)
    assert matches(c, [person(), condition(), hba1c(7.4)], ON)
    assert not matches(c, [person(birth="1990-01-01"), condition(), hba1c(7.4)], ON)  # 36: too young
    assert not matches(c, [person(gender="other"), condition(), hba1c(7.4)], ON)
    assert not matches(c, [condition(), hba1c(7.4)], ON)  # no Patient: age and sex unknown
    assert not matches(c, [person(), hba1c(7.4)], ON)  # no diabetes
    assert not matches(c, [person(), condition(status="resolved"), hba1c(7.4)], ON)
    assert not matches(c, [person(), condition(), hba1c(6.9)], ON)  # below the range
    assert matches(c, [person(), condition(), hba1c("10")], ON)  # the range is inclusive
    assert not matches(c, [person(), condition(), hba1c(7.4, unit="mmol/mol")], ON)  # another unit
    assert not matches(c, [person(), condition(), hba1c(7.4, status="entered-in-error")], ON)
    assert not matches(c, [person(), condition(), hba1c(7.4), insulin()], ON)  # excluded


def test_age_on_a_day_and_partial_birth_dates():
    assert age_on("1970-12-03", ON) == 56 and age_on("1970-12-04", ON) == 55
    assert age_on("1970", ON) == 55 and age_on("1970-11", ON) == 56  # a partial date: the latest day it can be
    assert age_on("not a date", ON) is None


@pytest.mark.parametrize("change, message", [
    ({"version": 2}, "version 1"),
    ({"age": {"min": 80, "max": 20}}, "min is above max"),
    ({"age": {"min": 1.5}}, "whole number"),
    ({"sex": ["woman"]}, "sex lists"),
    ({"include": [{"resource": "Encounter", "system": SYSTEMS["snomed"], "codes": ["1"]}]}, "resource is one of"),
    ({"include": [{"resource": "Condition", "system": "http://example.org", "codes": ["1"]}]}, "system is one of"),
    ({"include": [{"resource": "Condition", "system": SYSTEMS["snomed"], "codes": []}]}, "codes lists"),
    ({"include": [{"resource": "Condition", "system": SYSTEMS["snomed"], "codes": ["a b"]}]}, "codes lists"),
    ({"include": [{"resource": "Observation", "system": SYSTEMS["loinc"], "codes": ["1"], "value": {"min": 7.5, "unit": "%"}}]},
     "no floats"),
    ({"include": [{"resource": "Condition", "system": SYSTEMS["snomed"], "codes": ["1"], "value": {"min": "1", "unit": "%"}}]},
     "Observation only"),
    ({"include": [{"resource": "Condition", "system": SYSTEMS["snomed"], "codes": ["1"]}] * 17}, "at most 16"),
    ({"notes": "free text"}, "unknown field"),
])
def test_criteria_that_may_not_be_registered_say_why(change, message):
    with pytest.raises(CriteriaInvalid, match=message):
        parse({**DIABETES, **change})
    with pytest.raises(CriteriaInvalid, match="selects everyone|select everyone"):
        parse({"version": 1})


def test_the_canonical_form_is_key_order_free():
    shuffled = dict(reversed(list(DIABETES.items())))
    assert canonical(shuffled) == canonical(DIABETES) and b" " not in canonical(DIABETES)


RESOURCES = st.lists(st.sampled_from([person(), person(gender="male"), person(birth="2001-02-02"), condition(),
                                      condition(status="inactive"), hba1c(7.1), hba1c(12), insulin(), condition("73211009")]),
                     max_size=8)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(RESOURCES, st.randoms(use_true_random=False))
def test_the_order_of_a_patients_resources_never_matters(resources, rng):
    c = parse(DIABETES)
    shuffled = list(resources)
    rng.shuffle(shuffled)
    assert matches(c, resources, ON) == matches(c, shuffled, ON)
