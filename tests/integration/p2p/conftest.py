"""Fixtures for p2p integration tests: real PeerNetworks on 127.0.0.1.

Everything waits on conditions with a deadline (``Pulse.until``), never on
fixed sleeps. Every network a test makes is stopped at teardown, and the
teardown fails the test if any task was left behind.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable

import aiohttp
import pytest

from p2p import P2PLimits, PeerNetwork, RequestRejected, wire
from p2p.handshake import Authenticated, Handshake, HandshakeState, Outgoing, Refused, Role
from p2p.network import WS_PATH
from tests.signing import NaclSigner, NaclVerifier

CHAIN = "medledger-it"
GENESIS = b"\x42" * 32

KIND_BOOM = 900  # on_frame raises for this kind (a simulated node bug)
KIND_REJECT = 901  # on_request refuses with RequestRejected
KIND_CRASH = 902  # on_request raises a plain exception (a simulated node bug)
KIND_GATED = 903  # on_request waits until the recorder's gate opens

FAST = P2PLimits(
    reconnect_base=0.05,
    reconnect_cap=0.4,
    heartbeat_interval=2.0,
    handshake_timeout=2.0,
    connect_timeout=2.0,
    close_timeout=0.5,
)


class Pulse:
    """Lets a test wait for a condition that handler events (or time) make true."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def beat(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        """Return once ``predicate()`` holds; fail the test after ``timeout``.

        Re-checks on every handler event, and every 20 ms for state that
        changes without one (counters, log records).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            waiter = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=min(0.02, remaining))
            finally:
                self._waiters.discard(waiter)
                waiter.cancel()


class Recorder:
    """A FrameHandler that records everything and answers requests."""

    KIND_BOOM = KIND_BOOM
    KIND_REJECT = KIND_REJECT
    KIND_CRASH = KIND_CRASH
    KIND_GATED = KIND_GATED

    def __init__(self, pulse: Pulse) -> None:
        self.pulse = pulse
        self.frames: list[tuple[bytes, int, bytes]] = []
        self.connected: list[bytes] = []
        self.disconnected: list[tuple[bytes, str]] = []
        self.gate = asyncio.Event()

    def on_frame(self, peer_id: bytes, kind: int, payload: bytes) -> None:
        self.frames.append((peer_id, kind, payload))
        self.pulse.beat()
        if kind == KIND_BOOM:
            raise RuntimeError("simulated bug in on_frame")

    async def on_request(self, peer_id: bytes, kind: int, payload: bytes) -> bytes:
        if kind == KIND_REJECT:
            raise RequestRejected("no such block")
        if kind == KIND_CRASH:
            raise RuntimeError("simulated bug in on_request")
        if kind == KIND_GATED:
            await self.gate.wait()
        return b"echo:" + payload

    def on_peer_connected(self, peer_id: bytes) -> None:
        self.connected.append(peer_id)
        self.pulse.beat()

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        self.disconnected.append((peer_id, reason))
        self.pulse.beat()

    def payloads_from(self, peer_id: bytes, kind: int | None = None) -> list[bytes]:
        return [p for (src, k, p) in self.frames if src == peer_id and (kind is None or k == kind)]


