"""A seed's schedule of validator-set changes: adds, removals and key rotations, as the chain commits them.

With `--reconfigure` every seed draws one to three changes, each decided in a block d and in
force from height d + 2 on every node (the rule of the ledger). The validators are numbered as
the simulator's keys are: 0..n-1 are the genesis set, n.. are spare keys, each used once, for a
validator that joins or for the new key of a rotation. A rotation keeps the member's place in
the order (the primary rotation of the other members is unchanged) and retires its old key; a
removal retires the member's key. A retired key's owner keeps running: the simulator makes it
keep signing votes and proposals after its switch height, and the engines must never count them.

The draws keep every set in force between 4 and `MAX_SIZE` members with the Byzantine ones
within its f, and never remove or rotate a Byzantine member (it stays a member, misbehaving).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from consensus.validators import ValidatorSet

KINDS = ("add", "remove", "rotate")
MIN_SIZE = 4
MAX_SIZE = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One change decided in block `decided`: `old` leaves (remove, rotate), `new` joins (add, rotate)."""

    decided: int
    kind: str
    old: int | None
    new: int | None

    @property
    def effective(self) -> int:
        return self.decided + 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconfiguration:
    """The changes of one seed and the sets (of validator numbers) they put in force, by effective height."""

    changes: tuple[Change, ...]
    genesis: tuple[int, ...]
    sets: tuple[tuple[int, tuple[int, ...]], ...]  # (effective height, members in order), increasing heights
    spares: int  # how many keys beyond the genesis set the schedule uses

    def members_at(self, height: int) -> tuple[int, ...]:
        """The validator numbers of the set of `height`."""
        members = self.genesis
        for effective, chosen in self.sets:
            if effective <= height:
                members = chosen
        return members

    def retired_at(self) -> dict[int, int]:
        """Each retired validator number and the height from which its key no longer votes."""
        return {c.old: c.effective for c in self.changes if c.old is not None}

    def decided_in(self, height: int) -> tuple[int, tuple[int, ...]] | None:
        """The (effective height, members) that block `height` decided, if it decided a change."""
        for c in self.changes:
            if c.decided == height:
                return c.effective, self.members_at(c.effective)
        return None

    def describe(self) -> list[str]:
        return [f"{c.kind} at {c.effective} (decided in {c.decided}): "
                + (f"{c.old}" if c.old is not None else "") + ("->" if c.old is not None and c.new is not None else "")
                + (f"{c.new}" if c.new is not None else "") for c in self.changes]


def plan_reconfiguration(rng: random.Random, n: int, byzantine: frozenset[int], heights: int) -> Reconfiguration:
    """Draw a schedule of changes for a cluster of `n` genesis validators (see the module docstring)."""
    genesis = tuple(range(n))
    last_decided = max(2, heights - 2)
    count = rng.randint(1, 3)
    decided_heights = sorted(rng.sample(range(1, last_decided + 1), min(count, last_decided)))
    current = list(genesis)
    next_key = n
    changes: list[Change] = []
    sets: list[tuple[int, tuple[int, ...]]] = []
    for d in decided_heights:
        honest = [v for v in current if v not in byzantine]
        options = []
        after_add = len(current) + 1
        if after_add <= MAX_SIZE:
            options.append("add")
        after_remove = len(current) - 1
        if honest and after_remove >= MIN_SIZE and len(byzantine) <= (after_remove - 1) // 3:
            options.append("remove")
        if honest:
            options.append("rotate")
        kind = rng.choice(options)
        old = new = None
        if kind == "add":
            new, next_key = next_key, next_key + 1
            current.append(new)
        elif kind == "remove":
            old = rng.choice(honest)
            current.remove(old)
        else:
            old = rng.choice(honest)
            new, next_key = next_key, next_key + 1
            current[current.index(old)] = new
        changes.append(Change(decided=d, kind=kind, old=old, new=new))
        sets.append((d + 2, tuple(current)))
    return Reconfiguration(changes=tuple(changes), genesis=genesis, sets=tuple(sets), spares=next_key - n)


def validator_set(ids: list[bytes], members: tuple[int, ...]) -> ValidatorSet:
    """The `ValidatorSet` of the keys numbered `members`."""
    return ValidatorSet(validators=tuple(ids[v] for v in members))
