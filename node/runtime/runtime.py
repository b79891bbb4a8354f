"""The node runtime: `Node` wires the consensus engine, the ledger application, the mempool, the
store, the clock and (when there are peers) the transport, and pumps events between them.

The engine (`consensus/`) decides; the node does what it asks, in order: persist a vote before
sending it, build (proposer.py) and validate (blocks.py) blocks, apply committed blocks in one
synced write batch, run timers on the clock (clock.py). Everything runs on one thread (the
asyncio loop in production, the test's own in tests/harness), so engine calls never interleave.
Actions that need an answer (a proposal, a block validation) are answered by feeding the engine
a new event through the same queue, never by recursion. Admission and waiters live in
admission.py, memory sampling in memory.py, the background fetch of the blocks before a
snapshot (`[storage] keep_history`) in history.py.

The validator set changes by vote (node/app/validator_sets.py): `membership` reads the set of
any height from the committed state. On start the engine's schedule is rebuilt from the state;
after each block that decides a change, its set is scheduled into the engine for height + 2 and
the network is told (`on_validators_changed`) so it dials and admits new validators. A node
that is not a validator starts without an engine and creates one when a scheduled set names
its key; a node whose key leaves the set keeps its engine, which no longer votes.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from consensus import actions as act
from consensus.certificate import CommitCertificate
from consensus.engine import Engine, EngineConfig
from consensus.errors import LocalProtocolError
from consensus.messages import MessageDecodeError, decode_message
from consensus.validators import ValidatorSet
from consensus.wal import decode_record

from node.app.executor import BlockExecution, BlockRejected, genesis_state_root, genesis_writes
from node.app.labels import access_decisions
from node.app.state import FuncReader
from node.chain.block import Block, BlockInvalid
from node.chain.genesis import Genesis
from node.chain.tx import Transaction
from node.core.crypto import Ed25519Verifier, Identity
from node.home.config import NodeConfig
from node.runtime.admission import Admission, TxAdmission, Waiters, verify_workers
from node.runtime.blocks import Blocks
from node.runtime.clock import Clock, LoopClock, TimerHandle
from node.runtime.history import History
from node.runtime.integrity import check_store
from node.runtime.membership import Membership
from node.runtime.memory import MemorySampler
from node.runtime.mempool import Mempool
from node.runtime.own_nonces import OwnNonces
from node.runtime.metrics import NodeMetrics
from node.runtime.proposer import Proposer
from node.runtime.snapshots import Snapshotter
from node.runtime.transport import FRAME_CONSENSUS, NullTransport, Transport
from storage.chain import ChainStore, StoreCorrupted

log = logging.getLogger("medledger.node")

MAX_EVIDENCE = 256

CommitHook = Callable[[list[Transaction], list[str]], None]


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
        clock: Clock | None = None,
        clock_ms: Callable[[], int] | None = None,
        store_dir: Path | None = None,
        home_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.identity = identity
        self.store = store
        self.store_dir = store_dir  # the data directory, when the node runs from a home
        self.home_dir = home_dir
        self.transport: Transport = transport or NullTransport()
        self.clock: Clock = clock or LoopClock()
        self.clock_ms: Callable[[], int] = clock_ms or self.clock.now_ms
        self.verifier = Ed25519Verifier()
        self.validators = ValidatorSet(validators=tuple(v.id for v in genesis.validators))  # the genesis set
        self.membership = Membership(genesis, lambda: FuncReader(store.state_get, store.state_items))
        self.mempool = Mempool(
            max_txs=config.mempool.max_txs, max_bytes=config.mempool.max_bytes, max_per_sender=config.mempool.max_per_sender
        )
        self._init_store()
        # a validator: its key is in the set of the next height, or in one already scheduled
        self.is_validator = not config.node.observer and self._named_from(self.store.height + 1)
        self.metrics = NodeMetrics()
        self.blocks = Blocks(store=store, genesis=genesis, validators_at=self.membership.at, verifier=self.verifier,
                             mempool=self.mempool, consensus=config.consensus)
        self.proposer = Proposer(blocks=self.blocks, proposer_id=identity.public_key, clock=self.clock,
                                 now_ms=lambda: self.clock_ms(), metrics=self.metrics, ready=self._proposal_ready)
        self.admission = TxAdmission(chain_id=self.chain_id, store=store, mempool=self.mempool,
                                     state_reader=self.blocks.state_reader, admitted=self._admitted,
                                     workers=verify_workers(config.node.verify_workers))
        self.waiters = Waiters(store)
        # nonces of what this node signs with its own key (node/runtime/own_nonces.py)
        self.own_nonces = OwnNonces(identity.public_key, self.blocks.state_reader, lambda: self.clock_ms())
        self.memory = MemorySampler(self.clock)
        self.snapshots = Snapshotter(store=store, chain_id=self.chain_id, identity=identity, interval=config.storage.snapshot_interval,
                                     directory=home_dir / config.storage.snapshot_dir if home_dir is not None else None)
        self.history = History(store=store, blocks=self.blocks, clock=self.clock, enabled=config.storage.keep_history,
                               busy=lambda: self.syncing or self.halted is not None)
        self._events: deque[Callable[[], list[Any]]] = deque()
        self._timers: dict[Any, TimerHandle] = {}
        self.evidence: deque[Any] = deque(maxlen=MAX_EVIDENCE)  # the most recent equivocation evidence
        self.evidence_total = 0
        self.started_at = self.clock.monotonic()
        self.last_commit_at = self.started_at  # monotonic time of the last block committed here
        self.engine: Engine | None = None
        self._pumping = False
        self.syncing = False
        self._work_reported = False
        self.commit_hooks: list[CommitHook] = []
        # set by the network service (node/net/gossip.py) through attach_transport; no-ops alone
        self.on_admitted: Callable[[Sequence[Transaction]], None] | None = None
        self.on_need_sync: Callable[[int], None] | None = None
        self.on_validators_changed: Callable[[], object] | None = None  # the network learns new validators
        self.peer_ids: Callable[[], list[bytes]] = lambda: []
        self.halted: str | None = None  # why the node stopped before a height it cannot follow
        self.on_halt: Callable[[str], None] | None = None  # the daemon exits (see _check_upgrade)
        self.metrics.bind(
            height=lambda: self.store.height,
            view=lambda: self.engine.view if self.engine else 0,
            mempool_size=lambda: len(self.mempool),
            mempool_bytes=lambda: self.mempool.size_bytes,
            peers=lambda: len(self.peer_ids()),
            syncing=lambda: self.syncing,
        )

    def attach_transport(
        self,
        transport: Transport,
        *,
        on_admitted: Callable[[Sequence[Transaction]], None] | None = None,
        on_need_sync: Callable[[int], None] | None = None,
        peer_ids: Callable[[], list[bytes]] | None = None,
        on_validators_changed: Callable[[], object] | None = None,
        on_need_history: Callable[[], None] | None = None,
    ) -> None:
        """Connect the node to its peers: frames go out through `transport`; the network hears of
        admitted transactions and of the need to sync (the head, or with keep_history a batch of
        the blocks before a snapshot: `on_need_history`), and says who is connected. Hooks not
        given stay as they were (a wrapping transport, e.g. a Byzantine one, keeps the network's)."""
        self.transport = transport
        if on_admitted is not None:
            self.on_admitted = on_admitted
        if on_need_sync is not None:
            self.on_need_sync = on_need_sync
        if peer_ids is not None:
            self.peer_ids = peer_ids
        if on_validators_changed is not None:
            self.on_validators_changed = on_validators_changed
        if on_need_history is not None:
            self.history.on_need = on_need_history

    def add_commit_hook(self, hook: CommitHook) -> None:
        """Call `hook(txs, results)` after each block is committed here."""
        self.commit_hooks.append(hook)

    # -- start / stop -----------------------------------------------------------------------
    def _init_store(self) -> None:
        gh = self.genesis.hash()
        if not self.store.initialized:
            self.store.init_genesis(gh, genesis_writes(self.genesis), genesis_state_root(self.genesis))
        elif self.store.genesis_hash != gh:
            raise StoreCorrupted("the data directory belongs to another genesis (different network)")
        check_store(self.store, chain_id=self.chain_id, validators_at=self.membership.at, verifier=self.verifier)

    def _named_from(self, height: int) -> bool:
        """Is this node's key in the set of `height` or in a set scheduled after it?"""
        me = self.identity.public_key
        return me in self.membership.at(height) or any(me in s for _, s in self.membership.scheduled_after(height))

    def start(self) -> None:
        """Create the engine from the persisted state and let it begin (call on the loop)."""
        if self._check_upgrade():
            return
        self.memory.start()
        self.history.start()
        if self.is_validator:
            self._start_engine()
        log.info("node started: id=%s height=%d validator=%s", self.identity.id[:16], self.store.height, self.is_validator)

    def _start_engine(self) -> None:
        """The engine at the committed height, with every validator set already scheduled."""
        height = self.store.height
        engine_cfg = EngineConfig(
            base_timeout_ms=self.config.consensus.base_timeout_ms,
            max_timeout_ms=self.config.consensus.max_timeout_ms,
            wait_for_work=not self.config.consensus.empty_blocks,
        )
        self.engine = engine = Engine(
            chain_id=self.chain_id,
            validators=self.membership.at(height + 1),
            previous_validators=self.membership.at(height) if height else None,  # whom a DECISION may answer
            signer=self.identity,
            verifier=self.verifier,
            config=engine_cfg,
            last_height=height,
            last_digest=self.store.last_hash,
            wal=self._own_wal(),
            # the last block and its certificate let the engine help a peer one block behind
            last_certificate=CommitCertificate.decode(cert) if (cert := self.store.certificate(height)) else None,
            last_payload=self.store.block_bytes(height) if height else None,
        )
        for effective, validators in self.membership.scheduled_after(height + 1):
            engine.schedule_validators(effective, validators)
        self.is_validator = True
        self._feed(engine.start)

    def _own_wal(self) -> list[bytes]:
        """The WAL entries of this node's key: after a key rotation the node runs with the new
        key, and the old key's votes (which it will never sign again) are left out."""
        entries = self.store.wal_entries()
        mine = []
        for entry in entries:
            try:
                record = decode_record(entry, max_payload=EngineConfig().max_payload)
            except (LocalProtocolError, ValueError):
                mine.append(entry)  # let the engine judge (and refuse) what does not decode
                continue
            if record.message.sender == self.identity.public_key or record.message.chain_id != self.chain_id:
                mine.append(entry)
        if len(mine) != len(entries):
            log.info("leaving out %d WAL entries signed with another key (a rotated key)", len(entries) - len(mine))
        return mine

    def _validators_decided(self, height: int) -> None:
        """Block `height` is committed: schedule the set it decided (if any) for height + 2."""
        scheduled = self.membership.made_by(height)
        if scheduled is None:
            return
        effective = height + 2
        log.info("validator set change: %d validators from height %d", scheduled.n, effective)
        if self.engine is not None:
            engine = self.engine
            if effective > engine.height:
                engine.schedule_validators(effective, scheduled)
        elif not self.config.node.observer and self.identity.public_key in scheduled:
            log.info("this node's key joins the validator set at height %d: starting to vote", effective)
            self._start_engine()
        if self.on_validators_changed is not None:
            self.on_validators_changed()

    def stop(self) -> None:
        self.memory.stop()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.proposer.stop()
        self.waiters.cancel()
        self.snapshots.stop()
        self.history.stop()
        self.admission.close()

    def _check_upgrade(self) -> bool:
        """Stop, rather than fork, before a height whose protocol version this binary does not
        support: checked at start and after each commit, so before proposing or validating it."""
        if self.halted is None and (reason := self.blocks.unsupported(self.store.height + 1)):
            self.halted = reason
            log.error("stopping at height %d: %s", self.store.height, reason)
            self.stop()
            if self.on_halt is not None:
                self.on_halt(reason)
        return self.halted is not None

    # -- the event pump ---------------------------------------------------------------------
    def _feed(self, event: Callable[[], list[Any]]) -> None:
        """Queue an engine call; run the queue unless we are already inside it."""
        self._events.append(event)
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._events and self.halted is None:
                actions = self._events.popleft()()
                self._execute(actions)
        finally:
            self._pumping = False
            if self.halted is not None:
                self._events.clear()

    def _execute(self, actions: Iterable[Any]) -> None:
        engine = self.engine
        assert engine is not None
        for a in actions:
            if self.halted is not None:
                return  # stopped before a height it cannot follow: nothing more for the engine
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
                self.proposer.request(a.height, a.view)
            elif isinstance(a, act.ValidateBlock):
                self.metrics.proposal_seen(a.digest)
                ok = self._validate(a.height, a.digest, a.payload, prepared_before=a.prepared_before)
                self._events.append(functools.partial(engine.on_block_validated, a.height, a.digest, ok))
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
        engine = self.engine
        assert engine is not None

        def fire() -> None:
            self._timers.pop(key, None)
            self._feed(lambda: engine.on_timer(key))

        self._timers[key] = self.clock.call_later(delay_ms / 1000, fire)

    def _proposal_ready(self, height: int, view: int, digest: bytes, payload: bytes) -> None:
        engine = self.engine
        if engine is not None:
            self._feed(lambda: engine.on_proposal_ready(height, view, digest, payload))

    # -- blocks (proposer.py, blocks.py) ------------------------------------------------------
    def build_block(self, height: int) -> tuple[Block, BlockExecution]:
        """Assemble the next block from the mempool and execute it."""
        return self.proposer.build_block(height)

    def block_size_limit(self) -> int:
        """How many transactions the next proposal may hold (see ExecutionCost)."""
        return self.proposer.block_size_limit()

    def check_block(self, height: int, digest: bytes, payload: bytes, *, now_ms: int | None,
                    certified: bool = False, prepared_before: bool = False) -> tuple[Block, BlockExecution]:
        """Full validation of a block for the next height (see Blocks.check_block)."""
        return self.blocks.check_block(height, digest, payload, now_ms=now_ms, certified=certified,
                                       prepared_before=prepared_before)

    def last_block_time_ms(self) -> int:
        """The time of the last committed block: the ledger's notion of now."""
        return self.blocks.parent_timestamp()

    def now_ms(self) -> int:
        """The time off-chain checks (grant expiry, study end) use: the later of the last block's
        time and this node's clock, so an idle network cannot stretch a grant past its end."""
        return max(self.last_block_time_ms(), self.clock_ms())

    def state_reader(self) -> FuncReader:
        """A read-only view of the committed application state (point reads and prefix scans)."""
        return self.blocks.state_reader()

    def _validate(self, height: int, digest: bytes, payload: bytes, *, prepared_before: bool = False) -> bool:
        try:
            self.check_block(height, digest, payload, now_ms=self.clock_ms(), prepared_before=prepared_before)
        except (BlockInvalid, BlockRejected) as exc:
            log.warning("rejected proposal for height %d: %s", height, exc)
            return False
        return True

    def _commit(self, height: int, digest: bytes, payload: bytes, certificate: CommitCertificate, *,
                synced: bool = False) -> None:
        committed = self.blocks.commit(height, digest, payload, certificate)
        if committed is None:
            return
        block, execution = committed
        self.last_commit_at = self.clock.monotonic()
        self._validators_decided(height)
        access = access_decisions(execution.txs, execution.results, self.state_reader())
        self.metrics.block_committed(block.hash, [t.type for t in execution.txs], execution.results, access,
                                     synced=synced)
        hashes = [t.hash for t in execution.txs]
        self.mempool.remove(hashes)
        self.waiters.wake(hashes, height)
        if self.engine is not None:
            self._work_reported = not (len(self.mempool) > 0)  # force a report for the new height
            self._report_work()
        for hook in self.commit_hooks:
            hook(execution.txs, execution.results)
        self.snapshots.after_commit(height)  # hands the writing to a thread (node/runtime/snapshots.py)
        self._check_upgrade()

    # -- transactions (admission.py) ----------------------------------------------------------
    def admit(self, values: Sequence[Any]) -> list[Admission]:
        """Admit client submissions: shape, type, nonce, signature (verified once), mempool."""
        return self.admission.admit(values)

    async def admit_async(self, values: Sequence[Any]) -> list[Admission]:
        """`admit`, the event loop free while the verifying processes check the signatures."""
        return await self.admission.admit_async(values)

    def admit_transactions(self, txs: Sequence[Transaction], *, gossip: bool) -> int:
        """Admit decoded transactions (from a peer); returns how many had bad signatures."""
        return self.admission.admit_transactions(txs, gossip=gossip)

    async def admit_transactions_async(self, txs: Sequence[Transaction], *, gossip: bool) -> int:
        """`admit_transactions`, the event loop free while the verifying processes work."""
        return await self.admission.admit_transactions_async(txs, gossip=gossip)

    def knows_tx(self, tx_hash: bytes) -> bool:
        """True when the transaction is waiting in the mempool or already committed."""
        return self.admission.knows_tx(tx_hash)

    def tx_status(self, tx_hash: bytes) -> dict[str, Any]:
        return self.admission.tx_status(tx_hash)

    async def wait_committed(self, tx_hash: bytes, timeout: float) -> bool:
        """Wait until `tx_hash` is committed or `timeout` seconds pass."""
        return await self.waiters.wait_committed(tx_hash, timeout)

    async def wait_height(self, height: int, timeout: float) -> bool:
        return await self.waiters.wait_height(height, timeout)

    def _admitted(self, txs: list[Transaction], gossip: bool) -> None:
        if gossip and self.on_admitted is not None:
            self.on_admitted(txs)
        self._report_work()
        self.proposer.maybe_propose()

    def _report_work(self) -> None:
        """Tell the engine when transactions start or stop waiting (its view timer depends on it)."""
        pending = len(self.mempool) > 0
        if self.engine is not None and pending != self._work_reported:
            self._work_reported = pending
            engine = self.engine
            self._feed(lambda: engine.on_work(pending))

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
        block, cert = self.blocks.check_synced(height, payload, raw_certificate)
        self._commit(height, block.hash, payload, cert, synced=True)
        if self.engine is not None:
            engine = self.engine
            self._feed(lambda: engine.on_block_synced(height, block.hash, cert, payload))

    # -- status -------------------------------------------------------------------------------
    def validator_list(self, height: int | None = None) -> list[dict[str, Any]]:
        """The validators of `height` (default: the next one) as objects: id, name, address, api
        (and since, until for a validator a change added, removed or rotated)."""
        members = self.membership.at(self.store.height + 1 if height is None else height)
        out = []
        for vid in members.validators:
            found = self.membership.describe(vid)
            out.append({"id": vid.hex(), **{k: (v.hex() if isinstance(v, bytes) else v) for k, v in found.items()}})
        return out

    def status(self) -> dict[str, Any]:
        engine_status = self.engine.status() if self.engine else {}
        return {
            "chain_id": self.chain_id,
            "node_id": self.identity.id,
            "name": self.config.node.name,
            "height": self.store.height,
            "last_block_hash": self.store.last_hash.hex(),
            "state_root": self.store.state_root.hex(),
            # the set deciding the next block (the genesis one until a change): its size, and its members
            "validators": len(self.membership.at(self.store.height + 1)),
            "validator_set": self.validator_list(),
            "epoch": self.membership.epoch(self.store.height + 1)[0],
            "validator": self.is_validator,
            "mempool_size": len(self.mempool),
            "view": engine_status.get("view", 0),
            "view_changes": engine_status.get("view_changes", 0),
            "peers": [p.hex() for p in self.peer_ids()],
            "syncing": self.syncing,
            "history": self.history.status(),
            "protocol_version": self.blocks.version_at(self.store.height + 1),
            "evidence": self.evidence_total,
            "evidence_offenders": sorted({e.offender.hex() for e in self.evidence}),
            "uptime_s": int(self.clock.monotonic() - self.started_at),
            **self.memory.report(),
        }
