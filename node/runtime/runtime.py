"""The node runtime: it wires the consensus engine, the ledger application, the mempool, the
store and (when there are peers) the transport, and pumps events between them.

The engine (`consensus/`) decides; this module does what it asks, in order: persist a vote
before sending it, build and validate blocks, apply committed blocks in one synced write batch,
run timers on the event loop. Everything here runs on one asyncio loop thread, so engine calls
never interleave. Actions that need an answer (a proposal, a block validation) are answered
by feeding the engine a new event through the same queue, never by recursion.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from consensus import actions as act
from consensus.certificate import CommitCertificate, verify_certificate
from consensus.engine import Engine, EngineConfig
from consensus.messages import MessageDecodeError, decode_message
from consensus.validators import ValidatorSet

from node.app import keys as state_keys
from node.app.executor import (
    REGISTRATION,
    BlockExecution,
    BlockRejected,
    execute_block,
    genesis_state_root,
    genesis_writes,
    read_nonce,
)
from node.app.types.identity import identity_key
from node.app.registry import check_tx_body
from node.app.state import FuncReader
from node.chain.block import Block, BlockInvalid, Header, decode_block
from node.home.config import NodeConfig
from node.core.crypto import Ed25519Verifier, Identity
from node.core.encoding import decode as decode_value
from node.core.merkle import merkle_root
from node.chain.genesis import Genesis
from node.runtime.integrity import check_store
from node.runtime.mempool import Mempool, MempoolFull, SenderLimit
from node.runtime.metrics import NodeMetrics
from node.chain.tx import Transaction, TxRejected, check_signature, tx_from_value
from storage.chain import ChainStore, StoreCorrupted

log = logging.getLogger("medledger.node")

MAX_WAITERS = 10_000
MAX_PENDING_CACHE = 64
MAX_EVIDENCE = 256
MAX_PENDING_UNREGISTERED = 8  # waiting transactions of a key whose registration is not committed yet


MIN_BLOCK_TXS = 200
INITIAL_EXEC_NS_PER_TX = 100_000  # a cautious first guess; the first blocks correct it

class Transport(Protocol):
    """What the runtime needs from p2p/: fire-and-forget frames to validators."""

    def send(self, peer_id: bytes, kind: int, payload: bytes) -> bool: ...

    def broadcast(self, kind: int, payload: bytes, exclude: Sequence[bytes] = ()) -> int: ...


FRAME_CONSENSUS = 1
FRAME_TXS = 2


class NullTransport:
    """The transport of a one-validator network: nobody to talk to."""

    def send(self, peer_id: bytes, kind: int, payload: bytes) -> bool:
        return False

    def broadcast(self, kind: int, payload: bytes, exclude: Sequence[bytes] = ()) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of submitting one transaction: its hash, or an error code and message."""

    hash: bytes | None
    error: str | None = None
    message: str = ""
    duplicate: bool = False


