"""FHIR transaction and batch Bundles, planned without IO: ids assigned, references rewritten.

`plan_bundle(bundle, assign=..., patient=...)` checks a Bundle of type `transaction` or
`batch` (bounded: `MAX_ENTRIES` entries, `MAX_BUNDLE_BYTES` bytes, each resource at most
`MAX_RESOURCE_BYTES`), gives every entry the id this server files it under, rewrites every
`reference` anywhere in every resource that points to another entry, tells which ledger patient
each entry belongs to and validates each rewritten resource. The caller (the REST route) then
stores each `PlannedEntry` and answers with `response_bundle(plan)`.

- **Ids.** `assign(index, resource_type)` gives each entry its record id (the caller's choice,
  e.g. the hex record id it will register); it is the resource's FHIR id, except for a Patient,
  whose FHIR id is always its ledger patient id (64 hex): the ledger's link is authoritative.
- **References.** A reference equal to an entry's `fullUrl` (`urn:uuid:...`, `urn:oid:...` or an
  absolute URL), or a relative `Type/id` matching an entry's fullUrl or `request.url`, becomes
  `Type/<assigned id>`. A reference to a Patient entry becomes `Patient/<ledger patient id>`.
  A patient reference the bundle does not hold (a hospital-local `Patient/123`, an absolute URL,
  `Patient?identifier=...`) becomes `Patient/<the bundle's patient>` when the bundle names one
  patient, and is refused (`unresolved_reference`) otherwise. `Patient/<64 hex>` is already a
  ledger id and is kept. An unmatched `urn:uuid:`/`urn:oid:` placeholder is refused
  (`unresolved_reference`): it could never be resolved later. Any other reference (`#contained`,
  `Practitioner/7`, another server's URL, a conditional `Organization?identifier=...`) is kept.
- **Patients.** The bundle's patient is the caller's `patient`, else the ledger id in an
  identifier of system `urn:medledger:identity` of its only Patient entry. A Patient entry is
  that patient, or the one its `urn:medledger:identity` identifier names (a different one than
  the caller's is refused: `patient_mismatch`). A bundle may name several patients: each entry
  goes to the patient its `subject`/`patient`/`beneficiary` names, else to the one patient its
  references name, else to the bundle's patient; where none can be told, `patient_unresolved`.
- **Transaction or batch.** A transaction is all or nothing: the first refused entry raises.
  A batch plans every entry it can and keeps each refusal as an `EntryFailure` (its own
  OperationOutcome in the response); references between batch entries are resolved as in a
  transaction (Synthea's batch exports rely on it).

Refusals are `FhirError`s: `invalid_bundle` (400, the Bundle's shape), `too_large` (413, a limit,
named with its value), `invalid_fhir` (422, a resource), `unresolved_reference`,
`patient_unresolved`, `patient_mismatch` (422).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from node.fhir.outcome import FhirError, operation_outcome
from node.records.fhir import MAX_RESOURCE_BYTES, FhirInvalid, validate_resource

MAX_ENTRIES = 10_000
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
IDENTITY_SYSTEM = "urn:medledger:identity"
METHODS = ("POST", "PUT")
# Where a resource names the patient it is about (FHIR's patient compartment, the usual ones).
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")

_LEDGER_ID = re.compile(r"[0-9a-f]{64}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_RELATIVE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_ABSOLUTE = re.compile(r"https?://\S+?/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]{1,63})\?\S+")
_PLACEHOLDER = re.compile(r"urn:(?:uuid:[0-9a-fA-F\-]{1,64}|oid:[0-9.]{1,128})")
_REASON = {"200": "OK", "201": "Created"}

Assign = Callable[[int, str], str]


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    """One entry ready to store: its resource after rewriting (its id set), its ledger patient.

    index: its place in the bundle; record_id: what `assign` gave; fhir_id: the resource's id on
    this server (the patient id for a Patient, else record_id)."""

    index: int
    resource_type: str
    resource: dict[str, Any]
    patient: str
    record_id: str
    fhir_id: str
    method: str
    full_url: str | None
    if_none_exist: str | None


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """A batch entry refused on its own (a transaction raises instead)."""

    index: int
    error: FhirError


@dataclass(frozen=True, slots=True)
class Plan:
    """What a bundle asks for: its kind ("transaction" or "batch"), the entries, the refusals."""

    kind: str
    entries: tuple[PlannedEntry, ...]
    failures: tuple[EntryFailure, ...] = ()
    size: int = 0


def _bad(message: str) -> FhirError:
    return FhirError(400, "invalid_bundle", message)


def _unprocessable(code: str, message: str) -> FhirError:
    return FhirError(422, code, message)


def parse_bundle(data: bytes, *, max_bytes: int = MAX_BUNDLE_BYTES) -> dict[str, Any]:
    """The Bundle of a request body, its size checked before it is parsed."""
    if len(data) > max_bytes:
        raise FhirError(413, "too_large", f"the Bundle is {len(data)} bytes, over the limit of {max_bytes} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _bad("a Bundle is a JSON object")
    return doc


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    resource: dict[str, Any]
    rtype: str
    method: str
    url: str
    full_url: str | None
    if_none_exist: str | None


def _entries(bundle: Any, max_entries: int) -> tuple[str, list[_Entry]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _bad("expected a Bundle resource")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise _bad(f"Bundle.type must be transaction or batch, not {str(kind)[:32]!r}")
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise _bad("Bundle.entry must be a list")
    if len(raw) > max_entries:
        raise FhirError(413, "too_large", f"the Bundle has {len(raw)} entries, over the limit of {max_entries} entries")
    out: list[_Entry] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"entry {index}"
        if not isinstance(entry, dict):
            raise _bad(f"{where} is not an object")
        resource, request = entry.get("resource"), entry.get("request")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str) \
                or not _TYPE.fullmatch(resource["resourceType"]):
            raise _bad(f"{where}: resource must be a FHIR resource with a resourceType")
        rtype = resource["resourceType"]
        if not isinstance(request, dict):
            raise _bad(f"{where} ({rtype}): request is required in a {kind} Bundle")
        method, url = request.get("method"), request.get("url")
        if method not in METHODS:
            raise FhirError(405, "invalid_bundle", f"{where} ({rtype}): request.method {str(method)[:16]!r} is not "
                                                   f"supported here (only {' and '.join(METHODS)})", "not-supported")
        if not isinstance(url, str) or not url:
            raise _bad(f"{where} ({rtype}): request.url is required")
        url_type = url.split("?", 1)[0].split("/", 1)[0]
        if url_type != rtype:
            raise _bad(f"{where}: request.url {url[:80]!r} does not name the resource's type {rtype}")
        if method == "PUT":
            match = re.fullmatch(rf"{rtype}/([A-Za-z0-9\-.]{{1,64}})", url)
            if match is None or resource.get("id", match.group(1)) != match.group(1):
                raise _bad(f"{where}: a PUT names Type/id in request.url and the resource's id matches it")
        elif url != rtype:
            raise _bad(f"{where}: a POST's request.url is the resource type ({rtype}), not {url[:80]!r}")
        full_url = entry.get("fullUrl")
        if full_url is not None:
            if not isinstance(full_url, str) or not (_PLACEHOLDER.fullmatch(full_url) or _ABSOLUTE.fullmatch(full_url)):
                raise _bad(f"{where}: fullUrl must be a urn:uuid:, a urn:oid: or an absolute URL, not {str(full_url)[:80]!r}")
            if full_url in seen:
                raise _bad(f"{where}: fullUrl {full_url[:80]!r} appears twice")
            seen.add(full_url)
        none_exist = request.get("ifNoneExist")
        out.append(_Entry(index, resource, rtype, method, url, full_url, none_exist if isinstance(none_exist, str) else None))
    return kind, out


def _references(value: Any) -> Iterator[dict[str, Any]]:
    """Every object holding a `reference` string, anywhere in a resource."""
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _ledger_identity(patient: Mapping[str, Any]) -> str | None:
    identifiers = patient.get("identifier")
    for ident in identifiers if isinstance(identifiers, list) else ():
        if isinstance(ident, dict) and ident.get("system") == IDENTITY_SYSTEM:
            value = ident.get("value")
            if not isinstance(value, str) or not _LEDGER_ID.fullmatch(value.lower()):
                raise _unprocessable("patient_unresolved", f"identifier {IDENTITY_SYSTEM} must be a ledger identity id (64 hex)")
            return value.lower()
    return None


def _target_type(reference: str, ref: Mapping[str, Any]) -> str | None:
    """The type a reference points to, where its text or `type` says it."""
    for pattern in (_RELATIVE, _ABSOLUTE, _CONDITIONAL):
        match = pattern.fullmatch(reference)
        if match:
            return match.group(1)
    typed = ref.get("type")
    return typed if isinstance(typed, str) else None


class _Resolver:
    """The bundle's address book: fullUrl, Type/id and placeholders to the ids assigned."""

    def __init__(self, entries: list[_Entry], fhir_ids: Mapping[int, str], default_patient: str | None) -> None:
        self.targets: dict[str, tuple[str, str]] = {}
        self.default_patient = default_patient
        for entry in entries:
            target = (entry.rtype, fhir_ids[entry.index])
            keys = [entry.full_url] if entry.full_url else []
            if entry.full_url and (m := _ABSOLUTE.fullmatch(entry.full_url)):
                keys.append(f"{m.group(1)}/{m.group(2)}")
            if entry.method == "PUT":
                keys.append(entry.url)
            elif isinstance(entry.resource.get("id"), str):
                keys.append(f"{entry.rtype}/{entry.resource['id']}")
            for key in keys:
                self.targets.setdefault(key, target)

    def resolve(self, reference: str, ref: Mapping[str, Any], *, in_patient_link: bool) -> str:
        """The reference as it is stored; raises for one that must not be kept as it is."""
        found = self.targets.get(reference.split("/_history/", 1)[0])
        if found is None and (m := _ABSOLUTE.fullmatch(reference)):
            found = self.targets.get(f"{m.group(1)}/{m.group(2)}")
        if found is not None:
            return f"{found[0]}/{found[1]}"
        if _PLACEHOLDER.fullmatch(reference):
            raise _unprocessable("unresolved_reference", f"reference {reference[:80]!r} names no entry of this Bundle")
        if _target_type(reference, ref) != "Patient":
            return reference  # not ours to resolve: kept as it is
        match = _RELATIVE.fullmatch(reference)
        if match and _LEDGER_ID.fullmatch(match.group(2)):
            return f"Patient/{match.group(2)}"
        if self.default_patient is None or in_patient_link:
            raise _unprocessable("unresolved_reference", f"patient reference {reference[:80]!r} names no patient of this "
                                                         "Bundle, and the Bundle names more than one (or none)")
        return f"Patient/{self.default_patient}"


