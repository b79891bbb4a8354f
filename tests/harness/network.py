"""An in-memory peer network for runtime tests: each node's Transport puts frames on one queue
that the test pumps; requests (STATUS, BLOCKS) are answered at once from the other node's store.

What a node does with a frame, a request or a sync answer is node.net.protocol's, as over
p2p/; only the IO is replaced. A node can be cut off (`isolate`) and let back (`heal`): frames
to or from it are dropped meanwhile, as a partition would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from p2p.errors import PeerUnavailable, RequestRejected

from node.core.encoding import canonical
from node.chain.tx import Transaction
from node.net.protocol import GOSSIP_BATCH, REQ_STATUS, answer_request, decode_tx_batch, parse_status, sync_from
from node.runtime.clock import Clock
from node.runtime.runtime import Node
from node.runtime.transport import FRAME_CONSENSUS, FRAME_TXS

SYNC_INTERVAL_S = 1.0  # as node.net.gossip: a node looks for missed blocks at least this often


@dataclass(frozen=True, slots=True)
class Frame:
    src: bytes
    dst: bytes
    kind: int
    payload: bytes


def run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never waits on IO (its awaits return at once, or yield to nobody)."""
    try:
        while True:
            coro.send(None)
    except StopIteration:
        pass


class MemoryTransport:
    """One node's end of the memory network (node.runtime.transport.Transport)."""

    def __init__(self, network: MemoryNetwork, node_id: bytes) -> None:
        self.network = network
        self.node_id = node_id

    def send(self, peer_id: bytes, kind: int, payload: bytes) -> bool:
        return self.network.post(self.node_id, peer_id, kind, payload)

    def broadcast(self, kind: int, payload: bytes, exclude: Sequence[bytes] = ()) -> int:
        return sum(self.network.post(self.node_id, p, kind, payload)
                   for p in self.network.peers_of(self.node_id) if p not in exclude)


class MemoryNetwork:
    """Nodes by id, a FIFO queue of frames, and who is cut off."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.nodes: dict[bytes, Node] = {}
        self.transports: dict[bytes, MemoryTransport] = {}
        self.frames: deque[Frame] = deque()
        self.isolated: set[bytes] = set()
        self.penalties: list[tuple[bytes, bytes, str]] = []  # (penalized peer, by node, reason)
        self.delivered = 0

    def add(self, node: Node) -> None:
        node_id = node.identity.public_key
        self.nodes[node_id] = node
        self.transports[node_id] = MemoryTransport(self, node_id)
        node.attach_transport(self.transports[node_id],
                              on_admitted=lambda txs: self._gossip(node_id, txs),
                              on_need_sync=lambda _height: self._sync_soon(node_id),
                              peer_ids=lambda: self.peers_of(node_id))
        self._sync_every_interval(node_id)

    def remove(self, node_id: bytes) -> None:
        """Take a node off the network (its process stopped); frames to it are lost."""
        self.nodes.pop(node_id, None)
        self.transports.pop(node_id, None)

    # -- links --------------------------------------------------------------------------------
    def linked(self, a: bytes, b: bytes) -> bool:
        return a != b and a in self.nodes and b in self.nodes and not {a, b} & self.isolated

    def peers_of(self, node_id: bytes) -> list[bytes]:
        return sorted(p for p in self.nodes if self.linked(node_id, p))

    def isolate(self, node_id: bytes) -> None:
        self.isolated.add(node_id)

    def heal(self, node_id: bytes) -> None:
        """Let `node_id` back in; like a peer connecting, it makes every node look for missed blocks."""
        self.isolated.discard(node_id)
        for other in self.nodes:
            self._sync_soon(other)

    # -- frames -------------------------------------------------------------------------------
    def post(self, src: bytes, dst: bytes, kind: int, payload: bytes) -> bool:
        if not self.linked(src, dst):
            return False
        self.frames.append(Frame(src, dst, kind, payload))
        return True

    def deliver(self, max_frames: int = 100_000) -> int:
        """Deliver queued frames (and those they cause) in order; returns how many."""
        count = 0
        while self.frames and count < max_frames:
            frame = self.frames.popleft()
            count += 1
            if self.linked(frame.src, frame.dst):  # a frame in flight to a node cut off meanwhile is lost
                self._on_frame(frame)
        self.delivered += count
        return count

    def _on_frame(self, frame: Frame) -> None:
        node = self.nodes[frame.dst]
        if frame.kind == FRAME_CONSENSUS:
            verdict, reason = node.on_consensus_bytes(frame.src, frame.payload)
            faults = [reason] if verdict == "invalid" else []
        elif frame.kind == FRAME_TXS:
            txs, faults = decode_tx_batch(frame.payload, chain_id=node.chain_id, skip=node.knows_tx)
            if bad := node.admit_transactions(txs, gossip=False):
                faults.append(f"{bad} gossiped transactions with bad signatures")
        else:
            faults = [f"unknown frame kind {frame.kind}"]
        self.penalties.extend((frame.src, frame.dst, reason) for reason in faults)

    def _gossip(self, node_id: bytes, txs: Sequence[Transaction]) -> None:
        encoded = [t.encoded for t in txs]
        for i in range(0, len(encoded), GOSSIP_BATCH):
            self.transports[node_id].broadcast(FRAME_TXS, canonical(encoded[i : i + GOSSIP_BATCH]))

    # -- requests and block sync --------------------------------------------------------------
    async def request(self, src: bytes, dst: bytes, kind: int, payload: bytes) -> bytes:
        if not self.linked(src, dst):
            raise PeerUnavailable("not connected")
        try:
            return answer_request(self.nodes[dst].store, kind, payload)
        except RequestRejected as exc:
            self.penalties.append((src, dst, str(exc)))
            raise

    def sync(self, node_id: bytes) -> None:
        """One round of node.net.gossip's sync loop for `node_id`: ask peers' heights, fetch what is missing."""
        node = self.nodes[node_id]
        heights = []
        for peer in self.peers_of(node_id):
            height = parse_status(answer_request(self.nodes[peer].store, REQ_STATUS, b""))
            if height is not None:
                heights.append((height, peer))
        heights.sort(reverse=True)

        async def request(peer: bytes, kind: int, payload: bytes) -> bytes:
            return await self.request(node_id, peer, kind, payload)

        def penalize(peer: bytes, reason: str, weight: int) -> None:
            self.penalties.append((peer, node_id, reason))

        try:
            run_now(sync_from(node, heights, request, penalize))
        finally:
            node.syncing = False

    def _sync_soon(self, node_id: bytes) -> None:
        """Wake `node_id`'s sync (off the engine's pump, as the sync task in node.net.gossip)."""
        self.clock.call_later(0, lambda: self.sync(node_id))

    def _sync_every_interval(self, node_id: bytes) -> None:
        def tick() -> None:
            if node_id not in self.nodes:
                return  # the node was taken off the network
            if node_id not in self.isolated:
                self.sync(node_id)
            self.clock.call_later(SYNC_INTERVAL_S, tick)

        self.clock.call_later(SYNC_INTERVAL_S, tick)
