"""The pure bookkeeping of the transport: limits, queue, penalties, backoff, rate."""

from __future__ import annotations

import random

import pytest

from p2p.backoff import Backoff
from p2p.limits import P2PLimits
from p2p.penalties import PenaltyBox
from p2p.ratelimit import TokenBucket
from p2p.sendqueue import SendQueue


# ---------------------------------------------------------------- limits


def test_default_limits_are_consistent():
    limits = P2PLimits()
    assert limits.max_frame_bytes == 4 * 1024 * 1024
    assert limits.send_queue_bytes >= limits.max_frame_bytes


@pytest.mark.parametrize(
    "bad",
    [
        {"max_frame_bytes": 0},
        {"max_frame_bytes": 100},
        {"send_queue_frames": -1},
        {"handshake_timeout": 0.0},
        {"heartbeat_interval": True},
        {"send_queue_bytes": 1024, "max_frame_bytes": 4096},
        {"reconnect_base": 5.0, "reconnect_cap": 1.0},
    ],
)
def test_inconsistent_limits_are_refused_when_built(bad):
    with pytest.raises(ValueError):
        P2PLimits(**bad)


def test_limits_are_frozen_and_keyword_only():
    limits = P2PLimits()
    with pytest.raises(AttributeError):
        limits.max_frame_bytes = 1  # type: ignore[misc]  # frozen dataclass: the test mutates it on purpose
    with pytest.raises(TypeError):
        P2PLimits(4096)  # type: ignore[call-arg]  # positional on purpose: kw_only must refuse it


# ---------------------------------------------------------------- send queue


def test_queue_refuses_past_its_frame_bound():
    queue = SendQueue(max_frames=2, max_bytes=1000)
    assert queue.put(b"a") and queue.put(b"b")
    assert not queue.put(b"c")
    assert len(queue) == 2 and queue.nbytes == 2


def test_queue_refuses_past_its_byte_bound_but_takes_smaller_frames():
    queue = SendQueue(max_frames=100, max_bytes=10)
    assert queue.put(b"x" * 8)
    assert not queue.put(b"x" * 3)
    assert queue.put(b"x" * 2)
    assert queue.nbytes == 10


def test_batches_fit_the_message_bound_and_keep_order():
    queue = SendQueue(max_frames=100, max_bytes=1000)
    for i in range(6):
        queue.put(bytes([i]) * 30)
    first = queue.take_batch(100)
    assert first == [bytes([0]) * 30, bytes([1]) * 30, bytes([2]) * 30]
    assert queue.take_batch(100) == [bytes([i]) * 30 for i in (3, 4, 5)]
    assert queue.take_batch(100) == [] and queue.nbytes == 0


def test_a_frame_larger_than_the_batch_bound_still_goes_alone():
    queue = SendQueue(max_frames=10, max_bytes=1000)
    queue.put(b"x" * 500)
    queue.put(b"y")
    assert queue.take_batch(100) == [b"x" * 500]
    assert queue.take_batch(100) == [b"y"]


def test_clear_reports_what_it_dropped():
    queue = SendQueue(max_frames=10, max_bytes=1000)
    queue.put(b"a")
    queue.put(b"b")
    assert queue.clear() == 2
    assert len(queue) == 0 and queue.nbytes == 0


# ---------------------------------------------------------------- penalties

PEER = b"\x01" * 32


def test_a_ban_starts_exactly_at_the_threshold():
    box = PenaltyBox(threshold=10, window=100.0, ban_seconds=50.0)
    for _ in range(9):
        assert not box.penalize(PEER, 1, "bad", now=0.0)
    assert box.banned_for(PEER, now=0.0) == 0.0
    assert box.penalize(PEER, 1, "bad", now=0.0)
    assert box.banned_for(PEER, now=0.0) == 50.0
    assert box.banned_for(PEER, now=49.0) == pytest.approx(1.0)
    assert box.banned_for(PEER, now=50.0) == 0.0
    assert box.standing(PEER).bans == 1


def test_the_score_drains_so_occasional_mistakes_are_forgiven():
    box = PenaltyBox(threshold=10, window=100.0, ban_seconds=50.0)  # one point per 10 s
    for i in range(100):
        assert not box.penalize(PEER, 1, "late vote", now=i * 10.0)
    assert box.score(PEER, now=1000.0) == 0


def test_the_score_drains_in_whole_points():
    box = PenaltyBox(threshold=10, window=100.0, ban_seconds=50.0)  # one point per 10 s
    box.penalize(PEER, 3, "x", now=0.0)
    assert box.score(PEER, now=9.9) == 3
    assert box.score(PEER, now=10.0) == 2
    assert box.score(PEER, now=25.0) == 1
    assert box.score(PEER, now=29.9) == 1
    assert box.score(PEER, now=30.0) == 0
    # a burst right after a drain still counts every point
    box.penalize(PEER, 9, "y", now=30.5)
    assert box.penalize(PEER, 1, "z", now=30.6)


def test_heavy_weights_ban_at_once_and_penalties_during_a_ban_only_count():
    box = PenaltyBox(threshold=10, window=100.0, ban_seconds=50.0)
    assert box.penalize(PEER, 25, "equivocation", now=0.0)
    assert not box.penalize(PEER, 25, "more", now=1.0)
    assert box.standing(PEER).total_weight == 50
    assert box.standing(PEER).last_reason == "more"
    assert box.standing(PEER).bans == 1


def test_weights_must_be_positive_ints():
    box = PenaltyBox(threshold=10, window=100.0, ban_seconds=50.0)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError):
            box.penalize(PEER, bad, "x", now=0.0)


def test_prune_forgets_only_drained_peers_without_a_ban():
    box = PenaltyBox(threshold=10, window=10.0, ban_seconds=50.0)
    other = b"\x02" * 32
    box.penalize(PEER, 1, "x", now=0.0)
    box.penalize(other, 10, "x", now=0.0)
    box.prune(now=0.5)  # one point a second: not drained yet
    assert box.standing(PEER) is not None
    box.prune(now=20.0)
    assert box.standing(PEER) is None
    assert box.standing(other) is not None  # still banned


# ---------------------------------------------------------------- backoff


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half():
    backoff = Backoff(base=0.5, cap=4.0, rng=random.Random(7))
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_backoff_jitter_differs_between_nodes():
    a = Backoff(base=1.0, cap=30.0, rng=random.Random(1))
    b = Backoff(base=1.0, cap=30.0, rng=random.Random(2))
    assert [a.next_delay() for _ in range(5)] != [b.next_delay() for _ in range(5)]


def test_backoff_survives_many_attempts():
    backoff = Backoff(base=0.1, cap=2.0, rng=random.Random(3))
    for _ in range(2000):
        assert backoff.next_delay() <= 2.0


# ---------------------------------------------------------------- rate


def test_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=10.0, burst=5, now=0.0)
    assert bucket.take(8, now=0.0) == 5
    assert bucket.take(1, now=0.0) == 0
    assert bucket.take(10, now=0.5) == 5
    assert bucket.take(100, now=100.0) == 5  # refills only up to the burst
