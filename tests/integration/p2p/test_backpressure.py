"""A slow or absent reader costs a bounded queue, then its link; never our memory."""

from __future__ import annotations

import asyncio
import dataclasses

from p2p.handshake import Authenticated

QUEUE_BYTES = 256 * 1024
FRAME = b"x" * 60_000


async def test_a_peer_that_stops_reading_gets_drops_then_loses_its_link(make_net, keys, raw_peer, fast_limits):
    limits = dataclasses.replace(
        fast_limits,
        max_frame_bytes=64 * 1024,
        send_queue_frames=1000,
        send_queue_bytes=QUEUE_BYTES,
        write_timeout=1.0,
        heartbeat_interval=30.0,  # keep the heartbeat out of this test
    )
    reader = keys(1)
    node, rec = await make_net(keys(0), allowed=lambda peer: peer == reader.public_key, limits=limits)
    absent = raw_peer(reader)  # completes the handshake, then never reads
    assert isinstance(await absent.connect(node.port, node.node_id), Authenticated)

    accepted = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    peer_stats = lambda: node.stats()["peers"][reader.public_key.hex()]  # noqa: E731
    while peer_stats()["dropped"] < 20:
        assert loop.time() < deadline, "the queue never filled: is something buffering without bound?"
        if node.send(reader.public_key, 1, FRAME):
            accepted += 1
        assert peer_stats()["queue_bytes"] <= QUEUE_BYTES
        await asyncio.sleep(0)  # a yield so the writer can push into the socket
    # What was accepted sits in kernel buffers, aiohttp's bounded write buffer
    # and our queue; it must not keep growing with what we try to send.
    assert accepted * len(FRAME) < 64 * 1024 * 1024
    assert peer_stats()["connected"]

    # Keep offering frames: once the kernel's buffers are full too, a write
    # blocks longer than write_timeout, which means the peer is not reading.
    deadline = loop.time() + 8
    while not rec.disconnected:
        assert loop.time() < deadline, "the stalled link was never closed"
        node.send(reader.public_key, 1, FRAME)
        await asyncio.sleep(0.01)  # paces the sender; the condition is the event above
    assert rec.disconnected[0][1].startswith("peer not reading")
    assert peer_stats()["queue_bytes"] == 0  # the queue went with the link


async def test_stop_does_not_wait_for_a_peer_that_never_reads(make_net, keys, raw_peer, fast_limits):
    limits = dataclasses.replace(
        fast_limits, max_frame_bytes=64 * 1024, send_queue_bytes=QUEUE_BYTES, heartbeat_interval=30.0
    )
    reader = keys(1)
    node, _ = await make_net(keys(0), allowed=lambda peer: peer == reader.public_key, limits=limits)
    assert isinstance(await raw_peer(reader).connect(node.port, node.node_id), Authenticated)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while node.send(reader.public_key, 1, FRAME):
        assert loop.time() < deadline
        await asyncio.sleep(0)
    started = loop.time()
    await node.stop()
    # a clean close cannot complete (the peer reads nothing): we give up after close_timeout
    assert loop.time() - started < limits.close_timeout + 1.0
