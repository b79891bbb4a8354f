"""Time as the runtime sees it: a `Clock` protocol, and `LoopClock`, the production clock on the
asyncio event loop.

Everything in the runtime that reads the time or waits for it (the engine's view timers, the
idle interval between empty blocks, memory sampling, block times, uptime) goes through a Clock,
so a test can run nodes on a virtual clock (tests/harness) where time advances only when the
test says. What the runtime measures rather than decides with (the cost of executing a block,
metrics latencies) keeps reading the process's own performance counters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """A scheduled call that can still be called off."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall time, monotonic time and timers."""

    def now_ms(self) -> int:
        """Wall-clock time in milliseconds since the epoch (block times, expiry checks)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (uptime, time since the last commit)."""
        ...

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> TimerHandle:
        """Call `fn` once, `delay_s` seconds from now, unless the handle is cancelled first."""
        ...


class LoopClock:
    """The production clock: the system's clocks and the running asyncio loop's timers."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay_s, fn)
