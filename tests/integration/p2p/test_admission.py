"""Who gets a link, and what happens to peers that misbehave on one."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import socket
import struct

import aiohttp
import msgpack
import pytest

from p2p import wire
from p2p.handshake import (
    REASON_BAD_SIGNATURE,
    REASON_BANNED,
    REASON_UNKNOWN_NODE,
    REASON_WRONG_CHAIN,
    REASON_WRONG_GENESIS,
    Authenticated,
    Refused,
)


def logged(caplog, *fragments: str) -> bool:
    return any(all(f in r.getMessage() for f in fragments) for r in caplog.records)


@pytest.mark.parametrize(
    ("outsider", "reason"),
    [
        ({"chain": "medledger-other"}, REASON_WRONG_CHAIN),
        ({"genesis": b"\x43" * 32}, REASON_WRONG_GENESIS),
    ],
)
async def test_a_node_of_another_network_is_refused_and_both_logs_say_why(
    make_net, keys, pulse, caplog, outsider, reason
):
    caplog.set_level(logging.INFO, logger="p2p")
    good, _ = await make_net(keys(0))
    bad, _ = await make_net(keys(1), peers={good.node_id: f"127.0.0.1:{good.port}"}, **outsider)
    good.add_peer(bad.node_id, f"127.0.0.1:{bad.port}")

    # Both check the other's HELLO, so each refuses the other and logs why.
    await pulse.until(lambda: logged(caplog, "refused", short(bad.node_id), reason), "the good node's refusal")
    await pulse.until(lambda: logged(caplog, "refused", short(good.node_id), reason), "the bad node's refusal")
    assert good.connected_peers() == [] and bad.connected_peers() == []
    assert good.stats()["totals"]["handshake_refusals"] >= 1
    # the detail goes to the refusing node's log, e.g. both chain ids
    assert logged(caplog, reason, "theirs", "ours")


async def test_an_unknown_node_is_refused(make_net, keys, pulse, caplog):
    caplog.set_level(logging.INFO, logger="p2p")
    member, _ = await make_net(keys(0))
    stranger, _ = await make_net(keys(1), peers={member.node_id: f"127.0.0.1:{member.port}"})
    await pulse.until(
        lambda: logged(caplog, "refused inbound connection", short(stranger.node_id), REASON_UNKNOWN_NODE),
        "the member to refuse the stranger",
    )
    await pulse.until(lambda: logged(caplog, "refused our outbound", repr(REASON_UNKNOWN_NODE)), "the stranger's log")
    assert member.connected_peers() == [] and stranger.connected_peers() == []


def short(node_id: bytes) -> str:
    return node_id.hex()[:16]


async def test_a_connection_claiming_a_members_id_without_its_key_fails(make_net, keys, raw_peer, caplog):
    caplog.set_level(logging.INFO, logger="p2p")
    member = keys(1)
    node, rec = await make_net(keys(0), allowed=lambda peer: peer == member.public_key)

    class Impostor:
        public_key = member.public_key

        def sign(self, message: bytes) -> bytes:
            return keys(2).sign(message)

    impostor = raw_peer(Impostor())
    # The impostor can check the node's proof (so its own handshake completes)...
    assert await impostor.connect(node.port, node.node_id) == Authenticated(peer_id=node.node_id)
    # ...but the node cannot check the impostor's, and says so before closing.
    refusal = await impostor.next_message()
    assert wire.decode_one(refusal.data, max_frame_bytes=4096) == wire.Refuse(reason=REASON_BAD_SIGNATURE)
    assert (await impostor.next_message()).type is aiohttp.WSMsgType.CLOSE
    assert node.connected_peers() == [] and rec.connected == []
    assert logged(caplog, "refused inbound connection", short(member.public_key), REASON_BAD_SIGNATURE)

    # the real member gets in
    outcome = await raw_peer(member).connect(node.port, node.node_id)
    assert outcome == Authenticated(peer_id=node.node_id)


async def test_a_silent_connection_is_dropped_after_the_handshake_timeout(make_net, keys, fast_limits, caplog):
    caplog.set_level(logging.INFO, logger="p2p")
    node, _ = await make_net(keys(0), limits=dataclasses.replace(fast_limits, handshake_timeout=0.3))
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{node.port}/medledger/p2p/v1") as ws:
            hello = await ws.receive(timeout=5)  # the node's HELLO; we never answer
            assert hello.type is aiohttp.WSMsgType.BINARY
            end = await ws.receive(timeout=5)
            assert end.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert logged(caplog, "handshake timed out")


async def test_dialers_that_give_up_before_the_upgrade_leave_no_errors(make_net, keys, pulse, caplog):
    """What a node resumed after a pause finds in its accept backlog."""
    caplog.set_level(logging.DEBUG)
    node, _ = await make_net(keys(0))
    remotes = []
    for _ in range(10):
        _, writer = await asyncio.open_connection("127.0.0.1", node.port)
        remotes.append("127.0.0.1:%d" % writer.get_extra_info("sockname")[1])
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /medledger/p2p/v1 HTTP/1.1\r\nHost: peer\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset, right behind the request

    def noted(remote: str) -> bool:
        return any(remote in r.getMessage() for r in caplog.records)

    await pulse.until(lambda: all(noted(r) for r in remotes), "the node to deal with all ten")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert node.connected_peers() == []


async def test_connections_beyond_the_handshake_bound_get_a_503(make_net, keys, fast_limits, pulse):
    node, _ = await make_net(keys(0), limits=dataclasses.replace(fast_limits, max_pending_handshakes=2))
    url = f"ws://127.0.0.1:{node.port}/medledger/p2p/v1"
    async with aiohttp.ClientSession() as session:
        silent = [await session.ws_connect(url) for _ in range(2)]  # connected, never say HELLO
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 503
        for ws in silent:
            await ws.close()
        # once the node has let go of them, a newcomer gets its HELLO
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            try:
                ws = await session.ws_connect(url)
                break
            except aiohttp.WSServerHandshakeError:
                assert loop.time() < deadline, "the handshake slots were never freed"
                await asyncio.sleep(0.02)  # poll; the node frees a slot right after the close
        async with ws:
            assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.BINARY


async def test_plain_http_gets_a_400(make_net, keys):
    node, _ = await make_net(keys(0))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{node.port}/medledger/p2p/v1") as response:
            assert response.status == 400


GARBAGE = [
    b"\xc1",
    msgpack.packb({"not": "a frame"}),
    msgpack.packb([16, "kind", b""]),
    msgpack.packb([99, 1, b""]),
    wire.encode(wire.Hello(version=1, chain_id="x", genesis_hash=b"g", node_id=b"\x00" * 32, nonce=b"\x00" * 32)),
]


async def test_garbage_is_discarded_and_penalized_then_the_peer_is_banned(
    make_net, keys, raw_peer, fast_limits, pulse, caplog
):
    caplog.set_level(logging.INFO, logger="p2p")
    # a long window: the score barely drains during the test
    limits = dataclasses.replace(
        fast_limits, penalty_threshold=len(GARBAGE) + 1, penalty_window=3600.0, ban_seconds=0.5
    )
    member = keys(1)
    node, rec = await make_net(keys(0), allowed=lambda peer: peer == member.public_key, limits=limits)
    peer = raw_peer(member)
    assert isinstance(await peer.connect(node.port, node.node_id), Authenticated)

    for junk in GARBAGE:
        await peer.send(junk)
        await peer.send_data(1, b"still heard")  # valid frames keep being delivered
    await pulse.until(lambda: len(rec.frames) == len(GARBAGE), "every valid frame")
    stats = node.stats()["peers"][member.public_key.hex()]
    assert stats["malformed"] == len(GARBAGE) and stats["penalties"] == len(GARBAGE)
    assert stats["connected"] and stats["banned_for"] == 0

    await peer.send(b"\xc1")  # one more: over the threshold
    end = await peer.next_message()
    assert end.type is aiohttp.WSMsgType.CLOSE and b"banned" in end.extra.encode()
    await pulse.until(lambda: rec.disconnected, "the ban to drop the link")
    assert rec.disconnected[0][1].startswith("banned")
    assert logged(caplog, "banning peer", short(member.public_key))

    # while banned it is refused at the handshake
    outcome = await raw_peer(member).connect(node.port, node.node_id)
    assert isinstance(outcome, Refused) and outcome.reason == REASON_BANNED

    # after the ban it is welcome again
    await pulse.until(
        lambda: node.stats()["peers"][member.public_key.hex()]["banned_for"] == 0, "the ban to expire", timeout=3
    )
    assert isinstance(await raw_peer(member).connect(node.port, node.node_id), Authenticated)


async def test_the_node_can_penalize_a_peer_into_a_ban(make_cluster, fast_limits, pulse):
    limits = dataclasses.replace(fast_limits, penalty_threshold=10, ban_seconds=30)
    (a, rec_a), (b, rec_b) = await make_cluster(2, limits=limits)
    a.penalize(b.node_id, "invalid vote signature", weight=4)
    assert a.connected_peers() == [b.node_id]
    a.penalize(b.node_id, "equivocation", weight=6)
    assert a.connected_peers() == []  # at once, not at the next frame
    assert a.send(b.node_id, 1, b"x") is False
    await pulse.until(lambda: rec_b.disconnected, "b to see the link closed")
    stats = a.stats()["peers"][b.node_id.hex()]
    assert stats["penalties"] == 10 and stats["banned_for"] > 25
    assert a.stats()["totals"]["bans"] == 1
    assert rec_a.disconnected == [(b.node_id, "banned (equivocation)")]
    # neither side redials into the ban: b is refused, a does not dial
    await pulse.until(lambda: a.stats()["totals"]["handshake_refusals"] >= 1, "b's redial to be refused")
    assert a.connected_peers() == []


async def test_a_message_over_the_size_limit_closes_the_link_and_costs_a_penalty(
    make_net, keys, raw_peer, fast_limits, pulse
):
    limits = dataclasses.replace(fast_limits, max_frame_bytes=64 * 1024)
    member = keys(1)
    node, rec = await make_net(keys(0), allowed=lambda peer: peer == member.public_key, limits=limits)
    peer = raw_peer(member)
    assert isinstance(await peer.connect(node.port, node.node_id), Authenticated)
    await peer.send_data(1, b"x" * (64 * 1024))
    await pulse.until(lambda: rec.disconnected, "the oversized message to end the link")
    assert rec.disconnected[0][1] == "message too big"
    assert node.stats()["peers"][member.public_key.hex()]["penalties"] == 1


async def test_frames_beyond_the_inbound_rate_are_dropped_and_penalized(
    make_net, keys, raw_peer, fast_limits, pulse
):
    limits = dataclasses.replace(fast_limits, inbound_frames_per_second=1.0, inbound_frames_burst=5)
    member = keys(1)
    node, rec = await make_net(keys(0), allowed=lambda peer: peer == member.public_key, limits=limits)
    peer = raw_peer(member)
    assert isinstance(await peer.connect(node.port, node.node_id), Authenticated)
    batch = b"".join(wire.encode(wire.Data(kind=1, payload=b"%d" % i)) for i in range(8))
    await peer.send(batch)  # eight frames in one message
    await pulse.until(lambda: node.stats()["totals"]["rate_dropped"] == 1, "the rate limit")
    assert [p for _, _, p in rec.frames] == [b"%d" % i for i in range(5)]
    assert node.stats()["peers"][member.public_key.hex()]["penalties"] == 1
