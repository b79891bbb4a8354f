"""FHIR search without IO: parsing the parameters, matching resources, the searchset Bundle.

`parse_search(types, query, now_ms)` turns a query string (name/value pairs, in order) into a
`Search` or refuses it (400 OperationOutcome, code `invalid_search`): a parameter this server
does not support, a modifier, a malformed date or token. Repeating a parameter ANDs its
conditions; a comma inside one value ORs them (`_id`, `_type`, `code`).

A search is answered in two steps, so that only what a page needs is read and decrypted:
`matches_meta` selects records by what the ledger knows (type, patient, `_id`, `_lastUpdated`);
`matches_content` then checks the decrypted resource (`code`, `date`).

Dates follow FHIR: a value stands for the range its precision implies (`2024` is the whole
year; a dateTime without a zone is taken as UTC), a Period for its range (an open end is
unbounded), and the prefixes compare ranges: eq (the resource's range lies within the
parameter's), ne, gt/lt (the resource's range reaches above/below the parameter's), ge/le (gt
or eq, lt or eq), sa/eb (starts after / ends before it), ap (overlaps it widened by 10% of its
distance from now).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from node.fhir.catalog import IGNORED_PARAMS, RESULT_PARAMS, SYSTEM_PARAMS, TYPES, COMMON_PARAMS
from node.fhir.outcome import FhirError

JSON = dict[str, Any]

DEFAULT_COUNT = 20
MAX_COUNT = 100
"""The most entries of one page, and so the most records one search request reads (a limit:
ask for the next page)."""
MAX_OFFSET = 1_000_000
MAX_VALUES = 20  # comma-separated values in one parameter
MAX_PARAMS = 32  # parameters in one query string
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
JSON_FORMATS = ("json", "application/json", "application/fhir+json")
UNBOUNDED_LO = -(2**62)
UNBOUNDED_HI = 2**62

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PATIENT = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def invalid(message: str) -> FhirError:
    return FhirError(400, "invalid_search", message, issue="invalid")


# -- dates ------------------------------------------------------------------------------------
def date_range(text: str) -> tuple[int, int]:
    """The range [lo, hi] (ms since the epoch, both inclusive) a FHIR date, dateTime or instant
    stands for; ValueError if it is none of them."""
    found = _DATE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text[:40]!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm])")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    tz = timezone.utc
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    start = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0),
                     int((fraction or "0").ljust(6, "0")[:6]), tzinfo=tz)
    if month is None:
        end = start.replace(year=start.year + 1)
    elif day is None:
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    elif hour is None:
        end = start + timedelta(days=1)
    elif second is None:
        end = start + timedelta(minutes=1)
    elif fraction is None:
        end = start + timedelta(seconds=1)
    else:
        end = start + timedelta(milliseconds=1)
    lo = (start - _EPOCH) // timedelta(milliseconds=1)
    hi = (end - _EPOCH) // timedelta(milliseconds=1) - 1
    return lo, max(lo, hi)


@dataclass(frozen=True, slots=True)
class DateCondition:
    """One date parameter: a prefix and the range [lo, hi] (inclusive ms) its value stands for."""

    prefix: str
    lo: int
    hi: int

    @classmethod
    def parse(cls, text: str) -> "DateCondition":
        prefix = text[:2] if text[:2] in PREFIXES else "eq"
        value = text[2:] if text[:2] in PREFIXES else text
        try:
            lo, hi = date_range(value)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return cls(prefix, lo, hi)

    def holds(self, lo: int, hi: int, now_ms: int) -> bool:
        """Whether a resource's range [lo, hi] meets this condition."""
        inside = self.lo <= lo and hi <= self.hi
        prefix = self.prefix
        if prefix == "eq":
            return inside
        if prefix == "ne":
            return not inside
        if prefix == "gt":
            return hi > self.hi
        if prefix == "lt":
            return lo < self.lo
        if prefix == "ge":
            return hi > self.hi or inside
        if prefix == "le":
            return lo < self.lo or inside
        if prefix == "sa":
            return lo > self.hi
        if prefix == "eb":
            return hi < self.lo
        slack = abs(now_ms - self.lo) // 10  # ap
        return lo <= self.hi + slack and hi >= self.lo - slack


