"""The mempool: transactions admitted (signature verified once) and waiting for a block.

Bounded in count and bytes, deduplicated by hash, first-in first-out. A transaction leaves the
pool when a block that holds it is committed; proposing a block does not remove anything, so a
proposal that fails loses nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable

from node.chain.tx import Transaction

REGISTRATION = "identity.register"


MAX_BACKOFF_DOUBLINGS = 5
DRAIN_WINDOW_S = 10.0  # how far back `drain_per_s` counts the transactions blocks took out


class MempoolFull(Exception):
    """The pool is at its bound; the client should retry later."""


class SenderLimit(MempoolFull):
    """This sender has as many transactions waiting as it may; it should wait for a commit."""


class Mempool:
    def __init__(self, *, max_txs: int = 50_000, max_bytes: int = 64 * 1024 * 1024, max_per_sender: int = 1_000) -> None:
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        self._txs: OrderedDict[bytes, Transaction] = OrderedDict()
        self._bytes = 0
        self._per_sender: dict[bytes, int] = {}
        self._registering: dict[bytes, int] = {}  # senders with an identity.register waiting
        # when each was last handed to peers (monotonic) and how often it has been offered again
        self._announced: dict[bytes, tuple[float, int]] = {}
        self._arrived: dict[bytes, float] = {}  # when each arrived (monotonic), in arrival order
        self._drained: deque[tuple[float, int]] = deque()  # (when, how many) commits took out, last DRAIN_WINDOW_S

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_hash: bytes) -> Transaction | None:
        return self._txs.get(tx_hash)

    def add(self, tx: Transaction) -> bool:
        """Add a verified transaction; False if it was already there. Raise MempoolFull."""
        if tx.hash in self._txs:
            return False
        if len(self._txs) >= self.max_txs or self._bytes + len(tx.encoded) > self.max_bytes:
            raise MempoolFull(f"mempool is full ({len(self._txs)} transactions)")
        if self._per_sender.get(tx.sender, 0) >= self.max_per_sender:
            raise SenderLimit(f"this sender already has {self.max_per_sender} pending transactions; "
                              "wait for some to commit")
        self._txs[tx.hash] = tx
        now = time.monotonic()
        self._announced[tx.hash] = (now, 0)
        self._arrived[tx.hash] = now
        self._bytes += len(tx.encoded)
        self._per_sender[tx.sender] = self._per_sender.get(tx.sender, 0) + 1
        if tx.type == REGISTRATION:
            self._registering[tx.sender] = self._registering.get(tx.sender, 0) + 1
        return True

    def pending_of(self, sender: bytes) -> int:
        """How many transactions of `sender` wait here."""
        return self._per_sender.get(sender, 0)

    def registering(self, sender: bytes) -> bool:
        """True while an `identity.register` of `sender` waits here."""
        return sender in self._registering

    def remove(self, hashes: Iterable[bytes]) -> None:
        removed = 0
        for h in hashes:
            tx = self._txs.pop(h, None)
            self._announced.pop(h, None)
            self._arrived.pop(h, None)
            if tx is not None:
                removed += 1
                self._bytes -= len(tx.encoded)
                left = self._per_sender[tx.sender] - 1
                if left:
                    self._per_sender[tx.sender] = left
                else:
                    del self._per_sender[tx.sender]
                if tx.type == REGISTRATION:
                    waiting = self._registering[tx.sender] - 1
                    if waiting:
                        self._registering[tx.sender] = waiting
                    else:
                        del self._registering[tx.sender]
        if removed:
            now = time.monotonic()
            self._drained.append((now, removed))
            while self._drained and self._drained[0][0] < now - DRAIN_WINDOW_S:
                self._drained.popleft()

    def drain_per_s(self) -> float:
        """How many transactions a second committed blocks have taken out of the pool lately
        (over the last DRAIN_WINDOW_S; 0 when none did)."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self._drained if t >= now - DRAIN_WINDOW_S]
        if not recent:
            return 0.0
        return sum(n for _, n in recent) / max(1.0, now - recent[0][0])

    def waiting_since(self, older_than_s: float, max_txs: int, *, patience_per_tx_s: float = 0.0) -> list[Transaction]:
        """Transactions not handed to peers for a while (oldest first): `older_than_s` after they
        arrived, then twice as long after each offer (up to 32 times as long). A transaction that
        waits because the network is busy, not because a peer missed it, is not offered again
        and again: under load that traffic would cost every node more than the load itself.

        `patience_per_tx_s` stretches the wait by the queue: the transaction at position i (0 the
        oldest) is due only after i x patience_per_tx_s too, so under a long queue a transaction
        is offered again only once it has waited well past its turn. Thresholds then grow along
        the walk, which stops at the first position whose threshold exceeds what even the oldest
        transaction has waited: no walk over the rest of a busy pool."""
        now = time.monotonic()
        out: list[Transaction] = []
        oldest = next(iter(self._arrived.values()), now)
        if now - oldest < older_than_s:
            return out  # even the oldest has not waited that long: no walk over a busy pool
        waited_most = now - oldest
        for i, (h, tx) in enumerate(self._txs.items()):
            if len(out) >= max_txs:
                break
            base = max(older_than_s, i * patience_per_tx_s)
            if base > waited_most:
                break  # every later transaction arrived later and faces a higher threshold
            last, offers = self._announced.get(h, (now, 0))
            if now - last >= base * (1 << offers):
                out.append(tx)
                self._announced[h] = (now, min(offers + 1, MAX_BACKOFF_DOUBLINGS))
        return out

    def take(self, max_txs: int, max_bytes: int) -> list[Transaction]:
        """The oldest transactions that fit in a block (they stay in the pool until committed)."""
        out: list[Transaction] = []
        size = 0
        for tx in self._txs.values():
            if len(out) >= max_txs or size + len(tx.encoded) > max_bytes:
                break
            out.append(tx)
            size += len(tx.encoded)
        return out
