"""De-identification of FHIR R4 resources by HIPAA Safe Harbor (45 CFR 164.514(b)(2)).

Theory of operation. Nothing is copied unless this module knows it is safe: every resource type
we release has an allow-list (a spec) naming each element we keep and the handler that rewrites
it. An element the spec does not name — a name, telecom, identifier, photo, contact, note,
narrative ``text``, contained resource, extension, ``meta``, a free-text string, an element a
future FHIR version adds — is not copied. Handlers then apply the Safe Harbor rules to what is
kept:

- dates and dateTimes become their year; an instant (``issued``) is dropped because FHIR requires
  it to be a full timestamp; a year 90 or more years before the reference year is dropped too,
  because it shows the patient is over 89 (the rule's "elements of dates indicative of such age");
- a birth date that makes the patient 90 or older at the reference year is replaced by the
  age-group extension ``AGE_GROUP_EXTENSION`` with ``valueRange.low = 90 a`` (no birthDate), and
  ages over 89 in Quantities (UCUM ``a``) become "> 89 a";
- an address keeps only state, country and the first three digits of a US ZIP code, "000" for
  the 17 prefixes of fewer than 20,000 people (``RESTRICTED_ZIP3``); state and country only as
  codes or US state names, so a mistyped field cannot carry a name through;
- a resource id and every kept reference become study pseudonyms (see ``pseudonyms.py``);
  references to types we do not release (Practitioner, Organization, Location, Device...) are
  dropped, as are ``Reference.display`` and ``Reference.identifier``;
- a CodeableConcept keeps its codings, never its ``text``; a coding keeps system, code and
  version, and its ``display`` only when the system is a standard terminology whose displays are
  the system's own words (LOINC, SNOMED CT, RxNorm, ICD, HL7 code systems...), since a local
  system's display may be whatever a user typed.

A resource that carries ``modifierExtension`` or ``implicitRules`` is withheld: dropping them
would change what the rest means. A resource that loses an element FHIR requires (an
Observation whose code was only free text) is withheld too, with a reason, rather than released
invalid. A type without a spec gets a conservative default (status, category, code and the
patient link) and is released only if that still validates as its FHIR R4 type.

The same handlers run on the researcher's side over what custodians send, with
``ExistingPseudonyms`` so ids are kept only if they already are pseudonyms; the rules are
idempotent, so a correct release passes through unchanged and a faulty one is cleaned again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from node.records.fhir import GENDERS, STATUS_CODES

from node.research.pseudonyms import KeyedPseudonyms, Pseudonyms

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
     "AllergyIntolerance", "Immunization"}
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_YEAR_UNITS = frozenset({"a", "y", "yr", "yrs", "year", "years", "years old", "yo"})


class ResourceWithheld(Exception):
    """The resource cannot be released in de-identified form; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Context:
    pseudonyms: Pseudonyms
    reference_year: int


Handler = Callable[[Any, _Context], Any]


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


def _year_allowed(year: int, ctx: _Context) -> bool:
    # A year at least 90 years back shows the patient is over 89: Safe Harbor removes it.
    return ctx.reference_year - year <= OLDEST_EXACT_AGE


def _year(value: Any, ctx: _Context) -> str | None:
    year = year_of(value)
    return f"{year:04d}" if year is not None and _year_allowed(year, ctx) else None


def _token(value: Any, ctx: _Context) -> str | None:
    return value if isinstance(value, str) and _TOKEN.fullmatch(value) else None


def _uri(value: Any, ctx: _Context) -> str | None:
    return value if isinstance(value, str) and _URI.fullmatch(value) else None


def _one_of(*codes: str) -> Handler:
    allowed = frozenset(codes)

    def handle(value: Any, ctx: _Context) -> str | None:
        return value if isinstance(value, str) and value in allowed else None

    return handle


def _boolean(value: Any, ctx: _Context) -> bool | None:
    return value if isinstance(value, bool) else None


def _integer(value: Any, ctx: _Context) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _positive_int(value: Any, ctx: _Context) -> int | None:
    return value if _integer(value, ctx) is not None and value > 0 else None


def _unsigned_int(value: Any, ctx: _Context) -> int | None:
    return value if _integer(value, ctx) is not None and value >= 0 else None


def _decimal(value: Any, ctx: _Context) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _short_text(limit: int) -> Handler:
    # Only for strings a terminology defines (coding.display), never for free-text elements.
    def handle(value: Any, ctx: _Context) -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value) > limit or _CONTROL.search(value):
            return None
        return value

    return handle


