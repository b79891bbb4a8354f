"""A cluster of validators in one process: a genesis for N keys, one Node each on a shared
virtual clock and memory network, and the pump that runs them (`run_until`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.chain.tx import Transaction
from node.core.crypto import Identity
from node.home.config import NodeConfig, build_config
from node.runtime.admission import Admission
from node.runtime.runtime import Node
from storage.chain import ChainStore
from storage.kv import KeyValueStore, LevelDBStore, MemoryStore
from tests.harness.clock import VirtualClock
from tests.harness.network import MemoryNetwork

CHAIN = "harness-chain"
GENESIS_TIME_MS = 1_700_000_000_000
MAX_STEPS = 10_000


def identities(n: int, seed: bytes = b"harness") -> list[Identity]:
    return [Identity.from_seed((seed + bytes([i])).ljust(32, b"\0")[:32]) for i in range(n)]


def genesis_for(idents: Sequence[Identity]) -> Genesis:
    return Genesis(
        chain_id=CHAIN, genesis_time_ms=GENESIS_TIME_MS,
        validators=tuple(ValidatorInfo(id=v.public_key, name=f"v{i}", address=f"mem:{i}") for i, v in enumerate(idents)),
        institutions=tuple(InstitutionInfo(id=v.public_key, name=f"v{i}") for i, v in enumerate(idents)),
    )


def wire(tx: Transaction) -> list[Any]:
    """A transaction as a client submits it (POST /v1/txs)."""
    return [tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]


def patient_registrations(count: int, seed: bytes = b"patients") -> list[Transaction]:
    """Signed `identity.register` transactions of fresh patient keys."""
    return [Transaction.create(ident, chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "patient"})
            for ident in identities(count, seed)]


class Cluster:
    """N validators on one virtual clock and one memory network (LevelDB under `tmp` if given)."""

    def __init__(self, n: int = 4, *, config: dict[str, Any] | None = None, tmp: Path | None = None) -> None:
        self.clock = VirtualClock()
        self.net = MemoryNetwork(self.clock)
        self.idents = identities(n)
        self.genesis = genesis_for(self.idents)
        self.config: NodeConfig = build_config(config or {}, env={})
        self.nodes = [self._node(i, tmp) for i in range(n)]
        for node in self.nodes:
            self.net.add(node)

    def _node(self, i: int, tmp: Path | None) -> Node:
        kv: KeyValueStore = LevelDBStore(tmp / f"node{i}") if tmp is not None else MemoryStore()
        return Node(config=self.config, genesis=self.genesis, identity=self.idents[i], store=ChainStore(kv),
                    clock=self.clock)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        self.net.deliver()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            node.store.close()

    def id(self, i: int) -> bytes:
        return self.idents[i].public_key

    def node(self, node_id: bytes) -> Node:
        return self.net.nodes[node_id]

    def index(self, node_id: bytes) -> int:
        return self.nodes.index(self.node(node_id))

    def submit(self, i: int, txs: Sequence[Transaction]) -> list[Admission]:
        """Submit `txs` to node i as a client would, and deliver what that sends."""
        out = self.nodes[i].admit([wire(t) for t in txs])
        self.net.deliver()
        return out

    def heights(self) -> list[int]:
        return [node.store.height for node in self.nodes]

    def run_until(self, condition: Callable[[], bool], max_steps: int = MAX_STEPS) -> bool:
        """Deliver frames and fire timers, in time order, until `condition` holds (False after
        `max_steps` timers without it)."""
        for _ in range(max_steps):
            self.net.deliver()
            if condition():
                return True
            if not self.clock.step():
                return condition()
        self.net.deliver()
        return condition()

    def same_chain(self) -> bool:
        """Every node at the same height holds the same last block and state."""
        tips = {(n.store.height, n.store.last_hash, n.store.state_root) for n in self.nodes}
        return len(tips) == 1