def element_ranges(resource: JSON, elements: Iterable[str]) -> list[tuple[int, int]]:
    """The date ranges the given elements of `resource` hold (a Period's open end unbounded;
    values that are not FHIR dates are left out)."""
    out: list[tuple[int, int]] = []
    for name in elements:
        value = resource.get(name)
        try:
            if isinstance(value, str):
                out.append(date_range(value))
            elif isinstance(value, dict) and (value.get("start") or value.get("end")):
                start, end = value.get("start"), value.get("end")
                lo = date_range(start)[0] if isinstance(start, str) else UNBOUNDED_LO
                hi = date_range(end)[1] if isinstance(end, str) else UNBOUNDED_HI
                out.append((lo, hi))
        except ValueError:
            continue
    return out


# -- tokens -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Token:
    """`system|code`: system None matches any system, "" a coding without one; code None any code."""

    system: str | None
    code: str | None

    @classmethod
    def parse(cls, text: str) -> "Token":
        if "|" in text:
            system, _, code = text.partition("|")
            if not system and not code:
                raise invalid("a token is system|code, code, |code or system|")
            return cls(system, code or None)
        if not text:
            raise invalid("an empty code")
        return cls(None, text)

    def matches(self, coding: Any) -> bool:
        if not isinstance(coding, dict):
            return False
        if self.system is not None and (coding.get("system") or "") != self.system:
            return False
        return self.code is None or coding.get("code") == self.code


def codings(resource: JSON, elements: Iterable[str]) -> list[Any]:
    out: list[Any] = []
    for name in elements:
        concept = resource.get(name)
        if isinstance(concept, dict) and isinstance(concept.get("coding"), list):
            out.extend(concept["coding"])
    return out


# -- the search -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Search:
    """A parsed search. `types`: the types searched; `patient`: the patient id asked for (any
    string; only a ledger id can match); `ids`: logical ids, any of them (None: any);
    `codes`: each inner tuple ORs, the tuples AND; `params`: the selecting parameters as given
    (for the page links); `ignored`: the names of parameters left out as not supported."""

    types: tuple[str, ...]
    patient: str | None
    ids: frozenset[str] | None
    codes: tuple[tuple[Token, ...], ...]
    dates: tuple[DateCondition, ...]
    last_updated: tuple[DateCondition, ...]
    count: int
    offset: int
    now_ms: int
    params: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...] = ()

    @property
    def reads_content(self) -> bool:
        """Whether matching needs the decrypted resources (a page may then hold fewer entries)."""
        return bool(self.codes or self.dates)


def _values(text: str, name: str) -> list[str]:
    values = [v for v in text.split(",")]
    if len(values) > MAX_VALUES:
        raise invalid(f"{name}: at most {MAX_VALUES} comma-separated values")
    return values


def _int(text: str, name: str, top: int) -> int:
    if not text.isdigit() or len(text) > 9:
        raise invalid(f"{name} must be a non-negative integer")
    return min(int(text), top)


def patient_id(text: str, *, bare: bool) -> str:
    """The patient id a `patient`/`subject` value names (a reference, or a bare id where allowed)."""
    found = _PATIENT.search(text)
    if found is not None:
        return found.group(1).lower()
    if bare and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", text):
        return text.lower()
    raise invalid(f"{text[:80]!r} is not a reference to a Patient (write Patient/<patient id>)")


def allowed_params(types: Sequence[str] | None) -> tuple[str, ...]:
    """The selecting parameters of a search of one type (`types` of one), or across types (None)."""
    if types is None:
        return SYSTEM_PARAMS
    [name] = types
    return (*COMMON_PARAMS, *TYPES[name].search_params)


