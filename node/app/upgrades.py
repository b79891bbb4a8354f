"""Protocol upgrades in the state: which protocol version each height follows.

`governance.schedule_upgrade` (node/app/types/upgrade.py) records, once a quorum of validators
approved it, a version v from a height H on (`upgrade/<H>`). The version of a height is that of
the latest schedule at or below it, version 1 (`BASE_VERSION`) before any. Proposers put it in
the header of each block, validators refuse a block carrying another, and a node whose binary
does not support the version of the next height stops instead of forking (node/runtime). A
schedule needs `UPGRADE_NOTICE` blocks of notice, so every node learns it in time.
"""

from __future__ import annotations

from typing import Any

from node.chain.block import BASE_VERSION
from node.chain.tx import jsonable

from node.app import keys
from node.app.state import StateReader
from node.app.stored import read
from node.app.types.governance import quorum, validators

UPGRADE_NOTICE = 5  # an upgrade takes effect at least this many blocks after the block scheduling it
VERSION_SIZE = 4


def height_part(height: int) -> bytes:
    return height.to_bytes(8, "big")


def scheduled_key(height: int) -> bytes:
    return keys.UPGRADE + height_part(height)


def proposal_key(height: int, version: int) -> bytes:
    return keys.UPGRADE_PROPOSAL + height_part(height) + version.to_bytes(VERSION_SIZE, "big")


def schedule(state: StateReader) -> list[tuple[int, int]]:
    """Every scheduled upgrade as (height, version), by height."""
    out = []
    for key, _raw in state.items(keys.UPGRADE):
        value = read(state, key)
        out.append((int.from_bytes(key[len(keys.UPGRADE):], "big"), int(value["version"])))
    return out


def version_at(state: StateReader, height: int) -> int:
    """The protocol version of `height`: the latest one scheduled at or below it."""
    version = BASE_VERSION
    for at, scheduled in schedule(state):
        if at > height:
            break
        version = scheduled
    return version


def proposals(state: StateReader) -> list[dict[str, Any]]:
    """Upgrade proposals (pending or scheduled) with their approvals, by height then version."""
    out = []
    for key, _raw in state.items(keys.UPGRADE_PROPOSAL):
        value = read(state, key)
        out.append({"height": int.from_bytes(key[len(keys.UPGRADE_PROPOSAL):][:8], "big"), **value})
    return out


def upgrades_json(state: StateReader, next_height: int) -> dict[str, Any]:
    """The schedule as GET /v1/upgrades shows it: the version of the next height, the upgrades
    scheduled (`height`, `version`, `scheduled_height`: the block that scheduled it) and the
    proposals still short of a quorum (`approvals`, `quorum`, `proposed_height`)."""
    scheduled = [{"height": at, "version": version, "scheduled_height": read(state, scheduled_key(at))["scheduled_height"]}
                 for at, version in schedule(state)]
    voters = validators(state)
    pending = [{**jsonable(p), "quorum": quorum(voters) if voters else None}
               for p in proposals(state) if "scheduled_height" not in p]
    return {"protocol_version": version_at(state, next_height), "scheduled": scheduled, "pending": pending}
