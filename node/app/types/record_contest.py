"""`record.contest`: a patient (or its guardian) contests a record in its chart.

A record the patient does not recognise (written by someone who never treated it), or believes
wrong, is marked contested: the record's metadata says so (`contested`, with the time, the coded
reason and who contested it) and the patient's audit trail has a "record.contested" entry. The
record is not erased (the patient may still do that with `record.erase`): a contested record is
evidence, and its author's institution is the one to correct it. A record is contested once.

Reasons are coded (CONTEST_REASONS), never free text: the chain is no place for the patient's
account of its care.
"""

from __future__ import annotations

from node.chain.tx import Transaction, TxRejected

from node.app import keys
from node.app.audit import audit
from node.app.fields import check_patient_act
from node.app.registry import ExecContext, ExecFailed, TxType, register
from node.app.roles import patients_record
from node.app.stored import write

CONTEST_REASONS = {
    "not_my_record": "the record is about someone else",
    "no_treatment": "the author never treated the patient",
    "inaccurate": "the record's content is wrong",
}
DEFAULT_REASON = "no_treatment"


def _check(tx: Transaction) -> None:
    check_patient_act(tx.body, "record", {"reason": str})
    if tx.body.get("reason", DEFAULT_REASON) not in CONTEST_REASONS:
        raise TxRejected("invalid_reason", "the reason is one of " + ", ".join(CONTEST_REASONS))


def _execute(ctx: ExecContext) -> None:
    record_id = ctx.tx.body["record"]
    patient, record = patients_record(ctx, record_id)
    if "contested_ms" in record:
        raise ExecFailed("already_contested", "this record is already contested")
    reason = ctx.tx.body.get("reason", DEFAULT_REASON)
    record.update(contested_ms=ctx.timestamp_ms, contest_reason=reason, contested_by=ctx.tx.sender, contest_tx=ctx.tx.hash)
    write(ctx, keys.record(record_id), record)
    audit(ctx, patient, "record.contested", record=record_id, resource_type=record["resource_type"],
          custodian=record["custodian"], reason=reason, on_behalf=(patient != ctx.tx.sender) or None)


RECORD_CONTEST = register(
    TxType(name="record.contest", summary="a patient marks a record in its chart as contested",
           check_body=_check, execute=_execute)
)
