"""The research steps' guard against stale, future and replayed requests, with bounded memory.

Every research step (the researcher's extract request at the coordinator, and the coordinator's
prepare and record steps at each custodian) is checked here, after the step was authorised (the
researcher is on the study, the coordinator may coordinate it): a request nobody may make is
never remembered, so it cannot fill the table.

- A request's time must be within `window_ms` in the past and at most `future_ms` ahead of the
  node's clock: a request stamped in the future would otherwise stay replayable for longer than
  the window and pin its entry.
- A key (the step, the researcher and the request's nonce) is accepted once while it could still
  pass the time check.
- Each requester has at most `max_per_requester` live entries, the whole table `max_total`;
  beyond that the request is refused as busy rather than forgetting an entry that could then be
  replayed.
- Entries expire in insertion order: each one is kept until `now + window_ms + future_ms` at its
  insertion, which is no earlier than the moment its request turns stale, and that deadline
  grows with insertion time, so expiry pops from the front of a deque — O(1) per entry — and
  never walks the table.
"""

from __future__ import annotations

from collections import Counter, deque

from node.records.protocol import ProtocolError

WINDOW_MS = 120_000  # as the signed reads and the custodian's fetches

FUTURE_MS = 5_000


class StepGuard:
    """Freshness and replay checks for authorised research steps."""

    def __init__(self, *, window_ms: int = WINDOW_MS, future_ms: int = FUTURE_MS,
                 max_per_requester: int = 1_000, max_total: int = 100_000) -> None:
        if window_ms < 1 or future_ms < 0 or max_per_requester < 1 or max_total < max_per_requester:
            raise ValueError("window and bounds must be positive, max_total >= max_per_requester")
        self.window_ms = window_ms
        self.future_ms = future_ms
        self.max_per_requester = max_per_requester
        self.max_total = max_total
        self._seen: dict[bytes, bytes] = {}  # key -> requester
        self._order: deque[tuple[int, bytes]] = deque()  # (expiry ms, key), expiry non-decreasing
        self._per_requester: Counter[bytes] = Counter()

    def __len__(self) -> int:
        return len(self._seen)

    def check_time(self, timestamp_ms: int, now_ms: int) -> None:
        """Refuse a request stamped outside [now - window, now + future]."""
        if timestamp_ms > now_ms + self.future_ms:
            raise ProtocolError("future_request", f"the request's time is more than {self.future_ms // 1000} s ahead "
                                                  "of the node's clock; check your clock")
        if timestamp_ms < now_ms - self.window_ms:
            raise ProtocolError("stale_request", f"the request is more than {self.window_ms // 1000} s old; "
                                                 "sign a new one")

    def check(self, requester: bytes, key: bytes, timestamp_ms: int, now_ms: int) -> None:
        """Accept a fresh key once and remember it; raise ProtocolError otherwise."""
        self.check_time(timestamp_ms, now_ms)
        self._expire(now_ms)
        if key in self._seen:
            raise ProtocolError("replayed_request", "this request was already served; sign a new one")
        if self._per_requester[requester] >= self.max_per_requester or len(self._seen) >= self.max_total:
            raise ProtocolError("busy", "too many recent research requests; retry in a minute")
        self._seen[key] = requester
        self._per_requester[requester] += 1
        expiry = now_ms + self.window_ms + self.future_ms
        if self._order and expiry < self._order[-1][0]:
            expiry = self._order[-1][0]  # a clock that stepped back: keep the deque in order
        self._order.append((expiry, key))

    def _expire(self, now_ms: int) -> None:
        while self._order and self._order[0][0] < now_ms:
            _, key = self._order.popleft()
            requester = self._seen.pop(key)
            self._per_requester[requester] -= 1
            if not self._per_requester[requester]:
                del self._per_requester[requester]
