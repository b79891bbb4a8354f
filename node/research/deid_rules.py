"""The Safe Harbor rules for single FHIR values and small structures (node/research/safe_harbor.py
applies them per resource type): dates become years (none showing an age over 89), codes and
URIs stay only when they are plain tokens, codings keep a display only from a standard
terminology, quantities of years over 89 become "> 89 a", ZIP codes their first three digits,
and references become study pseudonyms or are dropped.

Each rule is a `Handler(value, ctx)`: it returns the de-identified value, or None to drop it;
`struct` builds one for a structure from the handlers of the elements it keeps (an allow-list:
an element no handler names is not copied).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from node.research.pseudonyms import Pseudonyms

AGE_GROUP_EXTENSION = "urn:medledger:fhir:extension:age-group"
UCUM = "http://unitsofmeasure.org"
OLDEST_EXACT_AGE = 89

# 45 CFR 164.514(b)(2)(i)(B): three-digit ZIP prefixes with 20,000 people or fewer (2000 Census).
RESTRICTED_ZIP3 = frozenset(
    {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890", "893"}
)

# The types released with a spec of their own; references to any other type are dropped.
RELEASED_TYPES = frozenset(
    {"Patient", "Encounter", "Observation", "Condition", "DiagnosticReport", "MedicationRequest", "Procedure",
     "AllergyIntolerance", "Immunization", "CarePlan", "MedicationAdministration", "MedicationDispense"}
)

# Code systems whose displays are the terminology's own text, not something a user typed.
TERMINOLOGIES = frozenset(
    {"http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm", UCUM,
     "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-9-cm",
     "http://hl7.org/fhir/sid/cvx", "http://hl7.org/fhir/sid/ndc", "http://www.ama-assn.org/go/cpt"}
)
TERMINOLOGY_PREFIXES = ("http://terminology.hl7.org/CodeSystem/",)

_TOKEN = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")  # a code: no whitespace, no control characters
_URI = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")
_UNIT = re.compile(r"[^\s\x00-\x1f\x7f]{1,32}")
_DATE = re.compile(r"(\d{4})(?:-\d{2}(?:-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)?)?")
_ZIP5 = re.compile(r"(\d{3})\d{2}(?:-?\d{4})?")
_ZIP3 = re.compile(r"\d{3}")
_REFERENCE = re.compile(
    r"(?:https?://\S+?/)?([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)
_PLACEHOLDER = re.compile(r"urn:uuid:([A-Za-z0-9\-.]{1,64})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_YEAR_UNITS = frozenset({"a", "y", "yr", "yrs", "year", "years", "years old", "yo"})


class ResourceWithheld(Exception):
    """The resource cannot be released in de-identified form; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules know besides the value: the pseudonyms, the year ages are counted at, the
    pseudonym of the patient the ledger registered the resource for (``owner``: every patient
    link becomes it, whatever the resource said) and the type of each local id the custodian
    holds (``types_by_id``: a ``urn:uuid:<id>`` reference is resolved through it)."""

    pseudonyms: Pseudonyms
    reference_year: int
    owner: str | None = None
    types_by_id: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Any, Context], Any]


# --- rules for single values -------------------------------------------------------------------


def year_of(value: Any) -> int | None:
    """The year of a FHIR date, dateTime or instant, or None if it is not one."""
    if not isinstance(value, str):
        return None
    match = _DATE.fullmatch(value)
    return int(match.group(1)) if match else None


def zip3_of(postal_code: Any) -> str | None:
    """The Safe Harbor form of a US ZIP code: its first three digits, "000" for restricted ones."""
    if not isinstance(postal_code, str):
        return None
    code = postal_code.strip()
    match = _ZIP5.fullmatch(code)
    prefix = match.group(1) if match else (code if _ZIP3.fullmatch(code) else None)
    if prefix is None:
        return None
    return "000" if prefix in RESTRICTED_ZIP3 else prefix


def parse_reference(reference: Any) -> tuple[str, str] | None:
    """(type, id) of a relative or absolute literal reference; None for anything else."""
    if not isinstance(reference, str):
        return None
    match = _REFERENCE.fullmatch(reference)
    return (match.group(1), match.group(2)) if match else None


def age_group_extension(low: int, high: int | None = None) -> dict[str, Any]:
    """The extension that stands for an age band in years (``high`` None: ``low`` or older)."""
    def years(value: int) -> dict[str, Any]:
        return {"value": value, "unit": "a", "system": UCUM, "code": "a"}

    value_range = {"low": years(low)} if high is None else {"low": years(low), "high": years(high)}
    return {"url": AGE_GROUP_EXTENSION, "valueRange": value_range}


def _year_allowed(year: int, ctx: Context) -> bool:
    # A year at least 90 years back shows the patient is over 89: Safe Harbor removes it.
    return ctx.reference_year - year <= OLDEST_EXACT_AGE


def year_value(value: Any, ctx: Context) -> str | None:
    year = year_of(value)
    return f"{year:04d}" if year is not None and _year_allowed(year, ctx) else None


def _token(value: Any, ctx: Context) -> str | None:
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def _uri(value: Any, ctx: Context) -> str | None:
    return value if isinstance(value, str) and _URI.fullmatch(value) else None


def one_of(*codes: str) -> Handler:
    allowed = frozenset(codes)

    def handle(value: Any, ctx: Context) -> str | None:
        return value if isinstance(value, str) and value in allowed else None

    return handle


def _boolean(value: Any, ctx: Context) -> bool | None:
    return value if isinstance(value, bool) else None


def _integer(value: Any, ctx: Context) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _positive_int(value: Any, ctx: Context) -> int | None:
    return value if _integer(value, ctx) is not None and value > 0 else None


def _unsigned_int(value: Any, ctx: Context) -> int | None:
    return value if _integer(value, ctx) is not None and value >= 0 else None


def _decimal(value: Any, ctx: Context) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _short_text(limit: int) -> Handler:
    # Only for strings a terminology defines (coding.display), never for free-text elements.
    def handle(value: Any, ctx: Context) -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value) > limit or _CONTROL.search(value):
            return None
        return value

    return handle


def _unit(value: Any, ctx: Context) -> str | None:
    # A unit is a short symbol (mg/dL, mm[Hg], beats/minute); anything with spaces could be prose.
    return value if isinstance(value, str) and _UNIT.fullmatch(value) else None


def _is_terminology(system: str) -> bool:
    return system in TERMINOLOGIES or system.startswith(TERMINOLOGY_PREFIXES)


def _coding(value: Any, ctx: Context) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    code = _token(value.get("code"), ctx)
    if code is None:
        return None  # a coding without a code is only its display: free text
    out: dict[str, Any] = {}
    system = _uri(value.get("system"), ctx)
    if system is not None:
        out["system"] = system
        version = _uri(value.get("version"), ctx)
        if version is not None:
            out["version"] = version
    out["code"] = code
    display = _short_text(256)(value.get("display"), ctx)
    if display is not None and system is not None and _is_terminology(system):
        out["display"] = display
    if isinstance(value.get("userSelected"), bool):
        out["userSelected"] = value["userSelected"]
    return out


def _is_years(quantity: Mapping[str, Any]) -> bool:
    # Judged on the source, so an age whose unit is dropped (too long, has spaces) is still one.
    code, unit = quantity.get("code"), quantity.get("unit")
    if isinstance(code, str):
        return code == "a" and quantity.get("system", UCUM) == UCUM
    return isinstance(unit, str) and unit.strip().lower().rstrip(".") in _YEAR_UNITS


def _quantity_with(*, comparator: bool) -> Handler:
    def handle(value: Any, ctx: Context) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            return None
        out: dict[str, Any] = {}
        number = _decimal(value.get("value"), ctx)
        if number is not None:
            out["value"] = number
        if comparator and value.get("comparator") in ("<", "<=", ">=", ">"):
            out["comparator"] = value["comparator"]
        for name, rule in (("unit", _unit), ("system", _uri), ("code", _token)):
            kept = rule(value.get(name), ctx)
            if kept is not None:
                out[name] = kept
        if number is not None and number > OLDEST_EXACT_AGE and _is_years(value):
            # An age over 89: only "over 89" may be said, and only where a comparator is allowed.
            if not comparator or out.get("comparator") in ("<", "<="):
                return None
            out["value"], out["comparator"] = OLDEST_EXACT_AGE, ">"
        return out or None

    return handle


Required = tuple[str | tuple[str, ...], ...]
Spec = Mapping[str, Handler | tuple[str, Handler]]


def _apply(handler: Handler, value: Any, ctx: Context) -> Any:
    if isinstance(value, list):
        kept = [out for item in value if (out := handler(item, ctx)) is not None]
        return kept or None
    return handler(value, ctx)


def apply_spec(source: Mapping[str, Any], spec: Spec, ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rule in spec.items():
        if name not in source:
            continue
        target, handler = rule if isinstance(rule, tuple) else (name, rule)
        kept = _apply(handler, source[name], ctx)
        if kept is not None:
            out[target] = kept
    return out


def missing_required(out: Mapping[str, Any], required: Required) -> str | None:
    for need in required:
        names = need if isinstance(need, tuple) else (need,)
        if not any(name in out for name in names):
            return "|".join(names)
    return None


def struct(spec: Spec, required: Required = ()) -> Handler:
    def handle(value: Any, ctx: Context) -> dict[str, Any] | None:
        # A modifier extension changes the meaning of its element: drop the element rather than
        # release it with a meaning it did not have.
        if not isinstance(value, dict) or "modifierExtension" in value:
            return None
        out = apply_spec(value, spec, ctx)
        if not out or missing_required(out, required) is not None:
            return None
        return out

    return handle


def _placeholder_target(value: Mapping[str, Any], ctx: Context) -> tuple[str, str] | None:
    # Synthea's bundles reference by urn:uuid:<the target's id>; the custodian knows its ids' types.
    match = _PLACEHOLDER.fullmatch(value["reference"]) if isinstance(value.get("reference"), str) else None
    if match is None or match.group(1) not in ctx.types_by_id:
        return None
    return ctx.types_by_id[match.group(1)], match.group(1)


def reference_to(*types: str) -> Handler:
    allowed = frozenset(types)
    assert allowed <= RELEASED_TYPES, allowed - RELEASED_TYPES

    def handle(value: Any, ctx: Context) -> dict[str, str] | None:
        if not isinstance(value, dict):
            return None
        parsed = parse_reference(value.get("reference")) or _placeholder_target(value, ctx)
        if parsed is None or parsed[0] not in allowed:
            return None
        pseudonym = ctx.pseudonyms.pseudonym(*parsed)
        return {"reference": f"{parsed[0]}/{pseudonym}"} if pseudonym else None

    return handle


# --- short names the type specs use ---------------------------------------------------------

CC = struct({"coding": _coding})
CODING = _coding
TOKEN = _token
BOOL = _boolean
INT = _integer
POSINT = _positive_int
UNSIGNED = _unsigned_int
DEC = _decimal
YEAR = year_value
QTY = _quantity_with(comparator=True)
SIMPLE_QTY = _quantity_with(comparator=False)
RANGE = struct({"low": SIMPLE_QTY, "high": SIMPLE_QTY})
RATIO = struct({"numerator": QTY, "denominator": QTY})
PERIOD = struct({"start": YEAR, "end": YEAR})
_TO_PATIENT = reference_to("Patient")


def _patient_link(value: Any, ctx: Context) -> dict[str, str] | None:
    # The ledger's link is authoritative: the patient the record was registered for, whatever
    # id or placeholder the submitting system wrote.
    if ctx.owner is not None:
        return {"reference": f"Patient/{ctx.owner}"}
    return _TO_PATIENT(value, ctx)


PATIENT_LINK: Handler = _patient_link
ENCOUNTER_LINK = reference_to("Encounter")
