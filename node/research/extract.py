"""A research extract: the custodians' releases merged, made k-anonymous, laid out as FHIR Bulk Data.

`assemble_extract` is pure: releases in, an `Extract` (file name -> bytes, and the report) out.
`write_extract` puts it in a directory. The steps:

1. Each release is checked (right study, one per custodian) and every resource in it goes
   through the Safe Harbor rules again with `ExistingPseudonyms`: a correct custodian's resources
   pass unchanged; anything a faulty one let through is removed and counted as corrected, and a
   resource that cannot be released is rejected. Resources not linked to a patient, or to a
   patient outside ``eligible`` when that set is given, are rejected too.
2. Patients are merged across custodians by pseudonym (one person, one pseudonym in a study).
   A patient with no Patient resource anywhere is suppressed: their quasi-identifiers are unknown.
3. k-anonymity (`kanon.anonymise`) across all custodians together picks a generalisation and
   suppresses small groups; every resource of a suppressed patient is dropped. If fewer than k
   patients would remain, nothing is released and the report says why.
4. Each included patient's Patient resource is rebuilt from its generalised quasi-identifiers;
   the other resources are kept as cleaned. Each type goes to ``<ResourceType>.ndjson``, one
   resource per line in canonical JSON (resourceType and id first, other keys sorted, no
   whitespace), lines sorted by id, so the same inputs always give the same bytes.

``released_sha256`` is the SHA-256 of the ``sha256sum``-style manifest of the NDJSON files
(one line ``<hex digest>  <name>\\n`` per file, in name order): ``sha256sum *.ndjson | sha256sum``
in a C locale gives the same value.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.research.kanon import LADDER, Generalisation, QuasiIdentifiers, anonymise, merge, patient_resource, quasi_identifiers
from node.research.pseudonyms import ExistingPseudonyms
from node.research.release import NOT_LINKED, UNKNOWN_TYPE, CustodianRelease, Withheld, count_withheld, linked_patient
from node.research.deid_rules import ResourceWithheld
from node.research.safe_harbor import Deidentifier

REPORT_FORMAT = "medledger-research-extract/1"
REPORT_NAME = "report.json"
NO_PATIENT = "no Patient resource in any custodian's release"
NOT_ELIGIBLE = "patient not eligible for the study"


@dataclass(frozen=True, slots=True, kw_only=True)
class Extract:
    """What a study releases: NDJSON files by name (none when refused) and the report."""

    files: Mapping[str, bytes]
    report: Mapping[str, Any]

    @property
    def refusal(self) -> str | None:
        """Why nothing was released, or None."""
        refusal = self.report["refusal"]
        return refusal if isinstance(refusal, str) else None

    def report_json(self) -> bytes:
        """The report as it is written to report.json."""
        return (json.dumps(self.report, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def canonical_json(resource: Mapping[str, Any]) -> bytes:
    """One NDJSON line (without newline): resourceType and id first, other keys sorted."""
    head = {name: resource[name] for name in ("resourceType", "id") if name in resource}
    rest = {name: resource[name] for name in sorted(resource) if name not in head}
    body = json.dumps({**head, **_sorted(rest)}, separators=(",", ":"), ensure_ascii=False)
    return body.encode()


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _sorted(value[name]) for name in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def released_sha256(files: Mapping[str, bytes]) -> str | None:
    """SHA-256 of the sha256sum-style manifest of the files, in name order; None if there are none."""
    if not files:
        return None
    manifest = "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files))
    return hashlib.sha256(manifest.encode()).hexdigest()


@dataclass(slots=True)
class _Received:
    """One accepted release after the extract's own checks."""

    custodian: str
    resources: list[tuple[str, dict[str, Any]]]  # (patient pseudonym, cleaned resource)
    withheld: Withheld
    rejected: Counter[tuple[str, str]]  # (resource type, reason)
    corrected: int


def _receive(release: CustodianRelease, deidentifier: Deidentifier, eligible: Collection[str] | None) -> _Received:
    received = _Received(custodian=release.custodian, resources=[], withheld=dict(release.withheld),
                         rejected=Counter(), corrected=0)
    for resource in release.resources:
        rtype = resource["resourceType"] if isinstance(resource.get("resourceType"), str) else UNKNOWN_TYPE
        try:
            cleaned = deidentifier.resource(resource)
        except ResourceWithheld as withheld:
            received.rejected[(rtype, withheld.reason)] += 1
            continue
        owner = linked_patient(cleaned)
        if owner is None:
            received.rejected[(rtype, NOT_LINKED)] += 1
        elif eligible is not None and owner not in eligible:
            received.rejected[(rtype, NOT_ELIGIBLE)] += 1
        else:
            received.corrected += canonical_json(cleaned) != canonical_json(resource)
            received.resources.append((owner, cleaned))
    return received


