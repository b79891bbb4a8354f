"""Messages kept for a later height or view, in bounded memory, shared fairly among senders.

A message for the next height, or a vote for a view not yet entered, is stashed and replayed
when the engine gets there. Each sender may hold `per_sender` messages and all together
`total`. When the total is reached, a sender holding fewer than the longest queue takes that
queue's newest slot (ties: the larger sender id), so f validators filling the stash cannot crowd
out an honest validator's next-height proposal; a sender that already holds the most is refused.
Exact repeats (same `message_key`) are dropped.
"""

from __future__ import annotations

from consensus.messages import Message, message_key


class Stash:
    """Messages waiting for a later height or view (see the module docstring)."""

    __slots__ = ("per_sender", "total", "_queues", "_keys", "_size")

    def __init__(self, *, per_sender: int, total: int) -> None:
        self.per_sender = per_sender
        self.total = total
        self._queues: dict[bytes, list[Message]] = {}
        self._keys: set[bytes] = set()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, msg: Message) -> str:
        """Keep `msg`; returns "" when kept, or why not ("duplicate", "stash full")."""
        key = message_key(msg)
        if key in self._keys:
            return "duplicate"
        queue = self._queues.get(msg.sender, [])
        if len(queue) >= self.per_sender:
            return "stash full"
        if self._size >= self.total:
            largest = max(self._queues, key=lambda s: (len(self._queues[s]), s))
            if len(self._queues[largest]) <= len(queue):
                return "stash full"
            evicted = self._queues[largest].pop()
            self._keys.discard(message_key(evicted))
            self._size -= 1
            if not self._queues[largest]:
                del self._queues[largest]
        self._queues.setdefault(msg.sender, queue).append(msg)
        self._keys.add(key)
        self._size += 1
        return ""

    def take_all(self) -> list[Message]:
        """Every stashed message, in sender then arrival order; the stash is empty afterwards."""
        pending = [m for queue in self._queues.values() for m in queue]
        self._queues = {}
        self._keys = set()
        self._size = 0
        return pending