def _rewrite(resource: dict[str, Any], resolver: _Resolver) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(resource))  # a deep copy of plain JSON
    links = {id(ref) for ref in _references(out.get("link"))} if out["resourceType"] == "Patient" else set()
    for ref in _references(out):
        ref["reference"] = resolver.resolve(ref["reference"], ref, in_patient_link=id(ref) in links)
    return out


def _owner(resource: Mapping[str, Any], default: str | None) -> str | None:
    """The patient a rewritten resource belongs to."""
    for name in PATIENT_ELEMENTS:
        link = resource.get(name)
        match = _RELATIVE.fullmatch(link["reference"]) if isinstance(link, dict) and isinstance(link.get("reference"), str) else None
        if match and match.group(1) == "Patient":
            return match.group(2)
    named = {m.group(2) for ref in _references(resource) if (m := _RELATIVE.fullmatch(ref["reference"])) and m.group(1) == "Patient"}
    return named.pop() if len(named) == 1 else default


def _patients(entries: list[_Entry], patient: str | None) -> tuple[dict[int, str], str | None]:
    """The ledger patient of each Patient entry, and the bundle's patient."""
    if patient is not None and not _LEDGER_ID.fullmatch(patient):
        raise ValueError("the patient is a ledger identity id, 64 lowercase hex")
    found: dict[int, str | None] = {e.index: _ledger_identity(e.resource) for e in entries if e.rtype == "Patient"}
    for index, named in found.items():
        if patient is not None and named is not None and named != patient:
            raise _unprocessable("patient_mismatch", f"entry {index}: the Patient's {IDENTITY_SYSTEM} identifier names "
                                                     "another patient than the one this request is for")
    default = patient
    if default is None and len(found) == 1:
        default = next(iter(found.values()))
    resolved: dict[int, str] = {}
    for index, named in found.items():
        who = named or (default if patient is not None or len(found) == 1 else None)
        if who is None:
            raise _unprocessable("patient_unresolved", f"entry {index}: a Patient without a {IDENTITY_SYSTEM} identifier, "
                                                       "and the request names no patient")
        resolved[index] = who
    if default is None and len(set(resolved.values())) == 1:
        default = next(iter(resolved.values()))
    return resolved, default


