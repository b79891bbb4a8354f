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

The rules for single values and small structures (dates, codes, quantities, references) are
in ``deid_rules.py``; this module holds the spec of each released type and the resource-level
rules (addresses, the 90-and-over birth date, FHIR validation of the result).

The same handlers run on the researcher's side over what custodians send, with
``ExistingPseudonyms`` so ids are kept only if they already are pseudonyms; the rules are
idempotent, so a correct release passes through unchanged and a faulty one is cleaned again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from node.records.fhir import GENDERS, MAX_RESOURCE_BYTES, STATUS_CODES

from node.research.deid_rules import (
    AGE_GROUP_EXTENSION, age_group_extension, apply_spec, BOOL, CC, CODING, Context, DEC,
    ENCOUNTER_LINK, Handler, INT, missing_required, OLDEST_EXACT_AGE, one_of, PATIENT_LINK, PERIOD,
    POSINT, QTY, RANGE, RATIO, reference_to, RELEASED_TYPES, Required, ResourceWithheld,
    RESTRICTED_ZIP3, SIMPLE_QTY, Spec, struct, TOKEN, UCUM, UNSIGNED, YEAR, year_of, year_value,
    zip3_of,
)
from node.research.pseudonyms import KeyedPseudonyms, Pseudonyms


def _status(resource_type: str) -> Handler:
    return one_of(*STATUS_CODES[resource_type])


def _onset(prefix: str) -> dict[str, Handler]:
    return {f"{prefix}DateTime": YEAR, f"{prefix}Age": QTY, f"{prefix}Period": PERIOD, f"{prefix}Range": RANGE}


