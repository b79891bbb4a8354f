"""A token bucket: the bound on frames a second accepted from one peer.

The clock is passed in, so the bucket is a pure value that tests drive with
made-up times.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``rate`` events a second on average and ``burst`` at once."""

    __slots__ = ("_rate", "_burst", "_tokens", "_updated_at")

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated_at = now

    def take(self, count: int, *, now: float) -> int:
        """Take up to ``count`` tokens; return how many were granted."""
        elapsed = now - self._updated_at
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._updated_at = now
        granted = min(count, int(self._tokens))
        self._tokens -= granted
        return granted