def plan_bundle(bundle: Any, *, assign: Assign, patient: str | None = None, max_entries: int = MAX_ENTRIES,
                max_resource_bytes: int = MAX_RESOURCE_BYTES) -> Plan:
    """Plan a transaction or batch Bundle (see the module doc); raises FhirError when refused."""
    kind, entries = _entries(bundle, max_entries)
    patient_of, default = _patients(entries, patient)
    record_ids: dict[int, str] = {}
    for entry in entries:
        given = assign(entry.index, entry.rtype)
        if not isinstance(given, str) or not _FHIR_ID.fullmatch(given):
            raise ValueError(f"assign gave {given!r}, not a FHIR id")
        record_ids[entry.index] = given
    fhir_ids = {e.index: patient_of.get(e.index, record_ids[e.index]) for e in entries}
    resolver = _Resolver(entries, fhir_ids, default)
    planned: list[PlannedEntry] = []
    failures: list[EntryFailure] = []
    size = 0
    for entry in entries:
        try:
            item = _plan_entry(entry, resolver, record_ids[entry.index], fhir_ids[entry.index],
                               patient_of.get(entry.index), default, max_resource_bytes)
        except FhirError as exc:
            if kind == "transaction":
                raise FhirError(exc.status, exc.code, f"entry {entry.index} ({entry.rtype}): {exc.message}", exc.issue) from None
            failures.append(EntryFailure(entry.index, exc))
            continue
        size += len(json.dumps(item.resource, separators=(",", ":"), ensure_ascii=False).encode())
        planned.append(item)
    return Plan(kind=kind, entries=tuple(planned), failures=tuple(failures), size=size)


