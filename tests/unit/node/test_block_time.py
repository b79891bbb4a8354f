"""Issue 15, finding 12b: a Byzantine proposer cannot choose a stale block time.

Execution decides consents, grants and break-glass limits at the block's time, so a proposal's
time must be later than its parent's and within `consensus.max_clock_drift_ms` of the validating
node's clock; only a block a quorum already prepared (a re-proposal after a view change) may be
old. The proposer's clock and the validator's are injected: no sleeping, no wall clock.
"""

from __future__ import annotations

import dataclasses

import pytest

from node.app.executor import execute_block
from node.chain.block import Block, BlockInvalid
from node.home.config import build_config
from node.core.crypto import Identity
from node.runtime.runtime import Node
from node.chain.tx import Transaction
from storage.chain import ChainStore
from storage.kv import MemoryStore
from tests.helpers import CHAIN, one_validator_genesis

SEED = b"\x07" * 32
GENESIS_MS = 1_700_000_000_000
DAY = 24 * 60 * 60 * 1000
DRIFT = build_config({}, env={}).consensus.max_clock_drift_ms


def node_at(clock_ms: int) -> Node:
    """A node of the one-validator test network whose clock reads `clock_ms`."""
    ident = Identity.from_seed(SEED)
    return Node(config=build_config({}, env={}), genesis=one_validator_genesis(ident), identity=ident,
                store=ChainStore(MemoryStore()), clock_ms=lambda: clock_ms)


def proposal(proposer: Node, *, timestamp_ms: int | None = None) -> Block:
    """Block 1 built by `proposer` (with one transaction), re-stamped at `timestamp_ms` if given."""
    tx = Transaction.create(Identity.from_seed(b"\x09" * 32), chain_id=CHAIN, type="identity.register", nonce=1,
                            body={"role": "patient"})
    assert proposer.admit([[tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]])[0].error is None
    block, _ = proposer.build_block(1)
    if timestamp_ms is None:
        return block
    ex = execute_block(proposer.state_reader(), proposer.store.state_root, block.txs, chain_id=CHAIN, height=1,
                       timestamp_ms=timestamp_ms, known=lambda _: None, committed=lambda _: False)
    header = dataclasses.replace(block.header, timestamp_ms=timestamp_ms, state_root=ex.state_root,
                                 results_root=ex.results_root)
    return Block(header=header, txs=block.txs)


def test_a_proposal_with_a_stale_block_time_is_rejected():
    now = GENESIS_MS + 10 * DAY
    stale = proposal(node_at(GENESIS_MS + 1))  # a Byzantine proposer's clock ten days behind
    validator = node_at(now)
    with pytest.raises(BlockInvalid, match="too far in the past"):
        validator.check_block(1, stale.hash, stale.encode(), now_ms=now)
    # just inside the allowed drift it is accepted
    fresh = proposal(node_at(now - DRIFT))
    node_at(now).check_block(1, fresh.hash, fresh.encode(), now_ms=now)


def test_a_reproposal_a_quorum_prepared_may_carry_its_old_time():
    now = GENESIS_MS + 10 * DAY
    old = proposal(node_at(now - 10 * DRIFT))
    validator = node_at(now)
    validator.check_block(1, old.hash, old.encode(), now_ms=now, prepared_before=True)
    # and a cached execution of it does not skip the time check for a fresh proposal
    with pytest.raises(BlockInvalid, match="too far in the past"):
        validator.check_block(1, old.hash, old.encode(), now_ms=now)


def test_a_block_time_equal_to_the_parents_is_rejected():
    equal = proposal(node_at(GENESIS_MS + 5_000), timestamp_ms=GENESIS_MS)  # the genesis block's time
    validator = node_at(GENESIS_MS + 5_000)
    with pytest.raises(BlockInvalid, match="not later than the parent"):
        validator.check_block(1, equal.hash, equal.encode(), now_ms=GENESIS_MS + 5_000)
    # certified (a commit, a synced block) or not, the rule is the same
    with pytest.raises(BlockInvalid, match="not later than the parent"):
        node_at(GENESIS_MS + 5_000).check_block(1, equal.hash, equal.encode(), now_ms=None, certified=True)


def test_an_honest_proposer_whose_clock_lags_the_parent_still_moves_time_forward():
    proposer = node_at(GENESIS_MS)  # its clock reads the parent's (genesis) time
    block = proposal(proposer)
    assert block.header.timestamp_ms == GENESIS_MS + 1
    node_at(GENESIS_MS).check_block(1, block.hash, block.encode(), now_ms=GENESIS_MS)


def test_a_proposal_too_far_in_the_future_is_still_rejected():
    ahead = proposal(node_at(GENESIS_MS + DAY))
    with pytest.raises(BlockInvalid, match="future"):
        node_at(GENESIS_MS + DAY - DRIFT - 1).check_block(1, ahead.hash, ahead.encode(), now_ms=GENESIS_MS + DAY - DRIFT - 1)