def parse_search(resource_type: str | None, query: Sequence[tuple[str, str]], now_ms: int, *,
                 strict: bool = False) -> Search:
    """Parse a search of `resource_type` (None: across types, `_type` names them). A parameter
    this server does not support is ignored (and named in `ignored`, as FHIR's default handling
    wants), or refused when `strict` (the client sent `Prefer: handling=strict`). A modifier is
    always refused: ignoring it would answer a broader search than the one asked."""
    if len(query) > MAX_PARAMS:
        raise invalid(f"at most {MAX_PARAMS} parameters in one search")
    allowed = allowed_params(None if resource_type is None else [resource_type])
    types: tuple[str, ...] = (resource_type,) if resource_type else tuple(TYPES)
    patient: str | None = None
    ids: frozenset[str] | None = None
    codes: list[tuple[Token, ...]] = []
    dates: list[DateCondition] = []
    updated: list[DateCondition] = []
    count, offset = DEFAULT_COUNT, 0
    kept: list[tuple[str, str]] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for name, value in query:
        if _passes_over(name, value):
            continue
        if name in RESULT_PARAMS:
            if name in seen:
                raise invalid(f"{name} given twice")
            seen.add(name)
            if name == "_count":
                count = _int(value, name, MAX_COUNT)
            else:
                offset = _int(value, name, MAX_OFFSET)
            continue
        if name not in allowed and not strict:
            ignored.append(name[:40])
            continue
        if name not in allowed:
            where = f"on {resource_type}" if resource_type else "across types (name one type, or use _type)"
            raise FhirError(400, "unsupported_search_parameter",
                            f"search parameter {name[:40]!r} is not supported {where}; supported: {', '.join(allowed)} "
                            f"and {', '.join(RESULT_PARAMS)} (see /fhir/R4/metadata)", issue="not-supported")
        kept.append((name, value))
        if name in ("patient", "subject"):
            named = patient_id(value, bare=name == "patient")
            if patient is not None and patient != named:
                patient = ""  # two different patients: nothing matches both
            elif patient is None:
                patient = named
        elif name == "_id":
            given = frozenset(v.strip().lower() for v in _values(value, name) if v.strip())
            ids = given if ids is None else ids & given
        elif name == "_type":
            asked = [v.strip() for v in _values(value, name) if v.strip()]
            unknown = [t for t in asked if t not in TYPES]
            if unknown:
                raise FhirError(400, "unsupported_type", f"_type names types this server does not serve: "
                                f"{', '.join(u[:40] for u in unknown)}", issue="not-supported")
            types = tuple(t for t in types if t in asked)
        elif name == "code":
            codes.append(tuple(Token.parse(v) for v in _values(value, name)))
        elif name == "date":
            dates.append(DateCondition.parse(value))
        elif name == "_lastUpdated":
            updated.append(DateCondition.parse(value))
    return Search(types=types, patient=patient, ids=ids, codes=tuple(codes), dates=tuple(dates),
                  last_updated=tuple(updated), count=count, offset=offset, now_ms=now_ms, params=tuple(kept),
                  ignored=tuple(ignored))



def _passes_over(name: str, value: str) -> bool:
    """Refuse a modifier (`name:exact`) or a `_format` other than JSON; True for a parameter that
    changes nothing here (IGNORED_PARAMS), which the caller skips."""
    if ":" in name:
        raise invalid(f"search modifiers are not supported ({name[:40]!r})")
    if name in IGNORED_PARAMS:
        if name == "_format" and value not in JSON_FORMATS:
            raise FhirError(406, "unsupported_format", "this server answers in JSON only (application/fhir+json)",
                            issue="not-supported")
        return True
    return False


