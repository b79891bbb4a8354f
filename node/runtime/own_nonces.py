"""Nonces for the transactions a node signs with its own institution key.

Several services of one node sign with that key (the records delegate for the FHIR server,
node/records/node_delegate.py; the research coordinator, node/research/service.py), and the
ledger refuses a sender's nonce at or below its last one while the mempool hands transactions to
blocks in arrival order. So one allocator per node hands out rising nonces, above the ledger's
last, above the last it gave and above the clock in ms (as node/client.py picks them, so a CLI
using the same key meanwhile does not overtake them), and the caller keeps `lock` from taking
nonces until its transactions are admitted: allocation order is submission order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from node.app.executor import read_nonce
from node.app.state import StateReader


class OwnNonces:
    """Rising nonces for one sender (thread- and task-safe when `lock` is held, see above)."""

    def __init__(self, sender: bytes, state_reader: Callable[[], StateReader], clock_ms: Callable[[], int]) -> None:
        self.sender = sender
        self.state_reader = state_reader
        self.clock_ms = clock_ms
        self.lock = threading.Lock()
        self._last = 0

    def take(self, count: int) -> list[int]:
        """`count` fresh nonces, rising; call with `lock` held (`with nonces.lock:`) through the
        admission of the transactions they sign."""
        first = max(read_nonce(self.state_reader(), self.sender), self._last, self.clock_ms()) + 1
        self._last = first + count - 1
        return list(range(first, first + count))
