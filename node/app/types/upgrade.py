"""`governance.schedule_upgrade`: the validators schedule protocol version v from height H on.

Each validator sends one approval of {version, height}; approvals are counted as for
`governance.admit_institution` (governance.py: a quorum of the validators, one approval each).
When they reach the quorum, the upgrade is scheduled (node/app/upgrades.py) in the same
transaction. Refused, at every approval: a height less than `UPGRADE_NOTICE` blocks after the
approving block ("upgrade_too_soon"), a version not above the one in effect at H ("upgrade_not_newer")
or above one scheduled later ("upgrade_conflict"), and a height that already has a schedule
("upgrade_conflict" for another version, "already_scheduled" for the same).
"""

from __future__ import annotations

from node.chain.block import BASE_VERSION, MAX_VERSION
from node.chain.tx import Transaction, TxRejected

from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.stored import read, write
from node.app.types.governance import add_approval, require_validator
from node.app.upgrades import UPGRADE_NOTICE, proposal_key, schedule, scheduled_key, version_at


def _check(tx: Transaction) -> None:
    require_fields(tx.body, {"version": int, "height": int})
    if not BASE_VERSION < tx.body["version"] <= MAX_VERSION:
        raise TxRejected("invalid_body", f"version must be above {BASE_VERSION} and at most {MAX_VERSION}")
    if not 1 <= tx.body["height"] < 2**63:
        raise TxRejected("invalid_body", "height must be a positive block height")


def _refuse_conflicts(ctx: ExecContext, version: int, height: int) -> None:
    if height < ctx.height + UPGRADE_NOTICE:
        raise ExecFailed("upgrade_too_soon", f"height {height} is less than {UPGRADE_NOTICE} blocks after "
                                             f"this block ({ctx.height})")
    existing = read(ctx.state, scheduled_key(height))
    if existing is not None:
        if existing["version"] == version:
            raise ExecFailed("already_scheduled", f"version {version} is already scheduled at height {height}")
        raise ExecFailed("upgrade_conflict", f"version {existing['version']} is already scheduled at height {height}")
    current = version_at(ctx.state, height)
    if version <= current:
        raise ExecFailed("upgrade_not_newer", f"version {version} is not newer than version {current}, "
                                              f"in effect at height {height}")
    later = [(at, v) for at, v in schedule(ctx.state) if at > height and v < version]
    if later:
        raise ExecFailed("upgrade_conflict", f"version {later[0][1]} is scheduled later, at height {later[0][0]}")


def _execute(ctx: ExecContext) -> None:
    version, height = ctx.tx.body["version"], ctx.tx.body["height"]
    voters = require_validator(ctx, "schedules a protocol upgrade")
    _refuse_conflicts(ctx, version, height)
    key = proposal_key(height, version)
    proposal = read(ctx.state, key) or {"version": version, "approvals": [], "proposed_height": ctx.height}
    if add_approval(ctx, proposal, voters, "this upgrade"):
        proposal["scheduled_height"] = ctx.height
        write(ctx, scheduled_key(height), {"version": version, "scheduled_height": ctx.height})
    write(ctx, key, proposal)


SCHEDULE_UPGRADE = register(
    TxType(name="governance.schedule_upgrade", summary="a validator approves a protocol upgrade at a height",
           check_body=_check, execute=_execute)
)
