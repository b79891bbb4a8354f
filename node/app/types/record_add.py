"""`record.add`: a practitioner announces an encrypted record it stored at its institution.

The chain gets only metadata: the record id (32 random bytes chosen by the writer, unique on the
chain), the patient, the FHIR resource type, the SHA-256 of the ciphertext, the custodian
institution holding the bytes, and the author (the sender). The author must be a practitioner
of the custodian institution, the patient a registered patient, and the author must have a
treatment relationship with the patient (`node.app.relationships`: the patient registered at
the author's institution, a consent for treatment or emergency to the author or its institution,
or an open break-glass grant on the patient's records); the basis is kept with the record. A
patient who finds a record it does not recognise contests it (`record.contest`).

An institution may add a record for one of its practitioners (`on_behalf_of`, the practitioner's
id; node/app/roles.py `acting_staff`): the practitioner is then the author, every check above
applies to it, and the record and its audit entry also name the institution (`via`).

Workflows. A record may carry workflow fields (`based_on`, `recipient`, `until_ms`, `payer`,
`lists`: a prescription dispensed, a Claim to its insurer, a referral, a lab order and its
results), checked and applied by node/app/care.py. A record fulfilling an order needs no other
treatment relationship: the order is its basis ("prescription", "claim", "order").

Versions. A record may replace an earlier one (`supersedes`: its record id): the superseded
record must exist ("unknown_record"), be of the same patient, resource type and custodian
("version_mismatch"), not be erased ("erased") and be the latest version of its logical record
("not_latest_version": nothing supersedes it yet, also not earlier in the same block). The new
record's metadata gets `version_of` (the record id of the first version: the logical id) and
`version` (the previous version's + 1); a record without `supersedes` has neither (version 1).
The versions are indexed (`keys.VERSION`, `keys.VERSION_LATEST`) so `queries.record_versions`
and `queries.latest_version` read a prefix, never the whole chain. Erasure stays per record.
"""

from __future__ import annotations

from typing import Any

from node.chain.tx import Transaction

from node.app import care, keys
from node.app.audit import audit
from node.app.fields import check_id, check_on_behalf_of, check_resource_type
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.relationships import treatment_basis
from node.app.roles import PATIENT, PRACTITIONER, acting_staff, role_of
from node.app.stored import read, write


def _check(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"record": bytes, "patient": bytes, "resource_type": str, "hash": bytes, "custodian": bytes},
                   {"on_behalf_of": bytes, "supersedes": bytes, **care.WORKFLOW_FIELDS})
    for name in ("record", "patient", "hash", "custodian"):
        check_id(body, name)
    check_on_behalf_of(body)
    if "supersedes" in body:
        check_id(body, "supersedes")
    check_resource_type(body["resource_type"])
    care.check_fields(body)


def _next_version(ctx: ExecContext, body: dict[str, Any]) -> dict[str, Any]:
    """`version_of` and `version` of a record superseding `body["supersedes"]` (see above)."""
    previous = read(ctx.state, keys.record(body["supersedes"]))
    if previous is None:
        raise ExecFailed("unknown_record", "supersedes names no record on the chain")
    if any(previous[name] != body[name] for name in ("patient", "resource_type", "custodian")):
        raise ExecFailed("version_mismatch", "a new version must have the patient, resource type and custodian "
                         "of the record it supersedes")
    if "erased_ms" in previous:
        raise ExecFailed("erased", "the record to supersede was erased at the patient's request")
    first = previous.get("version_of", body["supersedes"])
    if (ctx.state.get(keys.VERSION_LATEST + first) or first) != body["supersedes"]:
        raise ExecFailed("not_latest_version", "a later version supersedes that record already; supersede the latest")
    return {"version_of": first, "version": previous.get("version", 1) + 1}


def _execute(ctx: ExecContext) -> None:
    body = ctx.tx.body
    author_id, author, via = acting_staff(ctx, PRACTITIONER)
    if author.get("institution") != body["custodian"]:
        raise ExecFailed("not_custodian_staff", "the author must be a practitioner of the custodian institution")
    if role_of(ctx.state, body["patient"]) != PATIENT:
        raise ExecFailed("unknown_patient", "the record's patient is not a registered patient")
    if read(ctx.state, keys.record(body["record"])) is not None:
        raise ExecFailed("record_exists", "a record with this id is already on the chain")
    basis = care.fulfilment_basis(ctx, body, body["custodian"]) or \
        treatment_basis(ctx, author_id, body["custodian"], body["patient"])
    if basis is None:
        raise ExecFailed("no_treatment_relationship", "the author has no treatment relationship with this patient: "
                         "the patient registers at your institution or grants it (or you) consent for treatment first")
    meta = {
        "patient": body["patient"], "resource_type": body["resource_type"], "hash": body["hash"],
        "custodian": body["custodian"], "author": author_id, "basis": basis, "tx": ctx.tx.hash,
        "height": ctx.height, "index": ctx.index, "time_ms": ctx.timestamp_ms,
    }
    if via is not None:
        meta["via"] = via
    meta.update(care.apply_add(ctx, body, body["record"]))
    if "supersedes" in body:
        meta.update(_next_version(ctx, body))
        ctx.state.put(keys.VERSION + meta["version_of"] + meta["version"].to_bytes(4, "big"), body["record"])
        ctx.state.put(keys.VERSION_LATEST + meta["version_of"], body["record"])
    write(ctx, keys.record(body["record"]), meta)
    ctx.state.put(keys.PATIENT_RECORD + body["patient"] + ctx.position, body["record"])
    custodian_key = keys.PATIENT_CUSTODIAN + body["patient"] + body["custodian"]
    if ctx.state.get(custodian_key) is None:
        write(ctx, custodian_key, {"height": ctx.height})
    audit(ctx, body["patient"], "record.added", record=body["record"], resource_type=body["resource_type"],
          custodian=body["custodian"], actor=author_id, via=via)


RECORD_ADD = register(
    TxType(name="record.add", summary="announce an encrypted record held by its custodian",
           check_body=_check, execute=_execute)
)