class RawPeer:
    """A hand-driven peer: runs the real handshake, then sends whatever the test says.

    It never reads after the handshake unless asked to, which makes it a slow
    reader for free (aiohttp stops reading the socket when its queue fills).
    """

    def __init__(self, session: aiohttp.ClientSession, signer, verifier) -> None:
        self._session = session
        self.signer = signer
        self._verifier = verifier
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(
        self, port: int, expect: bytes, *, chain: str = CHAIN, genesis: bytes = GENESIS
    ) -> Authenticated | Refused | str:
        """Handshake with the node on ``port``; the final event, or how the socket ended."""
        self.ws = await self._session.ws_connect(f"ws://127.0.0.1:{port}{WS_PATH}", max_msg_size=0)
        handshake = Handshake(
            role=Role.DIALER,
            signer=self.signer,
            verifier=self._verifier,
            chain_id=chain,
            genesis_hash=genesis,
            nonce=secrets.token_bytes(32),
            admit=lambda peer: None,
            expected_peer=expect,
        )
        await self.ws.send_bytes(handshake.hello)
        async with asyncio.timeout(5):
            while True:
                msg = await self.ws.receive()
                if msg.type is not aiohttp.WSMsgType.BINARY:
                    return f"socket ended: {msg.type.name} {msg.extra or ''}"
                for event in handshake.receive(msg.data):
                    if isinstance(event, Outgoing):
                        await self.ws.send_bytes(event.data)
                    else:
                        return event
                assert handshake.state is not HandshakeState.REFUSED

    async def send(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def send_data(self, kind: int, payload: bytes) -> None:
        await self.send(wire.encode(wire.Data(kind=kind, payload=payload)))

    async def next_message(self, timeout: float = 5.0) -> aiohttp.WSMessage:
        assert self.ws is not None
        # not receive(timeout=...): aiohttp restarts that timeout at every ping
        async with asyncio.timeout(timeout):
            return await self.ws.receive()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
def pulse() -> Pulse:
    return Pulse()


@pytest.fixture
def keys():
    """``keys(i)`` is the i-th test signer; ids sort in index order."""
    made = sorted((NaclSigner.from_byte(i + 1) for i in range(8)), key=lambda s: s.public_key)
    return lambda i: made[i]


@pytest.fixture
def verifier() -> NaclVerifier:
    return NaclVerifier()


@pytest.fixture
async def make_net(pulse, verifier):
    """``await make_net(signer, ...)`` -> (network, recorder), started; all stopped at teardown."""
    made: list[PeerNetwork] = []

    async def make(
        signer,
        *,
        peers: dict[bytes, str] | None = None,
        chain: str = CHAIN,
        genesis: bytes = GENESIS,
        port: int = 0,
        limits: P2PLimits = FAST,
        allowed=None,
        frame_filter=None,
        ssl_server=None,
        ssl_client=None,
        seed: int = 0,
    ) -> tuple[PeerNetwork, Recorder]:
        recorder = Recorder(pulse)
        net = PeerNetwork(
            signer=signer,
            verifier=verifier,
            chain_id=chain,
            genesis_hash=genesis,
            host="127.0.0.1",
            port=port,
            handler=recorder,
            peers=peers or {},
            allowed=allowed,
            limits=limits,
            rng=random.Random(seed),
            ssl_server=ssl_server,
            ssl_client=ssl_client,
            frame_filter=frame_filter,
        )
        made.append(net)
        await net.start()
        return net, recorder

    yield make
    for net in made:
        await net.stop()
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leftover, f"tasks left behind: {leftover}"


@pytest.fixture
async def make_cluster(make_net, keys, pulse):
    """``await make_cluster(n)`` -> n fully meshed, connected (network, recorder) pairs;
    ``filters`` gives node i the frame filter ``filters[i]``."""

    async def make(n: int, *, filters=None, **kwargs) -> list[tuple[PeerNetwork, Recorder]]:
        nodes = [
            await make_net(keys(i), seed=i, frame_filter=filters[i] if filters else None, **kwargs) for i in range(n)
        ]
        for net, _ in nodes:
            for other, _ in nodes:
                if other is not net:
                    net.add_peer(other.node_id, f"127.0.0.1:{other.port}")
        await pulse.until(
            lambda: all(len(net.connected_peers()) == n - 1 for net, _ in nodes), f"{n} nodes to connect pairwise"
        )
        return nodes

    return make


@pytest.fixture
async def raw_peer(verifier):
    """``raw_peer(signer)`` -> a RawPeer; its session is closed at teardown."""
    async with aiohttp.ClientSession() as session:
        peers: list[RawPeer] = []

        def make(signer) -> RawPeer:
            peer = RawPeer(session, signer, verifier)
            peers.append(peer)
            return peer

        yield make
        for peer in peers:
            await peer.close()


@pytest.fixture
def fast_limits() -> P2PLimits:
    """Short timings so reconnection and shutdown take milliseconds."""
    return FAST
