"""The primary sizes its proposals from what executing a transaction has recently cost it."""

import dataclasses

from node.home.config import ConsensusSection, NodeConfig
from node.runtime.blocks import MIN_BLOCK_TXS
from tests.helpers import make_node


def test_block_size_follows_the_measured_execution_cost():
    cfg = NodeConfig(consensus=dataclasses.replace(ConsensusSection(), base_timeout_ms=2000, max_block_txs=5000))
    node = make_node(config=cfg)
    try:
        budget_ns = 2000 * 1_000_000 // 4
        for _ in range(30):  # cheap transactions: the configured maximum holds
            node.blocks.cost.observe(1000, 1000 * 20_000)
        assert node.block_size_limit() == 5000
        for _ in range(30):  # 1 ms each: a quarter of the view timeout fits 500
            node.blocks.cost.observe(1000, 1000 * 1_000_000)
        assert abs(node.block_size_limit() - budget_ns // 1_000_000) <= 5
        for _ in range(30):  # very slow: never below the floor
            node.blocks.cost.observe(1000, 1000 * 50_000_000)
        assert node.block_size_limit() == MIN_BLOCK_TXS
        before = node.blocks.cost.ns_per_tx
        node.blocks.cost.observe(3, 3 * 1_000)  # tiny blocks measure fixed costs: ignored
        assert node.blocks.cost.ns_per_tx == before
    finally:
        node.store.close()
