"""`research.release`: a custodian institution records a de-identified extract it released.

The extract itself never touches the chain: the transaction names the study, the custodian (the
sender), the researcher who received it, the patients included (ids in ascending order), the
number of resources, and the SHA-256 of what was released. Every included patient must have had
a record at this custodian ("patient_not_held") and hold a consent to the study that is in force
at block time ("patient_not_consenting"); the study must be active and the researcher on it. Each patient's audit trail and the custodian's
disclosure log get an entry. An extract of more than MAX_PATIENTS patients is recorded in
several transactions with the same `release_hash`.

`via` (optional): the institution that asked for the extract on the researcher's behalf (a
delegated request, node/research/service.py: the FHIR Bulk Data export). It must be a registered
institution ("via_not_institution") and the researcher must be registered under it
("researcher_not_delegated"); the release, the audit entries and the disclosure name it.
"""

from __future__ import annotations

from node.chain.tx import Transaction, TxRejected

from node.app import keys
from node.app.audit import audit, disclose
from node.app.consents import candidate_consents
from node.app.fields import ID_SIZE, check_id, check_study_id
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, identity_of, role_of, sender_as
from node.app.stored import write
from node.app.studies import load_study, study_active

MAX_PATIENTS = 1024
MAX_RESOURCES = 1 << 40


def _check(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"study": str, "custodian": bytes, "researcher": bytes, "patients": list,
                          "resources": int, "release_hash": bytes}, {"via": bytes})
    check_study_id(body["study"])
    for name in ("custodian", "researcher", "release_hash", *(("via",) if "via" in body else ())):
        check_id(body, name)
    patients = body["patients"]
    if not 1 <= len(patients) <= MAX_PATIENTS:
        raise TxRejected("invalid_body", f"a release lists 1 to {MAX_PATIENTS} patients")
    if any(not isinstance(p, bytes) or len(p) != ID_SIZE for p in patients):
        raise TxRejected("invalid_body", f"patients must list {ID_SIZE}-byte ids")
    if any(a >= b for a, b in zip(patients, patients[1:])):
        raise TxRejected("invalid_body", "patients must be listed in ascending order, each once")
    if not 1 <= body["resources"] <= MAX_RESOURCES:
        raise TxRejected("invalid_body", "resources must be a positive count")


def _consenting(ctx: ExecContext, patient: bytes, study_id: str) -> bool:
    """The patient holds a consent to the study, for research, in force at block time."""
    now = ctx.timestamp_ms
    return any(not c.revoked and "research" in c.purposes and c.valid_from <= now <= c.valid_until
               for c in candidate_consents(ctx.state, patient, [("study", study_id)]))


def _execute(ctx: ExecContext) -> None:
    body = ctx.tx.body
    study_id = body["study"]
    sender_as(ctx, INSTITUTION)
    if body["custodian"] != ctx.tx.sender:
        raise ExecFailed("not_custodian", "a release is recorded by the custodian institution itself")
    study = load_study(ctx.state, study_id)
    if study is None:
        raise ExecFailed("unknown_study", "no study with this id")
    if not study_active(study, ctx.timestamp_ms):
        raise ExecFailed("study_ended", "the study has ended")
    if ctx.state.get(keys.STUDY_RESEARCHER + keys.study_part(study_id) + body["researcher"]) is None:
        raise ExecFailed("researcher_not_on_study", "the recipient is not a researcher of this study")
    via = body.get("via")
    if via is not None:
        if role_of(ctx.state, via) != INSTITUTION:
            raise ExecFailed("via_not_institution", "via must be a registered institution")
        researcher = identity_of(ctx.state, body["researcher"]) or {}
        if researcher.get("institution") != via:
            raise ExecFailed("researcher_not_delegated", "the researcher is not registered under the institution named in via")
    for patient in body["patients"]:
        if ctx.state.get(keys.PATIENT_CUSTODIAN + patient + ctx.tx.sender) is None:
            raise ExecFailed("patient_not_held", f"patient {patient.hex()[:16]} has no record at this custodian")
        if not _consenting(ctx, patient, study_id):
            raise ExecFailed("patient_not_consenting", f"patient {patient.hex()[:16]} has no consent in force for this study")
    details = dict(study=study_id, custodian=ctx.tx.sender, researcher=body["researcher"], resources=body["resources"],
                   release_hash=body["release_hash"])
    if via is not None:
        details["via"] = via
    write(ctx, keys.RELEASE + ctx.tx.hash, {**details, "patients": len(body["patients"]), "height": ctx.height,
                                           "index": ctx.index, "time_ms": ctx.timestamp_ms})
    for patient in body["patients"]:
        audit(ctx, patient, "research.released", **details)
    disclose(ctx, ctx.tx.sender, "research.released", patients=len(body["patients"]), **details)


RESEARCH_RELEASE = register(
    TxType(name="research.release", summary="a custodian records a de-identified research release",
           check_body=_check, execute=_execute)
)
