"""A virtual clock for the runtime (node.runtime.clock.Clock): time moves only when the test
says, and timers fire in order of their due time, then of their creation, so a run is the same
every time."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

START_MS = 1_700_000_060_000  # a minute after the test genesis time (tests/helpers.py)


@dataclass(order=True)
class VirtualTimer:
    """One scheduled call; `cancel` keeps it from firing."""

    due_ns: int
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Wall and monotonic time from one integer nanosecond counter, and a heap of timers."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self._now_ns = start_ms * 1_000_000
        self._timers: list[VirtualTimer] = []
        self._seq = 0

    def now_ms(self) -> int:
        return self._now_ns // 1_000_000

    def monotonic(self) -> float:
        return self._now_ns / 1e9

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> VirtualTimer:
        self._seq += 1
        timer = VirtualTimer(self._now_ns + max(0, round(delay_s * 1e9)), self._seq, fn)
        heapq.heappush(self._timers, timer)
        return timer

    def next_due_ns(self) -> int | None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].due_ns if self._timers else None

    def step(self) -> bool:
        """Move time to the next timer and fire it; False when no timer is left."""
        due = self.next_due_ns()
        if due is None:
            return False
        timer = heapq.heappop(self._timers)
        self._now_ns = max(self._now_ns, due)
        timer.fn()
        return True

    def advance(self, seconds: float) -> int:
        """Move time forward by `seconds`, firing every timer due meanwhile; returns how many fired."""
        target = self._now_ns + round(seconds * 1e9)
        fired = 0
        while (due := self.next_due_ns()) is not None and due <= target:
            self.step()
            fired += 1
        self._now_ns = target
        return fired
