"""Whose record is this? The writer's check that a FHIR resource is about the patient it is put for.

`record put --patient P` announces a record of P on the ledger; nothing in the ciphertext can be
checked afterwards, so the writer's client checks, before encrypting, that every patient the
resource names is P. Checked elements: `subject`, `patient` and `beneficiary` of the resource and,
for a Bundle, of every entry (nested Bundles included, up to MAX_DEPTH), and every Patient
resource itself.

How a FHIR reference names a MedLedger patient (docs/api.md, "Whose record"):

- `Patient/<id>` where <id> is the patient's 64-hex identity id (relative, or the tail of an
  absolute URL, with an optional `/_history/<v>`);
- a logical reference `{"identifier": {"system": "urn:medledger:identity", "value": "<id>"}}`;
- inside a Bundle, a reference to an entry (by its fullUrl, or `Patient/<id>` of a bundled
  Patient) that is a Patient resource naming the patient;
- a Patient resource names the patient by an identifier with the system
  `urn:medledger:identity`, or by its id (one of the forms above);
- a local id (`Patient/<the hospital's id>`) only when the writer says that local reference is
  this patient (`--subject Patient/<local id>`); any other local id is refused.

A resource that names no patient at all is taken as the named patient's (the ledger's record.add
says whose it is). Anything else is refused with a message that says what to write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SYSTEM = "urn:medledger:identity"
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")
MAX_DEPTH = 4

_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]{1,64})?$")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class SubjectMismatch(ValueError):
    """The resource names a patient other than the one it is put for (or none we can check)."""


def check_subject(resource: Mapping[str, Any], patient_id: str, *, alias: str | None = None) -> None:
    """Raise SubjectMismatch unless every patient `resource` names is `patient_id` (hex); `alias`
    is a local reference (`Patient/<local id>`) the writer says is this patient."""
    _Checker(patient_id.lower(), alias).resource(resource, str(resource.get("resourceType", "resource")), 0, {})


class _Checker:
    def __init__(self, patient: str, alias: str | None) -> None:
        self.patient = patient
        self.alias = alias

    def resource(self, res: Mapping[str, Any], where: str, depth: int, index: Mapping[str, Any]) -> None:
        if depth > MAX_DEPTH:
            raise SubjectMismatch(f"{where}: Bundles nested deeper than {MAX_DEPTH} levels are not accepted")
        if res.get("resourceType") == "Bundle":
            self.bundle(res, where, depth)
            return
        if res.get("resourceType") == "Patient":
            self.patient_resource(res, where)
        for name in PATIENT_ELEMENTS:
            value = res.get(name)
            refs = value if isinstance(value, list) else [value]
            for i, ref in enumerate(refs):
                if isinstance(ref, Mapping):
                    self.reference(ref, f"{where}.{name}" + (f"[{i}]" if isinstance(value, list) else ""), index)

    def bundle(self, res: Mapping[str, Any], where: str, depth: int) -> None:
        entries = [e for e in res.get("entry") or () if isinstance(e, Mapping)]
        index: dict[str, Any] = {}
        for entry in entries:
            inner = entry.get("resource")
            if not isinstance(inner, Mapping):
                continue
            if isinstance(entry.get("fullUrl"), str):
                index[entry["fullUrl"]] = inner
            if inner.get("resourceType") == "Patient" and isinstance(inner.get("id"), str):
                index[f"Patient/{inner['id']}"] = inner
        for i, entry in enumerate(entries):
            inner = entry.get("resource")
            if isinstance(inner, Mapping):
                self.resource(inner, f"{where}.entry[{i}].{inner.get('resourceType', 'resource')}", depth + 1, index)

    def reference(self, ref: Mapping[str, Any], where: str, index: Mapping[str, Any]) -> None:
        target = ref.get("reference")
        if isinstance(target, str):
            bundled = index.get(target)
            if isinstance(bundled, Mapping):
                if bundled.get("resourceType") != "Patient":
                    raise SubjectMismatch(f"{where} refers to a {bundled.get('resourceType')}, not to the patient")
                self.patient_resource(bundled, where)
                return
            found = _PATIENT_REF.search(target)
            if found is None:
                raise SubjectMismatch(f"{where} ({target[:80]!r}) is not a reference to a Patient; "
                                      f"a record names its patient as Patient/<patient id>")
            self.local(found.group(1), where)
            return
        ident = ref.get("identifier")
        if isinstance(ident, Mapping) and ident.get("system") == SYSTEM:
            self.medledger_id(str(ident.get("value", "")), where)
            return
        raise SubjectMismatch(f"{where} names no patient that can be checked; write "
                              f"{{\"reference\": \"Patient/<patient id>\"}}")

    def medledger_id(self, value: str, where: str) -> None:
        if value.lower() != self.patient:
            raise SubjectMismatch(f"{where} names patient {value[:16]}..., not the patient given "
                                  f"({self.patient[:16]}...): this resource is another patient's record")

    def local(self, local_id: str, where: str) -> None:
        if _HEX64.fullmatch(local_id):
            self.medledger_id(local_id, where)
            return
        if self.alias is not None and self.alias == f"Patient/{local_id}":
            return
        raise SubjectMismatch(f"{where} names Patient/{local_id}, which is not a MedLedger patient id: write "
                              f"Patient/<patient id>, add an identifier with system {SYSTEM} to the Patient, or, "
                              f"if that local id is this patient, say so with --subject Patient/{local_id}")

    def patient_resource(self, res: Mapping[str, Any], where: str) -> None:
        ours = [i for i in res.get("identifier") or () if isinstance(i, Mapping) and i.get("system") == SYSTEM]
        for ident in ours:
            self.medledger_id(str(ident.get("value", "")), where)
        if ours:
            return
        rid = res.get("id")
        if not isinstance(rid, str):
            raise SubjectMismatch(f"{where} is a Patient with neither an id nor an identifier of system {SYSTEM}")
        self.local(rid, where)
