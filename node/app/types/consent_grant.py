"""`consent.grant`: a patient (or its guardian) allows a grantee access under rules.

Modelled on FHIR Consent: a grantee (a practitioner, an institution, or a study), the purposes
of use, a scope (resource types, "*" for all, and/or record ids of this patient), deny
exceptions by resource type, and a validity period. The consent id is the hash of this
transaction. Evaluation happens in `node.app.access`.
"""

from __future__ import annotations

from node.chain.tx import Transaction, TxRejected

from node.app import keys
from node.app.audit import audit
from node.app.fhir_types import is_resource_type, unknown_type_message
from node.app.fields import (
    ANY_TYPE,
    ID_SIZE,
    MAX_RECORD_IDS,
    PURPOSES,
    check_id,
    check_on_behalf_of,
    check_purpose,
    check_resource_type,
    check_study_id,
    check_time,
    check_unique_list,
)
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, PRACTITIONER, acting_patient, role_of
from node.app.stored import read, write
from node.app.studies import load_study, study_active

FIELDS: dict[str, type | tuple[type, ...]] = {"grantee_kind": str, "grantee": (bytes, str), "purposes": list, "valid_until": int}
OPTIONAL: dict[str, type | tuple[type, ...]] = {"resource_types": list, "record_ids": list, "deny_types": list, "valid_from": int, "on_behalf_of": bytes}


def _check_known_type(name: str) -> None:
    """A consent's types must be FHIR R4 resource type names: a misspelt deny type would withhold
    nothing while the patient believes it withholds something."""
    if not is_resource_type(name):
        raise TxRejected("invalid_resource_type", unknown_type_message(name))


def _check(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, FIELDS, OPTIONAL)
    check_on_behalf_of(body)
    kind = body["grantee_kind"]
    if kind not in keys.GRANTEE_KINDS:
        raise TxRejected("invalid_body", f"grantee_kind must be one of {', '.join(keys.GRANTEE_KINDS)}")
    if kind == "study":
        check_study_id(body["grantee"])
    else:
        check_id(body, "grantee")
    purposes = check_unique_list(body, "purposes")
    if not purposes:
        raise TxRejected("invalid_purpose", "a consent names at least one purpose")
    for p in purposes:
        check_purpose(p)
    if kind == "study" and purposes != ["research"]:
        raise TxRejected("invalid_purpose", "a consent to a study is for the purpose research only")
    for t in check_unique_list(body, "resource_types"):
        check_resource_type(t, allow_any=True)
        if t != ANY_TYPE:
            _check_known_type(t)
    for t in check_unique_list(body, "deny_types"):
        check_resource_type(t)
        _check_known_type(t)
    for record_id in check_unique_list(body, "record_ids", limit=MAX_RECORD_IDS):
        if not isinstance(record_id, bytes) or len(record_id) != ID_SIZE:
            raise TxRejected("invalid_body", f"record_ids must list {ID_SIZE}-byte record ids")
    if not body.get("resource_types") and not body.get("record_ids"):
        raise TxRejected("empty_scope", "a consent covers resource types (\"*\" for all) or record ids")
    check_time(body, "valid_until")
    if "valid_from" in body:
        check_time(body, "valid_from")
        if body["valid_from"] >= body["valid_until"]:
            raise TxRejected("invalid_period", "valid_from must be before valid_until")


def _execute(ctx: ExecContext) -> None:
    body = ctx.tx.body
    patient = acting_patient(ctx)
    kind, grantee = body["grantee_kind"], body["grantee"]
    if kind == "study":
        study = load_study(ctx.state, grantee)
        if study is None:
            raise ExecFailed("unknown_study", "no study with this id")
        if not study_active(study, ctx.timestamp_ms):
            raise ExecFailed("study_ended", "the study has ended")
    elif role_of(ctx.state, grantee) != (PRACTITIONER if kind == "practitioner" else INSTITUTION):
        raise ExecFailed("unknown_grantee", f"the grantee is not a registered {kind}")
    if body["valid_until"] <= ctx.timestamp_ms:
        raise ExecFailed("invalid_period", "the consent would already have expired")
    for record_id in body.get("record_ids", ()):
        record = read(ctx.state, keys.record(record_id))
        if record is None or record["patient"] != patient:
            raise ExecFailed("record_not_patients", "a listed record is not this patient's")
    consent = {
        "patient": patient, "grantee_kind": kind, "grantee": grantee,
        "purposes": sorted(body["purposes"], key=PURPOSES.index),
        "resource_types": sorted(body.get("resource_types", [])),
        "record_ids": sorted(body.get("record_ids", [])),
        "deny_types": sorted(body.get("deny_types", [])),
        "valid_from": body.get("valid_from", ctx.timestamp_ms), "valid_until": body["valid_until"],
        "granted_by": ctx.tx.sender, "height": ctx.height, "index": ctx.index, "time_ms": ctx.timestamp_ms,
    }
    consent_id = ctx.tx.hash
    write(ctx, keys.consent(consent_id), consent)
    ctx.state.put(keys.CONSENT_GRANTEE + patient + keys.grantee_part(kind, grantee) + ctx.position, consent_id)
    ctx.state.put(keys.PATIENT_CONSENT + patient + ctx.position, consent_id)
    if kind == "study":
        ctx.state.put(keys.STUDY_CONSENT + keys.study_part(grantee) + ctx.position, consent_id)
    audit(ctx, patient, "consent.granted", consent=consent_id, grantee_kind=kind, grantee=grantee,
          purposes=consent["purposes"], valid_until=consent["valid_until"], on_behalf=(patient != ctx.tx.sender) or None)


CONSENT_GRANT = register(
    TxType(name="consent.grant", summary="a patient grants access under consent rules",
           check_body=_check, execute=_execute)
)
