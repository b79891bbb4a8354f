"""Block sync: a validator cut off while the others commit catches up from them when it is
let back in, checking each block's certificate (node.net.protocol.sync_from)."""

from __future__ import annotations

from pathlib import Path

from node.core.encoding import canonical, decode
from node.net.protocol import REQ_BLOCKS, answer_request
from tests.harness.cluster import Cluster, patient_registrations


def commit_blocks_without(c: Cluster, cut: int, blocks: int) -> None:
    c.net.isolate(c.id(cut))
    live = [i for i in range(len(c.nodes)) if i != cut]
    for b in range(blocks):
        target = c.nodes[live[0]].store.height + 1
        c.submit(live[b % len(live)], patient_registrations(2, seed=b"block%d" % b))
        assert c.run_until(lambda: all(c.nodes[i].store.height >= target for i in live))


def test_a_node_cut_off_catches_up_from_the_others(tmp_path: Path):
    c = Cluster(4, tmp=tmp_path)  # on LevelDB, as a node runs
    c.start()
    try:
        commit_blocks_without(c, 3, blocks=5)
        behind = c.nodes[3]
        assert behind.store.height == 0 and min(c.heights()[:3]) >= 5
        c.net.heal(c.id(3))
        assert c.run_until(lambda: len(set(c.heights())) == 1, max_steps=50)
        assert c.same_chain() and not behind.syncing
        assert behind.metrics.registry.get_sample_value("medledger_blocks_synced_total") == c.heights()[3]
        assert c.net.penalties == []
        # back in the round: it votes on the next block with the others
        height = c.heights()[0] + 1
        start = c.clock.now_ms()
        c.submit(3, patient_registrations(1, seed=b"after"))
        assert c.run_until(lambda: c.heights() == [height] * 4) and c.same_chain()
        assert c.clock.now_ms() == start  # no view change was needed
    finally:
        c.stop()


def test_a_block_sync_request_is_answered_in_ranges(cluster: Cluster):
    commit_blocks_without(cluster, 3, blocks=3)
    store = cluster.nodes[0].store
    answer = decode(answer_request(store, REQ_BLOCKS, canonical([2, 10])))
    assert [item[0] for item in answer] == [store.block_bytes(h) for h in range(2, store.height + 1)]
    assert [item[1] for item in answer] == [store.certificate(h) for h in range(2, store.height + 1)]
