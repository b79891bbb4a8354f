"""`[storage] keep_history` on the harness (node/runtime/history.py): a node joined from a snapshot
at height 8 fetches blocks 1..7 from its peers in small batches on its clock while it follows
the chain, checks each one (hash chain down from the snapshot's block, commit certificate of
its height's set), stores it without executing it, resumes after a restart and stops at block 1.
A peer that sends a tampered block or a wrong certificate is refused and penalized; an answer
cut short by the byte cap is asked again smaller; nothing is asked while the node catches up,
and less often while no peer answers; blocks from before validator-set changes verify against
their own height's set; the network service runs one batch at a time; without keep_history
nothing is fetched."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from consensus.certificate import CommitCertificate

from node.api.common import ApiError
from node.api.routes_chain import block_or_404
from node.chain.block import Block, decode_block
from node.core.crypto import Identity
from node.core.encoding import canonical, decode
from node.home.config import build_config
from node.net.gossip import NetworkService
from node.net.protocol import REQ_BLOCKS, answer_request, fetch_history
from node.runtime.history import PAUSE_S
from node.runtime.runtime import Node
from node.runtime.snapshots import start_from_snapshot
from storage.chain import P_BLOCK, ChainStore, StoreCorrupted, u64
from storage.kv import LevelDBStore, MemoryStore, WriteBatch
from storage.snapshots import load_snapshot
from tests.harness.cluster import Cluster
from tests.harness.network import run_now
from tests.unit.runtime.test_snapshot_sets import _start as start_joined
from tests.unit.runtime.test_snapshot_sets import changed  # noqa: F401  (a fixture)
from tests.unit.runtime.test_snapshots import all_attestations, chunks_of, commit, with_snapshots

SNAPSHOT = 8
Tamper = Callable[[bytes, bytes], bytes]


@pytest.fixture
def snapshotted(tmp_path: Path):
    """A 4-validator cluster at height 10 whose validators took a snapshot at height 8."""
    c = Cluster(4)
    with_snapshots(c, tmp_path)
    c.start()
    commit(c, blocks=10, per_block=3, tag=b"before")
    try:
        yield c, tmp_path
    finally:
        c.stop()


def joined_store(c: Cluster, root: Path, store: ChainStore | None = None) -> ChainStore:
    store = store or ChainStore(MemoryStore())
    info = load_snapshot(root / "snap0", SNAPSHOT)
    start_from_snapshot(store, genesis=c.genesis, info=info, chunks=chunks_of(root / "snap0", SNAPSHOT),
                        attestations=all_attestations(root, 4, SNAPSHOT))
    return store


class Joiner:
    """An observer started on `store`, on the cluster's network, whose history requests (the
    BLOCKS request of block sync, run by node.net.protocol.fetch_history) are recorded and may
    be altered by `tamper(peer, answer)`."""

    def __init__(self, c: Cluster, store: ChainStore, *, keep_history: bool, batch: int = 3,
                 tamper: Tamper | None = None) -> None:
        config = build_config({"node": {"observer": True}, "storage": {"keep_history": keep_history}}, env={})
        self.c = c
        self.node = node = Node(config=config, genesis=c.genesis, identity=Identity.from_seed(b"j" * 32),
                                store=store, clock=c.clock)
        node.history.batch = batch
        self.requests: list[tuple[int, int]] = []
        self.tamper = tamper
        c.net.add(node)
        node.attach_transport(node.transport, on_need_history=lambda: run_now(self._fetch()))
        node.start()

    async def _request(self, peer: bytes, kind: int, payload: bytes) -> bytes:
        assert kind == REQ_BLOCKS
        start, count = decode(payload)
        self.requests.append((start, count))
        raw = await self.c.net.request(self.node.identity.public_key, peer, kind, payload)
        return self.tamper(peer, raw) if self.tamper else raw

    def _penalize(self, peer: bytes, reason: str, weight: int) -> None:
        self.c.net.penalties.append((peer, self.node.identity.public_key, reason))

    async def _fetch(self) -> None:
        nid = self.node.identity.public_key
        await fetch_history(self.node, self.c.net.peers_of(nid), self._request, self._penalize)

    def stop(self) -> None:
        self.node.stop()
        self.c.net.remove(self.node.identity.public_key)


def same_blocks(c: Cluster, store: ChainStore, heights: range) -> bool:
    """`store` holds the validators' blocks at `heights`, each with a certificate of its own
    (each validator keeps the 2f + 1 signatures it collected: certificates differ between them)."""
    ref = c.nodes[0].store

    def certified(h: int) -> bool:
        raw = store.certificate(h)
        return raw is not None and CommitCertificate.decode(raw).digest == decode_block(ref.block_bytes(h) or b"").hash

    return all(store.block_bytes(h) == ref.block_bytes(h) is not None and certified(h) for h in heights)


def test_a_joined_node_fetches_the_blocks_before_its_snapshot_while_it_follows_the_chain(snapshotted):
    c, root = snapshotted
    j = Joiner(c, joined_store(c, root), keep_history=True)
    node = j.node
    try:
        assert node.status()["history"] == {"keep_history": True, "lowest_block": SNAPSHOT, "complete": False,
                                            "fetching": True, "fetched": 0}
        with pytest.raises(ApiError):
            block_or_404(node, 3)
        commit(c, blocks=2, per_block=2, tag=b"during")  # it follows the chain meanwhile
        assert c.run_until(lambda: node.history.complete and node.store.height == c.nodes[0].store.height)
        # newest first, at most `batch` blocks a request, each range just below the lowest held
        assert j.requests[:3] == [(5, 3), (2, 3), (1, 1)]
        assert same_blocks(c, node.store, range(1, c.nodes[0].store.height + 1))
        assert node.store.state_root == c.nodes[0].store.state_root and node.store.base_height == SNAPSHOT
        assert node.status()["history"] == {"keep_history": True, "lowest_block": 1, "complete": True,
                                            "fetching": False, "fetched": SNAPSHOT - 1}
        raw = block_or_404(node, 3)  # what GET /v1/blocks/3 serves
        assert decode_block(raw).header.height == 3
        assert c.net.penalties == []
        asked = len(j.requests)
        c.clock.advance(120)  # complete: nothing more is asked
        assert len(j.requests) == asked
    finally:
        j.stop()


def test_without_keep_history_nothing_is_fetched(snapshotted):
    c, root = snapshotted
    j = Joiner(c, joined_store(c, root), keep_history=False)
    try:
        c.clock.advance(60)
        commit(c, blocks=1, per_block=1, tag=b"after")
        assert c.run_until(lambda: j.node.store.height == c.nodes[0].store.height)
        assert j.requests == [] and j.node.store.lowest_height == SNAPSHOT
        assert j.node.store.block_bytes(SNAPSHOT - 1) is None
        assert j.node.status()["history"]["fetching"] is False
    finally:
        j.stop()


def _retimed(raw_block: bytes) -> bytes:
    block = decode_block(raw_block)
    header = dataclasses.replace(block.header, timestamp_ms=block.header.timestamp_ms + 1)
    return Block(header=header, txs=block.txs).encode()


def test_a_tampered_block_or_a_wrong_certificate_from_a_peer_is_refused(snapshotted):
    c, root = snapshotted
    liar, forger = c.id(0), c.id(1)

    def tamper(peer: bytes, raw: bytes) -> bytes:
        items = decode(raw)
        if peer == liar and items:  # its last block, altered: it no longer hashes to the parent hash above it
            items[-1][0] = _retimed(items[-1][0])
        elif peer == forger and items:  # a genuine block under the certificate of another block
            other = c.nodes[0].store.certificate(SNAPSHOT)
            assert other is not None
            items[0][1] = other
        return canonical(items)

    j = Joiner(c, joined_store(c, root), keep_history=True, tamper=tamper)
    try:
        assert c.run_until(lambda: j.node.history.complete)
        assert same_blocks(c, j.node.store, range(1, SNAPSHOT + 1))
        reasons = {(peer, reason) for peer, by, reason in c.net.penalties if by == j.node.identity.public_key}
        assert any(p == liar and "is not the parent of block" in r for p, r in reasons), reasons
        assert any(p == forger and "certificate is for another block" in r for p, r in reasons), reasons
        assert {p for p, _ in reasons} == {liar, forger}
        assert j.node.history.refused >= 2
    finally:
        j.stop()


def test_an_answer_cut_short_by_the_byte_cap_is_asked_again_smaller(snapshotted):
    """A peer sends at most what fits its answer's byte cap from the first height asked: an
    answer without the top blocks cannot be linked to the stored ones, so the same peers are
    asked for as many blocks as came, and the batch grows back after a full answer."""
    c, root = snapshotted
    j = Joiner(c, joined_store(c, root), keep_history=True, tamper=lambda peer, raw: canonical(decode(raw)[:2]))
    try:
        assert c.run_until(lambda: j.node.history.complete)
        assert j.requests == [(5, 3), (6, 2), (3, 3), (4, 2), (1, 3), (2, 2), (1, 1)]
        assert same_blocks(c, j.node.store, range(1, SNAPSHOT + 1)) and c.net.penalties == []
    finally:
        j.stop()


def test_the_fetch_waits_while_the_node_catches_up_and_slows_down_while_no_peer_answers(snapshotted):
    c, root = snapshotted
    j = Joiner(c, joined_store(c, root), keep_history=True)
    node = j.node
    try:
        node.syncing = True  # block sync is catching up with the head: the history waits
        assert node.history.busy()
        node.syncing = False
        catching_up = [True]
        node.history.busy = lambda: catching_up[0]
        c.clock.advance(10)
        assert j.requests == []
        c.net.isolate(node.identity.public_key)  # no peer to ask: each batch brings nothing
        catching_up[0] = False
        asked = []
        node.attach_transport(node.transport, on_need_history=lambda: asked.append(c.clock.monotonic()))
        c.clock.advance(120)
        gaps = [round(b - a, 2) for a, b in zip(asked, asked[1:])]
        assert gaps[:4] == [0.25, 0.5, 1.0, 2.0] and max(gaps) == 30.0  # the pause doubles, up to 30 s
        node.attach_transport(node.transport, on_need_history=lambda: run_now(j._fetch()))
        c.net.heal(node.identity.public_key)
        assert c.run_until(lambda: node.history.complete)
        assert same_blocks(c, node.store, range(1, SNAPSHOT + 1))
    finally:
        j.stop()


def test_the_fetch_resumes_after_a_restart(snapshotted, tmp_path: Path):
    c, root = snapshotted
    store = joined_store(c, root, ChainStore(LevelDBStore(tmp_path / "joiner")))
    j = Joiner(c, store, keep_history=True)
    assert c.run_until(lambda: store.lowest_height < SNAPSHOT)
    j.stop()
    store.close()
    assert j.requests == [(5, 3)]

    reopened = ChainStore(LevelDBStore(tmp_path / "joiner"))
    assert reopened.lowest_height == 5 and reopened.base_height == SNAPSHOT  # the integrity check accepts it
    again = Joiner(c, reopened, keep_history=True)
    try:
        assert c.run_until(lambda: again.node.history.complete)
        assert again.requests[0] == (2, 3)
        assert same_blocks(c, reopened, range(1, SNAPSHOT + 1))
    finally:
        again.stop()
        reopened.close()


def test_blocks_before_validator_set_changes_verify_against_the_set_of_their_height(changed):
    """On a chain that voted in a fifth validator and rotated a key before the snapshot, each
    fetched block's certificate is checked against the set of its own height (four validators,
    then five, then five with the new key), so every block down to 1 is accepted."""
    c, root, info, evidence = changed
    assert len({c.nodes[0].membership.at(h) for h in range(1, info.height + 1)}) == 3
    j = Joiner(c, start_joined(c, root, info, evidence), keep_history=True, batch=50)
    try:
        assert c.run_until(lambda: j.node.history.complete, max_steps=500)
        assert same_blocks(c, j.node.store, range(1, info.height + 1))
        assert c.net.penalties == [] and j.node.history.refused == 0
        assert len(j.requests) == -(-(info.height - 1) // 50)
    finally:
        j.stop()


async def test_the_network_service_fetches_one_batch_at_a_time_over_its_block_requests(snapshotted, monkeypatch):
    """node.net.gossip: each batch the clock asks for is one task running fetch_history over the
    peers' BLOCKS request; while it runs no other starts; a wrong answer is penalized."""
    c, root = snapshotted
    j = Joiner(c, joined_store(c, root), keep_history=True)
    svc = NetworkService(j.node, host="127.0.0.1", port=0, peers={})  # its hooks replace the harness's
    liar, honest = c.id(0), c.id(1)
    asked: list[tuple[bytes, bytes]] = []
    penalties: list[tuple[bytes, str, int]] = []

    async def request(peer: bytes, kind: int, payload: bytes, timeout: float) -> bytes:
        asked.append((peer, payload))
        raw = answer_request(c.node(peer).store, kind, payload)
        return canonical([[_retimed(b), cert] for b, cert in decode(raw)]) if peer == liar else raw

    monkeypatch.setattr(svc.net, "request", request)
    monkeypatch.setattr(svc.net, "penalize", lambda peer, reason, weight=1: penalties.append((peer, reason, weight)))
    monkeypatch.setattr(svc, "connected_peers", lambda: [liar, honest])
    calls, tasks = [0], set()

    def fetch() -> None:
        calls[0] += 1
        svc.fetch_history()
        tasks.add(svc._history_task)

    j.node.attach_transport(svc, on_need_history=fetch)
    try:
        for _ in range(10):
            before = calls[0]
            for _ in range(100):  # two ticks of the history's clock, the task not run meanwhile
                if calls[0] >= before + 2:
                    break
                c.clock.advance(PAUSE_S)
            task = svc._history_task
            assert task is not None and calls[0] >= before + 2
            await task
            if j.node.history.complete:
                break
        assert None not in tasks and len(tasks) <= calls[0] // 2  # a tick while one runs starts none
        assert j.node.history.complete and same_blocks(c, j.node.store, range(1, SNAPSHOT + 1))
        assert {p for p, _, w in penalties} == {liar} and all(w == 5 for _, _, w in penalties)
        assert all("invalid block in history answer" in r for _, r, _ in penalties)
    finally:
        await svc.stop()
        j.stop()


def test_the_start_up_check_refuses_a_store_whose_lowest_fetched_block_is_lost(snapshotted):
    c, root = snapshotted
    store = joined_store(c, root)
    ref = c.nodes[0].store
    store.store_history([(h, decode_block(ref.block_bytes(h) or b"").hash, ref.block_bytes(h) or b"",
                          ref.certificate(h) or b"") for h in range(5, SNAPSHOT)])
    config = build_config({"node": {"observer": True}, "storage": {"keep_history": True}}, env={})
    Node(config=config, genesis=c.genesis, identity=Identity.from_seed(b"j" * 32), store=store, clock=c.clock)
    lost = WriteBatch()
    lost.delete(P_BLOCK + u64(5))
    store.kv.write(lost)
    with pytest.raises(StoreCorrupted, match="block 5 is missing"):
        Node(config=config, genesis=c.genesis, identity=Identity.from_seed(b"j" * 32), store=store, clock=c.clock)
