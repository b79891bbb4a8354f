"""A clinical trial's eligibility criteria: their machine-readable form, and their evaluation
over one patient's FHIR resources.

A site evaluates the criteria over its own decrypted records, locally (feasibility and
recruitment, issue 21): nothing here reads the ledger, the disk or the network, so the ledger
checks a trial's criteria with `parse` when it is registered and a site evaluates them with
`matches`, the same code. The criteria are a
JSON document, stored on the ledger in canonical form (sorted keys, no floats: values with a
fraction are decimal strings), so every validator stores and hashes the same bytes:

    {"version": 1,
     "age": {"min": 18, "max": 75},                 whole years on the evaluation date, inclusive
     "sex": ["female", "male"],                     Patient.gender, any of
     "include": [CRITERION, ...],                   every one must match (AND)
     "exclude": [CRITERION, ...]}                   none may match

    CRITERION = {"resource": "Condition" | "Observation" | "MedicationRequest" | "Procedure",
                 "system": one of SYSTEMS (LOINC, SNOMED CT, ICD-10, ICD-10-CM, RxNorm),
                 "codes": ["44054006", ...],        any of
                 "value": {"min": "7.0", "max": "10", "unit": "%"}}   Observation only: valueQuantity
                                                                      within [min, max] in that unit

A criterion matches when at least one of the patient's resources of that type carries one of
the codes in that system (in `code`, or `medicationCodeableConcept` for a MedicationRequest)
and, with `value`, an Observation's valueQuantity is in range (same UCUM code or unit). A
resource marked entered-in-error, or a Condition whose clinicalStatus is inactive, resolved or
remission, does not count. An age band or a sex needs the patient's Patient resource (none, or
two that disagree, match nothing). Every list is bounded (CriteriaInvalid otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

SYSTEMS = {
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "icd10": "http://hl7.org/fhir/sid/icd-10",
    "icd10cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
}
RESOURCES = ("Condition", "Observation", "MedicationRequest", "Procedure")
SEXES = ("female", "male", "other", "unknown")
MAX_CRITERIA = 16  # per list (include, exclude)
MAX_CODES = 32
MAX_AGE = 150
MAX_BYTES = 8 * 1024  # the canonical form
INACTIVE_CONDITION = {"inactive", "resolved", "remission"}


class CriteriaInvalid(ValueError):
    """Criteria that may not be registered, with the reason."""


@dataclass(frozen=True, slots=True)
class Criterion:
    resource: str
    system: str
    codes: frozenset[str]
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Criteria:
    min_age: int | None
    max_age: int | None
    sexes: frozenset[str] | None
    include: tuple[Criterion, ...]
    exclude: tuple[Criterion, ...]


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CriteriaInvalid(f"{where} is a whole number or a decimal string like \"7.5\" (no floats)")
    try:
        found = Decimal(value)
    except InvalidOperation:
        raise CriteriaInvalid(f"{where}: {str(value)[:32]!r} is not a number") from None
    if not found.is_finite():
        raise CriteriaInvalid(f"{where} must be finite")
    return found


def _criterion(doc: Any, where: str) -> Criterion:
    if not isinstance(doc, Mapping):
        raise CriteriaInvalid(f"{where} is an object with resource, system and codes")
    unknown = set(doc) - {"resource", "system", "codes", "value"}
    if unknown:
        raise CriteriaInvalid(f"{where}: unknown field {sorted(unknown)[0]!r}")
    resource = doc.get("resource")
    if resource not in RESOURCES:
        raise CriteriaInvalid(f"{where}.resource is one of {', '.join(RESOURCES)}")
    system = doc.get("system")
    if not isinstance(system, str) or system not in SYSTEMS.values():
        raise CriteriaInvalid(f"{where}.system is one of {', '.join(SYSTEMS.values())}")
    codes = doc.get("codes")
    if not isinstance(codes, list) or not 1 <= len(codes) <= MAX_CODES or \
            not all(isinstance(c, str) and 0 < len(c) <= 32 and c.replace(".", "").replace("-", "").isalnum() for c in codes):
        raise CriteriaInvalid(f"{where}.codes lists 1 to {MAX_CODES} codes (letters, digits, . and -)")
    value = doc.get("value")
    if value is None:
        return Criterion(resource, system, frozenset(codes))
    if resource != "Observation" or not isinstance(value, Mapping) or set(value) - {"min", "max", "unit"} \
            or not isinstance(value.get("unit"), str) or not ({"min", "max"} & set(value)):
        raise CriteriaInvalid(f"{where}.value (Observation only) is {{min?, max?, unit}} with a min or a max")
    low = _decimal(value["min"], f"{where}.value.min") if "min" in value else None
    high = _decimal(value["max"], f"{where}.value.max") if "max" in value else None
    if low is not None and high is not None and low > high:
        raise CriteriaInvalid(f"{where}.value: min is above max")
    return Criterion(resource, system, frozenset(codes), low, high, value["unit"])


def parse(doc: Any) -> Criteria:
    """Check criteria (the module docstring's form); CriteriaInvalid says what is wrong."""
    if not isinstance(doc, Mapping):
        raise CriteriaInvalid("the criteria are a JSON object")
    if doc.get("version") != 1:
        raise CriteriaInvalid("criteria version 1 is the one this node knows")
    unknown = set(doc) - {"version", "age", "sex", "include", "exclude"}
    if unknown:
        raise CriteriaInvalid(f"unknown field {sorted(unknown)[0]!r}")
    min_age = max_age = None
    if "age" in doc:
        age = doc["age"]
        if not isinstance(age, Mapping) or set(age) - {"min", "max"} or not age:
            raise CriteriaInvalid("age is {min?, max?} in whole years")
        for name in ("min", "max"):
            if name in age and (isinstance(age[name], bool) or not isinstance(age[name], int) or not 0 <= age[name] <= MAX_AGE):
                raise CriteriaInvalid(f"age.{name} is a whole number of years from 0 to {MAX_AGE}")
        min_age, max_age = age.get("min"), age.get("max")
        if min_age is not None and max_age is not None and min_age > max_age:
            raise CriteriaInvalid("age: min is above max")
    sexes = None
    if "sex" in doc:
        if not isinstance(doc["sex"], list) or not doc["sex"] or not set(doc["sex"]) <= set(SEXES):
            raise CriteriaInvalid(f"sex lists some of {', '.join(SEXES)}")
        sexes = frozenset(doc["sex"])
    lists = {}
    for name in ("include", "exclude"):
        given = doc.get(name, [])
        if not isinstance(given, list) or len(given) > MAX_CRITERIA:
            raise CriteriaInvalid(f"{name} lists at most {MAX_CRITERIA} criteria")
        lists[name] = tuple(_criterion(c, f"{name}[{i}]") for i, c in enumerate(given))
    if not lists["include"] and min_age is None and max_age is None and sexes is None:
        raise CriteriaInvalid("the criteria select everyone: give an age band, a sex or an inclusion criterion")
    if len(canonical(doc)) > MAX_BYTES:
        raise CriteriaInvalid(f"the criteria are over {MAX_BYTES} bytes")
    return Criteria(min_age, max_age, sexes, lists["include"], lists["exclude"])


def canonical(doc: Mapping[str, Any]) -> bytes:
    """The bytes stored and hashed: JSON with sorted keys and no spaces."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# -- evaluation -----------------------------------------------------------------------------
def _codings(resource: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for field in ("code", "medicationCodeableConcept"):
        concept = resource.get(field)
        if isinstance(concept, Mapping):
            for coding in concept.get("coding") or ():
                if isinstance(coding, Mapping) and isinstance(coding.get("system"), str) and isinstance(coding.get("code"), str):
                    yield coding["system"], coding["code"]


def _counts(resource: Mapping[str, Any]) -> bool:
    if resource.get("status") == "entered-in-error":
        return False
    if resource.get("resourceType") == "Condition":
        status = {c.get("code") for c in (resource.get("clinicalStatus") or {}).get("coding") or () if isinstance(c, Mapping)}
        if status & INACTIVE_CONDITION:
            return False
    return True


def _in_range(criterion: Criterion, resource: Mapping[str, Any]) -> bool:
    if criterion.unit is None:
        return True
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, Mapping) or criterion.unit not in (quantity.get("code"), quantity.get("unit")):
        return False
    raw = quantity.get("value")
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return False
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return False
    return (criterion.min_value is None or value >= criterion.min_value) and \
        (criterion.max_value is None or value <= criterion.max_value)


def _matches_one(criterion: Criterion, resources: Iterable[Mapping[str, Any]]) -> bool:
    for resource in resources:
        if resource.get("resourceType") != criterion.resource or not _counts(resource):
            continue
        if any(system == criterion.system and code in criterion.codes for system, code in _codings(resource)) \
                and _in_range(criterion, resource):
            return True
    return False


def age_on(birth: str, on: date) -> int | None:
    """Whole years from a FHIR birthDate (YYYY, YYYY-MM or YYYY-MM-DD) to `on`; None if unreadable.
    A partial date counts from its latest possible day (a conservative age)."""
    parts = birth.split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else 12
        day = int(parts[2]) if len(parts) > 2 else 31
    except (ValueError, IndexError):
        return None
    return on.year - year - ((on.month, on.day) < (month, day))


def matches(criteria: Criteria, resources: Iterable[Mapping[str, Any]], on: date) -> bool:
    """Whether a patient, known by `resources` (its Patient and its records, decrypted), meets
    `criteria` on the day `on`."""
    listed = [r for r in resources if isinstance(r, Mapping)]
    if criteria.min_age is not None or criteria.max_age is not None or criteria.sexes is not None:
        seen = {(str(r.get("gender")), str(r.get("birthDate"))) for r in listed if r.get("resourceType") == "Patient"}
        if len(seen) != 1:  # none, or versions that disagree: age and sex cannot be told
            return False
        patient = next(r for r in listed if r.get("resourceType") == "Patient")
        if criteria.sexes is not None and patient.get("gender") not in criteria.sexes:
            return False
        if criteria.min_age is not None or criteria.max_age is not None:
            birth = patient.get("birthDate")
            age = age_on(birth, on) if isinstance(birth, str) else None
            if age is None or (criteria.min_age is not None and age < criteria.min_age) or \
                    (criteria.max_age is not None and age > criteria.max_age):
                return False
    if not all(_matches_one(c, listed) for c in criteria.include):
        return False
    return not any(_matches_one(c, listed) for c in criteria.exclude)
