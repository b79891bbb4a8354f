"""One replay guard for every signed request the node serves off the chain: signed reads
(node/api/auth.py), the custodian's record fetches (node/records/custodian.py) and the research
coordinator's extract requests (node/research/service.py).

How a caller uses it, in this order:

1. `check_time(timestamp_ms, now_ms)`: a request older than the freshness window is stale, one
   more than `future_ms` ahead of the node's clock is refused too (a small allowance for clock
   skew). Nothing is remembered.
2. The caller decides whether the signer may do what it asks (a grant, a role...). A request
   that is not authorised is refused there and leaves no trace here: an unknown key cannot fill
   the table.
3. `remember(requester, nonce, now_ms)`: refuses a nonce this requester already used, bounds what
   one requester and all requesters together may hold, and keeps the nonce.

Expiry is O(1) per request: entries sit in a deque in arrival order, each kept for
`window_ms + future_ms` after it arrived (a request is acceptable for at most that long after the
node first sees it, since its time was at most `future_ms` ahead), and the expired ones are
popped from the left. Nothing ever walks or rebuilds the whole table. When a bound is reached
the request is refused (`busy`) rather than forgetting a nonce that could then be replayed.
"""

from __future__ import annotations

from collections import deque

from node.core.errors import CodedError

FRESHNESS_MS = 120_000
FUTURE_MS = 5_000
MAX_PER_REQUESTER = 10_000
MAX_TOTAL = 200_000


class ReplayRefused(CodedError):
    """A request refused by the guard: `code` is stale_request, future_request,
    replayed_request (401) or busy (429); `message` says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 429 if code == "busy" else 401)


def check_time(timestamp_ms: int, now_ms: int, *, window_ms: int = FRESHNESS_MS, future_ms: int = FUTURE_MS) -> None:
    """Refuse a request outside [now - window, now + future allowance]; remembers nothing."""
    if timestamp_ms < now_ms - window_ms:
        raise ReplayRefused("stale_request",
                            f"the request's time is more than {window_ms // 1000} s before the node's clock; "
                            "check your clock and sign it again")
    if timestamp_ms > now_ms + future_ms:
        raise ReplayRefused("future_request",
                            f"the request's time is more than {future_ms // 1000} s ahead of the node's clock; "
                            "check your clock and sign it again")


class ReplayGuard:
    """Nonces seen per requester within the freshness window; bounded, O(1) expiry."""

    def __init__(self, *, window_ms: int = FRESHNESS_MS, future_ms: int = FUTURE_MS,
                 max_per_requester: int = MAX_PER_REQUESTER, max_total: int = MAX_TOTAL) -> None:
        if window_ms < 1 or future_ms < 0 or max_per_requester < 1 or max_total < max_per_requester:
            raise ValueError("window and bounds must be positive, max_total >= max_per_requester")
        self.window_ms = window_ms
        self.future_ms = future_ms
        self.max_per_requester = max_per_requester
        self.max_total = max_total
        self._expiry: deque[tuple[int, bytes, bytes]] = deque()  # (expires_ms, requester, nonce), arrival order
        self._seen: set[tuple[bytes, bytes]] = set()
        self._per_requester: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def held_by(self, requester: bytes) -> int:
        """How many nonces of `requester` the guard holds now."""
        return self._per_requester.get(requester, 0)

    def check_time(self, timestamp_ms: int, now_ms: int) -> None:
        """Refuse a request outside [now - window, now + future allowance]; remembers nothing."""
        check_time(timestamp_ms, now_ms, window_ms=self.window_ms, future_ms=self.future_ms)

    def remember(self, requester: bytes, nonce: bytes, now_ms: int) -> None:
        """Keep `nonce` for `requester`; refuse it if already seen, or if a bound is reached."""
        self._expire(now_ms)
        key = (requester, nonce)
        if key in self._seen:
            raise ReplayRefused("replayed_request", "this signer already sent a request with this nonce; sign a new one")
        held = self._per_requester.get(requester, 0)
        if held >= self.max_per_requester:
            raise ReplayRefused("busy", "too many recent requests from this signer; retry shortly")
        if len(self._seen) >= self.max_total:
            raise ReplayRefused("busy", "the node is tracking too many recent requests; retry shortly")
        self._seen.add(key)
        self._per_requester[requester] = held + 1
        self._expiry.append((now_ms + self.window_ms + self.future_ms, requester, nonce))

    def check(self, requester: bytes, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        """`check_time` then `remember`, for a caller that has already authorised the request."""
        self.check_time(timestamp_ms, now_ms)
        self.remember(requester, nonce, now_ms)

    def _expire(self, now_ms: int) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] < now_ms:
            _, requester, nonce = expiry.popleft()
            self._seen.discard((requester, nonce))
            left = self._per_requester[requester] - 1
            if left:
                self._per_requester[requester] = left
            else:
                del self._per_requester[requester]
