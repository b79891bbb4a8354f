"""k-anonymity: quasi-identifiers, generalisation, suppression, refusal below k."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.research.kanon import (
    LADDER,
    Generalisation,
    QuasiIdentifiers,
    anonymise,
    apply_k_anonymity,
    generalise,
    merge,
    patient_resource,
    quasi_identifiers,
)
from node.research.deid_rules import AGE_GROUP_EXTENSION, age_group_extension
from tests.unit.research.support import assert_valid_r4

YEAR = 2024


def qi(age: str = "1980", gender: str = "female", zip3: str | None = "021", state: str | None = "MA",
       country: str | None = "US", deceased: str | None = None) -> QuasiIdentifiers:
    return QuasiIdentifiers(age=age, gender=gender, zip3=zip3, state=state, country=country, deceased=deceased)


def test_groups_smaller_than_k_are_suppressed_with_a_reason():
    patients = {"a": ("x",), "b": ("x",), "c": ("x",), "d": ("y",), "e": ("y",), "f": ("z",)}
    result = apply_k_anonymity(patients, 3)
    assert result.kept == {"a", "b", "c"}
    assert result.suppressed == {"d": "k-anonymity: in a group of 2 patient(s), fewer than k=3",
                                 "e": "k-anonymity: in a group of 2 patient(s), fewer than k=3",
                                 "f": "k-anonymity: in a group of 1 patient(s), fewer than k=3"}
    assert result.groups == {("x",): 3} and result.k_reached == 3 and result.refusal is None
    assert apply_k_anonymity(patients, 2).k_reached == 2


def test_nothing_is_released_when_fewer_than_k_remain():
    result = apply_k_anonymity({"a": 1, "b": 1, "c": 2}, 3)
    assert not result.kept and result.k_reached is None
    assert result.refusal is not None and "fewer than k" in result.refusal and "0 of 3" in result.refusal
    with pytest.raises(ValueError):
        apply_k_anonymity({"a": 1}, 0)


def test_suppression_reasons_name_no_quasi_identifier():
    result = apply_k_anonymity({"a": qi(age="1931", zip3="000")}, 2)
    assert "1931" not in result.suppressed["a"] and "000" not in result.suppressed["a"]


@pytest.mark.parametrize(("age", "level", "expected"), [
    ("1980", "year", "1980"), ("1980", "5y", "40-44"), ("1980", "10y", "40-49"), ("1980", "20y", "40-59"),
    ("1936", "5y", "85-89"), ("1936", "10y", "80-89"), ("1936", "20y", "80-89"), ("2024", "10y", "0-9"),
    ("90+", "20y", "90+"), ("unknown", "10y", "unknown"),
])
def test_age_bands(age, level, expected):
    assert generalise(qi(age=age), Generalisation(age=level, place="zip3"), reference_year=YEAR).age == expected


def test_place_and_death_generalise_with_the_rung():
    source = qi(deceased="2021")
    assert generalise(source, Generalisation(age="year", place="zip3"), reference_year=YEAR) == source
    by_state = generalise(source, Generalisation(age="10y", place="state"), reference_year=YEAR)
    assert (by_state.zip3, by_state.state, by_state.country, by_state.deceased) == (None, "MA", "US", "yes")
    by_country = generalise(source, Generalisation(age="20y", place="country"), reference_year=YEAR)
    assert (by_country.zip3, by_country.state, by_country.country) == (None, None, "US")
    with pytest.raises(ValueError):
        Generalisation(age="7y", place="zip3")


def test_quasi_identifiers_of_a_deidentified_patient():
    assert quasi_identifiers({"resourceType": "Patient", "birthDate": "1980", "gender": "male",
                              "address": [{"state": "MA", "postalCode": "021", "country": "US"}],
                              "deceasedDateTime": "2021"}, reference_year=YEAR) == qi(gender="male", deceased="2021")
    ninety = {"resourceType": "Patient", "extension": [age_group_extension(90)]}
    assert quasi_identifiers(ninety, reference_year=YEAR) == QuasiIdentifiers(age="90+")
    # A birth year that slipped through is still grouped as 90+.
    assert quasi_identifiers({"resourceType": "Patient", "birthDate": "1930"}, reference_year=YEAR).age == "90+"
    assert quasi_identifiers({"resourceType": "Patient", "gender": ["x"], "birthDate": "2030"},
                             reference_year=YEAR) == QuasiIdentifiers()


def test_copies_from_several_custodians_keep_only_what_they_agree_on():
    merged = merge([qi(), qi(zip3="100", state="NY"), qi()])
    assert merged == qi(zip3=None, state=None)
    assert merge([qi(deceased="2020"), qi()]).deceased == "yes"
    assert merge([qi(deceased="2020"), qi(deceased="2020")]).deceased == "2020"


@pytest.mark.parametrize("level", LADDER)
def test_released_patient_is_built_from_its_quasi_identifiers_only(level):
    source = qi(age="1950", deceased="2022")
    general = generalise(source, level, reference_year=YEAR)
    resource = patient_resource("a" * 32, general)
    assert_valid_r4(resource)
    assert set(resource) <= {"resourceType", "id", "birthDate", "extension", "gender", "deceasedBoolean",
                             "deceasedDateTime", "address"}
    if level.age == "year":
        assert resource["birthDate"] == "1950" and "extension" not in resource
        assert quasi_identifiers(resource, reference_year=YEAR) == general
    else:
        band = resource["extension"][0]
        assert band["url"] == AGE_GROUP_EXTENSION and "birthDate" not in resource
        low, high = general.age.split("-")
        assert (band["valueRange"]["low"]["value"], band["valueRange"]["high"]["value"]) == (int(low), int(high))


def test_anonymise_takes_the_first_rung_within_the_suppression_budget():
    # Ten patients aged 40 to 49: unique by birth year, two groups of five in 5-year bands, one
    # group of ten in 10-year bands.
    patients = {f"p{i}": qi(age=str(1975 + i)) for i in range(10)}
    outcome = anonymise(patients, 6, reference_year=YEAR)
    assert outcome.generalisation == Generalisation(age="10y", place="zip3")
    assert outcome.result.suppressed == {} and outcome.result.k_reached == 10
    assert {q.age for q in outcome.quasi_identifiers.values()} == {"40-49"}
    assert anonymise(patients, 5, reference_year=YEAR).generalisation == Generalisation(age="5y", place="zip3")


def test_anonymise_falls_back_to_the_rung_that_suppresses_fewest():
    # Six women aged 64 to 69 and one man: the man can never be hidden with k=3, the women are one
    # group from 10-year bands on; with no suppression allowed, the first rung suppressing only him wins.
    patients = {f"f{i}": qi(age=str(1955 + i)) for i in range(6)}
    patients["m"] = qi(gender="male")
    outcome = anonymise(patients, 3, reference_year=YEAR, max_suppression=0.0)
    assert outcome.generalisation == Generalisation(age="10y", place="zip3")
    assert set(outcome.result.suppressed) == {"m"} and outcome.result.k_reached == 6


QIS = st.builds(QuasiIdentifiers, age=st.sampled_from(["1930", "1950", "1951", "1979", "1990", "2010", "90+", "unknown"]),
                gender=st.sampled_from(["female", "male", "unknown"]), zip3=st.sampled_from(["021", "000", None]),
                state=st.sampled_from(["MA", "NH"]), country=st.just("US"), deceased=st.sampled_from([None, "2020"]))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.dictionaries(st.text(alphabet="0123456789abcdef", min_size=4, max_size=4), QIS, max_size=40),
       st.integers(min_value=1, max_value=6), st.floats(min_value=0, max_value=1))
def test_every_patient_is_kept_or_suppressed_and_every_kept_group_reaches_k(patients, k, budget):
    outcome = anonymise(patients, k, reference_year=YEAR, max_suppression=budget)
    result = outcome.result
    assert result.kept | set(result.suppressed) == set(patients) and not result.kept & set(result.suppressed)
    sizes = Counter(outcome.quasi_identifiers[p] for p in result.kept)
    assert all(n >= k for n in sizes.values()) and dict(sizes) == dict(result.groups)
    assert (result.refusal is None) == (len(result.kept) >= k)