def assemble_extract(
    releases: Iterable[CustodianRelease],
    *,
    study: str,
    k: int,
    reference_year: int,
    custodians_asked: Iterable[str] | None = None,
    eligible: Collection[str] | None = None,
    max_suppression: float = 0.1,
    ladder: tuple[Generalisation, ...] = LADDER,
) -> Extract:
    """Merge the custodians' releases, apply k-anonymity across them, and lay out the extract."""
    if k < 1:
        raise ValueError("k must be at least 1")
    deidentifier = Deidentifier(ExistingPseudonyms(), reference_year=reference_year)
    eligible = frozenset(eligible) if eligible is not None else None
    custodian_reports: list[dict[str, Any]] = []
    received: list[_Received] = []
    for release in releases:
        refused = ("release for another study" if release.study != study
                   else "more than one release from this custodian" if any(r.custodian == release.custodian for r in received)
                   else None)
        if refused is not None:
            custodian_reports.append({"custodian": release.custodian, "accepted": False, "reason": refused})
            continue
        received.append(_receive(release, deidentifier, eligible))

    # Patients across custodians, and their quasi-identifiers.
    copies: dict[str, list[QuasiIdentifiers]] = defaultdict(list)
    owners: set[str] = set()
    for item in received:
        for owner, resource in item.resources:
            owners.add(owner)
            if resource["resourceType"] == "Patient":
                copies[owner].append(quasi_identifiers(resource, reference_year=reference_year))
    suppressed: dict[str, str] = {owner: NO_PATIENT for owner in owners if owner not in copies}
    outcome = anonymise({owner: merge(qis) for owner, qis in copies.items()}, k, reference_year=reference_year,
                        ladder=ladder, max_suppression=max_suppression)
    suppressed.update(outcome.result.suppressed)
    kept = outcome.result.kept
    refusal = None
    if not owners:
        refusal = "no eligible patients in the custodians' releases"
    elif len(kept) < k:
        refusal = (f"only {len(kept)} of {len(owners)} eligible patient(s) would remain after k-anonymity "
                   f"with k={k}, fewer than k: nothing is released")
    included = frozenset() if refusal else kept
    if refusal:
        suppressed.update({owner: refusal for owner in owners if owner not in suppressed})

    # The released resources, one per (type, id).
    chosen: dict[tuple[str, str], bytes] = {}
    duplicates = 0
    for owner in sorted(included):
        chosen[("Patient", owner)] = canonical_json(patient_resource(owner, outcome.quasi_identifiers[owner]))
    for item in received:
        for owner, resource in item.resources:
            if owner not in included or resource["resourceType"] == "Patient":
                continue
            key, line = (resource["resourceType"], resource["id"]), canonical_json(resource)
            if key in chosen:
                duplicates += 1
                line = min(line, chosen[key])  # the same choice whatever order releases come in
            chosen[key] = line
    by_type: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for (rtype, rid), line in chosen.items():
        by_type[rtype].append((rid, line))
    files = {f"{rtype}.ndjson": b"".join(line + b"\n" for _, line in sorted(lines)) for rtype, lines in by_type.items()}
    files = dict(sorted(files.items()))

    for item in received:
        patients = {owner for owner, _ in item.resources}
        custodian_reports.append({
            "custodian": item.custodian,
            "accepted": True,
            "patients": len(patients),
            "resources": len(item.resources),
            "patients_included": len(patients & included),
            "resources_released": sum(1 for owner, r in item.resources if owner in included and r["resourceType"] != "Patient"),
            "resources_withheld_by_custodian": count_withheld(_flat(item.withheld)),
            "resources_rejected": count_withheld(item.rejected),
            "resources_corrected": item.corrected,
        })
    custodian_reports.sort(key=lambda c: (c["custodian"], c["accepted"]))
    answered = {c["custodian"] for c in custodian_reports}
    result = outcome.result
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "study": study,
        "released": refusal is None,
        "refusal": refusal,
        "reference_year": reference_year,
        "k_requested": k,
        "k_reached": None if refusal else result.k_reached,
        "generalisation": None if refusal else outcome.generalisation.describe(),
        "patients_eligible": len(owners),
        "patients_included": len(included),
        "patients_suppressed_count": len(suppressed),
        "patients_suppressed": [{"pseudonym": p, "reason": suppressed[p]} for p in sorted(suppressed)],
        "groups": [] if refusal else sorted(
            ({**qi.as_dict(), "patients": n} for qi, n in result.groups.items()),
            key=lambda g: json.dumps(g, sort_keys=True),
        ),
        "types": sorted(by_type),
        "resources_per_type": {rtype: len(lines) for rtype, lines in sorted(by_type.items())},
        "resources_released": len(chosen),
        "duplicates_dropped": duplicates,
        "resources_withheld": count_withheld(sum((_flat(item.withheld) + item.rejected for item in received), Counter())),
        "custodians": custodian_reports,
        "custodians_not_answering": sorted(set(custodians_asked or ()) - answered),
        "files": [{"name": name, "bytes": len(data), "resources": data.count(b"\n"),
                   "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()],
        "released_sha256": released_sha256(files),
    }
    return Extract(files=files, report=report)


def _flat(withheld: Withheld) -> Counter[tuple[str, str]]:
    return Counter({(rtype, reason): n for rtype, reasons in withheld.items() for reason, n in reasons.items()})


def write_extract(extract: Extract, directory: Path) -> list[Path]:
    """Write the NDJSON files and report.json into a new or empty directory; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        # Stale files from another extract would be mistaken for part of this one.
        raise FileExistsError(f"{directory} is not empty")
    written = []
    for name, data in extract.files.items():
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    report = directory / REPORT_NAME
    report.write_bytes(extract.report_json())
    written.append(report)
    return written
