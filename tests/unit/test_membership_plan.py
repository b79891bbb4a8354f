"""The seeded order of validator-set changes `medledger chaos --reconfigure` makes: every
removal keeps four validators or more and the Byzantine ones under a third of the set."""

from __future__ import annotations

import random

import pytest

from node.devtools.membership import DEFAULT_PLAN, membership_plan


def _sizes(plan: list[str], start: int) -> list[int]:
    sizes, size = [], start
    for step in plan:
        size += {"join": 1, "leave": -1}.get(step, 0)
        sizes.append(size)
    return sizes


@pytest.mark.parametrize("seed", range(30))
def test_a_removal_waits_for_a_join_in_a_four_validator_network(seed: int) -> None:
    plan = membership_plan(random.Random(seed), 4, 1)
    assert sorted(plan) == sorted(DEFAULT_PLAN)
    assert plan.index("join") < plan.index("leave")
    assert min(_sizes(plan, 4)) >= 4
    assert all(3 * 1 < size for size in _sizes(plan, 4))


def test_the_order_depends_on_the_seed_and_only_on_it() -> None:
    orders = {tuple(membership_plan(random.Random(seed), 7, 0)) for seed in range(40)}
    assert len(orders) > 1
    assert membership_plan(random.Random(5), 7, 0) == membership_plan(random.Random(5), 7, 0)


def test_a_plan_that_cannot_keep_four_validators_is_refused() -> None:
    with pytest.raises(ValueError, match="four or more"):
        membership_plan(random.Random(1), 4, 0, ("leave",))
