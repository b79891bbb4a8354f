"""The audit index kept in state: per-patient trails and per-institution disclosure logs.

Every event touching a patient (AUDIT_EVENTS) writes one entry under `audit/<patient><pos><seq>`,
so a patient's trail iterates in block order (oldest first) and survives everything but the
chain itself. Granted accesses and research releases also write a disclosure entry under the
custodian institution, which is what an accounting-of-disclosures report reads.

An entry is a map with the fields below (absent when they do not apply); ids are raw bytes in
state and hex in the query answers:

    event      what happened (AUDIT_EVENTS)
    patient    whose trail it is          actor      who sent the transaction, or the practitioner
                                                     an institution acted for (then `via`)
    via        the institution that signed for `actor` (`on_behalf_of`, node/app/roles.py)
    tx         transaction hash           height, index, time_ms   where and when (block time)
    record, resource_type, custodian     the record concerned
    purpose, reason                      the request's purpose of use and stated reason
    decision, rule, consent, expires_ms  an access decision: granted/denied, the rule that decided
                                         (node.app.access), the consent it rests on, its expiry
    grantee_kind, grantee, purposes, valid_until   a consent granted or revoked
    guardian, on_behalf                  a guardian named/cleared; the actor was the guardian
    request, outcome, suspended          a break-glass review: the access request reviewed, the finding,
                                         whether the practitioner was suspended from break-glass
    practitioner, until_ms               a break-glass suspension: who, until when (block time)
    reason                               also a record contest's coded reason
    study, researcher, resources, release_hash    a research release (disclosures: patients, a count)
    permission, grantee                  a standing permission granted or revoked (standing.py)
    record, grantee, until_ms            a referral or lab order accepted (request_accept.py)
    standing                             an access decision: the standing permission it rests on
    via                                  a research release asked for by the researcher's institution
                                         (else the institution that signed for `actor`, above)
"""

from __future__ import annotations

from typing import Any

from node.app import keys
from node.app.registry import ExecContext
from node.app.stored import write

AUDIT_EVENTS = (
    "record.added",
    "record.erased",
    "consent.granted",
    "consent.revoked",
    "breakglass.opted_out",
    "breakglass.opted_in",
    "access.granted",
    "access.denied",
    "access.breakglass",
    "breakglass.reviewed",
    "breakglass.suspended",
    "access.revoked",
    "record.contested",
    "research.released",
    "guardian.set",
    "guardian.cleared",
    "standing.granted",
    "standing.revoked",
    "request.accepted",
)


def _entry(ctx: ExecContext, event: str, fields: dict[str, Any]) -> dict[str, Any]:
    assert event in AUDIT_EVENTS, event
    entry = {k: v for k, v in fields.items() if v is not None}
    entry.update(event=event, actor=entry.get("actor", ctx.tx.sender), tx=ctx.tx.hash, height=ctx.height, index=ctx.index,
                 time_ms=ctx.timestamp_ms)
    return entry


def audit(ctx: ExecContext, patient: bytes, event: str, *, seq: int = 0, **fields: Any) -> None:
    """Append an entry to `patient`'s audit trail."""
    entry = _entry(ctx, event, fields)
    entry["patient"] = patient
    write(ctx, keys.AUDIT + patient + ctx.position + seq.to_bytes(2, "big"), entry)


def next_seq(ctx: ExecContext, patient: bytes) -> int:
    """The `seq` of a further entry in `patient`'s trail by the running transaction."""
    return sum(1 for _ in ctx.state.items(keys.AUDIT + patient + ctx.position))


def disclose(ctx: ExecContext, institution: bytes, event: str, *, seq: int = 0, **fields: Any) -> None:
    """Append an entry to `institution`'s disclosure log."""
    write(ctx, keys.DISCLOSURE + institution + ctx.position + seq.to_bytes(2, "big"), _entry(ctx, event, fields))
