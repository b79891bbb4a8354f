"""Transaction gossip on a node: copies already queued for verification are dropped before
they are decoded again, and waiting transactions are offered again soon only while no block
commits (under load they wait because the network is busy, not because a peer missed them)."""

from __future__ import annotations

import asyncio
import time

import pytest

import node.net.gossip as network
from node.devtools.bench import prepare
from node.core.encoding import canonical
from node.net.gossip import FRAME_TXS, NetworkService
from tests.helpers import CHAIN, deadline, make_node


def service() -> NetworkService:
    return NetworkService(make_node(), host="127.0.0.1", port=0, peers={})


def broadcasts(svc: NetworkService, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    sent: list[bytes] = []

    def record(kind: int, payload: bytes, exclude=()) -> int:
        assert kind == FRAME_TXS
        sent.append(payload)
        return 0

    monkeypatch.setattr(svc.net, "broadcast", record)
    return sent


async def test_a_batch_repeated_while_queued_for_verification_is_not_queued_twice(monkeypatch):
    svc = service()
    broadcasts(svc, monkeypatch)
    release = asyncio.Event()
    svc._admit_task = asyncio.ensure_future(release.wait())  # the admission loop is busy elsewhere
    txs = prepare(CHAIN, 30, seed=b"gossip")
    frame = canonical([t.encoded for t in txs])
    peer = b"\x01" * 32
    svc._on_txs(peer, frame)
    svc._on_txs(peer, frame)  # a re-offer from a peer before we verified the first copy
    svc._on_txs(peer, canonical([t.encoded for t in txs[:10]]))
    assert svc._to_admit_count == 30 and len(svc._to_admit) == 1
    release.set()
    await svc._admit_task
    svc._admit_task = asyncio.create_task(svc._admission_loop())
    svc._admit_wake.set()
    try:
        end = deadline(10)
        while len(svc.node.mempool) < 30 and time.monotonic() < end:
            await asyncio.sleep(0.01)
        assert len(svc.node.mempool) == 30 and svc._to_admit_count == 0
        assert not svc._to_admit_hashes  # the dedupe set empties as chunks are verified
        svc._on_txs(peer, frame)  # now in the mempool: known, dropped before decoding
        assert svc._to_admit_count == 0
    finally:
        svc._admit_task.cancel()


async def test_waiting_transactions_are_offered_again_after_2s_only_while_no_block_commits(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the node's LoopClock and the mempool read it
    svc = service()
    sent = broadcasts(svc, monkeypatch)
    txs = prepare(CHAIN, 12, seed=b"regossip")
    assert all(a.error is None for a in svc.node.admit([[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in txs]))
    svc._flush()
    assert len(sent) == 1
    sent.clear()  # (that first hand-out is the gossip batch, not a re-offer)

    now[0] = 1003.0
    svc.node.last_commit_at = 1002.5  # blocks are committing: the pool waits its turn
    assert svc.regossip_once() == 0 and sent == []

    svc.node.last_commit_at = 1000.5  # nothing committed for 2.5 s: a peer may have missed them
    assert svc.regossip_once() == 12 and len(sent) == 1

    now[0] = 1040.0  # busy again: the next offer waits 2 x 30 s after the last one
    svc.node.last_commit_at = 1039.9
    assert svc.regossip_once() == 0
    now[0] = 1063.5
    svc.node.last_commit_at = 1063.4
    assert svc.regossip_once() == 12 and len(sent) == 2
