"""The validator set of every height, as the ledger records it (validator.add, .remove, .rotate).

A change that reaches its approvals in block h takes effect at height h + CHANGE_DELAY (2): every
node learns of it when it commits block h and switches at the same block (the engine's
`schedule_validators`). The history of sets is one small state entry, `meta/validator_sets`:
[[effective height, [validator ids]], ...], oldest first. A chain that never changed its set has
no history entry; its set is the genesis one (`meta/validators`) from height 1, so chains made
before validator-set changes existed stay valid. Changes are only ever appended with an
effective height after the block that makes them, so the latest state answers
`validator_ids_at(state, H)` for every height H up to the committed height + 2.

Validator records (`validator/<id>`: name, address, api, since and, once it left, until) are
written by the changes; a genesis validator has none until a change touches it, and readers
complete it from the genesis file (`describe`). The order of the ids is the order of the set
(primaries rotate through it): an added validator is appended, a rotated key takes its old
key's place.

Which changes are refused (`schedule_change`): one that would leave fewer than MIN_VALIDATORS
validators (`validator_set_too_small`; a smaller genesis set may still grow), one whose new set
could not reach its quorum with the validators known to be live (those that approved the
change, plus a joining candidate: `validator_quorum_at_risk`), and a second change for a height
that already has one (`validator_change_conflict`: its approval is sent again in a later block).
"""

from __future__ import annotations

from typing import Any

from consensus.validators import ValidatorSet
from node.chain.genesis import ValidatorInfo
from node.core.encoding import decode_stored

from node.app import keys
from node.app.registry import ExecContext, ExecFailed
from node.app.state import StateReader
from node.app.stored import read, write

CHANGE_DELAY = 2
MIN_VALIDATORS = 4
KIND_ADD = b"a"
KIND_REMOVE = b"r"


def quorum(validator_ids: list[bytes]) -> int:
    """Approvals needed among `validator_ids`: the consensus quorum, floor((n + f) / 2) + 1."""
    return ValidatorSet(validators=tuple(validator_ids)).quorum


def genesis_ids(state: StateReader) -> list[bytes]:
    """The validator ids recorded at genesis, in genesis order."""
    value = read(state, keys.VALIDATORS)
    return list(value) if isinstance(value, list) else []


def history(state: StateReader) -> list[tuple[int, list[bytes]]]:
    """Every validator set with the height it took (or takes) effect at, oldest first."""
    value = read(state, keys.VALIDATOR_SETS)
    if not value:
        return [(1, genesis_ids(state))]
    return [(int(effective), list(ids)) for effective, ids in value]


def _entry_at(sets: list[tuple[int, list[bytes]]], height: int) -> int:
    index = 0
    for i, (effective, _) in enumerate(sets):
        if effective <= height:
            index = i
    return index


def validator_ids_at(state: StateReader, height: int) -> list[bytes]:
    """The validator ids that decide block `height` (any height up to the committed one + 2)."""
    sets = history(state)
    return sets[_entry_at(sets, height)][1]


def epoch_at(state: StateReader, height: int) -> tuple[int, int]:
    """(epoch, since): how many set changes are in force at `height`, and the height the set of
    `height` took effect at (1 for the genesis set)."""
    sets = history(state)
    index = _entry_at(sets, height)
    return index, sets[index][0]


def scheduled_after(state: StateReader, height: int) -> list[tuple[int, list[bytes]]]:
    """The sets that take effect after `height` (already decided, not yet in force)."""
    return [(effective, ids) for effective, ids in history(state) if effective > height]


def latest_ids(state: StateReader) -> list[bytes]:
    """The last set scheduled: the one in force once every decided change is."""
    return history(state)[-1][1]


def record_key(validator_id: bytes) -> bytes:
    return keys.VALIDATOR + validator_id


def proposal_key(kind: bytes, target: bytes) -> bytes:
    return keys.VALIDATOR_PROPOSAL + kind + target


def record(state: StateReader, validator_id: bytes) -> dict[str, Any] | None:
    value = read(state, record_key(validator_id))
    return value if isinstance(value, dict) else None


def describe(state: StateReader, validator_id: bytes, genesis: tuple[ValidatorInfo, ...]) -> dict[str, Any]:
    """A validator's record (name, address, api, since, and until once it left), completed from
    the genesis file for a genesis validator and from the old key's record for a rotated key."""
    info = next((v for v in genesis if v.id == validator_id), None)
    found = record(state, validator_id) or {}
    base: dict[str, Any] = {"name": "", "address": "", "api": "", "since": 1}
    if info is not None:
        base.update(name=info.name, address=info.address, api=info.api)
    elif isinstance(found.get("rotated_from"), bytes) and found["rotated_from"] != validator_id:
        base.update({k: v for k, v in describe(state, found["rotated_from"], genesis).items()
                     if k in ("name", "address", "api")})
    return {**base, **found}


def pending(state: StateReader) -> list[dict[str, Any]]:
    """The validator.add and validator.remove proposals that have not reached their approvals."""
    return [value for _, raw in state.items(keys.VALIDATOR_PROPOSAL)
            if isinstance(value := decode_stored(raw), dict) and "effective_height" not in value]


def open_proposal(ctx: ExecContext, kind: bytes, target: bytes, same: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The proposal of a validator.add (KIND_ADD) or .remove (KIND_REMOVE) about `target` to add
    an approval to: the pending one, or a new one (also when the last one was decided: a
    validator removed and added again starts afresh). Its fields `same` are fixed by the first
    approval; a differing one is refused (`proposal_mismatch`)."""
    key = proposal_key(kind, target)
    proposal = read(ctx.state, key)
    if not isinstance(proposal, dict) or "effective_height" in proposal:
        proposal = {**same, "approvals": [], "height": ctx.height}
    for name, value in same.items():
        if proposal.get(name) != value:
            raise ExecFailed("proposal_mismatch", f"the first approval gave {name} {proposal.get(name)!r}")
    return key, proposal


def schedule_change(ctx: ExecContext, new_ids: list[bytes], *, live: set[bytes] | None = None) -> int:
    """Record `new_ids` as the set from height ctx.height + CHANGE_DELAY on; return that height.

    `live`: the validators known to be live (the approvers, a joining candidate); the new set's
    quorum must be within them (None: the change keeps every validator, a key rotation)."""
    sets = history(ctx.state)
    effective = ctx.height + CHANGE_DELAY
    latest = sets[-1][1]
    if sets[-1][0] >= effective:
        raise ExecFailed("validator_change_conflict",
                         f"another validator-set change already takes effect at height {sets[-1][0]}")
    if len(new_ids) < MIN_VALIDATORS and len(new_ids) < len(latest):
        raise ExecFailed("validator_set_too_small",
                         f"the change would leave {len(new_ids)} validators (at least {MIN_VALIDATORS} are needed)")
    if len(set(new_ids)) != len(new_ids):
        raise ExecFailed("validator_change_conflict", "the change would list a validator twice")
    if live is not None:
        known = len([v for v in new_ids if v in live])
        if known < quorum(new_ids):
            raise ExecFailed("validator_quorum_at_risk",
                             f"only {known} validators of the new set are known to be live; its quorum is {quorum(new_ids)}")
    write(ctx, keys.VALIDATOR_SETS, [[e, ids] for e, ids in sets] + [[effective, new_ids]])
    return effective
