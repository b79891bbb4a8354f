"""Links between real PeerNetworks on 127.0.0.1: connect, exchange, reconnect."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from p2p import FrameTooLarge, PeerNetwork, PeerUnavailable, RequestRejected, RequestTimeout
from p2p.handshake import Authenticated


async def test_four_nodes_link_pairwise_with_exactly_one_link_each(make_cluster, fast_limits, pulse):
    # A tiny reconnect_base removes the lower id's head start: pairs dial both
    # ways at once, so most runs have duplicates to resolve (the next test
    # makes one deterministically).
    nodes = await make_cluster(4, limits=dataclasses.replace(fast_limits, reconnect_base=0.001))
    ids = sorted(net.node_id for net, _ in nodes)
    for net, _ in nodes:
        assert net.connected_peers() == [i for i in ids if i != net.node_id]

    def one_link_per_pair() -> bool:
        return all(peer["links"] == 1 for net, _ in nodes for peer in net.stats()["peers"].values())

    await pulse.until(one_link_per_pair, "duplicate links to be closed")
    # Both ends agree on which link survived: the one dialed by the lower id.
    for net, _ in nodes:
        for peer_hex, peer in net.stats()["peers"].items():
            dialed_by_us = net.node_id < bytes.fromhex(peer_hex)
            assert peer["direction"] == ("outbound" if dialed_by_us else "inbound")
    # and the node saw none of it: one connected event per peer, no flapping
    for net, rec in nodes:
        assert sorted(rec.connected) == net.connected_peers()
        assert rec.disconnected == []


async def test_a_duplicate_link_is_resolved_in_favour_of_the_lower_ids_dial(make_net, keys, raw_peer, pulse):
    lower, higher = keys(0), keys(1)
    assert lower.public_key < higher.public_key
    # Only the higher node knows an address, so the first link is its dial.
    a, rec_a = await make_net(lower, allowed=lambda peer: peer == higher.public_key)
    b, rec_b = await make_net(higher, peers={a.node_id: f"127.0.0.1:{a.port}"})
    await pulse.until(lambda: b.connected_peers() == [a.node_id], "the higher id's link")
    assert b.stats()["peers"][a.node_id.hex()]["direction"] == "outbound"

    # Now the lower id dials too (played by a raw peer holding its key).
    assert isinstance(await raw_peer(lower).connect(b.port, b.node_id), Authenticated)
    await pulse.until(lambda: b.stats()["peers"][a.node_id.hex()]["direction"] == "inbound", "b to switch")
    # b no longer sends on its own dial but still reads it for a grace period,
    # so what a wrote there before learning of the switch is not lost.
    assert a.send(b.node_id, 4, b"in flight on the retired link")
    await pulse.until(lambda: rec_b.frames, "the frame sent on the retired link")
    assert rec_b.frames == [(a.node_id, 4, b"in flight on the retired link")]
    await pulse.until(lambda: rec_a.disconnected, "b to close its own, non-preferred link")
    stats = b.stats()["peers"][a.node_id.hex()]
    assert stats["links"] == 1 and stats["direction"] == "inbound"
    assert rec_b.disconnected == [] and rec_b.connected == [a.node_id]  # seamless for b's node
    assert rec_a.disconnected == [(b.node_id, "closed by peer (code 1000: duplicate link)")]


async def test_frames_arrive_in_order_from_every_peer(make_cluster, pulse):
    nodes = await make_cluster(3)
    for net, _ in nodes:
        for other, _ in nodes:
            if other is not net:
                for i in range(50):
                    assert net.send(other.node_id, 7, b"%d" % i)

    def all_arrived() -> bool:
        return all(len(rec.frames) == 100 for _, rec in nodes)

    await pulse.until(all_arrived, "150 frames each way")
    for net, rec in nodes:
        for other, _ in nodes:
            if other is not net:
                assert rec.payloads_from(other.node_id, 7) == [b"%d" % i for i in range(50)]


async def test_broadcast_reaches_everyone_but_the_excluded(make_cluster, pulse):
    (a, _), (b, rec_b), (c, rec_c), (d, rec_d) = await make_cluster(4)
    assert a.broadcast(3, b"block", exclude={d.node_id}) == 2
    await pulse.until(lambda: rec_b.frames and rec_c.frames, "the broadcast")
    assert rec_b.frames == rec_c.frames == [(a.node_id, 3, b"block")]
    assert rec_d.frames == []


async def test_requests_get_answers_errors_and_timeouts(make_cluster):
    (a, _), (b, rec_b) = await make_cluster(2)
    assert await a.request(b.node_id, 1, b"ping", timeout=2) == b"echo:ping"
    assert await b.request(a.node_id, 1, b"pong", timeout=2) == b"echo:pong"

    with pytest.raises(RequestRejected, match="no such block"):
        await a.request(b.node_id, rec_b.KIND_REJECT, b"", timeout=2)
    with pytest.raises(RequestRejected, match="internal error"):
        await a.request(b.node_id, rec_b.KIND_CRASH, b"", timeout=2)
    with pytest.raises(RequestTimeout):
        await a.request(b.node_id, rec_b.KIND_GATED, b"", timeout=0.2)
    rec_b.gate.set()  # the late answer is dropped quietly
    assert await a.request(b.node_id, rec_b.KIND_GATED, b"again", timeout=2) == b"echo:again"
    assert a.stats()["peers"][b.node_id.hex()]["pending_requests"] == 0


async def test_concurrent_requests_are_matched_by_id(make_cluster):
    (a, _), (b, _) = await make_cluster(2)
    answers = await asyncio.gather(*(a.request(b.node_id, 1, b"%d" % i, timeout=5) for i in range(30)))
    assert answers == [b"echo:%d" % i for i in range(30)]


async def test_requests_beyond_the_serving_bound_are_answered_busy(make_cluster, fast_limits, pulse):
    limits = dataclasses.replace(fast_limits, max_inflight_requests=2)
    (a, _), (b, rec_b) = await make_cluster(2, limits=limits)
    held = [asyncio.ensure_future(a.request(b.node_id, rec_b.KIND_GATED, b"%d" % i, timeout=5)) for i in range(2)]
    await pulse.until(lambda: b.stats()["peers"][a.node_id.hex()]["serving_requests"] == 2, "two requests in service")
    with pytest.raises(RequestRejected, match="busy"):
        await a.request(b.node_id, 1, b"one too many", timeout=5)
    rec_b.gate.set()
    assert await asyncio.gather(*held) == [b"echo:0", b"echo:1"]
    assert b.stats()["peers"][a.node_id.hex()]["busy_rejections"] == 1


async def test_a_pending_request_fails_fast_when_the_link_drops(make_cluster, pulse):
    (a, _), (b, rec_b) = await make_cluster(2)
    pending = asyncio.ensure_future(a.request(b.node_id, rec_b.KIND_GATED, b"", timeout=10))
    await pulse.until(lambda: a.stats()["peers"][b.node_id.hex()]["pending_requests"] == 1, "the request to leave")
    await b.stop()
    with pytest.raises(PeerUnavailable):
        await asyncio.wait_for(pending, 5)


async def test_unusable_requests_and_sends(make_cluster, keys):
    (a, _), (b, _) = await make_cluster(2)
    stranger = keys(5).public_key
    assert a.send(stranger, 1, b"x") is False
    assert a.broadcast(1, b"x", exclude={b.node_id}) == 0
    with pytest.raises(PeerUnavailable):
        await a.request(stranger, 1, b"x", timeout=1)
    with pytest.raises(FrameTooLarge):
        a.send(b.node_id, 1, b"x" * (5 * 1024 * 1024))
    with pytest.raises(ValueError):
        a.send(b.node_id, 70_000, b"x")


async def test_handler_bugs_are_logged_and_the_link_carries_on(make_cluster, pulse, caplog):
    caplog.set_level(logging.ERROR, logger="p2p")
    (a, _), (b, rec_b) = await make_cluster(2)
    assert a.send(b.node_id, rec_b.KIND_BOOM, b"first")
    assert a.send(b.node_id, 5, b"second")
    await pulse.until(lambda: len(rec_b.frames) == 2, "both frames, the bug notwithstanding")
    assert b.connected_peers() == [a.node_id]
    bug = [r for r in caplog.records if "on_frame raised" in r.getMessage()]
    assert bug and bug[0].exc_info is not None  # logged with its traceback


async def test_a_node_only_one_side_knows_still_gets_linked(make_net, keys, pulse):
    validator, _ = await make_net(keys(1))
    # The observer knows the validator; the validator admits it without an address.
    observer, rec_o = await make_net(keys(0), peers={validator.node_id: f"127.0.0.1:{validator.port}"})
    validator_admits = {observer.node_id}
    validator._allowed = validator_admits.__contains__  # as if built with allowed=...
    await pulse.until(lambda: observer.connected_peers() == [validator.node_id], "the observer's link")
    assert validator.connected_peers() == [observer.node_id]
    assert validator.send(observer.node_id, 2, b"to the observer")
    await pulse.until(lambda: rec_o.frames, "a frame over the observer's link")


async def test_a_restarted_peer_on_the_same_port_is_reconnected(make_cluster, make_net, keys, pulse):
    nodes = await make_cluster(3)
    (a, rec_a), (b, rec_b), (c, _) = nodes
    port = c.port
    await c.stop()
    await pulse.until(
        lambda: c.node_id not in a.connected_peers() and c.node_id not in b.connected_peers(),
        "a and b to notice c is gone",
    )
    assert any(peer == c.node_id for peer, _ in rec_a.disconnected)

    c2, rec_c2 = await make_net(
        keys(2), port=port, peers={a.node_id: f"127.0.0.1:{a.port}", b.node_id: f"127.0.0.1:{b.port}"}
    )
    await pulse.until(
        lambda: c.node_id in a.connected_peers() and c.node_id in b.connected_peers(),
        "a and b to reconnect to the restarted c",
    )
    assert a.send(c.node_id, 9, b"welcome back")
    await pulse.until(lambda: rec_c2.frames, "a frame to the restarted c")
    assert rec_c2.frames == [(a.node_id, 9, b"welcome back")]


async def test_a_peer_that_comes_up_late_is_dialed_with_backoff(make_net, keys, pulse, unused_tcp_port):
    a, rec_a = await make_net(keys(0))
    b_id = keys(1).public_key
    a.add_peer(b_id, f"127.0.0.1:{unused_tcp_port}")
    await pulse.until(lambda: a.stats()["peers"][b_id.hex()]["connected"] is False, "a's peer entry")
    b, _ = await make_net(keys(1), port=unused_tcp_port, peers={a.node_id: f"127.0.0.1:{a.port}"})
    await pulse.until(lambda: a.connected_peers() == [b_id], "the late peer to be linked")


async def test_removing_a_peer_closes_its_link_and_stops_admitting_it(make_cluster, pulse):
    (a, rec_a), (b, rec_b) = await make_cluster(2)
    a.remove_peer(b.node_id)
    await pulse.until(lambda: rec_b.disconnected, "b to see the link closed")
    assert a.connected_peers() == []
    assert rec_a.disconnected == [(b.node_id, "peer removed")]
    assert b.node_id.hex() not in a.stats()["peers"]


async def test_stop_is_clean_and_idempotent(make_cluster):
    nodes = await make_cluster(3)
    (a, _), (b, _), (c, _) = nodes
    await asyncio.gather(a.stop(), a.stop())
    await b.stop()
    await b.stop()
    await c.stop()
    # the make_net fixture checks that no task was left behind


def unstarted(signer, verifier, **change) -> PeerNetwork:
    """A network of the test chain on 127.0.0.1, built but not started; ``change`` overrides arguments."""
    kwargs = {"signer": signer, "verifier": verifier, "chain_id": "medledger-it", "genesis_hash": b"\x42" * 32,
              "host": "127.0.0.1", "port": 0, "handler": None}
    return PeerNetwork(**(kwargs | change))


async def test_a_port_in_use_fails_start_and_leaves_nothing_behind(make_net, keys, verifier):
    a, rec = await make_net(keys(0))
    clash = unstarted(keys(1), verifier, port=a.port, handler=rec)
    with pytest.raises(OSError):
        await clash.start()
    await clash.stop()  # harmless after a failed start


def test_bad_arguments_are_refused_when_built(keys, verifier):
    def build(**change):
        return unstarted(keys(0), verifier, **change)

    build()  # fine
    with pytest.raises(ValueError):
        build(chain_id="")
    with pytest.raises(ValueError):
        build(genesis_hash=b"")
    with pytest.raises(ValueError):
        build(peers={b"short": "127.0.0.1:1"})
    with pytest.raises(ValueError):
        build(peers={keys(1).public_key: "no port"})
    with pytest.raises(ValueError):
        build(peers={keys(0).public_key: "127.0.0.1:1"})  # ourselves
