"""The view timer: when the primary is silent, the validators that hold work time out after
the base timeout on the virtual clock, change view, and the next primary commits."""

from __future__ import annotations

from node.chain.block import decode_block
from tests.harness.cluster import Cluster, patient_registrations


def test_a_silent_primary_is_replaced_after_the_view_timeout(cluster: Cluster):
    validators = cluster.nodes[0].validators
    primary = validators.primary(1, 0)
    cluster.net.isolate(primary)
    others = [n for n in cluster.nodes if n.identity.public_key != primary]
    start = cluster.clock.now_ms()
    txs = patient_registrations(3)
    assert [a.error for a in cluster.submit(cluster.nodes.index(others[0]), txs)] == [None] * 3

    assert cluster.run_until(lambda: all(n.store.height == 1 for n in others))
    waited = cluster.clock.now_ms() - start
    timeout = cluster.config.consensus.base_timeout_ms
    assert timeout <= waited < 2 * timeout  # one view timeout, on the virtual clock
    for node in others:
        assert node.status()["view_changes"] == 1
        assert node.metrics.registry.get_sample_value("medledger_view_changes_total") == 1
    raw = others[0].store.block_bytes(1)
    assert raw is not None
    assert decode_block(raw, stored=True).header.proposer == validators.primary(1, 1) != primary
    assert all(n.tx_status(t.hash)["status"] == "committed" for n in others for t in txs)
    assert cluster.node(primary).store.height == 0  # cut off, it saw nothing

    cluster.net.heal(primary)  # the old primary comes back and catches up
    assert cluster.run_until(lambda: cluster.heights() == [1, 1, 1, 1])
    assert cluster.same_chain()


def test_before_the_timeout_nothing_changes(cluster: Cluster):
    primary = cluster.nodes[0].validators.primary(1, 0)
    cluster.net.isolate(primary)
    cluster.submit((cluster.index(primary) + 1) % 4, patient_registrations(1))
    cluster.clock.advance(cluster.config.consensus.base_timeout_ms / 1000 - 0.001)
    cluster.net.deliver()
    assert cluster.heights() == [0, 0, 0, 0]
    assert {n.status()["view_changes"] for n in cluster.nodes} == {0}
