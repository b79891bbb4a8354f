"""The test-only partition switch: traffic across groups is dropped both ways."""

from __future__ import annotations

import pytest

from p2p import RequestTimeout, TestSwitchesDisabled


async def test_partition_drops_traffic_across_groups_and_heal_restores_it(make_cluster, pulse):
    nodes = await make_cluster(4, test_switches=True)
    (a, rec_a), (b, rec_b), (c, rec_c), (d, rec_d) = nodes
    groups = [{a.node_id, b.node_id}, {c.node_id, d.node_id}]
    for net, _ in nodes:
        net.set_partition(groups)

    # Across the cut, frames vanish as in a real partition (send cannot tell)...
    assert a.broadcast(1, b"during") == 3
    assert c.send(a.node_id, 1, b"from the other side")
    # ...while inside a group they flow.
    await pulse.until(lambda: rec_b.payloads_from(a.node_id) == [b"during"], "a's frame to b")
    with pytest.raises(RequestTimeout):
        await a.request(c.node_id, 1, b"anyone?", timeout=0.2)
    assert await c.request(d.node_id, 1, b"neighbour", timeout=2) == b"echo:neighbour"
    # a marker through each group proves everything sent before it was processed
    assert d.send(c.node_id, 2, b"marker") and b.send(a.node_id, 2, b"marker")
    await pulse.until(
        lambda: rec_c.payloads_from(d.node_id, 2) and rec_a.payloads_from(b.node_id, 2), "the markers"
    )
    assert rec_c.frames == [(d.node_id, 2, b"marker")]
    assert rec_d.frames == []
    assert rec_a.payloads_from(c.node_id) == []
    assert a.stats()["totals"]["partition_dropped"] >= 2  # a's broadcast to c and d
    # links stayed up: the partition is above the link layer
    assert all(len(net.connected_peers()) == 3 for net, _ in nodes)

    for net, _ in nodes:
        net.heal()
    assert a.broadcast(1, b"after") == 3
    await pulse.until(
        lambda: all(rec.payloads_from(a.node_id, 1)[-1:] == [b"after"] for rec in (rec_b, rec_c, rec_d)),
        "the broadcast after healing",
    )
    assert await a.request(c.node_id, 1, b"back", timeout=2) == b"echo:back"


async def test_a_one_sided_partition_still_cuts_both_directions(make_cluster, pulse):
    (a, rec_a), (b, rec_b) = await make_cluster(2, test_switches=True)
    a.set_partition([{a.node_id}, {b.node_id}])  # only a knows about it
    assert b.send(a.node_id, 1, b"in")  # b sends normally; a drops it on arrival
    assert a.send(b.node_id, 1, b"out")  # a drops it before sending
    assert b.send(a.node_id, 2, b"marker")
    await pulse.until(lambda: a.stats()["peers"][b.node_id.hex()]["partition_dropped"] >= 3, "a's drops")
    assert rec_a.frames == [] and rec_b.frames == []


async def test_a_node_in_no_group_is_cut_off(make_cluster):
    (a, _), (b, _), (c, _) = await make_cluster(3, test_switches=True)
    a.set_partition([{b.node_id, c.node_id}])
    with pytest.raises(RequestTimeout):
        await a.request(b.node_id, 1, b"x", timeout=0.2)
    with pytest.raises(ValueError):
        a.set_partition([{a.node_id}, {a.node_id, b.node_id}])


async def test_the_switch_is_refused_unless_enabled(make_cluster):
    (a, _), (b, _) = await make_cluster(2)
    with pytest.raises(TestSwitchesDisabled):
        a.set_partition([{a.node_id}, {b.node_id}])
    with pytest.raises(TestSwitchesDisabled):
        a.heal()
