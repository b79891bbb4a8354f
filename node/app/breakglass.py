"""Break-glass bookkeeping in state: the recent grants the limits count, suspensions, and the
revocation of open break-glass grants after an `unjustified` review.

Each granted break-glass request writes one entry under the practitioner
(`breakglass_by/<practitioner><pos>`: patient, record, custodian, request tx, time, expiry) and
one under the patient (`breakglass_for/<patient><pos>`: practitioner, time). Entries older than
the limit window (`access.BREAKGLASS_LIMIT_WINDOW_MS`, block time) are deleted when the same
practitioner or patient next asks, so a scan costs at most the limits plus what expired since.
A break-glass grant lasts far less than the window, so every open one is still indexed here.
"""

from __future__ import annotations

from typing import Any

from node.core.encoding import decode_stored

from node.app import keys
from node.app.access import BREAKGLASS_LIMIT_WINDOW_MS, BreakglassStanding
from node.app.registry import ExecContext
from node.app.state import StateReader
from node.app.stored import read, write


def _live(ctx: ExecContext, prefix: bytes) -> list[tuple[bytes, dict[str, Any]]]:
    """The entries under `prefix` inside the window, after deleting the older ones."""
    horizon = ctx.timestamp_ms - BREAKGLASS_LIMIT_WINDOW_MS
    entries = [(key, decode_stored(raw)) for key, raw in list(ctx.state.items(prefix))]
    live = []
    for key, value in entries:
        if value["time_ms"] < horizon:
            ctx.state.delete(key)
        else:
            live.append((key, value))
    return live


def standing_at(state: StateReader, practitioner: bytes, patient: bytes, now_ms: int) -> BreakglassStanding:
    """What `standing` would find at block time `now_ms`, without pruning anything (a prediction
    on the committed state)."""
    horizon = now_ms - BREAKGLASS_LIMIT_WINDOW_MS

    def live(prefix: bytes) -> list[dict[str, Any]]:
        return [v for v in (decode_stored(raw) for _, raw in state.items(prefix)) if v["time_ms"] >= horizon]

    mine, theirs = live(keys.BREAKGLASS_BY + practitioner), live(keys.BREAKGLASS_FOR + patient)
    until = suspended_until(state, practitioner)
    return BreakglassStanding(
        requester_grants=len(mine), requester_patients=frozenset(v["patient"] for v in mine),
        patient_grants=len(theirs), suspended=until is not None and now_ms <= until,
    )


def suspended_until(state: StateReader, practitioner: bytes) -> int | None:
    """The block time until which `practitioner` is suspended from break-glass, if ever."""
    value = read(state, keys.BREAKGLASS_SUSPENDED + practitioner)
    return value["until_ms"] if isinstance(value, dict) else None


def standing(ctx: ExecContext, practitioner: bytes, patient: bytes) -> BreakglassStanding:
    """The recent break-glass use the limits count, at the block's time (prunes old entries)."""
    mine = _live(ctx, keys.BREAKGLASS_BY + practitioner)
    theirs = _live(ctx, keys.BREAKGLASS_FOR + patient)
    until = suspended_until(ctx.state, practitioner)
    return BreakglassStanding(
        requester_grants=len(mine), requester_patients=frozenset(v["patient"] for _, v in mine),
        patient_grants=len(theirs), suspended=until is not None and ctx.timestamp_ms <= until,
    )


def note_grant(ctx: ExecContext, practitioner: bytes, patient: bytes, record: bytes, custodian: bytes,
               expires_ms: int) -> None:
    """Index a granted break-glass request for the limits and for revocation."""
    write(ctx, keys.BREAKGLASS_BY + practitioner + ctx.position, {
        "patient": patient, "record": record, "custodian": custodian, "request": ctx.tx.hash,
        "time_ms": ctx.timestamp_ms, "expires_ms": expires_ms})
    write(ctx, keys.BREAKGLASS_FOR + patient + ctx.position, {"practitioner": practitioner, "time_ms": ctx.timestamp_ms})


def open_grants(ctx: ExecContext, practitioner: bytes) -> list[dict[str, Any]]:
    """The practitioner's break-glass grants not yet expired at the block's time, oldest first."""
    entries = [decode_stored(raw) for _, raw in ctx.state.items(keys.BREAKGLASS_BY + practitioner)]
    return [value for value in entries if value["expires_ms"] >= ctx.timestamp_ms]


def suspend(ctx: ExecContext, practitioner: bytes, until_ms: int, request_tx: bytes) -> None:
    """Suspend `practitioner` from break-glass until `until_ms` (a later suspension extends it)."""
    until = max(until_ms, suspended_until(ctx.state, practitioner) or 0)
    write(ctx, keys.BREAKGLASS_SUSPENDED + practitioner, {
        "until_ms": until, "by": ctx.tx.sender, "request": request_tx, "time_ms": ctx.timestamp_ms})
