"""Proposing: answering the engine's request for a block when this node is the primary.

The engine asks (`RequestProposal`); the proposer answers at once if transactions are waiting
(or a view change needs a block), else waits for work, or with `consensus.empty_blocks` for
the idle interval on the clock. A block is built from the mempool, executed, sized by what
execution recently cost here (`ExecutionCost`), and handed back through `ready`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from node.app.executor import BlockExecution, execute_block
from node.chain.block import Block, Header
from node.core.merkle import merkle_root
from node.runtime.blocks import Blocks
from node.runtime.clock import Clock, TimerHandle
from node.runtime.metrics import NodeMetrics

log = logging.getLogger("medledger.node")

# (height, view, block hash, block bytes): a proposal for the engine
ProposalReady = Callable[[int, int, bytes, bytes], None]


class Proposer:
    """Builds this node's proposals from the mempool when the engine asks for one."""

    def __init__(self, *, blocks: Blocks, proposer_id: bytes, clock: Clock, now_ms: Callable[[], int],
                 metrics: NodeMetrics, ready: ProposalReady) -> None:
        self.blocks = blocks
        self.store, self.mempool, self.consensus = blocks.store, blocks.mempool, blocks.consensus
        self.proposer_id = proposer_id
        self.clock, self.now_ms = clock, now_ms
        self.metrics = metrics
        self.ready = ready
        self.pending: tuple[int, int] | None = None  # (height, view) the engine asked a block for
        self._idle_handle: TimerHandle | None = None

    def request(self, height: int, view: int) -> None:
        """The engine's RequestProposal."""
        self.pending = (height, view)
        self.maybe_propose()

    def maybe_propose(self) -> None:
        """Answer a pending request now if there is work (or a view change needs a block); with
        an empty mempool wait for work, or with `consensus.empty_blocks` for the idle interval."""
        if self.pending is None:
            return
        if len(self.mempool) == 0 and self.pending[1] == 0:
            if not self.consensus.empty_blocks:
                return  # admission calls us again when a transaction arrives
            if self._idle_handle is None:
                self._idle_handle = self.clock.call_later(self.consensus.empty_block_interval_ms / 1000,
                                                          self.propose_now)
            return
        self.propose_now()

    def propose_now(self) -> None:
        if self._idle_handle:
            self._idle_handle.cancel()
            self._idle_handle = None
        pending, self.pending = self.pending, None
        if pending is None:
            return
        height, view = pending
        if height != self.store.height + 1:
            return  # stale: the engine has moved on
        if reason := self.blocks.unsupported(height):
            log.error("not proposing block %d: %s", height, reason)
            return
        block, execution = self.build_block(height)
        self.blocks.remember(block, execution)
        self.metrics.proposal_seen(block.hash)
        self.ready(height, view, block.hash, block.encode())

    def stop(self) -> None:
        if self._idle_handle:
            self._idle_handle.cancel()

    def block_size_limit(self) -> int:
        return self.blocks.cost.block_size_limit(self.consensus)

    def build_block(self, height: int) -> tuple[Block, BlockExecution]:
        """Assemble the next block from the mempool and execute it."""
        store, cfg = self.store, self.consensus
        parent_ts = self.blocks.parent_timestamp()
        txs = self.mempool.take(self.block_size_limit(), cfg.max_block_bytes)  # execution leaves out any committed
        timestamp = max(self.now_ms(), parent_ts + 1)  # block times strictly increase (check_block)
        started = time.perf_counter_ns()
        execution = execute_block(
            self.blocks.state_reader(), store.state_root, [t.encoded for t in txs],
            chain_id=self.blocks.chain_id, height=height, timestamp_ms=timestamp,
            known=self.mempool.get, committed=store.has_tx, drop_unregistered=True,
        )
        self.blocks.cost.observe(len(txs), time.perf_counter_ns() - started)
        if execution.dropped:
            # admitted while their sender's registration was waiting, which then failed (or is not in
            # this block), or committed already: they leave the pool; the client submits the first
            # again once registered
            log.info("left %d transaction(s) of unregistered senders, or committed, out of block %d",
                     len(execution.dropped), height)
            self.mempool.remove(execution.dropped)
        txs = execution.txs
        prev_cert = (store.certificate(height - 1) or b"") if height > 1 else b""
        header = Header(
            chain_id=self.blocks.chain_id, height=height, prev_hash=store.last_hash, timestamp_ms=timestamp,
            proposer=self.proposer_id, tx_root=merkle_root([t.encoded for t in txs]),
            results_root=execution.results_root, state_root=execution.state_root, prev_certificate=prev_cert,
            version=self.blocks.version_at(height),
        )
        return Block(header=header, txs=tuple(t.encoded for t in txs)), execution
