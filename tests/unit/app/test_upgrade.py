"""governance.schedule_upgrade: a quorum of validators schedules protocol version v at height H;
too-short notice, versions that do not go up and conflicting schedules are refused."""

from __future__ import annotations

import pytest

from node.app import upgrades
from node.app.upgrades import UPGRADE_NOTICE, version_at
from node.chain.tx import TxRejected

from tests.unit.app.harness import Ledger, ident

UPGRADE = "governance.schedule_upgrade"


def _approve(ledger: Ledger, names: str, version: int, height: int) -> list[str]:
    return [ledger.send(ident(n), UPGRADE, {"version": version, "height": height}) for n in names]


def test_a_quorum_schedules_the_version_from_its_height_on():
    ledger = Ledger()  # validators A-D: quorum 3
    at = 40
    assert _approve(ledger, "AB", 2, at) == ["ok", "ok"]
    assert upgrades.schedule(ledger.state) == [] and version_at(ledger.state, at) == 1
    assert _approve(ledger, "A", 2, at) == ["already_approved"]
    assert ledger.send(ledger.patient("pat"), UPGRADE, {"version": 2, "height": at}) == "not_a_validator"
    assert _approve(ledger, "C", 2, at) == ["ok"]
    assert upgrades.schedule(ledger.state) == [(at, 2)]
    assert [version_at(ledger.state, h) for h in (at - 1, at, at + 100)] == [1, 2, 2]
    [proposal] = upgrades.proposals(ledger.state)
    assert proposal["height"] == at and proposal["version"] == 2 and len(proposal["approvals"]) == 3
    assert proposal["scheduled_height"] == ledger.store.height
    # the fourth approval finds the height taken by this very schedule
    assert _approve(ledger, "D", 2, at) == ["already_scheduled"]


def test_refusals():
    ledger = Ledger()
    assert _approve(ledger, "ABC", 3, 60) == ["ok"] * 3
    next_height = ledger.store.height + 1
    assert _approve(ledger, "A", 4, next_height + UPGRADE_NOTICE - 1) == ["upgrade_too_soon"]
    assert _approve(ledger, "A", 2, 60) == ["upgrade_conflict"]  # another version at a scheduled height
    assert _approve(ledger, "A", 3, 70) == ["upgrade_not_newer"]  # version 3 is in effect at 70 already
    assert _approve(ledger, "A", 2, 80) == ["upgrade_not_newer"]
    assert _approve(ledger, "A", 4, 50) == ["upgrade_conflict"]  # 4 at 50 would go back to 3 at 60
    assert _approve(ledger, "A", 2, 50) == ["ok"]  # 2 at 50, then 3 at 60: versions only go up
    # notice is checked at every approval: one arriving too late cannot complete the schedule
    assert _approve(ledger, "B", 2, 50) == ["ok"]
    while ledger.store.height + 1 + UPGRADE_NOTICE <= 50:
        ledger.block()
    assert _approve(ledger, "C", 2, 50) == ["upgrade_too_soon"]
    assert upgrades.schedule(ledger.state) == [(60, 3)]


@pytest.mark.parametrize("body", [{"version": 1, "height": 10}, {"version": 2, "height": 0},
                                  {"version": 2}, {"version": "2", "height": 10}, {"version": 2**16 + 1, "height": 9}])
def test_body_shape(body):
    ledger = Ledger()
    from node.app.registry import check_tx_body

    with pytest.raises(TxRejected):
        check_tx_body(ledger.tx(ident("A"), UPGRADE, body))