def _plan_entry(entry: _Entry, resolver: _Resolver, record_id: str, fhir_id: str, patient_entry: str | None,
                default: str | None, max_resource_bytes: int) -> PlannedEntry:
    resource = _rewrite(entry.resource, resolver)
    resource["id"] = fhir_id
    owner = patient_entry or _owner(resource, default)
    if owner is None:
        raise _unprocessable("patient_unresolved", f"a {entry.rtype} that names no patient, in a Bundle that names "
                                                   "more than one (or none): name the patient")
    nbytes = len(json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode())
    if nbytes > max_resource_bytes:
        raise FhirError(413, "too_large", f"the {entry.rtype} is {nbytes} bytes, over the limit of {max_resource_bytes} "
                                          "bytes per resource")
    try:
        validate_resource(resource)
    except FhirInvalid as exc:
        raise FhirError(422, "invalid_fhir", str(exc)) from None
    return PlannedEntry(index=entry.index, resource_type=entry.rtype, resource=resource, patient=owner,
                        record_id=record_id, fhir_id=fhir_id, method=entry.method, full_url=entry.full_url,
                        if_none_exist=entry.if_none_exist)


def response_bundle(plan: Plan, *, versions: Mapping[int, str] | None = None, updated: frozenset[int] = frozenset(),
                    last_modified: str | None = None) -> dict[str, Any]:
    """The transaction-response (or batch-response) Bundle, entries in the request's order.

    versions: the version each stored entry got (default "1"); updated: entries that updated an
    existing resource (200 OK, else 201 Created); last_modified: a FHIR instant, if known."""
    answers: dict[int, dict[str, Any]] = {}
    for item in plan.entries:
        version = (versions or {}).get(item.index, "1")
        status = "200" if item.index in updated else "201"
        response: dict[str, Any] = {"status": f"{status} {_REASON[status]}",
                                    "location": f"{item.resource_type}/{item.fhir_id}/_history/{version}",
                                    "etag": f'W/"{version}"'}
        if last_modified is not None:
            response["lastModified"] = last_modified
        answers[item.index] = {"response": response}
    for failure in plan.failures:
        err = failure.error
        answers[failure.index] = {"response": {
            "status": str(err.status),
            "outcome": operation_outcome(err.code, err.message, issue=err.issue),
        }}
    return {"resourceType": "Bundle", "type": f"{plan.kind}-response",
            "entry": [answers[index] for index in sorted(answers)]}