_OBSERVATION_VALUE: dict[str, Handler] = {
    "valueQuantity": QTY, "valueCodeableConcept": CC, "valueBoolean": BOOL, "valueInteger": INT,
    "valueRange": RANGE, "valueRatio": RATIO, "valueDateTime": YEAR, "valuePeriod": PERIOD,
}
_REFERENCE_RANGE = struct({"low": SIMPLE_QTY, "high": SIMPLE_QTY, "type": CC, "appliesTo": CC, "age": RANGE})
_TIMING = struct({
    "repeat": struct({
        "boundsDuration": QTY, "boundsRange": RANGE, "boundsPeriod": PERIOD, "count": POSINT, "countMax": POSINT,
        "duration": DEC, "durationMax": DEC, "durationUnit": one_of("s", "min", "h", "d", "wk", "mo", "a"),
        "frequency": POSINT, "frequencyMax": POSINT, "period": DEC, "periodMax": DEC,
        "periodUnit": one_of("s", "min", "h", "d", "wk", "mo", "a"),
        "dayOfWeek": one_of("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "when": TOKEN, "offset": UNSIGNED,
    }),
    "code": CC,
})
_DOSAGE = struct({
    "sequence": INT, "additionalInstruction": CC, "timing": _TIMING, "asNeededBoolean": BOOL,
    "asNeededCodeableConcept": CC, "site": CC, "route": CC, "method": CC,
    "doseAndRate": struct({"type": CC, "doseRange": RANGE, "doseQuantity": SIMPLE_QTY, "rateRatio": RATIO,
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
        "hasMember": reference_to("Observation"), "derivedFrom": reference_to("Observation"),
        "partOf": reference_to("Procedure", "Immunization"),
        "component": struct({"code": CC, **_OBSERVATION_VALUE, "dataAbsentReason": CC, "interpretation": CC,
                              "referenceRange": _REFERENCE_RANGE}, required=("code",)),
    }, required=("status", "code")),
    "Condition": _TypeRule({
        "clinicalStatus": CC, "verificationStatus": CC, "category": CC, "severity": CC, "code": CC, "bodySite": CC,
        "subject": PATIENT_LINK, "encounter": ENCOUNTER_LINK, **_onset("onset"), **_onset("abatement"),
        "recordedDate": YEAR, "stage": struct({"summary": CC, "type": CC}),
        "evidence": struct({"code": CC, "detail": reference_to("Observation", "Condition", "DiagnosticReport", "Procedure")}),
    }, required=("subject",)),
    "Encounter": _TypeRule({
        "status": _status("Encounter"), "class": CODING, "type": CC, "serviceType": CC, "priority": CC,
        "subject": PATIENT_LINK, "period": PERIOD, "length": QTY,
        "statusHistory": struct({"status": _status("Encounter"), "period": PERIOD}, required=("status", "period")),
        "classHistory": struct({"class": CODING, "period": PERIOD}, required=("class", "period")),
        "reasonCode": CC, "reasonReference": reference_to("Condition", "Procedure", "Observation", "Immunization"),
        "diagnosis": struct({"condition": reference_to("Condition", "Procedure"), "use": CC, "rank": POSINT},
                             required=("condition",)),
        "hospitalization": struct({"admitSource": CC, "reAdmission": CC, "dischargeDisposition": CC}),
        "partOf": ENCOUNTER_LINK,
    }, required=("status", "class")),
    "DiagnosticReport": _TypeRule({
        "status": _status("DiagnosticReport"), "category": CC, "code": CC, "subject": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, "effectiveDateTime": YEAR, "effectivePeriod": PERIOD,
        "result": reference_to("Observation"), "conclusionCode": CC,
    }, required=("status", "code")),
    "MedicationRequest": _TypeRule({
        "status": _status("MedicationRequest"), "statusReason": CC,
        "intent": one_of("proposal", "plan", "order", "original-order", "reflex-order", "filler-order",
                          "instance-order", "option"),
        "category": CC, "priority": one_of("routine", "urgent", "asap", "stat"), "doNotPerform": BOOL,
        "reportedBoolean": BOOL, "medicationCodeableConcept": CC, "subject": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, "authoredOn": YEAR, "performerType": CC, "reasonCode": CC,
        "reasonReference": reference_to("Condition", "Observation"), "courseOfTherapyType": CC,
        "dosageInstruction": _DOSAGE,
        "dispenseRequest": struct({"validityPeriod": PERIOD, "numberOfRepeatsAllowed": UNSIGNED,
                                    "quantity": SIMPLE_QTY, "expectedSupplyDuration": QTY,
                                    "initialFill": struct({"quantity": SIMPLE_QTY, "duration": QTY}),
                                    "dispenseInterval": QTY}),
        "substitution": struct({"allowedBoolean": BOOL, "allowedCodeableConcept": CC, "reason": CC},
                                required=(("allowedBoolean", "allowedCodeableConcept"),)),
        "priorPrescription": reference_to("MedicationRequest"),
    }, required=("status", "intent", "subject", "medicationCodeableConcept")),
    "Procedure": _TypeRule({
        "status": _status("Procedure"), "statusReason": CC, "category": CC, "code": CC, "subject": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, "performedDateTime": YEAR, "performedPeriod": PERIOD, "performedAge": QTY,
        "performedRange": RANGE, "reasonCode": CC,
        "reasonReference": reference_to("Condition", "Observation", "Procedure", "DiagnosticReport"),
        "bodySite": CC, "outcome": CC, "report": reference_to("DiagnosticReport"), "complication": CC,
        "complicationDetail": reference_to("Condition"), "followUp": CC, "usedCode": CC,
        "partOf": reference_to("Procedure", "Observation"),
    }, required=("status", "subject")),
    "AllergyIntolerance": _TypeRule({
        "clinicalStatus": CC, "verificationStatus": CC, "type": one_of("allergy", "intolerance"),
        "category": one_of("food", "medication", "environment", "biologic"),
        "criticality": one_of("low", "high", "unable-to-assess"), "code": CC, "patient": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, **_onset("onset"), "recordedDate": YEAR, "lastOccurrence": YEAR,
        "reaction": struct({"substance": CC, "manifestation": CC, "onset": YEAR,
                             "severity": one_of("mild", "moderate", "severe"), "exposureRoute": CC},
                            required=("manifestation",)),
    }, required=("patient",)),
    "Immunization": _TypeRule({
        "status": one_of("completed", "entered-in-error", "not-done"), "statusReason": CC, "vaccineCode": CC,
        "patient": PATIENT_LINK, "encounter": ENCOUNTER_LINK, "occurrenceDateTime": YEAR, "recorded": YEAR,
        "primarySource": BOOL, "reportOrigin": CC, "expirationDate": YEAR, "site": CC, "route": CC,
        "doseQuantity": SIMPLE_QTY, "reasonCode": CC,
        "reasonReference": reference_to("Condition", "Observation", "DiagnosticReport"), "isSubpotent": BOOL,
        "subpotentReason": CC, "programEligibility": CC, "fundingSource": CC,
        "reaction": struct({"date": YEAR, "reported": BOOL}),
        "protocolApplied": struct({"targetDisease": CC, "doseNumberPositiveInt": POSINT,
                                    "seriesDosesPositiveInt": POSINT}, required=("doseNumberPositiveInt",)),
    }, required=("status", "vaccineCode", "patient", "occurrenceDateTime")),
    "CarePlan": _TypeRule({
        "status": one_of("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"),
        "intent": one_of("proposal", "plan", "order", "option"), "category": CC, "subject": PATIENT_LINK,
        "encounter": ENCOUNTER_LINK, "period": PERIOD, "created": YEAR, "addresses": reference_to("Condition"),
        "activity": struct({"outcomeCodeableConcept": CC, "detail": struct({
            "kind": TOKEN, "code": CC, "reasonCode": CC,
            "reasonReference": reference_to("Condition", "Observation", "DiagnosticReport"),
            "status": one_of("not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled", "stopped",
                             "unknown", "entered-in-error"),
            "statusReason": CC, "doNotPerform": BOOL, "scheduledPeriod": PERIOD, "productCodeableConcept": CC,
            "dailyAmount": SIMPLE_QTY, "quantity": SIMPLE_QTY}, required=("status",))}),
    }, required=("status", "intent", "subject")),
    "MedicationAdministration": _TypeRule({
        "status": one_of("in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"),
        "statusReason": CC, "category": CC, "medicationCodeableConcept": CC, "subject": PATIENT_LINK,
        "context": ENCOUNTER_LINK, "effectiveDateTime": YEAR, "effectivePeriod": PERIOD, "reasonCode": CC,
        "reasonReference": reference_to("Condition", "Observation", "DiagnosticReport"),
        "request": reference_to("MedicationRequest"),
        "dosage": struct({"site": CC, "route": CC, "method": CC, "dose": SIMPLE_QTY, "rateRatio": RATIO,
                          "rateQuantity": SIMPLE_QTY}),
    }, required=("status", "medicationCodeableConcept", "subject", ("effectiveDateTime", "effectivePeriod"))),
    "MedicationDispense": _TypeRule({
        "status": one_of("preparation", "in-progress", "cancelled", "on-hold", "completed", "entered-in-error",
                         "stopped", "declined", "unknown"),
        "statusReasonCodeableConcept": CC, "category": CC, "medicationCodeableConcept": CC, "subject": PATIENT_LINK,
        "context": ENCOUNTER_LINK, "authorizingPrescription": reference_to("MedicationRequest"), "type": CC,
        "quantity": SIMPLE_QTY, "daysSupply": SIMPLE_QTY, "whenPrepared": YEAR, "whenHandedOver": YEAR,
        "dosageInstruction": _DOSAGE,
        "substitution": struct({"wasSubstituted": BOOL, "type": CC, "reason": CC}, required=("wasSubstituted",)),
    }, required=("status", "medicationCodeableConcept")),
}

# Any other type: what most clinical resources share, kept only if the result is valid FHIR R4.
# Status and intent are kept because R4 requires them wherever a type has them (CarePlan.intent).
DEFAULT_RULE = _TypeRule({"status": TOKEN, "intent": TOKEN, "category": CC, "code": CC, "subject": PATIENT_LINK,
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


def _state(value: Any, ctx: Context) -> str | None:
    if isinstance(value, str) and (_REGION_CODE.fullmatch(value) or value in US_STATE_NAMES):
        return value
    return None


def _country(value: Any, ctx: Context) -> str | None:
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


def _patient(source: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    birth_year = year_of(source.get("birthDate"))
    ninety_plus = is_age_90_plus(source) or (
        birth_year is not None and ctx.reference_year - birth_year > OLDEST_EXACT_AGE
    )
    if ninety_plus:
        out["extension"] = [age_group_extension(OLDEST_EXACT_AGE + 1)]
    gender = one_of(*GENDERS)(source.get("gender"), ctx)
    if gender is not None:
        out["gender"] = gender
    if birth_year is not None and not ninety_plus:
        out["birthDate"] = f"{birth_year:04d}"
    if isinstance(source.get("deceasedBoolean"), bool):
        out["deceasedBoolean"] = source["deceasedBoolean"]
    elif "deceasedDateTime" in source:
        death_year = year_value(source["deceasedDateTime"], ctx)
        if death_year is not None:
            out["deceasedDateTime"] = death_year
        elif year_of(source["deceasedDateTime"]) is not None:
            out["deceasedBoolean"] = True  # the year itself would show an age over 89
    address = _choose_address(source.get("address"))
    if address is not None:
        kept = apply_spec(address, _ADDRESS_PARTS, ctx)
        zip3 = zip3_of(address.get("postalCode"))
        if zip3 is not None:
            kept["postalCode"] = zip3
        if kept:
            out["address"] = [kept]
    return out


def fhir_problem(resource: dict[str, Any]) -> str | None:
    """Why a resource is not valid FHIR R4 (the first problem fhir.resources names), or None."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors()
        if not errors:
            return "invalid"
        # the element's path and pydantic's message only: never the value (the report leaves the custodian)
        where = ".".join(str(part)[:40] for part in errors[0]["loc"]) or resource["resourceType"]
        return f"{where}: {errors[0]['msg']}"[:160]
    except (ValueError, KeyError):
        return "invalid"
    return None


def _is_fhir_type(resource_type: str) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return False
    return True


def _link_element(resource_type: str, rule: _TypeRule) -> str | None:
    """Where a resource of this type names its patient (subject or patient), if it can."""
    from fhir.resources.R4B import get_fhir_model_class

    fields = rule.spec if rule is not DEFAULT_RULE else get_fhir_model_class(resource_type).model_fields
    return next((name for name in PATIENT_LINK_ELEMENTS if name in fields), None)


def too_large_reason(nbytes: int, limit: int = MAX_RESOURCE_BYTES) -> str:
    """The withholding reason of a resource over the size limit (a limit, not invalid FHIR)."""
    return f"too_large: {nbytes} bytes, over the limit of {limit} bytes per resource"


class Deidentifier:
    """Applies the Safe Harbor rules to resources, with pseudonyms from the given source.

    ``types_by_id`` (the type of each local id the custodian holds) lets a ``urn:uuid:<id>``
    reference be kept as the pseudonym of the resource it names."""

    __slots__ = ("_ctx",)

    def __init__(self, pseudonyms: Pseudonyms, *, reference_year: int, types_by_id: Mapping[str, str] | None = None) -> None:
        self._ctx = Context(pseudonyms=pseudonyms, reference_year=reference_year, types_by_id=dict(types_by_id or {}))

    @property
    def reference_year(self) -> int:
        """The year ages are counted at."""
        return self._ctx.reference_year

    def resource(self, resource: Mapping[str, Any], *, owner: str | None = None, record_id: str | None = None) -> dict[str, Any]:
        """The de-identified copy of a resource; raises ResourceWithheld if it cannot be released.

        ``owner``: the pseudonym of the patient the ledger registered the record for; when given,
        a Patient is released under it (with or without an id of its own) and every patient link
        points to it. ``record_id``: the ledger's record id, the original of a resource without
        an id of its own. Every released resource validates as FHIR R4 (fhir.resources)."""
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise ResourceWithheld("not a FHIR resource")
        rtype = resource["resourceType"]
        if rtype not in RELEASED_TYPES and not _is_fhir_type(rtype):
            raise ResourceWithheld("not a FHIR R4 resource type")
        nbytes = len(json.dumps(resource, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        if nbytes > MAX_RESOURCE_BYTES:
            raise ResourceWithheld(too_large_reason(nbytes))
        if "modifierExtension" in resource or "implicitRules" in resource:
            raise ResourceWithheld(f"{rtype} has a modifier extension or implicit rules")
        ctx = replace(self._ctx, owner=owner) if owner is not None else self._ctx
        if rtype == "Patient" and owner is not None:
            pseudonym: str | None = owner
        else:
            original = resource.get("id") if isinstance(resource.get("id"), str) else record_id
            if original is None:
                raise ResourceWithheld(f"{rtype} has no id")
            pseudonym = ctx.pseudonyms.pseudonym(rtype, original)
        if pseudonym is None:
            raise ResourceWithheld(f"{rtype} id is not a pseudonym")
        if rtype == "Patient":
            body = _patient(resource, ctx)
        else:
            rule = TYPE_RULES.get(rtype, DEFAULT_RULE)
            body = apply_spec(resource, rule.spec, ctx)
            link = _link_element(rtype, rule) if owner is not None else None
            if link is not None and not any(name in body for name in PATIENT_LINK_ELEMENTS):
                body[link] = {"reference": f"Patient/{owner}"}  # the ledger says whose it is
            missing = missing_required(body, rule.required)
            if missing is not None:
                raise ResourceWithheld(f"{rtype}.{missing} missing after de-identification")
        out = {"resourceType": rtype, "id": pseudonym, **body}
        problem = fhir_problem(out)
        if problem is not None:
            raise ResourceWithheld(f"{rtype} not valid after de-identification ({problem})")
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
