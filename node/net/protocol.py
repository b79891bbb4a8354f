"""What nodes ask of each other and how the answers are used, without the IO: answering the
STATUS and BLOCKS requests from a store, decoding a gossiped transaction batch, and catching up
from peers' sync answers. The peer network (gossip.py) runs these over p2p/; the runtime test
harness (tests/harness) runs them over an in-memory queue. The same BLOCKS request also
fetches the blocks before a snapshot for a node with `[storage] keep_history` (`fetch_history`).

Requests (answered):
    STATUS     -> [height, last block hash]
    BLOCKS     [from_height, count] -> [[block bytes, commit certificate bytes], ...]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from p2p.errors import P2PError, RequestRejected

from node.chain.block import BlockInvalid
from node.chain.tx import Transaction, TxRejected, decode_tx
from node.core.crypto import sha256
from node.core.encoding import DecodeError, canonical, decode
from node.runtime.runtime import Node
from storage.chain import ChainStore

log = logging.getLogger("medledger.network")

REQ_STATUS = 10
REQ_BLOCKS = 11
GOSSIP_BATCH = 500
SYNC_RANGE = 100
SYNC_MAX_BYTES = 3 * 1024 * 1024
MAX_FRAME_BYTES = 4 * 1024 * 1024  # what a gossiped transaction batch may decode from

# (peer, kind, payload) -> the peer's answer; raises P2PError when there is none
Request = Callable[[bytes, int, bytes], Awaitable[bytes]]
# (peer, reason, weight): the peer sent something it should not have
Penalize = Callable[[bytes, str, int], None]


def answer_request(store: ChainStore, kind: int, payload: bytes) -> bytes:
    """This node's answer to a peer's request; RequestRejected(reason) for a bad one."""
    if kind == REQ_STATUS:
        return canonical([store.height, store.last_hash])
    if kind == REQ_BLOCKS:
        try:
            start, count = decode(payload, max_bytes=64)
            if not (isinstance(start, int) and isinstance(count, int) and start >= 1 and 1 <= count <= 10_000):
                raise ValueError
        except (DecodeError, ValueError, TypeError):
            raise RequestRejected("malformed block request") from None
        out: list[list[bytes]] = []
        size = 0
        for h in range(start, min(start + min(count, SYNC_RANGE), store.height + 1)):
            raw, cert = store.block_bytes(h), store.certificate(h)
            if raw is None or cert is None:
                break
            if out and size + len(raw) + len(cert) > SYNC_MAX_BYTES:
                break
            out.append([raw, cert])
            size += len(raw) + len(cert)
        return canonical(out)
    raise RequestRejected(f"unknown request kind {kind}")


def parse_status(raw: bytes) -> int | None:
    """The height in a STATUS answer (None for an answer that is not one)."""
    try:
        height, _ = decode(raw, max_bytes=128)
    except (DecodeError, ValueError, TypeError):
        return None
    return int(height) if isinstance(height, int) else None


def decode_tx_batch(payload: bytes, *, chain_id: str, skip: Callable[[bytes], bool]) -> tuple[list[Transaction], list[str]]:
    """The transactions of a gossiped batch not to `skip` (by hash), and what deserves a penalty."""
    try:
        items = decode(payload, max_bytes=MAX_FRAME_BYTES, max_items=GOSSIP_BATCH * 4)
    except DecodeError as exc:
        return [], [f"undecodable transaction batch: {exc}"]
    if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
        return [], ["transaction batch is not a list of byte strings"]
    txs: list[Transaction] = []
    faults: list[str] = []
    for raw in items:
        if skip(sha256(raw)):
            continue  # a peer's copy of what we hold: its bytes are canonical, so is its hash
        try:
            txs.append(decode_tx(raw, chain_id=chain_id))
        except TxRejected as exc:
            if exc.code in ("malformed_msgpack", "malformed_tx", "wrong_chain"):
                faults.append(f"bad gossiped transaction: {exc.code}")
    return txs, faults


async def ask_blocks(request: Request, pid: bytes, start: int, count: int, what: str) -> object:
    """A peer's decoded answer to BLOCKS [start, count] (None when there is none: logged as `what`)."""
    try:
        raw = await request(pid, REQ_BLOCKS, canonical([start, count]))
        return decode(raw, max_bytes=SYNC_MAX_BYTES * 2, max_items=SYNC_RANGE * 2 + 8)
    except (P2PError, DecodeError) as exc:
        log.info("%s from %s failed: %s", what, pid.hex()[:16], exc)
        return None


async def fetch_history(node: Node, peers: Sequence[bytes], request: Request, penalize: Penalize) -> int:
    """Fetch one batch of the blocks before this node's lowest block (node/runtime/history.py)
    with the block-sync request, asking `peers` in turn until one holds them; returns how many
    blocks were stored. A peer whose answer does not check out is penalized as in block sync."""
    history = node.history
    for pid in history.peer_order(peers):
        wanted = history.next_range()
        if wanted is None:
            break
        start, count = wanted
        items = await ask_blocks(request, pid, start, count, "history fetch")
        if items is None:
            continue
        try:
            stored = history.receive(start, items)
        except (BlockInvalid, ValueError) as exc:
            penalize(pid, f"invalid block in history answer: {exc}", 5)
            continue
        if stored:
            return stored
    return 0


async def sync_from(node: Node, heights: Sequence[tuple[int, bytes]], request: Request, penalize: Penalize) -> None:
    """Fetch and apply the blocks this node misses from peers at (height, peer), best first.

    Each block is checked against its commit certificate (Node.apply_synced_block); a peer that
    answers with a bad block is penalized and the next peer is asked."""
    for best, pid in heights:
        while best > node.store.height:
            node.syncing = True
            items = await ask_blocks(request, pid, node.store.height + 1, SYNC_RANGE, "sync")
            if not isinstance(items, list) or not items:
                break
            applied = 0
            for item in items:
                if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, bytes) for x in item)):
                    penalize(pid, "malformed block in sync answer", 1)
                    break
                height = node.store.height + 1
                try:
                    node.apply_synced_block(height, item[0], item[1])
                except (BlockInvalid, ValueError) as exc:
                    penalize(pid, f"invalid block {height} in sync answer: {exc}", 5)
                    break
                applied += 1
                if applied % 20 == 0:
                    await asyncio.sleep(0)  # let the API and consensus breathe during long syncs
            if applied == 0:
                break
        if best <= node.store.height:
            break
