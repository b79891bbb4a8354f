"""Protocol upgrades on the harness: version 2 scheduled at height H on four validators. Where
every node supports it, blocks from H carry it and the chain goes on; where none does, every node
stops at H - 1 with a message, and nothing forks."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from node.chain.block import decode_block
from node.chain.tx import Transaction
from node.runtime.runtime import Node
from tests.harness.cluster import CHAIN, Cluster, patient_registrations

AT = 9  # the upgrade height: the schedule commits in the first blocks, well over UPGRADE_NOTICE before


def schedule_v2(c: Cluster, approvers: Sequence[int] = (0, 1, 2)) -> None:
    txs = [Transaction.create(c.idents[i], chain_id=CHAIN, type="governance.schedule_upgrade", nonce=1,
                              body={"version": 2, "height": AT}) for i in approvers]
    c.submit(0, txs)
    assert c.run_until(lambda: all(n.blocks.version_at(AT) == 2 for n in c.nodes))
    assert max(c.heights()) < AT - 1


def drive(c: Cluster, until_height: int, live: Sequence[int]) -> None:
    """Submit a block's worth of work at a time until the live nodes reach `until_height`."""
    for b in range(until_height):
        if min(c.nodes[i].store.height for i in live) >= until_height:
            return
        target = c.nodes[live[0]].store.height + 1
        c.submit(live[b % len(live)], patient_registrations(1, seed=b"work%d" % b))
        assert c.run_until(lambda: all(c.nodes[i].store.height >= target for i in live))


def versions(c: Cluster, i: int) -> list[int]:
    store = c.nodes[i].store
    return [decode_block(store.block_bytes(h) or b"", stored=True).header.version for h in range(1, store.height + 1)]


def test_blocks_from_the_upgrade_height_carry_the_new_version(cluster: Cluster):
    for node in cluster.nodes:
        node.blocks.supported = (1, 2)
    schedule_v2(cluster)
    assert cluster.nodes[0].status()["protocol_version"] == 1
    drive(cluster, AT + 2, live=range(4))
    assert cluster.same_chain() and not any(n.halted for n in cluster.nodes)
    assert versions(cluster, 0) == [1] * (AT - 1) + [2] * (cluster.heights()[0] - AT + 1)
    assert cluster.nodes[3].status()["protocol_version"] == 2


def test_nodes_that_do_not_support_it_stop_before_it(cluster: Cluster, caplog: pytest.LogCaptureFixture):
    schedule_v2(cluster)
    caplog.set_level(logging.ERROR, logger="medledger.node")
    drive(cluster, AT - 1, live=range(4))
    assert cluster.run_until(lambda: all(n.halted for n in cluster.nodes))
    # more work and time change nothing: no node proposes, votes or commits height AT
    cluster.submit(1, patient_registrations(3, seed=b"late"))
    cluster.run_until(lambda: False, max_steps=200)
    assert cluster.heights() == [AT - 1] * 4 and cluster.same_chain()
    assert all("protocol version 2 is scheduled from height 9" in (n.halted or "") for n in cluster.nodes)
    stops = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping at height")]
    assert len(stops) == 4 and "supports only version(s) 1" in stops[0]
    # started again on the same store, it stops at once and tells its daemon (which exits)
    again = Node(config=cluster.config, genesis=cluster.genesis, identity=cluster.idents[0],
                 store=cluster.nodes[0].store, clock=cluster.clock)
    told: list[str] = []
    again.on_halt = told.append
    again.start()
    assert again.engine is None and told == [again.halted] and "height 9" in told[0]


def test_a_minority_without_support_stops_and_the_rest_go_on(cluster: Cluster):
    for node in cluster.nodes[:3]:
        node.blocks.supported = (1, 2)
    schedule_v2(cluster)
    drive(cluster, AT + 1, live=range(3))
    old = cluster.nodes[3]
    assert old.halted and old.store.height == AT - 1
    assert len({n.store.height for n in cluster.nodes[:3]}) == 1 and not any(n.halted for n in cluster.nodes[:3])
    assert all(old.store.block_bytes(h) == cluster.nodes[0].store.block_bytes(h) for h in range(1, AT))
