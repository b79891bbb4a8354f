"""FHIR search without IO: dates and their prefixes, tokens, the parameters each type supports,
selection by ledger metadata and by content, and the searchset Bundle with its page links."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest

from node.fhir.outcome import FhirError
from node.fhir.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    DateCondition,
    Token,
    date_range,
    element_ranges,
    matches_content,
    matches_meta,
    parse_plain,
    parse_search,
    searchset,
)

NOW = 1_750_000_000_000
P = "ab" * 32


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def obs(code: str = "8867-4", system: str = "http://loinc.org", when: object = "2024-03-05T10:00:00Z") -> dict:
    out = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": system, "code": code}]}}
    if isinstance(when, dict):
        out["effectivePeriod"] = when
    elif when is not None:
        out["effectiveDateTime"] = when
    return out


@pytest.mark.parametrize(("text", "lo", "hi"), [
    ("2024", ms(2024, 1, 1), ms(2025, 1, 1) - 1),
    ("2024-02", ms(2024, 2, 1), ms(2024, 3, 1) - 1),
    ("2024-12", ms(2024, 12, 1), ms(2025, 1, 1) - 1),
    ("2024-02-29", ms(2024, 2, 29), ms(2024, 3, 1) - 1),
    ("2024-03-05T10:00Z", ms(2024, 3, 5, 10), ms(2024, 3, 5, 10, 1) - 1),
    ("2024-03-05T10:00:07Z", ms(2024, 3, 5, 10, 0, 7), ms(2024, 3, 5, 10, 0, 8) - 1),
    ("2024-03-05T10:00:07.250Z", ms(2024, 3, 5, 10, 0, 7) + 250, ms(2024, 3, 5, 10, 0, 7) + 250),
    ("2024-03-05T12:00:00+02:00", ms(2024, 3, 5, 10), ms(2024, 3, 5, 10, 0, 1) - 1),
    ("2024-03-05T10:00:00", ms(2024, 3, 5, 10), ms(2024, 3, 5, 10, 0, 1) - 1),  # no zone: UTC
])
def test_a_date_stands_for_the_range_of_its_precision(text: str, lo: int, hi: int) -> None:
    assert date_range(text) == (lo, hi)


@pytest.mark.parametrize("text", ["24", "2024-13", "2024-02-30", "2024-03-05T25:00Z", "yesterday", "2024/03/05", ""])
def test_what_is_not_a_date_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        date_range(text)
    with pytest.raises(FhirError) as err:
        DateCondition.parse("ge" + text)
    assert err.value.status == 400 and err.value.code == "invalid_search"


# A resource in March 2024 against searches of 2024, of March, of 2023 and 2025.
MARCH = (ms(2024, 3, 1), ms(2024, 4, 1) - 1)


@pytest.mark.parametrize(("param", "expected"), [
    ("2024", True), ("eq2024", True), ("eq2024-03", True), ("eq2024-03-05", False),
    ("ne2024-03-05", True), ("ne2024", False),
    ("gt2023", True), ("gt2024", False), ("gt2024-03-15", True),  # its range reaches above the 15th
    ("lt2025", True), ("lt2024", False), ("lt2024-03-15", True),
    ("ge2024-03", True), ("ge2024-04", False), ("le2024-03", True), ("le2024-02", False),
    ("sa2024-02", True), ("sa2024-03-01", False), ("eb2024-04", True), ("eb2024-03-31", False),
    ("ap2024-03-10", True), ("ap2020", False),
])
def test_prefixes_compare_ranges_as_fhir_says(param: str, expected: bool) -> None:
    assert DateCondition.parse(param).holds(*MARCH, NOW) is expected


def test_periods_and_choice_elements_give_the_ranges_matched() -> None:
    assert element_ranges(obs(when={"start": "2024-01-01", "end": "2024-01-31"}), ["effectivePeriod"]) == \
        [(ms(2024, 1, 1), ms(2024, 2, 1) - 1)]
    lo, hi = element_ranges(obs(when={"start": "2024-01-01"}), ["effectivePeriod"])[0]
    assert lo == ms(2024, 1, 1) and hi > ms(3000, 1, 1)  # an open end is unbounded
    assert element_ranges(obs(when="not a date"), ["effectiveDateTime"]) == []
    assert element_ranges(obs(when=None), ["effectiveDateTime", "effectivePeriod"]) == []


@pytest.mark.parametrize(("text", "coding", "expected"), [
    ("http://loinc.org|8867-4", {"system": "http://loinc.org", "code": "8867-4"}, True),
    ("http://loinc.org|8867-4", {"system": "http://snomed.info/sct", "code": "8867-4"}, False),
    ("8867-4", {"system": "http://snomed.info/sct", "code": "8867-4"}, True),
    ("|8867-4", {"code": "8867-4"}, True),
    ("|8867-4", {"system": "http://loinc.org", "code": "8867-4"}, False),
    ("http://loinc.org|", {"system": "http://loinc.org", "code": "1234-5"}, True),
    ("http://loinc.org|", {"system": "urn:other", "code": "1234-5"}, False),
])
def test_tokens_match_system_and_code(text: str, coding: dict, expected: bool) -> None:
    assert Token.parse(text).matches(coding) is expected


def test_type_parameters_follow_the_catalog_and_refuse_what_is_not_supported() -> None:
    search = parse_search("Observation", [("patient", f"Patient/{P}"), ("code", "http://loinc.org|8867-4,|x"),
                                          ("date", "ge2024"), ("date", "lt2025"), ("_count", "5"), ("_offset", "10")], NOW)
    assert search.patient == P and search.count == 5 and search.offset == 10
    assert len(search.codes) == 1 and len(search.codes[0]) == 2 and len(search.dates) == 2
    assert search.reads_content
    # Encounter has no `code` in R4, nor here: ignored by default (and said so), refused when strict
    lenient = parse_search("Encounter", [("patient", P), ("code", "x")], NOW)
    assert lenient.ignored == ("code",) and lenient.codes == ()
    with pytest.raises(FhirError) as err:
        parse_search("Encounter", [("patient", P), ("code", "x")], NOW, strict=True)
    assert err.value.status == 400 and err.value.code == "unsupported_search_parameter"
    with pytest.raises(FhirError) as err:
        parse_search("Observation", [("code:text", "heart")], NOW)
    assert err.value.code == "invalid_search"  # a modifier is never ignored: the answer would be broader
    with pytest.raises(FhirError):
        parse_search("Observation", [("subject", P)], NOW)  # subject names a Patient/<id>
    with pytest.raises(FhirError) as err:
        parse_search("Observation", [("_format", "xml")], NOW)
    assert err.value.status == 406
    assert parse_search("Observation", [("_count", "100000")], NOW).count == MAX_COUNT
    assert parse_search("Observation", [], NOW).count == DEFAULT_COUNT
    with pytest.raises(FhirError):
        parse_search("Observation", [("_count", "-1")], NOW)
    with pytest.raises(FhirError):
        parse_search("Observation", [("_count", "1"), ("_count", "2")], NOW)


def test_system_search_names_its_types() -> None:
    search = parse_search(None, [("_type", "Observation,Condition"), ("patient", P)], NOW)
    assert search.types == ("Observation", "Condition")
    with pytest.raises(FhirError) as err:
        parse_search(None, [("_type", "Observation,Claim")], NOW)
    assert err.value.code == "unsupported_type"
    assert parse_search(None, [("code", "x")], NOW).ignored == ("code",)


def test_two_different_patients_match_nothing() -> None:
    search = parse_search("Observation", [("patient", P), ("subject", f"Patient/{'cd' * 32}")], NOW)
    assert search.patient == ""
    assert not matches_meta(search, "Observation", "11" * 32, P, NOW)


def test_selection_by_metadata_then_by_content() -> None:
    search = parse_search("Observation", [("patient", P), ("_id", "AA" * 32 + ",bb"), ("_lastUpdated", "ge2024")], NOW)
    assert matches_meta(search, "Observation", "aa" * 32, P, ms(2024, 6, 1))
    assert not matches_meta(search, "Observation", "aa" * 32, P, ms(2023, 6, 1))  # updated before 2024
    assert not matches_meta(search, "Condition", "aa" * 32, P, ms(2024, 6, 1))
    assert not matches_meta(search, "Observation", "cc" * 32, P, ms(2024, 6, 1))
    assert not matches_meta(search, "Observation", "aa" * 32, "ef" * 32, ms(2024, 6, 1))
    by_code = parse_search("Observation", [("code", "http://loinc.org|8867-4"), ("date", "2024-03")], NOW)
    assert matches_content(by_code, obs())
    assert not matches_content(by_code, obs(code="1234-5"))
    assert not matches_content(by_code, obs(when="2024-04-01"))
    assert not matches_content(by_code, obs(when=None))  # no date: no match for a date search
    both = parse_search("Observation", [("code", "8867-4"), ("code", "http://loinc.org|")], NOW)
    assert matches_content(both, obs()) and not matches_content(both, obs(system="urn:x"))


def test_the_searchset_has_self_next_and_previous_links_and_a_total_when_it_is_known() -> None:
    base = "https://node.example:8700/fhir/R4/Observation"
    search = parse_search("Observation", [("patient", P), ("_count", "2"), ("_offset", "2")], NOW)
    entries = [(f"{base}/{i}", {"resourceType": "Observation", "id": str(i)}) for i in range(2)]
    bundle = searchset(base, search, entries, candidates=5)
    assert bundle["type"] == "searchset" and bundle["total"] == 5
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert set(links) == {"self", "next", "previous"}
    for relation, offset in (("self", "2"), ("next", "4"), ("previous", "0")):
        url = urlsplit(links[relation])
        assert url.path == "/fhir/R4/Observation"
        assert dict(parse_qsl(url.query)) == {"patient": P, "_count": "2", "_offset": offset}
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "match"]
    last = searchset(base, parse_search("Observation", [("_count", "2"), ("_offset", "4")], NOW), [], candidates=5)
    assert {link["relation"] for link in last["link"]} == {"self", "previous"} and "entry" not in last
    filtered = searchset(base, parse_search("Observation", [("code", "x")], NOW), [], candidates=5)
    assert "total" not in filtered  # matched on content: the total is not known without reading everything


def test_plain_searches_keep_their_parameters_and_paging() -> None:
    search, values = parse_plain([("patient", P), ("date", "ge2024"), ("_count", "3"), ("foo", "1")],
                                 ("patient", "date", "agent"), NOW)
    assert values == {"patient": [P], "date": ["ge2024"]} and search.count == 3 and search.ignored == ("foo",)
    with pytest.raises(FhirError):
        parse_plain([("foo", "1")], ("patient",), NOW, strict=True)
