"""What this FHIR server serves: the resource types it holds and the search parameters of each.

One table, read by the search (node/fhir/search.py), the resource mapping (resources.py) and the
CapabilityStatement (capability.py), so the statement lists exactly what the server does.

For each type: the element naming the patient (`subject` or `patient`; None for Patient itself),
the elements the `code` parameter matches (CodeableConcepts), and the elements the `date`
parameter matches (dateTime, instant, date or Period; the choice-type keys as they appear in
JSON). A type without code or date elements has no such parameter: R4 defines `code` and `date`
only for some types (Encounter has no `code`, MedicationRequest no `date`...), and so do we.
"""

from __future__ import annotations

from dataclasses import dataclass


BASE_PATH = "/fhir/R4"
"""Where the FHIR endpoint is mounted on a node's API."""
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """One served resource type and what its search matches on."""

    name: str
    patient_element: str | None
    code_elements: tuple[str, ...] = ()
    date_elements: tuple[str, ...] = ()

    @property
    def search_params(self) -> tuple[str, ...]:
        """The type-specific search parameters (the common ones are COMMON_PARAMS)."""
        out: list[str] = []
        if self.patient_element is not None:
            out.append("patient")
            if self.patient_element == "subject":
                out.append("subject")
        if self.code_elements:
            out.append("code")
        if self.date_elements:
            out.append("date")
        return tuple(out)


_EFFECTIVE = ("effectiveDateTime", "effectivePeriod", "effectiveInstant")

TYPES: dict[str, TypeInfo] = {t.name: t for t in (
    TypeInfo("Patient", None),
    TypeInfo("Observation", "subject", ("code",), _EFFECTIVE),
    TypeInfo("Condition", "subject", ("code",)),
    TypeInfo("Encounter", "subject", (), ("period",)),
    TypeInfo("MedicationRequest", "subject", ("medicationCodeableConcept",)),
    TypeInfo("MedicationDispense", "subject", ("medicationCodeableConcept",)),
    TypeInfo("AllergyIntolerance", "patient", ("code",), ("recordedDate",)),
    TypeInfo("Immunization", "patient", (), ("occurrenceDateTime",)),
    TypeInfo("Procedure", "subject", ("code",), ("performedDateTime", "performedPeriod")),
    TypeInfo("DiagnosticReport", "subject", ("code",), ("effectiveDateTime", "effectivePeriod")),
    TypeInfo("DocumentReference", "subject", (), ("date",)),
)}

COMMON_PARAMS = ("_id", "_lastUpdated")
"""Search parameters of every served type (besides the result parameters _count and _offset)."""
SYSTEM_PARAMS = ("_type", "_id", "_lastUpdated", "patient")
"""Search parameters of a search across types (`GET /fhir/R4?_type=...`)."""
RESULT_PARAMS = ("_count", "_offset")
"""Parameters that shape the result (a page) rather than select resources."""
IGNORED_PARAMS = ("_format", "_pretty")
"""Accepted and without effect: the answer is always JSON (`_format` other than JSON is refused)."""

LEDGER_TYPES: dict[str, tuple[str, ...]] = {
    "AuditEvent": ("patient", "date", "agent"),
    "Consent": ("patient", "_id"),
    "Provenance": ("target", "patient"),
}
"""Types served from the ledger itself (no record behind them) and their search parameters:
the audit trail, the consents, the provenance of each record."""

PARAM_TYPES = {"_id": "token", "_lastUpdated": "date", "_type": "token", "patient": "reference",
               "subject": "reference", "code": "token", "date": "date", "agent": "reference", "target": "reference"}
PARAM_DOCS = {
    "_id": "the logical id (a record's id, a patient's ledger id for Patient); comma-separated ids mean any of them",
    "_lastUpdated": "when the version was registered on the ledger (block time), with a prefix eq ne lt gt le ge sa eb ap",
    "_type": "the resource types to search, comma-separated",
    "patient": "the patient, as Patient/<patient id> or <patient id>",
    "subject": "the patient, as Patient/<patient id>",
    "code": "system|code, code, |code (no system) or system|; comma-separated values mean any of them",
    "date": "the type's clinical date (AuditEvent: when it was recorded), with a prefix eq ne lt gt le ge sa eb ap",
    "agent": "an identity that took part (its ledger id, or <Type>/<id>)",
    "target": "the record, as <Type>/<id> (any version) or <Type>/<id>/_history/<v>",
}


def served(name: str) -> TypeInfo | None:
    return TYPES.get(name)


RECORD_INTERACTIONS = ("read", "vread", "search-type", "create", "update")
INTERACTIONS: dict[str, tuple[str, ...]] = {
    **{name: RECORD_INTERACTIONS for name in TYPES},
    "AuditEvent": ("search-type",),
    "Consent": ("read", "search-type", "create", "delete"),
    "Provenance": ("read", "search-type"),
}
"""The FHIR interactions served on each type; routes.py mounts exactly these (and the
CapabilityStatement lists them), besides `search-system` (GET /fhir/R4?_type=...)."""


def type_params(name: str) -> tuple[str, ...]:
    """The search parameters of a served type (not the result parameters)."""
    if name in TYPES:
        return (*COMMON_PARAMS, *TYPES[name].search_params)
    return LEDGER_TYPES[name]
