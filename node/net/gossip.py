"""The node's side of the peer network: what travels between nodes and what a node does with it.

Frames (fire and forget):
    CONSENSUS  one consensus message (consensus.messages encoding); verified once, then the engine
    TXS        a batch of transactions (msgpack array of their canonical encodings), deduplicated
Requests (answered, see protocol.py for the answers and the use of them):
    STATUS     -> [height, last block hash]
    BLOCKS     [from_height, count] -> [[block bytes, commit certificate bytes], ...]

Transactions submitted to this node's API are gossiped in batches: they are buffered and flushed
every few milliseconds or when a batch is full, so there is one frame per batch, not per
transaction. A transaction received from a peer is admitted (its signature verified once) and
not forwarded again: validators form a full mesh, so the first hop reaches everyone.

Block sync: a node that is behind (it restarted, was partitioned, or is an observer) asks its
peers for their height and fetches missing blocks in ranges, checks each block's commit
certificate against the validator set of its height, executes it, stores it, and tells the
engine, which then votes again from the new height.

History (`[storage] keep_history`, node/runtime/history.py): the node's clock asks for one batch
of the blocks before its snapshot at a time; the service runs `fetch_history` as a task, one at
a time, over the same BLOCKS request.

Validator-set changes: after a block that decides one, the node calls `on_validators_changed`;
the service dials every validator of the new set whose address it did not know (or that moved),
so a validator voted in is reached and admitted without a restart (the daemon's `allowed`
callback reads the validator history from the state at each handshake).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

from p2p.errors import P2PError, RequestRejected
from p2p.interfaces import FrameFilter
from p2p.limits import P2PLimits
from p2p.network import PeerNetwork

from node.core.encoding import canonical
from node.net.protocol import (
    GOSSIP_BATCH,
    MAX_FRAME_BYTES,
    REQ_STATUS,
    answer_request,
    decode_tx_batch,
    fetch_history,
    parse_status,
    sync_from,
)
from node.runtime.runtime import Node
from node.runtime.transport import FRAME_CONSENSUS, FRAME_TXS
from node.chain.tx import Transaction

log = logging.getLogger("medledger.network")

ADMIT_CHUNK = 100  # gossiped transactions verified between two turns of the event loop
MAX_PENDING_ADMISSION = 20_000  # gossiped transactions decoded and waiting for verification
GOSSIP_FLUSH_S = 0.005
SYNC_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 5.0
REGOSSIP_INTERVAL_S = 1.0
REGOSSIP_AFTER_S = 2.0  # a waiting transaction is offered again this long after arrival while no block commits
REGOSSIP_BUSY_AFTER_S = 30.0  # ... and only this long after arrival while blocks are committing
QUEUE_PATIENCE = 2  # ... and, while they commit, not before twice the time the queue ahead of it takes to drain


class NetworkService:
    """Bridges a PeerNetwork and a Node (it is the network's FrameHandler and the node's Transport)."""

    def __init__(
        self,
        node: Node,
        *,
        host: str,
        port: int,
        peers: Mapping[bytes, str],
        allowed: Callable[[bytes], bool] | None = None,
        limits: P2PLimits | None = None,
        frame_filter: FrameFilter | None = None,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
    ) -> None:
        self.node = node
        self.net = PeerNetwork(
            signer=node.identity, verifier=node.verifier, chain_id=node.chain_id, genesis_hash=node.genesis.hash(),
            host=host, port=port, handler=self, peers=peers, allowed=allowed,
            limits=limits or P2PLimits(reconnect_cap=5.0), frame_filter=frame_filter,
            ssl_server=ssl_server, ssl_client=ssl_client,
        )
        self._gossip: list[bytes] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._sync_wake = asyncio.Event()
        self._sync_task: asyncio.Task[None] | None = None
        self._regossip_task: asyncio.Task[None] | None = None
        self._admit_task: asyncio.Task[None] | None = None
        self._history_task: asyncio.Task[int] | None = None
        self._to_admit: deque[tuple[bytes, list[Transaction]]] = deque()
        self._to_admit_count = 0
        self._to_admit_hashes: set[bytes] = set()  # decoded, queued, not yet verified
        self._admit_wake = asyncio.Event()
        self._peers: set[bytes] = set()
        self._addresses: dict[bytes, str] = dict(peers)  # whom we dial, as last told
        validators = node.membership.addresses()
        self._extra = {p for p, a in peers.items() if validators.get(p) != a}  # configured, not validators
        # test hook (node/devtools/byzantine.py, --unsafe-test-switches only): sees every incoming frame
        self.observe_frame: Callable[[bytes, int, bytes], None] | None = None
        node.attach_transport(self, on_admitted=self._queue_gossip, on_need_sync=self.request_sync,
                              peer_ids=self.connected_peers, on_validators_changed=self.learn_validators,
                              on_need_history=self.fetch_history)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> int:
        port = await self.net.start()
        self._sync_task = asyncio.create_task(self._sync_loop(), name="medledger-sync")
        self._regossip_task = asyncio.create_task(self._regossip_loop(), name="medledger-regossip")
        self._admit_task = asyncio.create_task(self._admission_loop(), name="medledger-admission")
        return port

    async def stop(self) -> None:
        if self._flush_handle:
            self._flush_handle.cancel()
        admit_task, self._admit_task = self._admit_task, None
        for task in (self._sync_task, self._regossip_task, admit_task, self._history_task):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.net.stop()

    def connected_peers(self) -> list[bytes]:
        return sorted(self._peers)

    def learn_validators(self) -> list[bytes]:
        """Dial the validators (from the committed state) whose address is new, and stop dialing
        those that left the set (a removed validator, a key rotated out: its address is now the
        new key's) unless configured as peers; returns the ids newly dialed."""
        me = self.node.identity.public_key
        current = self.node.membership.addresses()
        for vid in sorted(set(self._addresses) - set(current) - self._extra):
            del self._addresses[vid]
            self.net.remove_peer(vid)
            log.info("validator %s left the set: no longer dialed", vid.hex()[:16])
        added = []
        for vid, address in sorted(current.items()):
            if vid == me or self._addresses.get(vid) == address:
                continue
            try:
                self.net.add_peer(vid, address)
            except ValueError as exc:  # an address the ledger accepted but this host cannot dial
                log.warning("cannot dial validator %s at %r: %s", vid.hex()[:16], address, exc)
                continue
            self._addresses[vid] = address
            added.append(vid)
            log.info("validator %s joins: dialing %s", vid.hex()[:16], address)
        return added

    # -- Transport (used by the runtime) --------------------------------------------------
    def send(self, peer_id: bytes, kind: int, payload: bytes) -> bool:
        return self.net.send(peer_id, kind, payload)

    def broadcast(self, kind: int, payload: bytes, exclude: Sequence[bytes] = ()) -> int:
        return self.net.broadcast(kind, payload, exclude=exclude)

    # -- transaction gossip -----------------------------------------------------------------
    def _queue_gossip(self, txs: Sequence[Transaction]) -> None:
        self._gossip.extend(t.encoded for t in txs)
        if len(self._gossip) >= GOSSIP_BATCH:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(GOSSIP_FLUSH_S, self._flush)

    def _flush(self) -> None:
        if self._flush_handle:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self._gossip:
            batch, self._gossip = self._gossip[:GOSSIP_BATCH], self._gossip[GOSSIP_BATCH:]
            self.net.broadcast(FRAME_TXS, canonical(batch))

    def _on_txs(self, peer_id: bytes, payload: bytes) -> None:
        queued = self._to_admit_hashes
        known = self.node.knows_tx
        values, faults = decode_tx_batch(payload, chain_id=self.node.chain_id,
                                         skip=lambda tx_hash: tx_hash in queued or known(tx_hash))
        for reason in faults:
            self.net.penalize(peer_id, reason)
        if not values:
            return
        if self._admit_task is None:  # not started (or stopping): admit here and now
            self._admit(peer_id, values)
        elif self._to_admit_count + len(values) > MAX_PENDING_ADMISSION:
            # dropped, not lost: whoever holds them offers them again (re-gossip)
            log.debug("admission queue full: %d gossiped transactions dropped", len(values))
        else:
            self._to_admit.append((peer_id, values))
            self._to_admit_count += len(values)
            queued.update(t.hash for t in values)
            self._admit_wake.set()

    def _admit(self, peer_id: bytes, values: list[Transaction]) -> None:
        self._penalize_bad(peer_id, self.node.admit_transactions(values, gossip=False))

    async def _admit_async(self, peer_id: bytes, values: list[Transaction]) -> None:
        self._penalize_bad(peer_id, await self.node.admit_transactions_async(values, gossip=False))

    def _penalize_bad(self, peer_id: bytes, bad: int) -> None:
        if bad:
            self.net.penalize(peer_id, f"{bad} gossiped transactions with bad signatures", weight=bad)

    async def _admission_loop(self) -> None:
        """Verify and admit gossiped transactions a chunk at a time, off the links' read path.

        Consensus messages and transaction batches share a peer's link; verifying a batch of
        500 signatures where it is read held up the votes behind it, and at the start of a burst
        the first block could outlast the view timer while every node verified. Frames are now
        only decoded where they are read; signatures are checked here, with the event loop free
        between chunks for votes, proposals and API requests."""
        while True:
            await self._admit_wake.wait()
            self._admit_wake.clear()
            while self._to_admit:
                peer_id, values = self._to_admit.popleft()
                self._to_admit_count -= len(values)
                for i in range(0, len(values), ADMIT_CHUNK):
                    chunk = values[i : i + ADMIT_CHUNK]
                    await self._admit_async(peer_id, chunk)
                    self._to_admit_hashes.difference_update(t.hash for t in chunk)
                    await asyncio.sleep(0)  # yield to the frames and requests waiting meanwhile

    def net_limit(self) -> int:
        return MAX_FRAME_BYTES

    async def _regossip_loop(self) -> None:
        """Offer peers again what has waited a while: a batch lost on a link that was coming up
        or going down must not leave a transaction known to one validator only (with an idle
        network, only validators that know of work time out, and one alone cannot change view).

        While blocks keep committing, transactions wait because the network is busy, not because
        a peer missed them: offering them again after 2 s then made every node decode two to
        three copies of each one under a burst. So the 2 s rule holds only while no block has
        committed for that long; otherwise a transaction is offered again after 30 s, and not
        before twice the time the queue ahead of it takes to drain at the rate blocks take
        transactions out (under a million-transaction run the pool held 90,000 waiting, 45 s of
        queue: every one was offered again, and offering and skipping the copies took about a tenth of each node)."""
        while True:
            await asyncio.sleep(REGOSSIP_INTERVAL_S)  # a period, not a synchronisation
            self.regossip_once()

    def regossip_once(self) -> int:
        """Offer peers the transactions due again (see `_regossip_loop`); returns how many."""
        idle = self.node.clock.monotonic() - self.node.last_commit_at >= REGOSSIP_AFTER_S
        after = REGOSSIP_AFTER_S if idle else REGOSSIP_BUSY_AFTER_S
        patience = 0.0
        if not idle:  # a transaction behind a long queue is offered again only past twice its turn
            drain = self.node.mempool.drain_per_s()
            patience = QUEUE_PATIENCE / drain if drain > 0 else 0.0
        stale = self.node.mempool.waiting_since(after, GOSSIP_BATCH * 4, patience_per_tx_s=patience)
        for i in range(0, len(stale), GOSSIP_BATCH):
            self.net.broadcast(FRAME_TXS, canonical([t.encoded for t in stale[i : i + GOSSIP_BATCH]]))
        return len(stale)

    # -- FrameHandler -----------------------------------------------------------------------
    def on_frame(self, peer_id: bytes, kind: int, payload: bytes) -> None:
        if self.observe_frame is not None:
            self.observe_frame(peer_id, kind, payload)
        if kind == FRAME_CONSENSUS:
            verdict, reason = self.node.on_consensus_bytes(peer_id, payload)
            if verdict == "invalid":
                self.net.penalize(peer_id, reason)
        elif kind == FRAME_TXS:
            self._on_txs(peer_id, payload)
        else:
            self.net.penalize(peer_id, f"unknown frame kind {kind}")

    async def on_request(self, peer_id: bytes, kind: int, payload: bytes) -> bytes:
        try:
            return answer_request(self.node.store, kind, payload)
        except RequestRejected as exc:
            self.net.penalize(peer_id, str(exc))
            raise

    def on_peer_connected(self, peer_id: bytes) -> None:
        self._peers.add(peer_id)
        log.info("peer connected: %s", peer_id.hex()[:16])
        self._sync_wake.set()
        # A peer that was away missed our gossip: hand it what is still waiting for a block.
        pending = [t.encoded for t in self.node.mempool.take(GOSSIP_BATCH * 20, 32 * 1024 * 1024)]
        for i in range(0, len(pending), GOSSIP_BATCH):
            self.net.send(peer_id, FRAME_TXS, canonical(pending[i : i + GOSSIP_BATCH]))

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        self._peers.discard(peer_id)
        log.info("peer disconnected: %s (%s)", peer_id.hex()[:16], reason)

    # -- block sync ---------------------------------------------------------------------------
    def request_sync(self, height: int | None = None) -> None:
        self._sync_wake.set()

    async def _sync_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._sync_wake.wait(), SYNC_INTERVAL_S)
            except asyncio.TimeoutError:
                pass
            self._sync_wake.clear()
            try:
                await self._sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("block sync failed; retrying")
            finally:
                self.node.syncing = False

    async def _peer_heights(self) -> list[tuple[int, bytes]]:
        peers = self.connected_peers()

        async def ask(pid: bytes) -> tuple[int, bytes] | None:
            try:
                height = parse_status(await self.net.request(pid, REQ_STATUS, b"", REQUEST_TIMEOUT_S))
            except P2PError:
                return None
            return (height, pid) if height is not None else None

        answers = await asyncio.gather(*(ask(p) for p in peers))
        return sorted((a for a in answers if a is not None), reverse=True)

    async def _sync_once(self) -> None:
        heights = await self._peer_heights()
        if heights:
            self.node.metrics.sync_target.set(heights[0][0])
        await sync_from(self.node, heights, self._request, self.net.penalize)

    def fetch_history(self) -> None:
        """Fetch one batch of the blocks before the snapshot, unless one is being fetched."""
        if self._history_task is not None and not self._history_task.done():
            return
        peers = self.connected_peers()
        if peers:
            self._history_task = asyncio.create_task(
                fetch_history(self.node, peers, self._request, self.net.penalize), name="medledger-history")
            self._history_task.add_done_callback(_log_failure)

    def _request(self, peer_id: bytes, kind: int, payload: bytes) -> Awaitable[bytes]:
        return self.net.request(peer_id, kind, payload, REQUEST_TIMEOUT_S)


def _log_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("history fetch failed; retrying at the next batch", exc_info=exc)
