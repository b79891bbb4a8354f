"""The test-only partition switch, a frame filter: traffic across groups is dropped both ways."""

from __future__ import annotations

import pytest

from p2p import RequestTimeout

from node.devtools.switches import Partition


def partitions(keys, n: int) -> list[Partition]:
    """One healed partition switch per node of an n-node cluster."""
    return [Partition(keys(i).public_key) for i in range(n)]


async def test_partition_drops_traffic_across_groups_and_heal_restores_it(make_cluster, keys, pulse):
    switches = partitions(keys, 4)
    nodes = await make_cluster(4, filters=switches)
    (a, rec_a), (b, rec_b), (c, rec_c), (d, rec_d) = nodes
    groups = [{a.node_id, b.node_id}, {c.node_id, d.node_id}]
    for switch in switches:
        switch.set(groups)

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

    for switch in switches:
        switch.heal()
    assert a.broadcast(1, b"after") == 3
    await pulse.until(
        lambda: all(rec.payloads_from(a.node_id, 1)[-1:] == [b"after"] for rec in (rec_b, rec_c, rec_d)),
        "the broadcast after healing",
    )
    assert await a.request(c.node_id, 1, b"back", timeout=2) == b"echo:back"


async def test_a_one_sided_partition_still_cuts_both_directions(make_cluster, keys, pulse):
    switches = partitions(keys, 2)
    (a, rec_a), (b, rec_b) = await make_cluster(2, filters=switches)
    switches[0].set([{a.node_id}, {b.node_id}])  # only a knows about it
    assert b.send(a.node_id, 1, b"in")  # b sends normally; a drops it on arrival
    assert a.send(b.node_id, 1, b"out")  # a drops it before sending
    assert b.send(a.node_id, 2, b"marker")
    await pulse.until(lambda: a.stats()["peers"][b.node_id.hex()]["partition_dropped"] >= 3, "a's drops")
    assert rec_a.frames == [] and rec_b.frames == []


async def test_a_node_in_no_group_is_cut_off(make_cluster, keys):
    switches = partitions(keys, 3)
    (a, _), (b, _), (c, _) = await make_cluster(3, filters=switches)
    switches[0].set([{b.node_id, c.node_id}])
    with pytest.raises(RequestTimeout):
        await a.request(b.node_id, 1, b"x", timeout=0.2)
    with pytest.raises(ValueError):
        switches[0].set([{a.node_id}, {a.node_id, b.node_id}])


async def test_a_network_built_without_a_filter_cannot_be_partitioned(make_cluster, pulse):
    (a, _), (b, rec_b) = await make_cluster(2)
    # the switch is not part of the transport: only a filter given at construction can drop traffic
    assert not any(hasattr(a, name) for name in ("set_partition", "heal", "partition"))
    assert a.send(b.node_id, 1, b"through")
    await pulse.until(lambda: rec_b.payloads_from(a.node_id) == [b"through"], "a's frame to b")
    assert a.stats()["totals"]["partition_dropped"] == 0