def peak_rss_mb() -> int:
    """This process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def rss_mb() -> int:
    """This process's resident memory now, in MiB (0 where /proc is missing)."""
    import os

    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def rss_anon_mb() -> int:
    """This process's anonymous resident memory in MiB: its own (Python objects, LevelDB's
    memtables and block cache), without the file pages mapped into it. LevelDB maps its table
    files into memory, and every page of them read counts in the resident size too, though they
    are the kernel's page cache, shared and dropped under memory pressure. 0 without /proc."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


MEMORY_SAMPLE_S = 1.0  # how often the node samples its anonymous memory (for its peak)


class Node:
    """One MedLedger node: state, mempool, engine and the event pump."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        genesis: Genesis,
        identity: Identity,
        store: ChainStore,
        transport: Transport | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.identity = identity
        self.store = store
        self.transport: Transport = transport or NullTransport()
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.verifier = Ed25519Verifier()
        self.validators = ValidatorSet(validators=tuple(v.id for v in genesis.validators))
        self.is_validator = identity.public_key in self.validators and not config.node.observer
        self.mempool = Mempool(
            max_txs=config.mempool.max_txs, max_bytes=config.mempool.max_bytes, max_per_sender=config.mempool.max_per_sender
        )
        self._init_store()
        self._executions: dict[bytes, tuple[Block, BlockExecution]] = {}
        # what executing one transaction has recently cost this node (ns, moving average): the
        # primary sizes its blocks so that building one, and so checking it, stays well inside
        # the view timer instead of triggering a view change under heavy transaction types
        self._exec_ns_per_tx = INITIAL_EXEC_NS_PER_TX
        self._events: deque[Callable[[], list[Any]]] = deque()
        self._timers: dict[Any, asyncio.TimerHandle] = {}
        self._pending_proposal: tuple[int, int] | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._height_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.evidence: deque[Any] = deque(maxlen=MAX_EVIDENCE)  # the most recent equivocation evidence
        self.evidence_total = 0
        self.started_at = time.monotonic()
        self.last_commit_at = self.started_at  # monotonic time of the last block committed here
        self.peak_anon_mb = 0  # largest anonymous resident memory sampled (see rss_anon_mb)
        self._memory_handle: asyncio.TimerHandle | None = None
        self.engine: Engine | None = None
        self._pumping = False
        self.syncing = False
        self.store_dir: Path | None = None  # the data directory, when the node runs from a home
        self.home_dir: Path | None = None
        self._last_ts: tuple[int, int] | None = None
        self._work_reported = False
        self.commit_hooks: list[Callable[[list[Transaction], list[str]], None]] = []
        # hooks set by the network service (node/net/gossip.py); no-ops for a lone validator
        self.on_admitted: Callable[[Sequence[Transaction]], None] | None = None
        self.on_need_sync: Callable[[int], None] | None = None
        self.peer_ids: Callable[[], list[bytes]] = lambda: []
        self.metrics = NodeMetrics()
        self.metrics.bind(
            height=lambda: self.store.height,
            view=lambda: self.engine.status().get("view", 0) if self.engine else 0,
            mempool_size=lambda: len(self.mempool),
            mempool_bytes=lambda: self.mempool.size_bytes,
            peers=lambda: len(self.peer_ids()),
            syncing=lambda: self.syncing,
        )

    # -- start / stop -----------------------------------------------------------------------
    def _init_store(self) -> None:
        gh = self.genesis.hash()
        if not self.store.initialized:
            self.store.init_genesis(gh, genesis_writes(self.genesis), genesis_state_root(self.genesis))
        elif self.store.genesis_hash != gh:
            raise StoreCorrupted("the data directory belongs to another genesis (different network)")
        check_store(self.store, chain_id=self.chain_id, validators=self.validators, verifier=self.verifier)

    def start(self) -> None:
        """Create the engine from the persisted state and let it begin (call on the loop)."""
        self._sample_memory()
        engine_cfg = EngineConfig(
            base_timeout_ms=self.config.consensus.base_timeout_ms,
            max_timeout_ms=self.config.consensus.max_timeout_ms,
            wait_for_work=not self.config.consensus.empty_blocks,
        )
        if self.is_validator:
            self.engine = Engine(
                chain_id=self.chain_id,
                validators=self.validators,
                signer=self.identity,
                verifier=self.verifier,
                config=engine_cfg,
                last_height=self.store.height,
                last_digest=self.store.last_hash,
                wal=self.store.wal_entries(),
                # the last block and its certificate let the engine help a peer one block behind
                last_certificate=CommitCertificate.decode(cert) if (cert := self.store.certificate(self.store.height)) else None,
                last_payload=self.store.block_bytes(self.store.height) if self.store.height else None,
            )
            self._feed(self.engine.start)
        log.info("node started: id=%s height=%d validator=%s", self.identity.id[:16], self.store.height, self.is_validator)

    def _sample_memory(self) -> None:
        self.peak_anon_mb = max(self.peak_anon_mb, rss_anon_mb())
        self._memory_handle = asyncio.get_running_loop().call_later(MEMORY_SAMPLE_S, self._sample_memory)

    def stop(self) -> None:
        if self._memory_handle:
            self._memory_handle.cancel()
            self._memory_handle = None
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._idle_handle:
            self._idle_handle.cancel()
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.cancel()
        self._waiters.clear()

    # -- the event pump ---------------------------------------------------------------------
    def _feed(self, event: Callable[[], list[Any]]) -> None:
        """Queue an engine call; run the queue unless we are already inside it."""
        self._events.append(event)
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._events:
                actions = self._events.popleft()()
                self._execute(actions)
        finally:
            self._pumping = False

    def _execute(self, actions: Iterable[Any]) -> None:
        engine = self.engine
        assert engine is not None
        for a in actions:
            if isinstance(a, act.Persist):
                self.store.wal_append(a.height, a.entry)
            elif isinstance(a, act.Broadcast):
                self.transport.broadcast(FRAME_CONSENSUS, a.message.encode())
            elif isinstance(a, act.Send):
                self.transport.send(a.to, FRAME_CONSENSUS, a.message.encode())
            elif isinstance(a, act.SetTimer):
                self._set_timer(a.key, a.delay_ms)
            elif isinstance(a, act.CancelTimer):
                handle = self._timers.pop(a.key, None)
                if handle:
                    handle.cancel()
            elif isinstance(a, act.RequestProposal):
                self._pending_proposal = (a.height, a.view)
                self._maybe_propose()
            elif isinstance(a, act.ValidateBlock):
                self.metrics.proposal_seen(a.digest)
                ok = self._validate(a.height, a.digest, a.payload, prepared_before=a.prepared_before)
                self._events.append(lambda h=a.height, d=a.digest, ok=ok: engine.on_block_validated(h, d, ok))
            elif isinstance(a, act.CommitBlock):
                self._commit(a.height, a.digest, a.payload, a.certificate)
            elif isinstance(a, act.PruneWal):
                self.store.wal_prune(a.below_height)
            elif isinstance(a, act.ReportEvidence):
                self.evidence.append(a.evidence)
                self.evidence_total += 1
                e = a.evidence
                log.warning("equivocation evidence: validator %s signed two %s for height %d view %d (see GET /v1/status)",
                            e.offender.hex()[:16], type(e.first).__name__, e.height, e.first.view)
            elif isinstance(a, act.ViewChanged):
                self.metrics.view_changed()
                log.info("view change: height=%d view=%d", a.height, a.view)
            elif isinstance(a, act.NeedSync):
                log.info("behind the network (saw height %d): syncing", a.height)
                if self.on_need_sync:
                    self.on_need_sync(a.height)
            else:
                raise TypeError(f"unknown consensus action {a!r}")

    def _set_timer(self, key: Any, delay_ms: int) -> None:
        old = self._timers.pop(key, None)
        if old:
            old.cancel()
        loop = asyncio.get_running_loop()
        engine = self.engine
        assert engine is not None

        def fire() -> None:
            self._timers.pop(key, None)
            self._feed(lambda: engine.on_timer(key))

        self._timers[key] = loop.call_later(delay_ms / 1000, fire)

    # -- proposals ---------------------------------------------------------------------------
    def _maybe_propose(self) -> None:
        """Answer a pending RequestProposal now if there is work (or a view change needs a block);
        with an empty mempool wait for work, or with `consensus.empty_blocks` for the idle interval."""
        if self._pending_proposal is None:
            return
        if len(self.mempool) == 0 and self._pending_proposal[1] == 0:
            if not self.config.consensus.empty_blocks:
                return  # admission calls us again when a transaction arrives
            if self._idle_handle is None:
                loop = asyncio.get_running_loop()
                self._idle_handle = loop.call_later(
                    self.config.consensus.empty_block_interval_ms / 1000, self._propose_now
                )
            return
        self._propose_now()

    def _propose_now(self) -> None:
        if self._idle_handle:
            self._idle_handle.cancel()
            self._idle_handle = None
        pending, self._pending_proposal = self._pending_proposal, None
        if pending is None or self.engine is None:
            return
        height, view = pending
        if height != self.store.height + 1:
            return  # stale: the engine has moved on
        block, execution = self.build_block(height)
        self._remember(block, execution)
        self.metrics.proposal_seen(block.hash)
        payload = block.encode()
        engine = self.engine
        self._feed(lambda: engine.on_proposal_ready(height, view, block.hash, payload))

    def build_block(self, height: int) -> tuple[Block, BlockExecution]:
        """Assemble the next block from the mempool and execute it."""
        cfg = self.config.consensus
        parent_ts = self._parent_timestamp()
        txs = [t for t in self.mempool.take(self.block_size_limit(), cfg.max_block_bytes) if not self.store.has_tx(t.hash)]
        timestamp = max(self.clock_ms(), parent_ts + 1)  # block times strictly increase (check_block)
        started = time.perf_counter_ns()
        execution = execute_block(
            self.state_reader(), self.store.state_root, [t.encoded for t in txs],
            chain_id=self.chain_id, height=height, timestamp_ms=timestamp,
            known=self.mempool.get, committed=self.store.has_tx, drop_unregistered=True,
        )
        self._observe_execution(len(txs), time.perf_counter_ns() - started)
        if execution.dropped:
            # admitted while their sender's registration was waiting, which then failed (or is not in
            # this block): they leave the pool; the client submits them again once registered
            log.info("left %d transaction(s) of unregistered senders out of block %d", len(execution.dropped), height)
            self.mempool.remove(execution.dropped)
        txs = execution.txs
        prev_cert = (self.store.certificate(height - 1) or b"") if height > 1 else b""
        header = Header(
            chain_id=self.chain_id, height=height, prev_hash=self.store.last_hash, timestamp_ms=timestamp,
            proposer=self.identity.public_key, tx_root=merkle_root([t.encoded for t in txs]),
            results_root=execution.results_root, state_root=execution.state_root, prev_certificate=prev_cert,
        )
        return Block(header=header, txs=tuple(t.encoded for t in txs)), execution

    def block_size_limit(self) -> int:
        """How many transactions the next proposal may hold: `consensus.max_block_txs`, or fewer
        when executing them would take more than a quarter of the first view timeout here
        (followers take about as long to check the block as we take to build it)."""
        cfg = self.config.consensus
        budget_ns = cfg.base_timeout_ms * 1_000_000 // 4
        return max(MIN_BLOCK_TXS, min(cfg.max_block_txs, budget_ns // max(1, self._exec_ns_per_tx)))

    def _observe_execution(self, count: int, elapsed_ns: int) -> None:
        if count >= MIN_BLOCK_TXS:  # small blocks say more about fixed costs than per-tx ones
            self._exec_ns_per_tx = (3 * self._exec_ns_per_tx + elapsed_ns // count) // 4

    def _parent_timestamp(self) -> int:
        if self._last_ts is None or self._last_ts[0] != self.store.height:
            if self.store.height == 0:
                ts = self.genesis.genesis_time_ms
            else:
                raw = self.store.block_bytes(self.store.height)
                assert raw is not None
                ts = decode_block(raw, stored=True).header.timestamp_ms
            self._last_ts = (self.store.height, ts)
        return self._last_ts[1]

    def last_block_time_ms(self) -> int:
        """The time of the last committed block: the ledger's notion of now."""
        return self._parent_timestamp()

    def now_ms(self) -> int:
        """The time off-chain checks (grant expiry, study end) use: the later of the last block's
        time and this node's clock, so an idle network cannot stretch a grant past its end."""
        return max(self.last_block_time_ms(), self.clock_ms())

    def state_reader(self) -> FuncReader:
        """A read-only view of the committed application state (point reads and prefix scans)."""
        return FuncReader(self.store.state_get, self.store.state_items)

    def _remember(self, block: Block, execution: BlockExecution) -> None:
        if len(self._executions) >= MAX_PENDING_CACHE:
            self._executions.pop(next(iter(self._executions)))
        self._executions[block.hash] = (block, execution)

    # -- validation and commit ---------------------------------------------------------------
    def _validate(self, height: int, digest: bytes, payload: bytes, *, prepared_before: bool = False) -> bool:
        try:
            self.check_block(height, digest, payload, now_ms=self.clock_ms(), prepared_before=prepared_before)
        except (BlockInvalid, BlockRejected) as exc:
            log.warning("rejected proposal for height %d: %s", height, exc)
            return False
        return True

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
                self._check_block_time(block.header.timestamp_ms, now_ms, prepared_before=False)
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
        if h.proposer not in self.validators:
            raise BlockInvalid("proposer is not a validator")
        if h.timestamp_ms <= self._parent_timestamp():
            raise BlockInvalid("timestamp is not later than the parent block's")
        if now_ms is not None:
            self._check_block_time(h.timestamp_ms, now_ms, prepared_before=prepared_before)
        if height > 1:
            self._check_prev_certificate(height - 1, h.prev_hash, h.prev_certificate)
        elif h.prev_certificate:
            raise BlockInvalid("the first block carries no certificate")
        started = time.perf_counter_ns()
        execution = execute_block(
            self.state_reader(), self.store.state_root, block.txs,
            chain_id=self.chain_id, height=height, timestamp_ms=h.timestamp_ms,
            known=self.mempool.get, committed=self.store.has_tx, certified=certified,
        )
        if not certified:  # a synced block skips signature checks: not a proposal's cost
            self._observe_execution(len(block.txs), time.perf_counter_ns() - started)
        if execution.state_root != h.state_root:
            raise BlockInvalid("state root differs from ours")
        if execution.results_root != h.results_root:
            raise BlockInvalid("results root differs from ours")
        self._remember(block, execution)
        return block, execution

    def _check_block_time(self, timestamp_ms: int, now_ms: int, *, prepared_before: bool) -> None:
        drift = self.config.consensus.max_clock_drift_ms
        if timestamp_ms > now_ms + drift:
            raise BlockInvalid("timestamp too far in the future")
        if timestamp_ms < now_ms - drift and not prepared_before:
            raise BlockInvalid("timestamp too far in the past (a stale block time)")

    def _check_prev_certificate(self, height: int, block_hash: bytes, raw: bytes) -> None:
        try:
            cert = CommitCertificate.decode(raw)
        except ValueError as exc:
            raise BlockInvalid(f"previous certificate is malformed: {exc}") from None
        if cert.height != height or cert.digest != block_hash:
            raise BlockInvalid("previous certificate is for another block")
        if not verify_certificate(cert, chain_id=self.chain_id, validators=self.validators, verifier=self.verifier):
            raise BlockInvalid("previous certificate does not verify")

    def _commit(self, height: int, digest: bytes, payload: bytes, certificate: CommitCertificate, *,
                synced: bool = False) -> None:
        if height <= self.store.height:
            return
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
        self.last_commit_at = time.monotonic()
        self._count_commit(block.hash, execution, synced=synced)
        hashes = [t.hash for t in execution.txs]
        self.mempool.remove(hashes)
        self._wake(hashes, height)
        if self.engine is not None:
            self._work_reported = not (len(self.mempool) > 0)  # force a report for the new height
            self._report_work()
        for hook in self.commit_hooks:
            hook(execution.txs, execution.results)

    def _count_commit(self, digest: bytes, execution: BlockExecution, *, synced: bool) -> None:
        """Metrics of a committed block, once per block (access decisions read back from state)."""
        access: list[str] = []
        for tx, result in zip(execution.txs, execution.results, strict=True):
            if tx.type != "access.request" or result not in ("ok", "denied"):
                continue
            if result == "denied":
                access.append("denied")
                continue
            raw = self.store.state_get(state_keys.access(tx.hash))
            rule = decode_value(raw).get("rule") if raw is not None else None
            access.append("breakglass" if rule == "breakglass" else "granted")
        self.metrics.block_committed(digest, [t.type for t in execution.txs], execution.results, access, synced=synced)

    # -- transactions ------------------------------------------------------------------------
    def admit(self, values: Sequence[Any]) -> list[Admission]:
        """Admit client submissions: shape, type, nonce, signature (verified once), mempool."""
        out: list[Admission] = []
        fresh: list[Transaction] = []
        for value in values:
            try:
                tx = tx_from_value(value, chain_id=self.chain_id)
            except TxRejected as exc:
                out.append(Admission(None, exc.code, exc.message))
                continue
            verdict = self._admit_one(tx)
            out.append(verdict)
            if verdict.error is None and not verdict.duplicate:
                fresh.append(tx)
        if fresh:
            self._admitted(fresh, gossip=True)
        return out

    def admit_transactions(self, txs: Sequence[Transaction], *, gossip: bool) -> int:
        """Admit decoded transactions (from a peer); returns how many had bad signatures."""
        fresh: list[Transaction] = []
        bad = 0
        for tx in txs:
            verdict = self._admit_one(tx)
            if verdict.error == "bad_signature":
                bad += 1
            elif verdict.error is None and not verdict.duplicate:
                fresh.append(tx)
        if fresh:
            self._admitted(fresh, gossip=gossip)
        return bad

    def knows_tx(self, tx_hash: bytes) -> bool:
        """True when the transaction is waiting in the mempool or already committed."""
        return tx_hash in self.mempool or self.store.has_tx(tx_hash)

    def _admit_one(self, tx: Transaction) -> Admission:
        if tx.hash in self.mempool:
            return Admission(tx.hash, duplicate=True)
        if self.store.has_tx(tx.hash):
            return Admission(tx.hash, "already_committed", "this transaction is already on the chain")
        try:
            check_tx_body(tx)
            state = self.state_reader()
            if tx.nonce <= read_nonce(state, tx.sender):
                raise TxRejected("nonce_replayed", "nonce already used by this sender")
            self._check_sender(state, tx)
            check_signature(tx)
            self.mempool.add(tx)
        except TxRejected as exc:
            return Admission(None, exc.code, exc.message)
        except SenderLimit as exc:
            return Admission(None, "sender_limit", str(exc))
        except MempoolFull as exc:
            return Admission(None, "mempool_full", str(exc))
        return Admission(tx.hash)

    def _check_sender(self, state: FuncReader, tx: Transaction) -> None:
        """Admission of senders (docs/api.md): only a registered identity sends transactions, but
        for the `identity.register` that makes it one. A key whose registration is still waiting
        in the pool may queue a few more behind it (they go in the same block or leave with it);
        an identity that is registered may not register again."""
        registered = state.get(identity_key(tx.sender)) is not None
        if tx.type == REGISTRATION:
            if registered:
                raise TxRejected("already_registered", "this identity is already registered")
            if self.mempool.registering(tx.sender):
                raise SenderLimit("a registration of this key is already waiting; wait for it to commit")
            return
        if registered:
            return
        if not self.mempool.registering(tx.sender):
            raise TxRejected("not_registered", "the sender has no registered identity: register it first "
                                               "(identity.register) and wait for the commit")
        if self.mempool.pending_of(tx.sender) >= MAX_PENDING_UNREGISTERED:
            raise SenderLimit(f"a key whose registration is not committed yet may queue {MAX_PENDING_UNREGISTERED} "
                              "transactions; wait for the registration to commit")

    def _admitted(self, txs: list[Transaction], *, gossip: bool) -> None:
        if gossip and self.on_admitted is not None:
            self.on_admitted(txs)
        self._report_work()
        self._maybe_propose()

    def _report_work(self) -> None:
        """Tell the engine when transactions start or stop waiting (its view timer depends on it)."""
        pending = len(self.mempool) > 0
        if self.engine is not None and pending != self._work_reported:
            self._work_reported = pending
            engine = self.engine
            self._feed(lambda: engine.on_work(pending))

    def tx_status(self, tx_hash: bytes) -> dict[str, Any]:
        loc = self.store.tx_location(tx_hash)
        if loc is not None:
            return {"hash": tx_hash.hex(), "status": "committed", "height": loc.height, "index": loc.index, "result": loc.result}
        if tx_hash in self.mempool:
            return {"hash": tx_hash.hex(), "status": "pending"}
        return {"hash": tx_hash.hex(), "status": "unknown"}

    async def wait_committed(self, tx_hash: bytes, timeout: float) -> bool:
        """Wait until `tx_hash` is committed or `timeout` seconds pass."""
        if self.store.has_tx(tx_hash):
            return True
        if sum(len(v) for v in self._waiters.values()) >= MAX_WAITERS:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_hash, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        finally:
            waiters = self._waiters.get(tx_hash)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[tx_hash]
        return self.store.has_tx(tx_hash)

    async def wait_height(self, height: int, timeout: float) -> bool:
        if self.store.height >= height:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._height_waiters.append((height, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        return self.store.height >= height

    def _wake(self, hashes: Sequence[bytes], height: int) -> None:
        if self._waiters:
            for h in hashes:
                for fut in self._waiters.pop(h, ()):
                    if not fut.done():
                        fut.set_result(None)
        if self._height_waiters:
            keep = []
            for target, fut in self._height_waiters:
                if target <= height:
                    if not fut.done():
                        fut.set_result(None)
                elif not fut.done():
                    keep.append((target, fut))
            self._height_waiters = keep

    # -- consensus messages from peers ------------------------------------------------------
    def on_consensus_bytes(self, peer_id: bytes, data: bytes) -> tuple[str, str]:
        """Decode and verify (once) a consensus message and hand it to the engine.

        Returns (verdict, reason): "invalid" for bytes that are not a validly signed message
        (the sender deserves a penalty), else the engine's verdict kind.
        """
        if self.engine is None:
            return "discard", "this node does not vote"
        try:
            msg = decode_message(data)
        except MessageDecodeError as exc:
            return "invalid", f"malformed consensus message: {exc}"
        if not self.verifier.verify(msg.sender, msg.signing_bytes(), msg.signature):
            return "invalid", "consensus message with a bad signature"
        engine = self.engine
        verdicts: list[tuple[str, str]] = []

        def event() -> list[Any]:
            verdict, actions = engine.on_message(msg)
            verdicts.append((verdict.kind, verdict.reason))
            return actions

        self._feed(event)
        return verdicts[0] if verdicts else ("process", "")

    # -- block sync ------------------------------------------------------------------------
    def apply_synced_block(self, height: int, payload: bytes, raw_certificate: bytes) -> None:
        """Check a block fetched from a peer against its commit certificate, apply it, tell the engine."""
        if height != self.store.height + 1:
            raise BlockInvalid(f"expected block {self.store.height + 1}, got {height}")
        block = decode_block(payload)
        try:
            cert = CommitCertificate.decode(raw_certificate)
        except ValueError as exc:
            raise BlockInvalid(f"malformed certificate: {exc}") from None
        if cert.height != height or cert.digest != block.hash:
            raise BlockInvalid("certificate is for another block")
        if not verify_certificate(cert, chain_id=self.chain_id, validators=self.validators, verifier=self.verifier):
            raise BlockInvalid("certificate does not verify against the validator set")
        self._commit(height, block.hash, payload, cert, synced=True)
        if self.engine is not None:
            engine = self.engine
            self._feed(lambda: engine.on_block_synced(height, block.hash, cert, payload))

    # -- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        engine_status = self.engine.status() if self.engine else {}
        return {
            "chain_id": self.chain_id,
            "node_id": self.identity.id,
            "name": self.config.node.name,
            "height": self.store.height,
            "last_block_hash": self.store.last_hash.hex(),
            "state_root": self.store.state_root.hex(),
            "validators": [v.to_json() for v in self.genesis.validators],
            "validator": self.is_validator,
            "mempool_size": len(self.mempool),
            "view": engine_status.get("view", 0),
            "view_changes": engine_status.get("view_changes", 0),
            "peers": [p.hex() for p in self.peer_ids()],
            "syncing": self.syncing,
            "evidence": self.evidence_total,
            "evidence_offenders": sorted({e.offender.hex() for e in self.evidence}),
            "uptime_s": int(time.monotonic() - self.started_at),
            "peak_rss_mb": peak_rss_mb(),
            "rss_mb": rss_mb(),
            "rss_anon_mb": (anon := rss_anon_mb()),
            "peak_rss_anon_mb": max(self.peak_anon_mb, anon),
        }
