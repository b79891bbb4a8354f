"""Who is who on the ledger: reading identities, checking a sender's role, and resolving who a
patient-side transaction acts for (the patient itself, or the patient's guardian on its behalf).

The role of each identity decides which transaction types it may send (docs/ledger.md has the
table); a sender with the wrong role gets the result code "role_not_allowed".

An institution may act for one of its practitioners (`acting_staff`): the transaction names the
practitioner in `on_behalf_of` and is signed by the institution, which must be the one the
practitioner is registered under ("not_our_practitioner" otherwise). The ledger then applies
its rules to the practitioner, and the records and audit entries name both (`via`: the
institution).
"""

from __future__ import annotations

from typing import Any

from node.app import keys
from node.app.registry import ExecContext, ExecFailed
from node.app.state import StateReader
from node.app.stored import read

PATIENT = "patient"
PRACTITIONER = "practitioner"
RESEARCHER = "researcher"
INSTITUTION = "institution"
ROLES = (PATIENT, PRACTITIONER, RESEARCHER, INSTITUTION)


def identity_of(state: StateReader, ident: bytes) -> dict[str, Any] | None:
    value = read(state, keys.identity(ident))
    return value if isinstance(value, dict) else None


def role_of(state: StateReader, ident: bytes) -> str | None:
    found = identity_of(state, ident)
    return None if found is None else found.get("role")


def sender_as(ctx: ExecContext, *roles: str) -> dict[str, Any]:
    """The sender's identity, which must hold one of `roles`."""
    found = identity_of(ctx.state, ctx.tx.sender)
    if found is None:
        raise ExecFailed("not_registered", "the sender has no registered identity")
    if found["role"] not in roles:
        raise ExecFailed("role_not_allowed", f"a {found['role']} may not send {ctx.tx.type}")
    return found


def practitioner_of(state: StateReader, institution: bytes, practitioner: bytes) -> dict[str, Any]:
    """`practitioner`'s identity, which must be a practitioner registered under `institution`."""
    found = identity_of(state, practitioner)
    if found is None or found.get("role") != PRACTITIONER or found.get("institution") != institution:
        raise ExecFailed("not_our_practitioner", "on_behalf_of is not a practitioner registered under the sending institution")
    return found


def acting_staff(ctx: ExecContext, *roles: str) -> tuple[bytes, dict[str, Any], bytes | None]:
    """Who a staff transaction acts for: (id, identity, via). Without `on_behalf_of`, the sender,
    which must hold one of `roles` (via None); with it, the practitioner it names, for the
    sending institution (via: the institution's id)."""
    practitioner = ctx.tx.body.get("on_behalf_of")
    if practitioner is None:
        return ctx.tx.sender, sender_as(ctx, *roles), None
    sender_as(ctx, INSTITUTION)
    return practitioner, practitioner_of(ctx.state, ctx.tx.sender, practitioner), ctx.tx.sender


def require_institution(state: StateReader, ident: bytes, code: str = "unknown_institution") -> None:
    if role_of(state, ident) != INSTITUTION:
        raise ExecFailed(code, "not a registered institution")


def guardian_of(state: StateReader, patient: bytes) -> bytes | None:
    value = read(state, keys.GUARDIAN + patient)
    return value["guardian"] if isinstance(value, dict) else None


def acting_patient(ctx: ExecContext) -> bytes:
    """The patient a patient-side transaction acts for; the sender must be it or its guardian."""
    patient: bytes = ctx.tx.body.get("on_behalf_of", ctx.tx.sender)
    role = role_of(ctx.state, patient)
    if patient == ctx.tx.sender:
        if role is None:
            raise ExecFailed("not_registered", "the sender has no registered identity")
        if role != PATIENT:
            raise ExecFailed("role_not_allowed", f"only a patient (or its guardian) may send {ctx.tx.type}")
        return patient
    if role != PATIENT:
        raise ExecFailed("unknown_patient", "on_behalf_of is not a registered patient")
    if guardian_of(ctx.state, patient) != ctx.tx.sender:
        raise ExecFailed("not_guardian", "the sender is not this patient's guardian")
    return patient


def patients_record(ctx: ExecContext, record_id: bytes) -> tuple[bytes, dict[str, Any]]:
    """The acting patient (see `acting_patient`) and its record `record_id`; refuses an unknown
    record or another patient's. For the patient-side record transactions (erase, contest)."""
    record = read(ctx.state, keys.record(record_id))
    if record is None:
        raise ExecFailed("unknown_record", "no record with this id")
    patient = acting_patient(ctx)
    if record["patient"] != patient:
        raise ExecFailed("not_your_record", "this record belongs to another patient")
    return patient, record
