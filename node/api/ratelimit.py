"""Per-client request rate limits of the HTTP API: token buckets keyed by client IP or signer.

`RateLimiter.check(key, now)` returns 0.0 when the request may go ahead, or the seconds until
the key's bucket holds a token again (the API answers 429 `rate_limited` with that as
`Retry-After`). The table of buckets is bounded: when it is full, the least recently used bucket
is forgotten (an idle bucket has refilled, so forgetting it changes nothing for its client). The
clock is passed in, so tests drive it with made-up times.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate` requests a second on average, `burst` at once; a rate of 0 means no limit."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate < 0 or (self.rate > 0 and self.burst < 1):
            raise ValueError("rate must be >= 0 and burst at least 1 when limited")

    @property
    def unlimited(self) -> bool:
        return self.rate == 0


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """Token buckets for many keys, at most `max_keys` of them."""

    def __init__(self, limit: RateLimit, *, max_keys: int = 10_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.limit = limit
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, _Bucket] = OrderedDict()
        self.refused = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: object, now: float) -> float:
        """Take one token for `key`: 0.0 if granted, else the seconds to wait before retrying."""
        if self.limit.unlimited:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(float(self.limit.burst), now)
        else:
            self._buckets.move_to_end(key)
            elapsed = now - bucket.updated
            if elapsed > 0:
                bucket.tokens = min(float(self.limit.burst), bucket.tokens + elapsed * self.limit.rate)
                bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        self.refused += 1
        return (1.0 - bucket.tokens) / self.limit.rate


def retry_after_header(wait_s: float) -> str:
    """The Retry-After value (whole seconds, at least 1) for a wait."""
    return str(max(1, math.ceil(wait_s)))