def parse_plain(query: Sequence[tuple[str, str]], allowed: Sequence[str], now_ms: int, *,
                strict: bool = False) -> tuple[Search, dict[str, list[str]]]:
    """Parse a search of a type that is not a record (AuditEvent, Consent, Provenance): the
    result parameters, and the values of each allowed parameter (unsupported ones ignored, or
    refused when `strict`; modifiers refused). The Search carries the paging only."""
    if len(query) > MAX_PARAMS:
        raise invalid(f"at most {MAX_PARAMS} parameters in one search")
    values: dict[str, list[str]] = {}
    kept: list[tuple[str, str]] = []
    ignored: list[str] = []
    count, offset = DEFAULT_COUNT, 0
    for name, value in query:
        if _passes_over(name, value):
            continue
        if name == "_count":
            count = _int(value, name, MAX_COUNT)
        elif name == "_offset":
            offset = _int(value, name, MAX_OFFSET)
        elif name in allowed:
            kept.append((name, value))
            values.setdefault(name, []).append(value)
        elif strict:
            raise FhirError(400, "unsupported_search_parameter", f"search parameter {name[:40]!r} is not supported here; "
                            f"supported: {', '.join(allowed)} and {', '.join(RESULT_PARAMS)}", issue="not-supported")
        else:
            ignored.append(name[:40])
    search = Search(types=(), patient=None, ids=None, codes=(), dates=(), last_updated=(), count=count, offset=offset,
                    now_ms=now_ms, params=tuple(kept), ignored=tuple(ignored))
    return search, values


def matches_meta(search: Search, resource_type: str, fhir_id: str, patient: str, time_ms: int) -> bool:
    """Whether a record may match, by what the ledger says of it."""
    if resource_type not in search.types:
        return False
    if search.patient is not None and search.patient != patient:
        return False
    if search.ids is not None and fhir_id not in search.ids:
        return False
    return all(c.holds(time_ms, time_ms, search.now_ms) for c in search.last_updated)


def matches_content(search: Search, resource: JSON) -> bool:
    """Whether a resource (the type's elements) meets the search's `code` and `date` conditions."""
    info = TYPES.get(str(resource.get("resourceType")))
    if info is None:
        return False
    if search.codes:
        found = codings(resource, info.code_elements)
        if not all(any(t.matches(c) for t in tokens for c in found) for tokens in search.codes):
            return False
    if search.dates:
        ranges = element_ranges(resource, info.date_elements)
        if not all(any(c.holds(lo, hi, search.now_ms) for lo, hi in ranges) for c in search.dates):
            return False
    return True


# -- the answer -------------------------------------------------------------------------------
def page_url(base: str, search: Search, offset: int) -> str:
    return base + "?" + urlencode([*search.params, ("_count", str(search.count)), ("_offset", str(offset))])


def searchset(base: str, search: Search, entries: Sequence[tuple[str, JSON]], *, candidates: int,
              outcome: JSON | None = None) -> JSON:
    """The searchset Bundle of one page. `base`: the absolute URL searched (without query);
    `entries`: (fullUrl, resource) of the matches; `candidates`: how many records the ledger
    selected before content matching (the page read [offset, offset + count) of them)."""
    links = [{"relation": "self", "url": page_url(base, search, search.offset)}]
    end = search.offset + search.count
    if search.count and end < candidates:
        links.append({"relation": "next", "url": page_url(base, search, end)})
    if search.offset > 0 and search.count:
        links.append({"relation": "previous", "url": page_url(base, search, max(0, search.offset - search.count))})
    bundle: JSON = {"resourceType": "Bundle", "type": "searchset"}
    if not search.reads_content:
        bundle["total"] = candidates
    bundle["link"] = links
    items: list[JSON] = [{"fullUrl": url, "resource": res, "search": {"mode": "match"}} for url, res in entries]
    if outcome is not None:
        items.append({"resource": outcome, "search": {"mode": "outcome"}})
    if items:
        bundle["entry"] = items
    return bundle
