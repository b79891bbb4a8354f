"""A custodian's release for a study: its consenting patients' records, de-identified.

The custodian runs this before anything leaves it. It is given every record it holds for the
study's consenting patients, each as a `HeldRecord`: the resource and the patient the ledger
registered it for (the `record.add`'s patient, as its person key). The ledger's link is
authoritative: a record belongs to that patient whatever ids and references the submitting
system wrote, so a Patient resource without an id, Observations that reference the patient by
a hospital-local id or a `urn:uuid:` placeholder, and Observations held here for a patient whose
Patient resource another institution holds are all released under the patient's pseudonym.
Records of patients who did not consent are never given to it: whether such a patient has
records here is not the researcher's business.

It returns the de-identified resources and what it withheld, per resource type and reason
(``{"CarePlan": {"CarePlan.intent missing after de-identification": 2}}``).

`CustodianRelease.to_dict` / `from_dict` are the form it travels in; `from_dict` checks the shape
of what a custodian sent and raises `ReleaseInvalid` (the custodian's fault) if it is wrong. A
release of the previous format (`FORMAT_V1`, withheld counted per reason only) is still read,
its counts under the type "unknown".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from node.research.pseudonyms import KeyedPseudonyms
from node.research.deid_rules import ResourceWithheld, parse_reference
from node.research.safe_harbor import PATIENT_LINK_ELEMENTS, Deidentifier

FORMAT = "medledger-research-release/2"
FORMAT_V1 = "medledger-research-release/1"
NOT_LINKED = "not linked to a patient"
UNKNOWN_TYPE = "unknown"

Withheld = Mapping[str, Mapping[str, int]]  # resource type -> reason -> count


def count_withheld(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """(type, reason) counts as the nested, sorted form a release and a report carry."""
    out: dict[str, dict[str, int]] = {}
    for (rtype, reason), n in sorted(counts.items()):
        out.setdefault(rtype, {})[reason] = n
    return out


def _counts(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in value.items())


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """A record as its custodian holds it: the resource, the person key of the patient the
    ledger registered it for, and the ledger's record id (hex)."""

    patient: str
    resource: Mapping[str, Any]
    record_id: str | None = None


class ReleaseInvalid(ValueError):
    """A custodian's release does not have the expected shape (the custodian's fault)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodianRelease:
    """De-identified resources from one custodian for one study, and what it withheld."""

    study: str
    custodian: str
    resources: tuple[dict[str, Any], ...]
    withheld: Withheld = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.study or not self.custodian:
            raise ValueError("a release names its study and custodian")

    def to_dict(self) -> dict[str, Any]:
        """The release as plain JSON-ready data."""
        return {"format": FORMAT, "study": self.study, "custodian": self.custodian, "resources": list(self.resources),
                "withheld": {rtype: dict(sorted(reasons.items())) for rtype, reasons in sorted(self.withheld.items())}}

    @classmethod
    def from_dict(cls, doc: Any) -> CustodianRelease:
        """Parse a release received from a custodian; raises ReleaseInvalid if malformed."""
        if not isinstance(doc, dict) or doc.get("format") not in (FORMAT, FORMAT_V1):
            raise ReleaseInvalid(f"not a {FORMAT} document")
        study, custodian = doc.get("study"), doc.get("custodian")
        if not (isinstance(study, str) and study and isinstance(custodian, str) and custodian):
            raise ReleaseInvalid("study and custodian must be non-empty strings")
        resources = doc.get("resources")
        if not isinstance(resources, list) or not all(
            isinstance(r, dict) and isinstance(r.get("resourceType"), str) for r in resources
        ):
            raise ReleaseInvalid("resources must be a list of FHIR resources")
        withheld = doc.get("withheld", {})
        if doc["format"] == FORMAT_V1:
            if not _counts(withheld):
                raise ReleaseInvalid("withheld must map reasons to counts")
            withheld = {UNKNOWN_TYPE: withheld} if withheld else {}
        elif not isinstance(withheld, dict) or not all(isinstance(k, str) and _counts(v) for k, v in withheld.items()):
            raise ReleaseInvalid("withheld must map resource types to reasons to counts")
        return cls(study=study, custodian=custodian, resources=tuple(resources), withheld=withheld)


def linked_patient(resource: Mapping[str, Any]) -> str | None:
    """The id of the Patient a resource belongs to (its own id for a Patient), or None."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for name in PATIENT_LINK_ELEMENTS:
        link = resource.get(name)
        parsed = parse_reference(link.get("reference")) if isinstance(link, dict) else None
        if parsed is not None and parsed[0] == "Patient":
            return parsed[1]
    return None


MEDICATION_USERS = frozenset({"MedicationRequest", "MedicationAdministration", "MedicationDispense"})


def _with_inlined_medication(request: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    # A MedicationRequest (or administration, dispense) may name its drug by reference to a
    # Medication, which is not released on its own (it is not a patient's resource): copy the
    # drug's code into the request instead.
    if "medicationCodeableConcept" in request:
        return request
    ref = request.get("medicationReference")
    text = ref.get("reference") if isinstance(ref, dict) else None
    parsed = parse_reference(text) or (("Medication", text[len("urn:uuid:"):])
                                       if isinstance(text, str) and text.startswith("urn:uuid:") else None)
    medication = medications.get(parsed[1]) if parsed is not None and parsed[0] == "Medication" else None
    if medication is None or "code" not in medication:
        return request
    inlined = {name: value for name, value in request.items() if name != "medicationReference"}
    inlined["medicationCodeableConcept"] = medication["code"]
    return inlined


def deidentify_for_study(
    records: Iterable[HeldRecord],
    *,
    study: str,
    study_key: bytes,
    custodian: str,
    reference_year: int,
) -> CustodianRelease:
    """De-identify, for one study, the records this custodian holds of its consenting patients.

    Each record is released under the pseudonym of the patient the ledger registered it for
    (``HeldRecord.patient``), whatever the resource itself says.
    """
    records = list(records)
    medications = {r.resource["id"]: r.resource for r in records
                   if r.resource.get("resourceType") == "Medication" and isinstance(r.resource.get("id"), str)}
    types_by_id = {r.resource["id"]: r.resource["resourceType"] for r in records
                   if isinstance(r.resource.get("id"), str) and isinstance(r.resource.get("resourceType"), str)}
    pseudonyms = KeyedPseudonyms(study_key, namespace=custodian)
    deidentifier = Deidentifier(pseudonyms, reference_year=reference_year, types_by_id=types_by_id)
    released: list[dict[str, Any]] = []
    withheld: Counter[tuple[str, str]] = Counter()
    for record in records:
        resource = record.resource
        rtype = resource.get("resourceType")
        rtype = rtype if isinstance(rtype, str) else UNKNOWN_TYPE
        if rtype == "Medication":
            continue  # only ever used through the requests that name it
        if rtype in MEDICATION_USERS:
            resource = _with_inlined_medication(resource, medications)
        try:
            released.append(deidentifier.resource(resource, owner=pseudonyms.person(record.patient),
                                                  record_id=record.record_id))
        except ResourceWithheld as withheld_resource:
            withheld[(rtype, withheld_resource.reason)] += 1
    released.sort(key=lambda r: (r["resourceType"], r["id"]))
    return CustodianRelease(study=study, custodian=custodian, resources=tuple(released), withheld=count_withheld(withheld))
