"""Helpers for the engine's unit tests: fake keys and a tiny synchronous cluster.

The cluster delivers every message immediately and in FIFO order, answers proposal and
validation requests at once, and records what each node persisted, committed and reported.
Timers only fire when a test fires them. It is deliberately simpler than the simulator so a
failing unit test points at one phase of the protocol.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from consensus.actions import (Action, Broadcast, CancelTimer, CommitBlock, NeedSync, Persist, PruneWal, ReportEvidence,
                               RequestProposal, Send, SetTimer, ValidateBlock, ViewChanged)
from consensus.engine import Engine, EngineConfig, Verdict
from consensus.messages import Message
from consensus.simulation.fake_crypto import FakeKeyring, FakeSigner, FakeVerifier
from consensus.validators import ValidatorSet

CHAIN = "test-chain"
ZERO = bytes(32)
CONFIG = EngineConfig(base_timeout_ms=1000, max_timeout_ms=8000, resend_interval_ms=300)


def block(height: int, view: int, tag: str = "") -> tuple[bytes, bytes]:
    payload = f"block|{height}|{view}|{tag}".encode()
    return hashlib.sha256(payload).digest(), payload


@dataclass
class Node:
    engine: Engine
    signer: FakeSigner
    wal: list[tuple[int, bytes]] = field(default_factory=list)
    committed: list[CommitBlock] = field(default_factory=list)
    evidence: list[ReportEvidence] = field(default_factory=list)
    timers: dict[object, int] = field(default_factory=dict)
    verdicts: list[tuple[Message, Verdict]] = field(default_factory=list)
    log: list[Action] = field(default_factory=list)
    need_sync: list[int] = field(default_factory=list)
    views: list[tuple[int, int]] = field(default_factory=list)

    @property
    def id(self) -> bytes:
        return self.signer.public_key


class Cluster:
    """n engines wired together by an instant, lossless, FIFO network."""

    def __init__(self, n: int, *, config: EngineConfig = CONFIG, validate: Callable[[int, bytes, bytes], bool] | None = None,
                 start: bool = True) -> None:
        self.keyring = FakeKeyring()
        self.verifier = FakeVerifier(self.keyring)
        signers = [self.keyring.new_signer(f"v{i}".encode()) for i in range(n)]
        self.validators = ValidatorSet(validators=tuple(s.public_key for s in signers))
        self.config = config
        self.validate = validate or (lambda h, d, p: hashlib.sha256(p).digest() == d)
        self.nodes = [Node(engine=self._engine(s), signer=s) for s in signers]
        self.queue: deque[tuple[bytes, Message]] = deque()
        self.down: set[bytes] = set()
        self.filter: Callable[[bytes, Message], bool] = lambda to, msg: True
        self.proposals: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        self.stop_height = 3  # proposals above this height wait in `pending`
        self.pending: list[tuple[Node, RequestProposal]] = []
        if start:
            for node in self.nodes:
                self.execute(node, node.engine.start())

    def _engine(self, signer: FakeSigner, *, last_height: int = 0, last_digest: bytes = ZERO,
                wal: tuple[bytes, ...] = ()) -> Engine:
        return Engine(chain_id=CHAIN, validators=self.validators, signer=signer, verifier=self.verifier,
                      config=self.config, last_height=last_height, last_digest=last_digest, wal=wal)

    def node(self, key: bytes) -> Node:
        return next(n for n in self.nodes if n.id == key)

    def execute(self, node: Node, actions: list[Action]) -> None:
        for action in actions:
            node.log.append(action)
            if node.id in self.down:
                return
            if isinstance(action, Broadcast):
                for other in self.nodes:
                    if other is not node:
                        self.queue.append((other.id, action.message))
            elif isinstance(action, Send):
                self.queue.append((action.to, action.message))
            elif isinstance(action, Persist):
                node.wal.append((action.height, action.entry))
            elif isinstance(action, PruneWal):
                node.wal = [(h, e) for h, e in node.wal if h >= action.below_height]
            elif isinstance(action, SetTimer):
                node.timers[action.key] = action.delay_ms
            elif isinstance(action, CancelTimer):
                node.timers.pop(action.key, None)
            elif isinstance(action, RequestProposal):
                if action.height > self.stop_height:
                    self.pending.append((node, action))
                    continue
                digest, payload = self.proposals.get((action.height, action.view)) or block(
                    action.height, action.view, node.id.hex()[:8])
                self.execute(node, node.engine.on_proposal_ready(action.height, action.view, digest, payload))
            elif isinstance(action, ValidateBlock):
                ok = self.validate(action.height, action.digest, action.payload)
                self.execute(node, node.engine.on_block_validated(action.height, action.digest, ok))
            elif isinstance(action, CommitBlock):
                node.committed.append(action)
            elif isinstance(action, ReportEvidence):
                node.evidence.append(action)
            elif isinstance(action, NeedSync):
                node.need_sync.append(action.height)
            elif isinstance(action, ViewChanged):
                node.views.append((action.height, action.view))
            else:
                raise AssertionError(f"unexpected action {action!r}")

    def deliver(self, to: bytes, msg: Message) -> Verdict:
        node = self.node(to)
        verdict, actions = node.engine.on_message(msg)
        node.verdicts.append((msg, verdict))
        self.execute(node, actions)
        return verdict

    def propose_pending(self, tag: str = "") -> None:
        """Answer the proposal requests waiting in `pending` with `block(height, 0, tag)`."""
        for node, action in self.pending:
            self.execute(node, node.engine.on_proposal_ready(action.height, action.view, *block(action.height, 0, tag)))
        self.pending.clear()

    def run(self, limit: int = 100_000) -> None:
        steps = 0
        while self.queue:
            steps += 1
            assert steps < limit, "the cluster did not settle"
            to, msg = self.queue.popleft()
            if to in self.down or not self.filter(to, msg):
                continue
            assert self.verifier.verify(msg.sender, msg.signing_bytes(), msg.signature)
            self.deliver(to, msg)

    def fire(self, node: Node, key: object) -> None:
        assert key in node.timers, f"timer {key!r} is not armed at this node"
        del node.timers[key]
        self.execute(node, node.engine.on_timer(key))

    def fire_all(self, kind: str) -> None:
        for node in self.nodes:
            if node.id in self.down:
                continue
            for key in [k for k in node.timers if isinstance(k, tuple) and k[0] == kind]:
                if key in node.timers:
                    self.fire(node, key)

    def restart(self, node: Node, *, keep_wal: bool = True) -> None:
        last = node.committed[-1] if node.committed else None
        wal = tuple(e for _, e in node.wal) if keep_wal else ()
        node.engine = self._engine(node.signer, last_height=last.height if last else 0,
                                   last_digest=last.digest if last else ZERO, wal=wal)
        node.timers.clear()
        self.down.discard(node.id)
        self.execute(node, node.engine.start())

    def heights(self) -> list[int]:
        return [len(n.committed) for n in self.nodes]


def two_final_heights() -> tuple[Cluster, Node, list[tuple[int, bytes]]]:
    """A cluster that finalized heights 1 and 2; its first node and every WAL entry it persisted (unpruned)."""
    c = Cluster(4, start=False)
    c.stop_height = 2
    for n in c.nodes:
        c.execute(n, n.engine.start())
    c.run()
    node = c.nodes[0]
    return c, node, [(a.height, a.entry) for a in node.log if isinstance(a, Persist)]


@pytest.fixture
def cluster_factory() -> Callable[..., Cluster]:
    return Cluster
