"""The harness's virtual clock: time moves only when told, timers fire in due order (ties in
the order they were set), and a cancelled timer never fires."""

from __future__ import annotations

from tests.harness.clock import VirtualClock


def test_timers_fire_in_order_of_due_time_then_of_creation():
    clock = VirtualClock(start_ms=1_000)
    fired: list[str] = []
    clock.call_later(2.0, lambda: fired.append("b"))
    clock.call_later(1.0, lambda: fired.append("a"))
    clock.call_later(2.0, lambda: fired.append("c"))
    cancelled = clock.call_later(1.5, lambda: fired.append("never"))
    cancelled.cancel()
    assert clock.now_ms() == 1_000 and fired == []
    assert clock.advance(1.0) == 1 and fired == ["a"] and clock.now_ms() == 2_000
    assert clock.advance(5.0) == 2 and fired == ["a", "b", "c"] and clock.now_ms() == 7_000
    assert not clock.step()


def test_a_timer_set_by_a_timer_fires_in_the_same_advance_when_due():
    clock = VirtualClock(start_ms=0)
    seen: list[float] = []

    def tick() -> None:
        seen.append(clock.monotonic())
        if len(seen) < 3:
            clock.call_later(0.5, tick)

    clock.call_later(0.5, tick)
    clock.advance(10)
    assert seen == [0.5, 1.0, 1.5] and clock.now_ms() == 10_000
