"""The research steps' replay guard: fresh requests once, future ones refused, bounded per
requester and in total, expiry from the front without walking the table."""

from __future__ import annotations

import pytest

from node.records.protocol import ProtocolError
from node.research.replay import StepGuard

NOW = 1_800_000_000_000
A, B = b"a" * 32, b"b" * 32


def code_of(guard: StepGuard, requester: bytes, key: bytes, ts: int, now: int = NOW) -> str | None:
    try:
        guard.check(requester, key, ts, now)
    except ProtocolError as exc:
        return exc.code
    return None


def test_a_fresh_key_passes_once():
    guard = StepGuard()
    assert code_of(guard, A, b"k1", NOW) is None
    assert code_of(guard, A, b"k1", NOW) == "replayed_request"
    assert code_of(guard, B, b"k2", NOW - 60_000) is None


def test_stale_and_future_requests_are_refused_and_not_remembered():
    guard = StepGuard(window_ms=120_000, future_ms=5_000)
    assert code_of(guard, A, b"old", NOW - 86_400_000) == "stale_request"
    assert code_of(guard, A, b"ahead", NOW + 60_000) == "future_request"
    assert code_of(guard, A, b"skew", NOW + 4_000) is None
    assert len(guard) == 1


def test_one_requester_cannot_fill_the_table():
    guard = StepGuard(max_per_requester=3, max_total=10)
    for i in range(3):
        assert code_of(guard, A, b"a%d" % i, NOW) is None
    assert code_of(guard, A, b"a9", NOW) == "busy"
    assert code_of(guard, B, b"b0", NOW) is None  # another requester is not refused for A's traffic


def test_the_total_bound_holds():
    guard = StepGuard(max_per_requester=2, max_total=3)
    assert [code_of(guard, bytes([i]) * 32, b"k%d" % i, NOW) for i in range(4)] == [None, None, None, "busy"]


def test_a_replay_stays_refused_until_the_request_is_stale_then_entries_expire():
    guard = StepGuard(window_ms=1_000, future_ms=100)
    assert code_of(guard, A, b"k", NOW + 100) is None  # stamped at the edge of the future
    assert code_of(guard, A, b"k", NOW + 100, now=NOW + 1_100) == "replayed_request"
    assert code_of(guard, A, b"k", NOW + 100, now=NOW + 1_101) == "stale_request"  # never accepted again
    # once past the window the old request is stale whatever the table holds
    assert code_of(guard, A, b"k", NOW + 100, now=NOW + 1_300) == "stale_request"
    assert code_of(guard, A, b"other", NOW + 1_300, now=NOW + 1_300) is None
    assert len(guard) == 1  # the first entry expired when the next check came


def test_expiry_pops_only_from_the_front():
    guard = StepGuard(window_ms=1_000, future_ms=0, max_per_requester=10_000, max_total=10_000)
    for i in range(5_000):
        guard.check(A, b"%d" % i, NOW, NOW)
    guard.check(B, b"late", NOW + 2_000, NOW + 2_000)
    assert len(guard) == 1
    with pytest.raises(ValueError):
        StepGuard(max_per_requester=5, max_total=4)
