"""A custodian's release for a study: its consenting patients' records, de-identified.

The custodian runs this before anything leaves it. It is given every resource it holds for the
study's consenting patients and the mapping from its local Patient ids to the person keys the
ledger knows those patients under; it returns the de-identified resources and, per reason, how
many it withheld. Resources of patients that are not in the mapping are skipped without a trace
in the release: whether a patient who did not consent has records here is not the researcher's
business.

`CustodianRelease.to_dict` / `from_dict` are the form it travels in; `from_dict` checks the shape
of what a custodian sent and raises `ReleaseInvalid` (the custodian's fault) if it is wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from node.research.pseudonyms import KeyedPseudonyms
from node.research.deid_rules import ResourceWithheld, parse_reference
from node.research.safe_harbor import PATIENT_LINK_ELEMENTS, Deidentifier

FORMAT = "medledger-research-release/1"
NOT_LINKED = "not linked to a patient"


class ReleaseInvalid(ValueError):
    """A custodian's release does not have the expected shape (the custodian's fault)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodianRelease:
    """De-identified resources from one custodian for one study, and what it withheld."""

    study: str
    custodian: str
    resources: tuple[dict[str, Any], ...]
    withheld: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.study or not self.custodian:
            raise ValueError("a release names its study and custodian")

    def to_dict(self) -> dict[str, Any]:
        """The release as plain JSON-ready data."""
        return {"format": FORMAT, "study": self.study, "custodian": self.custodian,
                "resources": list(self.resources), "withheld": dict(sorted(self.withheld.items()))}

    @classmethod
    def from_dict(cls, doc: Any) -> CustodianRelease:
        """Parse a release received from a custodian; raises ReleaseInvalid if malformed."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
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
        if not isinstance(withheld, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in withheld.items()
        ):
            raise ReleaseInvalid("withheld must map reasons to counts")
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


def _with_inlined_medication(request: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    # A MedicationRequest may name its drug by reference to a Medication, which is not released
    # on its own (it is not a patient's resource): copy the drug's code into the request instead.
    if "medicationCodeableConcept" in request:
        return request
    ref = request.get("medicationReference")
    parsed = parse_reference(ref.get("reference")) if isinstance(ref, dict) else None
    medication = medications.get(parsed[1]) if parsed is not None and parsed[0] == "Medication" else None
    if medication is None or "code" not in medication:
        return request
    inlined = {name: value for name, value in request.items() if name != "medicationReference"}
    inlined["medicationCodeableConcept"] = medication["code"]
    return inlined


def deidentify_for_study(
    resources: Iterable[Mapping[str, Any]],
    *,
    study: str,
    study_key: bytes,
    custodian: str,
    persons: Mapping[str, str],
    reference_year: int,
) -> CustodianRelease:
    """De-identify, for one study, the records this custodian holds of its consenting patients.

    ``persons`` maps the local id of each consenting patient's Patient resource to the person key
    the ledger knows them under; resources of any other patient are skipped.
    """
    resources = list(resources)
    medications = {r["id"]: r for r in resources
                   if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)}
    deidentifier = Deidentifier(KeyedPseudonyms(study_key, namespace=custodian, persons=persons),
                                reference_year=reference_year)
    released: list[dict[str, Any]] = []
    withheld: Counter[str] = Counter()
    for resource in resources:
        rtype = resource.get("resourceType")
        if rtype == "Medication":
            continue  # only ever used through the requests that name it
        owner = linked_patient(resource)
        if owner is None:
            withheld[NOT_LINKED] += 1
            continue
        if owner not in persons:
            continue
        if rtype == "MedicationRequest":
            resource = _with_inlined_medication(resource, medications)
        try:
            released.append(deidentifier.resource(resource))
        except ResourceWithheld as withheld_resource:
            withheld[withheld_resource.reason] += 1
    released.sort(key=lambda r: (r["resourceType"], r["id"]))
    return CustodianRelease(study=study, custodian=custodian, resources=tuple(released), withheld=dict(withheld))
