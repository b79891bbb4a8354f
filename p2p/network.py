"""Authenticated, persistent websocket links between nodes: the IO shell.

Theory of operation
-------------------
Each ``PeerNetwork`` listens on one websocket endpoint and dials every peer it
was given an address for. A connection becomes a *link* once the handshake in
``p2p.handshake`` has authenticated the peer's node id. The pure parts live
elsewhere (``wire`` frames, ``handshake``, the ``links`` table, ``penalties``,
``sendqueue``, ``backoff``, ``ratelimit``); this module owns sockets, tasks and
time, and is deliberately thin: it catches a fixed set of IO errors
(``_IO_ERRORS``) at the boundary and turns each into the end of a link,
reported once as ``on_peer_disconnected(peer_id, reason)``.

One link per pair. Both nodes dial (so a node whose address only one side
knows still gets linked), and a duplicate is resolved by id: the link *dialed
by the lower id* is kept, and the higher id dials a little later to make
duplicates rare. ``p2p.links`` holds these rules as a pure table
(``PeerLinks``, ``DialSchedule``); this module carries out its decisions:
retiring a link means reading it for ``close_timeout`` more, then closing it.

Per peer there is one bounded send queue and one writer task, which drains the
queue in batches (as many whole frames as fit one websocket message) onto the
peer's current link. ``send`` never blocks: a full queue drops the frame and
counts it. Each link has one reader, which decodes messages, checks the
per-peer inbound rate, and hands frames to the ``FrameHandler`` synchronously.

Requests ride on the same link with 64-bit request ids; each pending request is
a future in the peer's table, bounded by ``max_pending_requests``; requests we
serve run as tasks, at most ``max_inflight_requests`` per peer.

Peers that send malformed frames (or whom the node reports with ``penalize``)
accumulate a draining penalty score; at the threshold they are disconnected and
refused, in both directions, for ``ban_seconds``.

Dialers retry with capped exponential backoff and jitter; aiohttp's heartbeat
(ping after ``heartbeat_interval`` of silence, pong due within half of it)
notices a dead or paused peer, after which both sides redial.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from p2p import wire
from p2p.errors import (
    FrameTooLarge,
    LocalUsageError,
    MalformedFrame,
    PeerUnavailable,
    RequestRejected,
    RequestTimeout,
)
from p2p.handshake import (
    REASON_BANNED,
    REASON_UNKNOWN_NODE,
    Authenticated,
    Handshake,
    HandshakeState,
    Outgoing,
    Refused,
    Role,
)
from p2p.interfaces import FrameFilter, FrameHandler, Signer, Verifier
from p2p.limits import P2PLimits
from p2p.links import DialSchedule, PeerLinks
from p2p.penalties import PenaltyBox
from p2p.ratelimit import TokenBucket
from p2p.sendqueue import SendQueue

__all__ = ["PeerNetwork", "WS_PATH", "short_id", "parse_address"]

log = logging.getLogger(__name__)

WS_PATH = "/medledger/p2p/v1"
"""The HTTP path of the peer websocket endpoint."""

# The IO errors that mean "this connection is over". TimeoutError is an OSError,
# ssl.SSLError too. Anything else escaping a link is a bug and is not caught.
_IO_ERRORS: tuple[type[BaseException], ...] = (OSError, aiohttp.ClientError)

_CLOSE_NORMAL = 1000
_CLOSE_GOING_AWAY = 1001
_CLOSE_POLICY = 1008
_CLOSE_MESSAGE_TOO_BIG = 1009
_MAX_CLOSE_MESSAGE = 120  # a websocket close reason must fit 123 bytes
_HANDSHAKE_MAX_BYTES = 4096  # handshake messages are a few hundred bytes
_DROP_LOG_INTERVAL = 10.0
_PENALTY_TABLE_PRUNE_AT = 1024


def short_id(node_id: bytes | None) -> str:
    """The first 16 hex digits of a node id, as used in log lines."""
    return node_id.hex()[:16] if node_id else "?"


def parse_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (IPv6 hosts in brackets) or raise ``ValueError``."""
    if not isinstance(address, str):
        raise ValueError(f"peer address must be a 'host:port' string, got {address!r}")
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"peer address must look like 'host:port', got {address!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"peer port out of range in {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


class _WebSocket(Protocol):
    """What we use of aiohttp's client and server websockets alike."""

    @property
    def closed(self) -> bool: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def receive(self) -> aiohttp.WSMessage: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class _Link:
    """One authenticated websocket to a peer (bookkeeping, no behaviour)."""

    __slots__ = ("ws", "peer_id", "outbound", "remote", "peer", "closing", "closed", "muted")

    def __init__(self, ws: _WebSocket, peer_id: bytes, *, outbound: bool, remote: str) -> None:
        self.ws = ws
        self.peer_id = peer_id
        self.outbound = outbound
        self.remote = remote
        self.peer: _Peer | None = None  # set once attached (whether it is still attached: peer.links)
        self.closing = False  # websocket close started
        self.closed = asyncio.Event()  # websocket close finished
        self.muted = False  # frames still arriving on it are dropped (ban, removal, stop)

    @property
    def direction(self) -> str:
        return "outbound" if self.outbound else "inbound"


class _Peer:
    """Everything we keep about one peer (mutable bookkeeping)."""

    __slots__ = (
        "node_id",
        "address",
        "links",
        "queue",
        "wake",
        "idle",
        "writer",
        "dialer",
        "pending",
        "next_request_id",
        "serving",
        "bucket",
        "sent_frames",
        "received_frames",
        "dropped",
        "malformed",
        "partition_dropped",
        "rate_dropped",
        "busy_rejections",
        "dial_failures",
        "drops_since_log",
        "last_drop_log",
    )

    def __init__(self, local_id: bytes, node_id: bytes, address: str | None, limits: P2PLimits) -> None:
        self.node_id = node_id
        self.address = address
        self.links: PeerLinks[_Link] = PeerLinks(local_id, node_id)
        self.queue = SendQueue(max_frames=limits.send_queue_frames, max_bytes=limits.send_queue_bytes)
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.writer: asyncio.Task[None] | None = None
        self.dialer: asyncio.Task[None] | None = None
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.next_request_id = 1
        self.serving = 0
        self.bucket = TokenBucket(
            rate=limits.inbound_frames_per_second, burst=limits.inbound_frames_burst, now=time.monotonic()
        )
        self.sent_frames = 0
        self.received_frames = 0
        self.dropped = 0
        self.malformed = 0
        self.partition_dropped = 0
        self.rate_dropped = 0
        self.busy_rejections = 0
        self.dial_failures = 0
        self.drops_since_log = 0
        self.last_drop_log = float("-inf")

    @property
    def current(self) -> _Link | None:
        """The link we send on (the link table's choice); None while disconnected."""
        return self.links.current


def _describe_end(msg: aiohttp.WSMessage) -> str:
    """Why a websocket stopped delivering messages, in words for the log."""
    if msg.type is aiohttp.WSMsgType.CLOSE:
        extra = f": {msg.extra}" if msg.extra else ""
        return f"closed by peer (code {msg.data}{extra})"
    if msg.type is aiohttp.WSMsgType.ERROR:
        exc = msg.data
        if isinstance(exc, TimeoutError):  # aiohttp's client and server heartbeats
            return "heartbeat timeout (no pong)"
        if isinstance(exc, aiohttp.WebSocketError) and exc.code == _CLOSE_MESSAGE_TOO_BIG:
            return "message too big"
        return f"websocket error: {exc}"
    if msg.type is aiohttp.WSMsgType.TEXT:
        return "text message"
    return "connection closed"


class PeerNetwork:
    """Authenticated links to a set of peers, moving ``(kind, payload)`` frames.

    All methods must be called from the event loop's thread. ``send``,
    ``broadcast`` and ``penalize`` never block.
    """

    def __init__(
        self,
        *,
        signer: Signer,
        verifier: Verifier,
        chain_id: str,
        genesis_hash: bytes,
        host: str,
        port: int,
        handler: FrameHandler,
        peers: Mapping[bytes, str] = {},  # noqa: B006 - read once, never mutated
        allowed: Callable[[bytes], bool] | None = None,
        limits: P2PLimits = P2PLimits(),  # noqa: B008 - frozen value
        rng: random.Random | None = None,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        frame_filter: FrameFilter | None = None,
    ) -> None:
        node_id = signer.public_key
        if type(node_id) is not bytes or len(node_id) != wire.NODE_ID_BYTES:
            raise ValueError("signer.public_key must be a 32-byte Ed25519 public key")
        # Build a HELLO now so a bad chain id or genesis hash fails here, not per connection.
        wire.our_hello(chain_id=chain_id, genesis_hash=genesis_hash, node_id=node_id, nonce=bytes(wire.NONCE_BYTES))
        if not isinstance(limits, P2PLimits):
            raise TypeError("limits must be a P2PLimits")
        self._signer = signer
        self._verifier = verifier
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._node_id = node_id
        self._host = host
        self._requested_port = port
        self._handler = handler
        self._allowed = allowed
        self._limits = limits
        self._rng = rng if rng is not None else random.Random()
        self._ssl_server = ssl_server
        self._ssl_client = ssl_client
        self._filter = frame_filter  # None: every peer's traffic passes
        self._addresses: dict[bytes, str] = {}
        self._peers: dict[bytes, _Peer] = {}
        for peer_id, address in peers.items():
            self._check_peer(peer_id, address)
            self._addresses[peer_id] = address
        self._penalties = PenaltyBox(
            threshold=limits.penalty_threshold, window=limits.penalty_window, ban_seconds=limits.ban_seconds
        )
        self._state = "new"  # new -> running -> stopping -> stopped
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handshaking: set[_WebSocket] = set()
        self._retired: set[_Link] = set()  # duplicates being read until their grace period ends
        self._pending_inbound = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None
        self._unroutable = 0
        self._refusals = 0
        self._bans = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def node_id(self) -> bytes:
        """Our node id (the signer's public key)."""
        return self._node_id

    @property
    def port(self) -> int | None:
        """The bound port once started, else None."""
        return self._port

    async def start(self) -> int:
        """Bind the listening socket, start dialing peers; return the bound port."""
        if self._state != "new":
            raise LocalUsageError(f"start() called on a network that is {self._state}")
        self._state = "running"
        limits = self._limits
        session = aiohttp.ClientSession(
            # force_close: a refused upgrade (HTTP 503) must not leave an idle
            # keep-alive connection for the peer's server to wait on at shutdown.
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=limits.connect_timeout),
        )
        app = web.Application()
        app.router.add_get(WS_PATH, self._accept)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=limits.close_timeout)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._requested_port, ssl_context=self._ssl_server)
            await site.start()
        except BaseException:
            self._state = "stopped"
            self._stopped.set()
            await runner.cleanup()
            await session.close()
            raise
        self._session = session
        self._runner = runner
        self._site = site
        self._port = site.port
        for peer_id, address in self._addresses.items():
            peer = self._peer_for(peer_id)
            peer.address = address
            self._ensure_dialer(peer)
        log.info(
            "p2p node %s listening on %s:%d (chain %r, %d peers to dial%s)",
            short_id(self._node_id),
            self._host,
            self._port,
            self._chain_id,
            len(self._addresses),
            ", TLS" if self._ssl_server is not None else "",
        )
        return self._port

    async def stop(self) -> None:
        """Close every link and task; safe to call more than once (or concurrently)."""
        if self._state == "new":
            self._state = "stopped"
            self._stopped.set()
        if self._state != "running":
            await self._stopped.wait()
            return
        self._state = "stopping"
        log.info("p2p node %s stopping", short_id(self._node_id))
        if self._site is not None:
            await self._site.stop()  # accept nothing new while we close the rest
        closing: list[Coroutine[Any, Any, None]] = [
            self._close_socket(ws, _CLOSE_GOING_AWAY, "shutting down") for ws in list(self._handshaking)
        ]
        for peer in list(self._peers.values()):
            for link in peer.links.attached():
                link.muted = True
                self._detach(link, "shutting down")
                closing.append(self._close_link_socket(link, _CLOSE_GOING_AWAY, "shutting down"))
        for link in list(self._retired):
            link.muted = True
            closing.append(self._close_link_socket(link, _CLOSE_GOING_AWAY, "shutting down"))
        await asyncio.gather(*closing, return_exceptions=True)
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._state = "stopped"
        self._stopped.set()
        log.info("p2p node %s stopped", short_id(self._node_id))

    # ------------------------------------------------------------------ peers

    def _check_peer(self, peer_id: bytes, address: str) -> None:
        if type(peer_id) is not bytes or len(peer_id) != wire.NODE_ID_BYTES:
            raise ValueError(f"a node id must be 32 bytes, got {peer_id!r}")
        if peer_id == self._node_id:
            raise ValueError("a node cannot be its own peer")
        parse_address(address)

    def add_peer(self, node_id: bytes, address: str) -> None:
        """Dial ``node_id`` at ``address`` (and keep redialing); admit it inbound."""
        self._check_peer(node_id, address)
        self._addresses[node_id] = address
        if self._state == "running":
            peer = self._peer_for(node_id)
            peer.address = address
            self._ensure_dialer(peer)

    def remove_peer(self, node_id: bytes) -> None:
        """Stop dialing ``node_id`` and close its links; it is no longer admitted
        unless an explicit ``allowed`` still admits it."""
        self._addresses.pop(node_id, None)
        peer = self._peers.pop(node_id, None)
        if peer is None:
            return
        peer.address = None
        if peer.dialer is not None:
            peer.dialer.cancel()
        self._disconnect(peer, "peer removed", _CLOSE_NORMAL)

    def connected_peers(self) -> list[bytes]:
        """Ids of the peers with an authenticated link, sorted."""
        return sorted(p.node_id for p in self._peers.values() if p.current is not None)

    def _peer_for(self, node_id: bytes) -> _Peer:
        peer = self._peers.get(node_id)
        if peer is None:
            peer = self._peers[node_id] = _Peer(self._node_id, node_id, self._addresses.get(node_id), self._limits)
        return peer

    def _is_allowed(self, node_id: bytes) -> bool:
        if self._allowed is None:
            return node_id in self._addresses
        try:
            return bool(self._allowed(node_id))
        except Exception:
            log.exception("the allowed() callback raised (a bug in the node); refusing %s", short_id(node_id))
            return False

    # ------------------------------------------------------------------ sending

    def send(self, peer_id: bytes, kind: int, payload: bytes) -> bool:
        """Queue one frame for ``peer_id``; False if not connected or its queue is full."""
        frame = wire.encode_data(kind, payload, max_frame_bytes=self._limits.max_frame_bytes)
        peer = self._peers.get(peer_id)
        if peer is None or peer.current is None:
            self._unroutable += 1
            return False
        return self._enqueue(peer, frame)

    def broadcast(self, kind: int, payload: bytes, exclude: Collection[bytes] = ()) -> int:
        """Queue one frame for every connected peer not in ``exclude``; return how many took it."""
        frame = wire.encode_data(kind, payload, max_frame_bytes=self._limits.max_frame_bytes)
        queued = 0
        for peer in self._peers.values():
            if peer.current is None or peer.node_id in exclude:
                continue
            if self._enqueue(peer, frame):
                queued += 1
        return queued

    async def request(self, peer_id: bytes, kind: int, payload: bytes, timeout: float) -> bytes:
        """Send a request to ``peer_id`` and wait for its answer.

        Raises ``PeerUnavailable`` (not connected, queue full, too many pending
        requests, link lost), ``RequestTimeout`` or ``RequestRejected`` (the
        peer answered with an error).
        """
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        peer = self._peers.get(peer_id)
        if peer is None or peer.current is None:
            raise PeerUnavailable(f"peer {short_id(peer_id)} is not connected")
        if len(peer.pending) >= self._limits.max_pending_requests:
            raise PeerUnavailable(f"too many pending requests to peer {short_id(peer_id)}")
        request_id = peer.next_request_id
        peer.next_request_id += 1
        frame = wire.encode_request(request_id, kind, payload, max_frame_bytes=self._limits.max_frame_bytes)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        peer.pending[request_id] = future
        try:
            if not self._enqueue(peer, frame):
                raise PeerUnavailable(f"send queue to peer {short_id(peer_id)} is full")
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise RequestTimeout(
                f"peer {short_id(peer_id)} did not answer a request of kind {kind} within {timeout} s"
            ) from None
        finally:
            peer.pending.pop(request_id, None)

    def _enqueue(self, peer: _Peer, frame: bytes) -> bool:
        if peer.current is None:
            return False
        if self._filter is not None and not self._filter.passes(peer.node_id):
            peer.partition_dropped += 1
            return True  # lost "in the network", as a real partition would
        if not peer.queue.put(frame):
            self._note_drop(peer)
            return False
        peer.wake.set()
        return True

    def _note_drop(self, peer: _Peer) -> None:
        peer.dropped += 1
        peer.drops_since_log += 1
        now = time.monotonic()
        if now - peer.last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning(
                "send queue to peer %s is full (%d frames, %d bytes): dropped %d frame(s)",
                short_id(peer.node_id),
                len(peer.queue),
                peer.queue.nbytes,
                peer.drops_since_log,
            )
            peer.last_drop_log = now
            peer.drops_since_log = 0

    async def _write_loop(self, peer: _Peer) -> None:
        """The peer's only writer: drain its queue onto its current link, batched."""
        queue = peer.queue
        max_bytes = self._limits.max_frame_bytes
        write_timeout = self._limits.write_timeout
        while True:
            link = peer.current
            if link is None:
                return
            if not queue:
                peer.wake.clear()
                await peer.wake.wait()
                continue
            batch = queue.take_batch(max_bytes)
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            try:
                async with asyncio.timeout(write_timeout):
                    await link.ws.send_bytes(data)
            except TimeoutError:
                self._end_link(link, f"peer not reading (a write blocked for {write_timeout} s)", _CLOSE_POLICY)
            except _IO_ERRORS as exc:
                self._end_link(link, f"write failed: {exc}", _CLOSE_GOING_AWAY)
            else:
                peer.sent_frames += len(batch)

    # ------------------------------------------------------------------ penalties

    def penalize(self, peer_id: bytes, reason: str, weight: int = 1) -> None:
        """Report an invalid message from ``peer_id``; past the threshold it is banned."""
        self._penalize(peer_id, reason, weight)

    def _penalize(self, peer_id: bytes, reason: str, weight: int) -> None:
        now = time.monotonic()
        banned = self._penalties.penalize(peer_id, weight, reason, now=now)
        if len(self._penalties) > _PENALTY_TABLE_PRUNE_AT:
            self._penalties.prune(now=now)
        log.info(
            "peer %s penalized +%d (score %d/%d): %s",
            short_id(peer_id),
            weight,
            self._penalties.score(peer_id, now=now),
            self._penalties.threshold,
            reason,
        )
        if not banned:
            return
        self._bans += 1
        log.warning(
            "banning peer %s for %.0f s: its penalty score reached %d (last: %s)",
            short_id(peer_id),
            self._limits.ban_seconds,
            self._penalties.threshold,
            reason,
        )
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._disconnect(peer, f"banned ({reason})", _CLOSE_POLICY)

    def _disconnect(self, peer: _Peer, reason: str, code: int) -> None:
        """Drop every link of ``peer`` now; the sockets close in the background."""
        for link in peer.links.attached():
            link.muted = True
            self._end_link(link, reason, code)
        for link in [r for r in self._retired if r.peer is peer]:
            link.muted = True
            self._run(self._close_link_socket(link, code, reason), name="p2p-close")

    # ------------------------------------------------------------------ statistics

    def stats(self) -> dict[str, Any]:
        """Counters per peer (keyed by hex node id) and totals, JSON-ready."""
        now = time.monotonic()
        peers: dict[str, dict[str, Any]] = {}
        for peer in self._peers.values():
            standing = self._penalties.standing(peer.node_id)
            current = peer.current
            peers[peer.node_id.hex()] = {
                "connected": current is not None,
                "direction": current.direction if current is not None else None,
                "links": len(peer.links),
                "address": peer.address,
                "queue_frames": len(peer.queue),
                "queue_bytes": peer.queue.nbytes,
                "sent_frames": peer.sent_frames,
                "received_frames": peer.received_frames,
                "dropped": peer.dropped,
                "partition_dropped": peer.partition_dropped,
                "rate_dropped": peer.rate_dropped,
                "malformed": peer.malformed,
                "busy_rejections": peer.busy_rejections,
                "dial_failures": peer.dial_failures,
                "pending_requests": len(peer.pending),
                "serving_requests": peer.serving,
                "penalties": standing.total_weight if standing is not None else 0,
                "penalty_score": self._penalties.score(peer.node_id, now=now),
                # rounded up, so 0 means "not banned"
                "banned_for": math.ceil(self._penalties.banned_for(peer.node_id, now=now) * 10) / 10,
            }
        totals: dict[str, Any] = {
            key: sum(p[key] for p in peers.values())
            for key in (
                "links",
                "queue_frames",
                "queue_bytes",
                "sent_frames",
                "received_frames",
                "dropped",
                "partition_dropped",
                "rate_dropped",
                "malformed",
                "busy_rejections",
                "penalties",
            )
        }
        totals["connected"] = sum(1 for p in peers.values() if p["connected"])
        totals["unroutable"] = self._unroutable
        totals["handshake_refusals"] = self._refusals
        totals["bans"] = self._bans
        return {"node_id": self._node_id.hex(), "port": self._port, "peers": peers, "totals": totals}

    # ------------------------------------------------------------------ tasks

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` as a task this network keeps (in `_tasks`, until it ends) and cancels on stop."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _run(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """`_spawn` for work nobody waits on (closing a socket, serving a request)."""
        _ = self._spawn(coro, name)  # kept in _tasks until it ends; a crash is logged by _task_done

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("p2p task %s crashed (a bug)", task.get_name(), exc_info=exc)

    def _ensure_dialer(self, peer: _Peer) -> None:
        if self._state == "running" and peer.address is not None and (peer.dialer is None or peer.dialer.done()):
            peer.dialer = self._spawn(self._dial_loop(peer), name=f"p2p-dial-{short_id(peer.node_id)}")

    # ------------------------------------------------------------------ dialing

    def _url(self, address: str) -> str:
        host, port = parse_address(address)
        if ":" in host:
            host = f"[{host}]"
        scheme = "wss" if self._ssl_client is not None else "ws"
        return f"{scheme}://{host}:{port}{WS_PATH}"

    async def _dial_loop(self, peer: _Peer) -> None:
        """Keep one link to ``peer``: dial whenever there is none, when the schedule says."""
        schedule = DialSchedule(
            local_id=self._node_id,
            peer_id=peer.node_id,
            base=self._limits.reconnect_base,
            cap=self._limits.reconnect_cap,
            rng=self._rng,
        )
        while self._state == "running" and peer.address is not None:
            await peer.idle.wait()
            delay = schedule.take_delay()
            if delay > 0:
                await asyncio.sleep(delay)  # backoff: a deliberate pause, not synchronisation
                continue
            banned_for = self._penalties.banned_for(peer.node_id, now=time.monotonic())
            if banned_for > 0:
                await asyncio.sleep(banned_for)
                continue
            schedule.dialed(await self._dial_once(peer))

    async def _dial_once(self, peer: _Peer) -> bool:
        """One attempt: connect, authenticate, then read until the link ends.

        True if a link was established (so the backoff starts over).
        """
        address = peer.address
        assert address is not None and self._session is not None
        limits = self._limits
        try:
            async with asyncio.timeout(limits.connect_timeout):
                ws = await self._session.ws_connect(
                    self._url(address),
                    max_msg_size=limits.max_frame_bytes,
                    heartbeat=limits.heartbeat_interval,
                    autoping=True,
                    compress=0,
                    ssl=self._ssl_client if self._ssl_client is not None else True,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=limits.close_timeout),
                )
        except _IO_ERRORS as exc:
            peer.dial_failures += 1
            log.log(
                logging.INFO if peer.dial_failures == 1 else logging.DEBUG,
                "cannot reach peer %s at %s: %s (will retry with backoff)",
                short_id(peer.node_id),
                address,
                str(exc) or type(exc).__name__,
            )
            return False
        try:
            peer_id = await self._handshake(ws, role=Role.DIALER, expected=peer.node_id, remote=address)
            if peer_id is None:
                return False
            await self._run_link(_Link(ws, peer_id, outbound=True, remote=address))
            return True
        finally:
            if not ws.closed:
                await self._close_socket(ws, _CLOSE_GOING_AWAY, "closing")

    # ------------------------------------------------------------------ accepting

    async def _accept(self, request: web.Request) -> web.StreamResponse:
        """The websocket endpoint: authenticate, then read until the link ends."""
        if self._state != "running":
            return web.Response(status=503, text="shutting down")
        if self._pending_inbound >= self._limits.max_pending_handshakes:
            log.warning("too many connections in handshake; refusing one from %s", request.remote)
            return web.Response(status=503, text="busy")
        limits = self._limits
        ws = web.WebSocketResponse(
            max_msg_size=limits.max_frame_bytes,
            heartbeat=limits.heartbeat_interval,
            autoping=True,
            compress=False,
            timeout=limits.close_timeout,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="this endpoint speaks websocket only")
        peername = request.transport.get_extra_info("peername") if request.transport is not None else None
        remote = f"{peername[0]}:{peername[1]}" if peername else str(request.remote)
        self._pending_inbound += 1
        try:
            try:
                await ws.prepare(request)
            except _IO_ERRORS as exc:
                # Typically a dialer that gave up while we were not looking (a
                # backlog after a pause). An unprepared websocket must not be
                # returned to aiohttp, so hand it a plain response to discard.
                log.debug("inbound connection from %s closed before the upgrade: %s", remote, exc)
                return web.Response(status=400, text="connection lost")
            peer_id = await self._handshake(ws, role=Role.ACCEPTOR, expected=None, remote=remote)
        finally:
            self._pending_inbound -= 1
        if peer_id is not None:
            await self._run_link(_Link(ws, peer_id, outbound=False, remote=remote))
        return ws

    # ------------------------------------------------------------------ handshake

    def _admit(self, role: Role) -> Callable[[bytes], str | None]:
        def admit(peer_id: bytes) -> str | None:
            if role is Role.ACCEPTOR and not self._is_allowed(peer_id):
                return REASON_UNKNOWN_NODE
            if self._penalties.banned_for(peer_id, now=time.monotonic()) > 0:
                return REASON_BANNED
            return None

        return admit

    async def _handshake(
        self, ws: _WebSocket, *, role: Role, expected: bytes | None, remote: str
    ) -> bytes | None:
        """Run the handshake on a fresh websocket; the peer's id, or None (closed)."""
        handshake = Handshake(
            role=role,
            signer=self._signer,
            verifier=self._verifier,
            chain_id=self._chain_id,
            genesis_hash=self._genesis_hash,
            nonce=secrets.token_bytes(wire.NONCE_BYTES),
            admit=self._admit(role),
            expected_peer=expected,
            max_frame_bytes=_HANDSHAKE_MAX_BYTES,
        )
        direction = "outbound" if role is Role.DIALER else "inbound"
        self._handshaking.add(ws)
        code, reason = _CLOSE_POLICY, "handshake failed"
        try:
            async with asyncio.timeout(self._limits.handshake_timeout):
                await ws.send_bytes(handshake.hello)
                while True:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.BINARY:
                        log.info(
                            "%s connection %s (claiming %s) ended during the handshake: %s",
                            direction,
                            remote,
                            short_id(handshake.peer_id),
                            _describe_end(msg),
                        )
                        break
                    for event in handshake.receive(msg.data):
                        if isinstance(event, Outgoing):
                            await ws.send_bytes(event.data)
                        elif isinstance(event, Authenticated):
                            return event.peer_id
                        elif isinstance(event, Refused):
                            self._log_refusal(event, direction, remote)
                            reason = event.reason
                    if handshake.state is HandshakeState.REFUSED:
                        break
        except TimeoutError:
            self._refusals += 1
            log.warning(
                "%s connection %s (claiming %s): handshake timed out after %.1f s",
                direction,
                remote,
                short_id(handshake.peer_id),
                self._limits.handshake_timeout,
            )
        except _IO_ERRORS as exc:
            log.info("%s connection %s failed during the handshake: %s", direction, remote, exc)
        finally:
            self._handshaking.discard(ws)
        await self._close_socket(ws, code, reason)
        return None

    def _log_refusal(self, event: Refused, direction: str, remote: str) -> None:
        self._refusals += 1
        if event.by_peer:
            log.warning(
                "peer %s at %s refused our %s connection: %r",
                short_id(event.peer_id),
                remote,
                direction,
                event.reason,
            )
        else:
            log.warning(
                "refused %s connection %s claiming node %s: %s (%s)",
                direction,
                remote,
                short_id(event.peer_id),
                event.reason,
                event.detail,
            )

    # ------------------------------------------------------------------ links

    async def _run_link(self, link: _Link) -> None:
        """Attach a freshly authenticated link and read it until it ends, or close it if refused."""
        refusal = self._attach(link)
        if refusal is None:
            await self._read_link(link)
        else:
            await self._close_link_socket(link, _CLOSE_POLICY, refusal)

    def _attach(self, link: _Link) -> str | None:
        """Make a fresh link one of its peer's and carry out what the link table decides.

        None if the caller should read it (even a duplicate is read until its
        retirement closes it); else why it was refused (shutting down,
        banned), for the caller to close it with.
        """
        if self._state != "running":
            return "shutting down"
        if self._penalties.banned_for(link.peer_id, now=time.monotonic()) > 0:
            return REASON_BANNED
        peer = self._peer_for(link.peer_id)
        link.peer = peer
        decision = peer.links.attach(link)
        for retire in decision.retire:
            self._retire(retire.link, retire.reason)
        if decision.connected:
            peer.idle.clear()
            peer.dial_failures = 0
            log.info("connected to peer %s (%s, %s)", short_id(peer.node_id), link.direction, link.remote)
            if peer.writer is None or peer.writer.done():
                peer.writer = self._spawn(self._write_loop(peer), name=f"p2p-write-{short_id(peer.node_id)}")
            try:
                self._handler.on_peer_connected(peer.node_id)
            except Exception:
                log.exception("FrameHandler.on_peer_connected raised (a bug in the node)")
        else:
            log.debug(
                "peer %s: %s link from %s added, sending on the %s one",
                short_id(peer.node_id),
                link.direction,
                link.remote,
                decision.current.direction,
            )
        return None

    def _retire(self, link: _Link, reason: str) -> None:
        """Close a link the table retired after ``close_timeout``; its peer stays connected (no events).

        Until then the link is still read: the peer may have written frames on
        it before it learned of the switch, and a websocket close discards
        whatever arrives after it starts.
        """
        self._retired.add(link)
        self._run(self._close_retired(link, reason), name="p2p-retire")

    async def _close_retired(self, link: _Link, reason: str) -> None:
        await asyncio.sleep(self._limits.close_timeout)  # a grace period, not synchronisation
        await self._close_link_socket(link, _CLOSE_NORMAL, reason)

    def _detach(self, link: _Link, reason: str) -> None:
        """Remove a link from its peer; if the link table says that disconnects the peer, tell the node."""
        peer = link.peer
        if peer is None or not peer.links.detach(link):
            return
        peer.dropped += peer.queue.clear()
        unavailable = f"link to peer {short_id(peer.node_id)} lost: {reason}"
        for future in peer.pending.values():
            if not future.done():
                future.set_exception(PeerUnavailable(unavailable))
        peer.pending.clear()
        peer.idle.set()
        peer.wake.set()  # lets the writer see there is no link and exit
        log.info("disconnected from peer %s (%s, %s): %s", short_id(peer.node_id), link.direction, link.remote, reason)
        try:
            self._handler.on_peer_disconnected(peer.node_id, reason)
        except Exception:
            log.exception("FrameHandler.on_peer_disconnected raised (a bug in the node)")

    def _end_link(self, link: _Link, reason: str, code: int) -> None:
        """Detach now, close the socket in the background."""
        self._detach(link, reason)
        self._run(self._close_link_socket(link, code, reason), name="p2p-close")

    async def _read_link(self, link: _Link) -> None:
        """Read one link until it ends; every way it can end is reported once."""
        reason = "connection closed"
        ws = link.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self._on_message(link, msg.data)
                    continue
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._penalize(link.peer_id, "sent a text websocket message", 1)
                    continue
                reason = _describe_end(msg)
                if reason == "message too big":
                    self._penalize(link.peer_id, f"sent a message over {self._limits.max_frame_bytes} bytes", 1)
                break
        except _IO_ERRORS as exc:
            reason = f"connection error: {exc}"
        finally:
            self._detach(link, reason)
            await self._close_link_socket(link, _CLOSE_NORMAL, reason)

    def _on_message(self, link: _Link, data: bytes) -> None:
        """Decode one websocket message and dispatch its frames."""
        peer = link.peer
        if peer is None or link.muted:
            return
        if self._filter is not None and not self._filter.passes(peer.node_id):
            peer.partition_dropped += _count_frames(data, self._limits.max_frame_bytes)
            return
        now = time.monotonic()
        bucket = peer.bucket
        handler = self._handler
        peer_id = peer.node_id
        try:
            for frame in wire.decode_stream(data, max_frame_bytes=self._limits.max_frame_bytes):
                if link.muted:
                    return
                if not bucket.take(1, now=now):
                    peer.rate_dropped += 1
                    self._penalize(
                        peer_id,
                        f"exceeded {self._limits.inbound_frames_per_second:g} frames/s; rest of message dropped",
                        1,
                    )
                    return
                peer.received_frames += 1
                if isinstance(frame, wire.Data):
                    try:
                        handler.on_frame(peer_id, frame.kind, frame.payload)
                    except Exception:
                        log.exception("FrameHandler.on_frame raised (a bug in the node); the link carries on")
                elif isinstance(frame, wire.Request):
                    self._on_request(peer, frame)
                elif isinstance(frame, wire.Response):
                    self._on_response(peer, frame.request_id, frame.payload)
                elif isinstance(frame, wire.ErrorResponse):
                    self._on_response(peer, frame.request_id, RequestRejected(frame.reason))
                elif isinstance(frame, wire.Refuse):
                    # It did not accept our AUTH (our key and signer disagree?) after we
                    # accepted its own: not its fault, so no penalty.
                    log.warning("peer %s refused us after the handshake: %r", short_id(peer_id), frame.reason)
                    self._end_link(link, f"refused by peer: {frame.reason}", _CLOSE_NORMAL)
                    return
                else:
                    raise MalformedFrame(f"{type(frame).__name__} frame after the handshake")
        except MalformedFrame as exc:
            peer.malformed += 1
            self._penalize(peer_id, f"malformed frame: {exc}", 1)

    # ------------------------------------------------------------------ requests

    def _on_request(self, peer: _Peer, frame: wire.Request) -> None:
        if peer.serving >= self._limits.max_inflight_requests:
            peer.busy_rejections += 1
            self._enqueue(peer, wire.encode_error(frame.request_id, "busy"))
            return
        peer.serving += 1
        self._run(self._serve(peer, frame), name=f"p2p-serve-{short_id(peer.node_id)}")

    async def _serve(self, peer: _Peer, frame: wire.Request) -> None:
        try:
            try:
                result = await self._handler.on_request(peer.node_id, frame.kind, frame.payload)
                if not isinstance(result, (bytes, bytearray, memoryview)):
                    raise TypeError(f"on_request must return bytes, returned {type(result).__name__}")
                data = wire.encode_response(frame.request_id, result, max_frame_bytes=self._limits.max_frame_bytes)
            except RequestRejected as exc:
                data = wire.encode_error(frame.request_id, exc.reason)
            except FrameTooLarge:
                log.exception("the answer to a request of kind %d is too large to send (a bug in the node)", frame.kind)
                data = wire.encode_error(frame.request_id, "response too large")
            except Exception:
                log.exception("FrameHandler.on_request raised (a bug in the node)")
                data = wire.encode_error(frame.request_id, "internal error")
        finally:
            peer.serving -= 1
        self._enqueue(peer, data)

    def _on_response(self, peer: _Peer, request_id: int, answer: bytes | RequestRejected) -> None:
        """Settle the pending request `request_id`: with the payload, or with the peer's refusal."""
        future = peer.pending.pop(request_id, None)
        if future is None or future.done():
            return  # we stopped waiting (timeout); not the peer's fault
        if isinstance(answer, RequestRejected):
            future.set_exception(answer)
        else:
            future.set_result(answer)

    # ------------------------------------------------------------------ closing

    async def _close_link_socket(self, link: _Link, code: int, reason: str) -> None:
        """Close a link's websocket once; later callers wait for that close to finish."""
        if link.closing:
            await link.closed.wait()
            return
        link.closing = True
        try:
            await self._close_socket(link.ws, code, reason)
        finally:
            link.closed.set()
            self._retired.discard(link)

    async def _close_socket(self, ws: _WebSocket, code: int, reason: str) -> None:
        """Close cleanly if the peer cooperates within ``close_timeout``, else abort."""
        try:
            async with asyncio.timeout(self._limits.close_timeout):
                await ws.close(code=code, message=reason.encode("utf-8")[:_MAX_CLOSE_MESSAGE])
        except _IO_ERRORS:
            _abort(ws)


def _count_frames(data: bytes, max_frame_bytes: int) -> int:
    """How many frames a message holds (for the frame filter's counters)."""
    count = 0
    with contextlib.suppress(MalformedFrame):
        for _ in wire.decode_stream(data, max_frame_bytes=max_frame_bytes):
            count += 1
    return max(count, 1)


def _abort(ws: _WebSocket) -> None:
    """Tear a connection down without waiting for buffered data to drain.

    A graceful close waits for the send buffer to empty, which never happens if
    the peer stopped reading; shutting the socket down makes the transport fail
    and release it at once.
    """
    sock = ws.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
