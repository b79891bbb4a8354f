"""The API's token buckets: burst then rate, how long to wait, per key, the bounded table."""

from __future__ import annotations

import pytest

from node.api.ratelimit import RateLimit, RateLimiter, retry_after_header


def test_a_burst_then_the_rate():
    limiter = RateLimiter(RateLimit(rate=2.0, burst=3))
    assert [limiter.check("ip", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("ip", 0.0) == pytest.approx(0.5)  # empty: one token comes in 1/rate s
    assert limiter.check("ip", 0.25) == pytest.approx(0.25)
    assert limiter.check("ip", 0.5) == 0.0
    assert limiter.check("ip", 0.5) > 0
    assert limiter.refused == 3
    # a long pause refills to the burst, not beyond
    assert [limiter.check("ip", 100.0) for _ in range(4)].count(0.0) == 3


def test_keys_have_their_own_buckets():
    limiter = RateLimiter(RateLimit(rate=1.0, burst=1))
    assert limiter.check("a", 0.0) == 0.0
    assert limiter.check("a", 0.0) > 0
    assert limiter.check("b", 0.0) == 0.0
    assert limiter.check(b"\x01" * 32, 0.0) == 0.0


def test_the_table_is_bounded_and_forgets_the_least_recently_seen():
    limiter = RateLimiter(RateLimit(rate=1.0, burst=1), max_keys=3)
    for key in ("a", "b", "c"):
        assert limiter.check(key, 0.0) == 0.0
    assert limiter.check("a", 0.1) > 0  # "a" is now the most recent
    assert limiter.check("d", 0.1) == 0.0  # evicts "b"
    assert len(limiter) == 3
    assert limiter.check("a", 0.1) > 0  # "a" was kept, still empty
    assert limiter.check("c", 0.1) > 0  # "c" kept too
    assert limiter.check("b", 0.1) == 0.0  # "b" was forgotten: a fresh bucket


def test_a_rate_of_zero_means_no_limit_and_bad_limits_are_refused():
    limiter = RateLimiter(RateLimit(rate=0, burst=1), max_keys=1)
    assert all(limiter.check(i, 0.0) == 0.0 for i in range(1000))
    assert len(limiter) == 0
    with pytest.raises(ValueError):
        RateLimit(rate=-1, burst=1)
    with pytest.raises(ValueError):
        RateLimit(rate=1, burst=0)
    with pytest.raises(ValueError):
        RateLimiter(RateLimit(rate=1, burst=1), max_keys=0)


@pytest.mark.parametrize(("wait", "header"), [(0.001, "1"), (1.0, "1"), (1.2, "2"), (30.0, "30")])
def test_retry_after_is_whole_seconds_at_least_one(wait, header):
    assert retry_after_header(wait) == header
