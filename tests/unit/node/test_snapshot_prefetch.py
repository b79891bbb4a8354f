"""Snapshot chunks are fetched ahead of the one being checked (node/home/layout.py `prefetched`):
in order, never more than `depth` ahead, and a consumer that stops early leaves nothing running."""

from __future__ import annotations

import threading

import pytest

from node.home.layout import prefetched


def test_chunks_come_in_order_and_at_most_depth_ahead():
    lock = threading.Lock()
    fetched: list[int] = []
    consumed = 0

    def fetch(i: int) -> bytes:
        with lock:
            assert i < consumed + 3 + 1, (i, consumed)  # never more than depth ahead of the consumer
            fetched.append(i)
        return b"chunk-%d" % i

    got = []
    for data in prefetched(fetch, 20, depth=3):
        got.append(data)
        consumed += 1
    assert got == [b"chunk-%d" % i for i in range(20)] and sorted(fetched) == list(range(20))


def test_a_fetch_error_reaches_the_consumer_and_stops_the_rest():
    def fetch(i: int) -> bytes:
        if i == 5:
            raise OSError("peer went away")
        return b"x"

    seen = 0
    with pytest.raises(OSError, match="peer went away"):
        for _ in prefetched(fetch, 100, depth=2):
            seen += 1
    assert seen == 5


def test_no_chunks():
    assert list(prefetched(lambda i: b"", 0)) == []