def _unit(value: Any, ctx: _Context) -> str | None:
    # A unit is a short symbol (mg/dL, mm[Hg], beats/minute); anything with spaces could be prose.
    return value if isinstance(value, str) and _UNIT.fullmatch(value) else None


def _is_terminology(system: str) -> bool:
    return system in TERMINOLOGIES or system.startswith(TERMINOLOGY_PREFIXES)


def _coding(value: Any, ctx: _Context) -> dict[str, Any] | None:
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
    def handle(value: Any, ctx: _Context) -> dict[str, Any] | None:
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


def _apply(handler: Handler, value: Any, ctx: _Context) -> Any:
    if isinstance(value, list):
        kept = [out for item in value if (out := handler(item, ctx)) is not None]
        return kept or None
    return handler(value, ctx)


def _apply_spec(source: Mapping[str, Any], spec: Spec, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rule in spec.items():
        if name not in source:
            continue
        target, handler = rule if isinstance(rule, tuple) else (name, rule)
        kept = _apply(handler, source[name], ctx)
        if kept is not None:
            out[target] = kept
    return out


def _missing(out: Mapping[str, Any], required: Required) -> str | None:
    for need in required:
        names = need if isinstance(need, tuple) else (need,)
        if not any(name in out for name in names):
            return "|".join(names)
    return None


def _struct(spec: Spec, required: Required = ()) -> Handler:
    def handle(value: Any, ctx: _Context) -> dict[str, Any] | None:
        # A modifier extension changes the meaning of its element: drop the element rather than
        # release it with a meaning it did not have.
        if not isinstance(value, dict) or "modifierExtension" in value:
            return None
        out = _apply_spec(value, spec, ctx)
        if not out or _missing(out, required) is not None:
            return None
        return out

    return handle


def _reference(*types: str) -> Handler:
    allowed = frozenset(types)
    assert allowed <= RELEASED_TYPES, allowed - RELEASED_TYPES

    def handle(value: Any, ctx: _Context) -> dict[str, str] | None:
        if not isinstance(value, dict):
            return None
        parsed = parse_reference(value.get("reference"))
        if parsed is None or parsed[0] not in allowed:
            return None
        pseudonym = ctx.pseudonyms.pseudonym(*parsed)
        return {"reference": f"{parsed[0]}/{pseudonym}"} if pseudonym else None

    return handle


# --- specs of the released types ----------------------------------------------------------------

CC = _struct({"coding": _coding})
CODING = _coding
TOKEN = _token
BOOL = _boolean
INT = _integer
POSINT = _positive_int
UNSIGNED = _unsigned_int
DEC = _decimal
YEAR = _year
QTY = _quantity_with(comparator=True)
SIMPLE_QTY = _quantity_with(comparator=False)
RANGE = _struct({"low": SIMPLE_QTY, "high": SIMPLE_QTY})
RATIO = _struct({"numerator": QTY, "denominator": QTY})
PERIOD = _struct({"start": YEAR, "end": YEAR})
PATIENT_LINK = _reference("Patient")
ENCOUNTER_LINK = _reference("Encounter")


def _status(resource_type: str) -> Handler:
    return _one_of(*STATUS_CODES[resource_type])


def _onset(prefix: str) -> dict[str, Handler]:
    return {f"{prefix}DateTime": YEAR, f"{prefix}Age": QTY, f"{prefix}Period": PERIOD, f"{prefix}Range": RANGE}


_OBSERVATION_VALUE: dict[str, Handler] = {
    "valueQuantity": QTY, "valueCodeableConcept": CC, "valueBoolean": BOOL, "valueInteger": INT,
    "valueRange": RANGE, "valueRatio": RATIO, "valueDateTime": YEAR, "valuePeriod": PERIOD,
}
_REFERENCE_RANGE = _struct({"low": SIMPLE_QTY, "high": SIMPLE_QTY, "type": CC, "appliesTo": CC, "age": RANGE})
_TIMING = _struct({
    "repeat": _struct({
        "boundsDuration": QTY, "boundsRange": RANGE, "boundsPeriod": PERIOD, "count": POSINT, "countMax": POSINT,
        "duration": DEC, "durationMax": DEC, "durationUnit": _one_of("s", "min", "h", "d", "wk", "mo", "a"),
        "frequency": POSINT, "frequencyMax": POSINT, "period": DEC, "periodMax": DEC,
        "periodUnit": _one_of("s", "min", "h", "d", "wk", "mo", "a"),
        "dayOfWeek": _one_of("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "when": TOKEN, "offset": UNSIGNED,
    }),
    "code": CC,
})
_DOSAGE = _struct({
    "sequence": INT, "additionalInstruction": CC, "timing": _TIMING, "asNeededBoolean": BOOL,
    "asNeededCodeableConcept": CC, "site": CC, "route": CC, "method": CC,
    "doseAndRate": _struct({"type": CC, "doseRange": RANGE, "doseQuantity": SIMPLE_QTY, "rateRatio": RATIO,
                            "rateRange": RANGE, "rateQuantity": SIMPLE_QTY}),
    "maxDosePerPeriod": RATIO, "maxDosePerAdministration": SIMPLE_QTY, "maxDosePerLifetime": SIMPLE_QTY,
})


@dataclass(frozen=True, slots=True)
class _TypeRule:
    spec: Spec
    required: Required = ()


TYPE_RULES: dict[str, _TypeRule] = {
    "Observation": _TypeRule({
        "status": _status("Observation"), "category": CC, "code": CC, "subject": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, "effectiveDateTime": YEAR, "effectivePeriod": PERIOD,
        "effectiveInstant": ("effectiveDateTime", YEAR), **_OBSERVATION_VALUE, "dataAbsentReason": CC,
        "interpretation": CC, "bodySite": CC, "method": CC, "referenceRange": _REFERENCE_RANGE,
        "hasMember": _reference("Observation"), "derivedFrom": _reference("Observation"),
        "partOf": _reference("Procedure", "Immunization"),
        "component": _struct({"code": CC, **_OBSERVATION_VALUE, "dataAbsentReason": CC, "interpretation": CC,
                              "referenceRange": _REFERENCE_RANGE}, required=("code",)),
    }, required=("status", "code")),
    "Condition": _TypeRule({
        "clinicalStatus": CC, "verificationStatus": CC, "category": CC, "severity": CC, "code": CC, "bodySite": CC,
        "subject": PATIENT_LINK, "encounter": ENCOUNTER_LINK, **_onset("onset"), **_onset("abatement"),
        "recordedDate": YEAR, "stage": _struct({"summary": CC, "type": CC}),
        "evidence": _struct({"code": CC, "detail": _reference("Observation", "Condition", "DiagnosticReport", "Procedure")}),
    }, required=("subject",)),
    "Encounter": _TypeRule({
        "status": _status("Encounter"), "class": CODING, "type": CC, "serviceType": CC, "priority": CC,
        "subject": PATIENT_LINK, "period": PERIOD, "length": QTY,
        "statusHistory": _struct({"status": _status("Encounter"), "period": PERIOD}, required=("status", "period")),
        "classHistory": _struct({"class": CODING, "period": PERIOD}, required=("class", "period")),
        "reasonCode": CC, "reasonReference": _reference("Condition", "Procedure", "Observation", "Immunization"),
        "diagnosis": _struct({"condition": _reference("Condition", "Procedure"), "use": CC, "rank": POSINT},
                             required=("condition",)),
        "hospitalization": _struct({"admitSource": CC, "reAdmission": CC, "dischargeDisposition": CC}),
        "partOf": ENCOUNTER_LINK,
    }, required=("status", "class")),
    "DiagnosticReport": _TypeRule({
        "status": _status("DiagnosticReport"), "category": CC, "code": CC, "subject": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, "effectiveDateTime": YEAR, "effectivePeriod": PERIOD,
        "result": _reference("Observation"), "conclusionCode": CC,
    }, required=("status", "code")),
    "MedicationRequest": _TypeRule({
        "status": _status("MedicationRequest"), "statusReason": CC,
        "intent": _one_of("proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
                          "instance-order", "option"),
        "category": CC, "priority": _one_of("routine", "urgent", "asap", "stat"), "doNotPerform": BOOL,
        "reportedBoolean": BOOL, "medicationCodeableConcept": CC, "subject": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, "authoredOn": YEAR, "performerType": CC, "reasonCode": CC,
        "reasonReference": _reference("Condition", "Observation"), "courseOfTherapyType": CC,
        "dosageInstruction": _DOSAGE,
        "dispenseRequest": _struct({"validityPeriod": PERIOD, "numberOfRepeatsAllowed": UNSIGNED,
                                    "quantity": SIMPLE_QTY, "expectedSupplyDuration": QTY,
                                    "initialFill": _struct({"quantity": SIMPLE_QTY, "duration": QTY}),
                                    "dispenseInterval": QTY}),
        "substitution": _struct({"allowedBoolean": BOOL, "allowedCodeableConcept": CC, "reason": CC},
                                required=(("allowedBoolean", "allowedCodeableConcept"),)),
        "priorPrescription": _reference("MedicationRequest"),
    }, required=("status", "intent", "subject", "medicationCodeableConcept")),
    "Procedure": _TypeRule({
        "status": _status("Procedure"), "statusReason": CC, "category": CC, "code": CC, "subject": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, "performedDateTime": YEAR, "performedPeriod": PERIOD, "performedAge": QTY,
        "performedRange": RANGE, "reasonCode": CC,
        "reasonReference": _reference("Condition", "Observation", "Procedure", "DiagnosticReport"),
        "bodySite": CC, "outcome": CC, "report": _reference("DiagnosticReport"), "complication": CC,
        "complicationDetail": _reference("Condition"), "followUp": CC, "usedCode": CC,
        "partOf": _reference("Procedure", "Observation"),
    }, required=("status", "subject")),
    "AllergyIntolerance": _TypeRule({
        "clinicalStatus": CC, "verificationStatus": CC, "type": _one_of("allergy", "intolerance"),
        "category": _one_of("food", "medication", "environment", "biologic"),
        "criticality": _one_of("low", "high", "unable-to-assess"), "code": CC, "patient": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, **_onset("onset"), "recordedDate": YEAR, "lastOccurrence": YEAR,
        "reaction": _struct({"substance": CC, "manifestation": CC, "onset": YEAR,
                             "severity": _one_of("mild", "moderate", "severe"), "exposureRoute": CC},
                            required=("manifestation",)),
    }, required=("patient",)),
    "Immunization": _TypeRule({
        "status": _one_of("completed", "entered-in-error", "not-done"), "statusReason": CC, "vaccineCode": CC,
        "patient": PATIENT_LINK, "encounter": ENCOUNTER_LINK, "occurrenceDateTime": YEAR, "recorded": YEAR,
        "primarySource": BOOL, "reportOrigin": CC, "expirationDate": YEAR, "site": CC, "route": CC,
        "doseQuantity": SIMPLE_QTY, "reasonCode": CC,
        "reasonReference": _reference("Condition", "Observation", "DiagnosticReport"), "isSubpotent": BOOL,
        "subpotentReason": CC, "programEligibility": CC, "fundingSource": CC,
        "reaction": _struct({"date": YEAR, "reported": BOOL}),
        "protocolApplied": _struct({"targetDisease": CC, "doseNumberPositiveInt": POSINT,
                                    "seriesDosesPositiveInt": POSINT}, required=("doseNumberPositiveInt",)),
    }, required=("status", "vaccineCode", "patient", "occurrenceDateTime")),
}

# Any other type: what most clinical resources share, kept only if the result is valid FHIR R4.
DEFAULT_RULE = _TypeRule({"status": TOKEN, "category": CC, "code": CC, "subject": PATIENT_LINK,
                          "patient": PATIENT_LINK, "encounter": ENCOUNTER_LINK})
PATIENT_LINK_ELEMENTS = ("subject", "patient")

# State and country pass only as codes (MA, ON, US, USA) or as the name of a US state or
# territory, so a free-text address field cannot carry anything else through.
US_STATE_NAMES = frozenset({
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida",
    "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine",
    "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada",
    "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio", "Oklahoma",
    "Oregon", "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah",
    "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming", "District of Columbia",
    "Puerto Rico", "Guam", "U.S. Virgin Islands", "American Samoa", "Northern Mariana Islands",
})
_REGION_CODE = re.compile(r"[A-Z]{2,3}")


def _state(value: Any, ctx: _Context) -> str | None:
    if isinstance(value, str) and (_REGION_CODE.fullmatch(value) or value in US_STATE_NAMES):
        return value
    return None


def _country(value: Any, ctx: _Context) -> str | None:
    if isinstance(value, str) and (_REGION_CODE.fullmatch(value) or value in ("United States", "United States of America")):
        return value
    return None


_ADDRESS_PARTS: dict[str, Handler] = {"state": _state, "country": _country}


def _choose_address(addresses: Any) -> dict[str, Any] | None:
    # One address only, so a patient has one place for k-anonymity: the current home address if
    # there is one, else the first current one, else the first.
    if isinstance(addresses, dict):
        addresses = [addresses]
    if not isinstance(addresses, list):
        return None
    pool = [a for a in addresses if isinstance(a, dict)]
    current = [a for a in pool if a.get("use") != "old" and not (isinstance(a.get("period"), dict) and "end" in a["period"])]
    pool = current or pool
    homes = [a for a in pool if a.get("use") == "home"]
    chosen = homes or pool
    return chosen[0] if chosen else None


def is_age_90_plus(patient: Mapping[str, Any]) -> bool:
    """Whether a de-identified Patient carries the "90 or older" age group."""
    extensions = patient.get("extension")
    for ext in extensions if isinstance(extensions, list) else ():
        if isinstance(ext, dict) and ext.get("url") == AGE_GROUP_EXTENSION:
            value_range = ext.get("valueRange")
            if (isinstance(value_range, dict) and "high" not in value_range
                    and isinstance(value_range.get("low"), dict) and value_range["low"].get("value") == OLDEST_EXACT_AGE + 1):
                return True
    return False


def _patient(source: Mapping[str, Any], ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    birth_year = year_of(source.get("birthDate"))
    ninety_plus = is_age_90_plus(source) or (
        birth_year is not None and ctx.reference_year - birth_year > OLDEST_EXACT_AGE
    )
    if ninety_plus:
        out["extension"] = [age_group_extension(OLDEST_EXACT_AGE + 1)]
    gender = _one_of(*GENDERS)(source.get("gender"), ctx)
    if gender is not None:
        out["gender"] = gender
    if birth_year is not None and not ninety_plus:
        out["birthDate"] = f"{birth_year:04d}"
    if isinstance(source.get("deceasedBoolean"), bool):
        out["deceasedBoolean"] = source["deceasedBoolean"]
    elif "deceasedDateTime" in source:
        death_year = _year(source["deceasedDateTime"], ctx)
        if death_year is not None:
            out["deceasedDateTime"] = death_year
        elif year_of(source["deceasedDateTime"]) is not None:
            out["deceasedBoolean"] = True  # the year itself would show an age over 89
    address = _choose_address(source.get("address"))
    if address is not None:
        kept = _apply_spec(address, _ADDRESS_PARTS, ctx)
        zip3 = zip3_of(address.get("postalCode"))
        if zip3 is not None:
            kept["postalCode"] = zip3
        if kept:
            out["address"] = [kept]
    return out


def _valid_fhir(resource: dict[str, Any]) -> bool:
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except (ValidationError, ValueError, KeyError):
        return False
    return True


def _is_fhir_type(resource_type: str) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return False
    return True


class Deidentifier:
    """Applies the Safe Harbor rules to resources, with pseudonyms from the given source."""

    __slots__ = ("_ctx",)

    def __init__(self, pseudonyms: Pseudonyms, *, reference_year: int) -> None:
        self._ctx = _Context(pseudonyms=pseudonyms, reference_year=reference_year)

    @property
    def reference_year(self) -> int:
        """The year ages are counted at."""
        return self._ctx.reference_year

    def resource(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """The de-identified copy of a resource; raises ResourceWithheld if it cannot be released."""
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise ResourceWithheld("not a FHIR resource")
        rtype = resource["resourceType"]
        if rtype not in RELEASED_TYPES and not _is_fhir_type(rtype):
            raise ResourceWithheld("not a FHIR R4 resource type")
        if "modifierExtension" in resource or "implicitRules" in resource:
            raise ResourceWithheld(f"{rtype} has a modifier extension or implicit rules")
        if not isinstance(resource.get("id"), str):
            raise ResourceWithheld(f"{rtype} has no id")
        pseudonym = self._ctx.pseudonyms.pseudonym(rtype, resource["id"])
        if pseudonym is None:
            raise ResourceWithheld(f"{rtype} id is not a pseudonym")
        if rtype == "Patient":
            body = _patient(resource, self._ctx)
        else:
            rule = TYPE_RULES.get(rtype, DEFAULT_RULE)
            body = _apply_spec(resource, rule.spec, self._ctx)
            missing = _missing(body, rule.required)
            if missing is not None:
                raise ResourceWithheld(f"{rtype}.{missing} missing after de-identification")
        out = {"resourceType": rtype, "id": pseudonym, **body}
        if rtype not in RELEASED_TYPES and not _valid_fhir(out):
            raise ResourceWithheld(f"{rtype} not valid after de-identification")
        return out


def deidentify(
    resource: Mapping[str, Any],
    *,
    study_key: bytes,
    reference_date_year: int,
    namespace: str = "",
    persons: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """De-identify one resource for a study; raises ResourceWithheld if it cannot be released.

    ``namespace`` (the custodian) keeps local ids of different custodians apart; ``persons`` maps
    local Patient ids to the person key the ledger knows them under, so a patient gets one
    pseudonym at every custodian.
    """
    pseudonyms = KeyedPseudonyms(study_key, namespace=namespace, persons=persons)
    return Deidentifier(pseudonyms, reference_year=reference_date_year).resource(resource)
