"""The blocks before a snapshot, fetched in the background (`[storage] keep_history = true`).

A node joined from a snapshot at height S holds the blocks from S on. With `keep_history` it
also fetches blocks 1 .. S - 1 from its peers, newest first, while it follows the chain as
usual, and stores them without executing them (the state came from the snapshot):

- Pacing: `History` runs on the node's clock. Every `pause_s` it asks the network for one
  batch (`on_need`, set by the network service through `Node.attach_transport`); the network
  asks its peers for the range with the block-sync request (BLOCKS, node/net/protocol.py
  `fetch_history`) and hands the answer to `receive`. Nothing is asked while the node syncs
  the head, and the pause grows (to `MAX_PAUSE_S`) while batches bring nothing, so the fetch
  never competes with consensus or with catching up.
- Bounds: at most `MAX_BATCH` blocks a request (the answer is also capped in bytes by the peer,
  node/net/protocol.py); an answer cut short by that cap cannot be linked to the stored blocks
  and is dropped, and the next request asks for as many blocks as the peer could send.
- Checks: the lowest stored block is trusted (the snapshot's block, certified and attested, or a
  block already checked this way). Going down from it, each fetched block must decode (its
  transaction root matching its transactions), be of this chain and of its height, and hash
  to the parent hash of the block above it; block 1's parent hash is the zero hash of genesis.
  Its commit certificate must be for that block and verify against the validator set of its
  height, which the state answers for every height (it keeps the whole history of sets). A block
  that fails raises `BlockInvalid`, nothing of the answer is stored, and the network penalises
  the peer as block sync does.
- Progress is the store's `lowest_height`, written with each batch, so a restart resumes where
  it stopped; the fetch ends when block 1 is held. `status` is the `history` part of
  GET /v1/status.

Fetched blocks are not added to the transaction index (their results come from executing them,
which this node does not do): GET /v1/blocks/{h} serves them, with no result per transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from storage.chain import ChainStore

from node.chain.block import BlockInvalid, decode_block
from node.runtime.blocks import SYNCED_CERTIFICATE, Blocks
from node.runtime.clock import Clock, TimerHandle

log = logging.getLogger("medledger.node")

MAX_BATCH = 50  # blocks asked for at once (the block-sync answer holds at most 100)
PAUSE_S = 0.25  # between two batches
MAX_PAUSE_S = 30.0  # the longest pause, reached while no peer has the blocks asked for
GENESIS_PARENT = bytes(32)  # the parent hash of block 1


class History:
    """Fetches, checks and stores the blocks below a snapshot-joined store's lowest block."""

    def __init__(self, *, store: ChainStore, blocks: Blocks, clock: Clock, enabled: bool,
                 busy: Callable[[], bool] = lambda: False, batch: int = MAX_BATCH,
                 pause_s: float = PAUSE_S) -> None:
        self.store = store
        self.blocks = blocks
        self.clock = clock
        self.enabled = enabled
        self.busy = busy  # the node is catching up with the head: wait
        self.batch = batch
        self.pause_s = pause_s
        self.on_need: Callable[[], None] | None = None  # the network fetches one batch (protocol.fetch_history)
        self.fetched = 0  # blocks stored since start
        self.refused = 0  # answers refused since start
        self._count = batch  # what the next request asks for (less after an answer cut short)
        self._pause = pause_s
        self._asked_at: int | None = None  # the lowest height when the last batch was asked for
        self._timer: TimerHandle | None = None
        self._turn = 0

    # -- what is wanted ----------------------------------------------------------------------
    @property
    def wanted(self) -> bool:
        """Blocks are to be fetched: keep_history, a store started from a snapshot, block 1 not held."""
        return self.enabled and self.store.lowest_height > 1

    @property
    def complete(self) -> bool:
        """Every block from 1 on is held (a store begun at genesis always is)."""
        return self.store.lowest_height <= 1

    def next_range(self) -> tuple[int, int] | None:
        """(first height, count) of the next request: the blocks just below the lowest held."""
        if not self.wanted:
            return None
        low = self.store.lowest_height
        count = min(self._count, self.batch, low - 1)
        return low - count, count

    def peer_order(self, peers: Sequence[bytes]) -> list[bytes]:
        """`peers` starting one further each batch, so no one peer serves the whole history."""
        if not peers:
            return []
        self._turn = (self._turn + 1) % len(peers)
        return [*peers[self._turn :], *peers[: self._turn]]

    # -- answers -----------------------------------------------------------------------------
    def receive(self, start: int, items: object) -> int:
        """Check a peer's answer to the request for blocks from `start` (a list of [block bytes,
        certificate bytes], ascending) and store it; returns how many blocks were stored (0: the
        peer does not hold them, or could not send them all in one answer). BlockInvalid: the
        answer is wrong, nothing of it is stored."""
        wanted = self.next_range()
        if wanted is None or wanted[0] != start:
            return 0  # a late answer to an earlier request (the blocks came meanwhile)
        count = wanted[1]
        if not isinstance(items, list):
            raise BlockInvalid("a history answer is not a list")
        if not items:
            return 0
        if len(items) > count:
            raise BlockInvalid(f"{len(items)} blocks in answer to a request for {count}")
        if len(items) < count:
            self._count = len(items)  # the peer's byte cap: ask for what fits, it links up next time
            return 0
        try:
            checked = self._check(start, items)
        except BlockInvalid:
            self.refused += 1
            raise
        self.store.store_history(checked)
        self.fetched += len(checked)
        self._count = min(self.batch, self._count * 2)
        if self.complete:
            log.info("history complete: every block from 1 on is held")
        return len(checked)

    def _check(self, start: int, items: list[Any]) -> list[tuple[int, bytes, bytes, bytes]]:
        """The blocks of `items` (heights start ..), each linked to the one above it."""
        low = self.store.lowest_height
        above = self.store.block_bytes(low)
        if above is None:
            raise BlockInvalid(f"the lowest stored block {low} is missing")
        parent = decode_block(above, stored=True).header.prev_hash
        out: list[tuple[int, bytes, bytes, bytes]] = []
        for offset in range(len(items) - 1, -1, -1):
            height = start + offset
            item = items[offset]
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, bytes) for x in item)):
                raise BlockInvalid(f"history block {height} is not [block, certificate]")
            block = decode_block(item[0])
            header = block.header
            if header.chain_id != self.blocks.chain_id or header.height != height:
                raise BlockInvalid(f"history block {height} is block {header.height} of chain {header.chain_id!r}")
            if block.hash != parent:
                raise BlockInvalid(f"history block {height} is not the parent of block {height + 1}")
            self.blocks.check_certificate(height, block.hash, item[1], SYNCED_CERTIFICATE)
            out.append((height, block.hash, item[0], item[1]))
            parent = header.prev_hash
        if start == 1 and parent != GENESIS_PARENT:
            raise BlockInvalid("history block 1 does not start from genesis")
        out.reverse()
        return out

    # -- pacing on the clock -----------------------------------------------------------------
    def start(self) -> None:
        if self.wanted:
            log.info("keep_history: fetching blocks 1..%d from peers in the background", self.store.lowest_height - 1)
            self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        self._timer = self.clock.call_later(self._pause, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self.wanted:
            return
        low = self.store.lowest_height
        if self._asked_at is not None:  # a batch that brought nothing: wait longer before the next
            self._pause = self.pause_s if low != self._asked_at else min(MAX_PAUSE_S, self._pause * 2)
            self._asked_at = None
        if not self.busy() and self.on_need is not None:
            self._asked_at = low
            self.on_need()
        if self.wanted:
            self._schedule()

    def status(self) -> dict[str, Any]:
        """The `history` part of the node's status."""
        return {"keep_history": self.enabled, "lowest_block": max(1, self.store.lowest_height) if self.store.height else 0,
                "complete": self.complete, "fetching": self.wanted, "fetched": self.fetched}
