"""Reconnection delays: exponential, capped, with jitter.

Jitter matters because every node notices a restarted peer at about the same
moment; without it they would all redial in lockstep. We use "equal jitter":
the delay is uniform in [d/2, d] where d = min(cap, base * 2**attempt), so it
never collapses to zero and never exceeds the cap.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Successive reconnection delays for one peer."""

    def __init__(self, *, base: float, cap: float, rng: random.Random) -> None:
        if not 0 < base <= cap:
            raise ValueError("need 0 < base <= cap")
        self._base = base
        self._cap = cap
        self._rng = rng
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """How many delays have been handed out since the last reset."""
        return self._attempt

    def next_delay(self) -> float:
        """The delay before the next attempt; each call doubles the ceiling."""
        ceiling = min(self._cap, self._base * 2.0 ** min(self._attempt, 62))
        self._attempt += 1
        return self._rng.uniform(ceiling / 2.0, ceiling)

    def reset(self) -> None:
        """Start again from ``base`` (after a link was established)."""
        self._attempt = 0
