"""Checking and committing blocks: everything the runtime asks of a block for the next height.

`Blocks` validates a proposal or a synced block against the committed state (chain, height,
parent, proposer, time, the previous block's certificate, and the roots its execution gives),
caches the execution so the commit does not run it twice, and writes a committed block in one
synced batch. It also answers which protocol version a height follows and whether this binary
supports it (`unsupported`): the runtime stops before a height it cannot follow. `ExecutionCost` keeps what executing a transaction recently cost here, from which
the proposer sizes its blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from consensus.certificate import CommitCertificate, verify_certificate
from consensus.validators import ValidatorSet

from node.app.executor import BlockExecution, BlockRejected, execute_block
from node.app.state import FuncReader
from node.app.upgrades import version_at
from node.chain.block import SUPPORTED_VERSIONS, Block, BlockInvalid, decode_block
from node.chain.genesis import Genesis
from node.core.crypto import Ed25519Verifier
from node.home.config import ConsensusSection
from node.runtime.mempool import Mempool
from storage.chain import ChainStore, StoreCorrupted

MAX_PENDING_CACHE = 64
RECENT_RESULTS = 256  # blocks whose transactions' result codes are kept in memory (the commits feed reads them)
MIN_BLOCK_TXS = 200
INITIAL_EXEC_NS_PER_TX = 100_000  # a cautious first guess; the first blocks correct it
# what a bad certificate is called: the one a block carries of its parent, and a synced block's
PREVIOUS_CERTIFICATE = ("previous certificate is malformed: {}", "previous certificate is for another block",
                        "previous certificate does not verify")
SYNCED_CERTIFICATE = ("malformed certificate: {}", "certificate is for another block",
                      "certificate does not verify against the validator set")


class UpgradeRequired(RuntimeError):
    """The next height follows a protocol version this binary does not support: the node stopped."""


class ExecutionCost:
    """What executing one transaction has recently cost this node (ns, moving average): the
    primary sizes its blocks so that building one, and so checking it, stays well inside the
    view timer instead of triggering a view change under heavy transaction types."""

    def __init__(self) -> None:
        self.ns_per_tx = INITIAL_EXEC_NS_PER_TX

    def observe(self, count: int, elapsed_ns: int) -> None:
        if count >= MIN_BLOCK_TXS:  # small blocks say more about fixed costs than per-tx ones
            self.ns_per_tx = (3 * self.ns_per_tx + elapsed_ns // count) // 4

    def block_size_limit(self, cfg: ConsensusSection) -> int:
        """How many transactions the next proposal may hold: `consensus.max_block_txs`, or fewer
        when executing them would take more than a quarter of the first view timeout here
        (followers take about as long to check the block as we take to build it)."""
        budget_ns = cfg.base_timeout_ms * 1_000_000 // 4
        return max(MIN_BLOCK_TXS, min(cfg.max_block_txs, budget_ns // max(1, self.ns_per_tx)))


class Blocks:
    """Block checks and commits on one store, for one chain; `validators_at(h)` is the set of
    height h (a proposal's proposer and a certificate of height h are checked against it)."""

    def __init__(self, *, store: ChainStore, genesis: Genesis, validators_at: Callable[[int], ValidatorSet],
                 verifier: Ed25519Verifier, mempool: Mempool, consensus: ConsensusSection) -> None:
        self.store = store
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.validators_at = validators_at
        self.verifier = verifier
        self.mempool = mempool
        self.consensus = consensus
        self.cost = ExecutionCost()
        self._executions: dict[bytes, tuple[Block, BlockExecution]] = {}
        self._last_ts: tuple[int, int] | None = None
        self._recent_results: dict[int, tuple[str, ...]] = {}
        self.supported = SUPPORTED_VERSIONS  # the protocol versions this node follows (tests add one)

    def state_reader(self) -> FuncReader:
        """A read-only view of the committed application state (point reads and prefix scans)."""
        return FuncReader(self.store.state_get, self.store.state_items)

    def parent_timestamp(self) -> int:
        """The time of the last committed block (the genesis time before the first)."""
        if self._last_ts is None or self._last_ts[0] != self.store.height:
            if self.store.height == 0:
                ts = self.genesis.genesis_time_ms
            else:
                raw = self.store.block_bytes(self.store.height)
                assert raw is not None
                ts = decode_block(raw, stored=True).header.timestamp_ms
            self._last_ts = (self.store.height, ts)
        return self._last_ts[1]

    def version_at(self, height: int) -> int:
        """The protocol version of `height` (> the committed height) as scheduled on the ledger."""
        return version_at(self.state_reader(), height)

    def unsupported(self, height: int) -> str | None:
        """Why this node cannot follow block `height` (None: it can): its version is not supported."""
        version = self.version_at(height)
        if version in self.supported:
            return None
        return (f"protocol version {version} is scheduled from height {height} and this binary supports only "
                f"version(s) {', '.join(map(str, self.supported))}: install a release that supports it "
                "(see 'Upgrading the protocol' in docs/operations.md)")

    def remember(self, block: Block, execution: BlockExecution) -> None:
        if len(self._executions) >= MAX_PENDING_CACHE:
            self._executions.pop(next(iter(self._executions)))
        self._executions[block.hash] = (block, execution)

    def check_block(self, height: int, digest: bytes, payload: bytes, *, now_ms: int | None,
                    certified: bool = False, prepared_before: bool = False) -> tuple[Block, BlockExecution]:
        """Full validation of a block for the next height; cache and return its execution.
        `certified`: the block comes with a verified commit certificate (see execute_block).

        Block time. Execution decides access, consent expiry and break-glass limits at the
        block's time, so a proposer must not pick it: it must be strictly later than the parent
        block's (every block, certified or not) and, for a proposal checked against this node's
        clock (`now_ms`), within `consensus.max_clock_drift_ms` of it on both sides. A stale time
        would let expired consents and grants decide. The one exception is a block a quorum
        already prepared (`prepared_before`, a re-proposal after a view change): honest
        validators checked its time when it was fresh, and it must be accepted however long the
        view change took.
        """
        if digest in self._executions:
            block, execution = self._executions[digest]
            if now_ms is not None and not prepared_before:  # a cached execution skips no time check
                self.check_block_time(block.header.timestamp_ms, now_ms, prepared_before=False)
            return block, execution
        block = decode_block(payload)
        h = block.header
        if block.hash != digest:
            raise BlockInvalid("digest does not match the block header")
        if h.chain_id != self.chain_id:
            raise BlockInvalid("block for another chain")
        if h.height != height or height != self.store.height + 1:
            raise BlockInvalid(f"block height {h.height} is not the next height {self.store.height + 1}")
        if h.prev_hash != self.store.last_hash:
            raise BlockInvalid("block does not extend our last block")
        if h.proposer not in self.validators_at(height):
            raise BlockInvalid("proposer is not a validator at this height")
        if h.version != (version := self.version_at(height)) or version not in self.supported:
            raise BlockInvalid(self.unsupported(height) or f"block version {h.version} is not the version "
                               f"scheduled for height {height} ({version})")
        if h.timestamp_ms <= self.parent_timestamp():
            raise BlockInvalid("timestamp is not later than the parent block's")
        if now_ms is not None:
            self.check_block_time(h.timestamp_ms, now_ms, prepared_before=prepared_before)
        if height > 1:
            self.check_certificate(height - 1, h.prev_hash, h.prev_certificate)
        elif h.prev_certificate:
            raise BlockInvalid("the first block carries no certificate")
        started = time.perf_counter_ns()
        execution = execute_block(
            self.state_reader(), self.store.state_root, block.txs,
            chain_id=self.chain_id, height=height, timestamp_ms=h.timestamp_ms,
            known=self.mempool.get, committed=self.store.has_tx, certified=certified,
        )
        if not certified:  # a synced block skips signature checks: not a proposal's cost
            self.cost.observe(len(block.txs), time.perf_counter_ns() - started)
        if execution.state_root != h.state_root:
            raise BlockInvalid("state root differs from ours")
        if execution.results_root != h.results_root:
            raise BlockInvalid("results root differs from ours")
        self.remember(block, execution)
        return block, execution

    def check_block_time(self, timestamp_ms: int, now_ms: int, *, prepared_before: bool) -> None:
        drift = self.consensus.max_clock_drift_ms
        if timestamp_ms > now_ms + drift:
            raise BlockInvalid("timestamp too far in the future")
        if timestamp_ms < now_ms - drift and not prepared_before:
            raise BlockInvalid("timestamp too far in the past (a stale block time)")

    def check_certificate(self, height: int, block_hash: bytes, raw: bytes,
                          messages: tuple[str, str, str] = PREVIOUS_CERTIFICATE) -> CommitCertificate:
        """Decode and verify the commit certificate `raw` of block `height` with `block_hash`
        (`messages`: what to say when it is malformed, for another block, or does not verify)."""
        try:
            cert = CommitCertificate.decode(raw)
        except ValueError as exc:
            raise BlockInvalid(messages[0].format(exc)) from None
        if cert.height != height or cert.digest != block_hash:
            raise BlockInvalid(messages[1])
        if not verify_certificate(cert, chain_id=self.chain_id, validators=self.validators_at(height),
                                  verifier=self.verifier):
            raise BlockInvalid(messages[2])
        return cert

    def check_synced(self, height: int, payload: bytes, raw_certificate: bytes) -> tuple[Block, CommitCertificate]:
        """A block fetched from a peer: the next height, under a certificate of its height's set."""
        if height != self.store.height + 1:
            raise BlockInvalid(f"expected block {self.store.height + 1}, got {height}")
        if reason := self.unsupported(height):
            raise BlockInvalid(reason)
        block = decode_block(payload)
        return block, self.check_certificate(height, block.hash, raw_certificate, SYNCED_CERTIFICATE)

    def commit(self, height: int, digest: bytes, payload: bytes,
               certificate: CommitCertificate) -> tuple[Block, BlockExecution] | None:
        """Apply a block 2f+1 validators committed, in one synced batch (None: already applied)."""
        if height <= self.store.height:
            return None
        try:
            block, execution = self.check_block(height, digest, payload, now_ms=None, certified=True)
        except (BlockInvalid, BlockRejected) as exc:
            # 2f+1 validators committed a block we cannot apply: our state has diverged.
            raise StoreCorrupted(f"cannot apply committed block {height}: {exc}") from exc
        self.store.commit_block(
            height=height, block_hash=block.hash, block_bytes=payload, certificate=certificate.encode(),
            tx_results=list(zip([t.hash for t in execution.txs], execution.results, strict=True)),
            state_writes=execution.writes, state_root=execution.state_root, previous=execution.previous,
        )
        self._executions.clear()
        self._recent_results[height] = tuple(execution.results)
        if len(self._recent_results) > RECENT_RESULTS:
            del self._recent_results[next(iter(self._recent_results))]
        return block, execution

    def results_of(self, height: int) -> tuple[str, ...] | None:
        """The result codes of a recently committed block's transactions, in its order (None:
        not among the last RECENT_RESULTS this process committed; the transaction index has them)."""
        return self._recent_results.get(height)
