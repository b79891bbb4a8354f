"""`record.erase`: a patient (or its guardian) has a record erased.

The custodian deletes the ciphertext and wrapped keys off the chain (it finds its work in
`queries.erasures`); the chain keeps the record's metadata and hash, marked erased, and the
erasure event in the patient's audit trail. Later access requests are denied ("erased"), and
grants already made stop being honoured (`queries.active_grant`).
"""

from __future__ import annotations

from node.chain.tx import Transaction

from node.app import keys
from node.app.audit import audit
from node.app.fields import check_patient_act
from node.app.registry import ExecContext, ExecFailed, TxType, register
from node.app.roles import patients_record
from node.app.stored import write


def _check(tx: Transaction) -> None:
    check_patient_act(tx.body, "record")


def _execute(ctx: ExecContext) -> None:
    record_id = ctx.tx.body["record"]
    patient, record = patients_record(ctx, record_id)
    if "erased_ms" in record:
        raise ExecFailed("already_erased", "this record is already erased")
    record.update(erased_ms=ctx.timestamp_ms, erased_height=ctx.height, erased_by=ctx.tx.sender, erase_tx=ctx.tx.hash)
    write(ctx, keys.record(record_id), record)
    ctx.state.put(keys.ERASURE + record["custodian"] + ctx.position, record_id)
    audit(ctx, patient, "record.erased", record=record_id, resource_type=record["resource_type"],
          custodian=record["custodian"], on_behalf=(patient != ctx.tx.sender) or None)


RECORD_ERASE = register(
    TxType(name="record.erase", summary="a patient has a record's off-chain bytes erased",
           check_body=_check, execute=_execute)
)
