"""A cluster of validators in one process: a genesis for N keys, one Node each on a shared
virtual clock and memory network, and the pump that runs them (`run_until`).

The membership can change as on a real network: `add_node` starts one more node (an observer
until the validators vote its key in), `rekey` restarts a node on its store with a new key
(after `validator.rotate`), and `send` submits a signed transaction of any key with the next
nonce it has not used."""

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
        self.tmp = tmp
        self.nodes = [self._node(i, tmp) for i in range(n)]
        for node in self.nodes:
            self.net.add(node)
        self._nonces: dict[bytes, int] = {}

    def _node(self, i: int, tmp: Path | None, store: ChainStore | None = None) -> Node:
        if store is None:
            kv: KeyValueStore = LevelDBStore(tmp / f"node{i}") if tmp is not None else MemoryStore()
            store = ChainStore(kv)
        return Node(config=self.config, genesis=self.genesis, identity=self.idents[i], store=store, clock=self.clock)

    def add_node(self, identity: Identity | None = None) -> int:
        """Start one more node (its key not in the genesis: it follows the chain by block sync
        until a validator.add takes effect); returns its index."""
        i = len(self.nodes)
        self.idents.append(identity or identities(i + 1)[i])
        node = self._node(i, self.tmp)
        self.nodes.append(node)
        self.net.add(node)
        node.start()
        self.net.deliver()
        return i

    def rekey(self, i: int, identity: Identity) -> Node:
        """Restart node i on its own store with a new key (as an operator does after a rotation)."""
        old = self.nodes[i]
        old.stop()
        self.net.remove(old.identity.public_key)
        self.idents[i] = identity
        node = self._node(i, self.tmp, store=old.store)
        self.nodes[i] = node
        self.net.add(node)
        node.start()
        self.net.deliver()
        return node

    def send(self, i: int, who: Identity, type_: str, body: dict[str, Any]) -> Transaction:
        """Sign `type_` with `who`'s next nonce and submit it to node i."""
        nonce = self._nonces.get(who.public_key, 0) + 1
        self._nonces[who.public_key] = nonce
        tx = Transaction.create(who, chain_id=CHAIN, type=type_, nonce=nonce, body=body)
        [admitted] = self.submit(i, [tx])
        assert admitted.error is None, admitted
        return tx

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
