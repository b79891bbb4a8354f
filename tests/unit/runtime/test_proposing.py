"""Proposing and committing on 4 validators: the primary builds a block of the admitted
transactions, the others check it, and every node commits the same block, at virtual time."""

from __future__ import annotations

from pathlib import Path

from node.chain.block import decode_block
from tests.harness.cluster import Cluster, patient_registrations


def commit_one_block(c: Cluster) -> list[bytes]:
    txs = patient_registrations(5)
    assert [a.error for a in c.submit(1, txs)] == [None] * 5
    assert c.run_until(lambda: c.heights() == [1, 1, 1, 1])
    return [t.hash for t in txs]


def test_a_block_of_admitted_transactions_commits_on_all_four_nodes(cluster: Cluster):
    start_ms = cluster.clock.now_ms()
    hashes = commit_one_block(cluster)
    assert cluster.same_chain()
    for node in cluster.nodes:
        assert [node.tx_status(h)["status"] for h in hashes] == ["committed"] * 5
        assert {node.tx_status(h)["result"] for h in hashes} == {"ok"}
        assert len(node.mempool) == 0
    raw = cluster.nodes[0].store.block_bytes(1)
    assert raw is not None
    block = decode_block(raw, stored=True)
    assert block.header.proposer == cluster.nodes[0].validators.primary(1, 0)  # no view change was needed
    assert block.header.timestamp_ms == start_ms  # nothing waited: the clock did not move
    assert len(block.txs) == 5
    assert cluster.net.penalties == []


def test_a_run_is_the_same_every_time(tmp_path: Path):
    def run(tmp: Path | None) -> list[bytes]:
        c = Cluster(4, tmp=tmp)
        c.start()
        try:
            commit_one_block(c)
            c.submit(2, patient_registrations(3, seed=b"more"))
            assert c.run_until(lambda: c.heights() == [2, 2, 2, 2])
            return [c.nodes[3].store.block_bytes(h) or b"" for h in (1, 2)]
        finally:
            c.stop()

    assert run(None) == run(None) == run(tmp_path)  # in memory or on LevelDB, byte for byte


def test_an_idle_network_proposes_nothing(cluster: Cluster):
    cluster.clock.advance(60)  # a minute of virtual time: no work, no view change
    cluster.net.deliver()
    assert cluster.heights() == [0, 0, 0, 0]
    assert {n.status()["view"] for n in cluster.nodes} == {0}
