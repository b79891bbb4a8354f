"""The research steps' guard against stale, future and replayed requests: the node's one
`ReplayGuard` (node/core/replay.py), answering in the research protocol's errors.

Every research step (the researcher's extract request at the coordinator, and the coordinator's
prepare and record steps at each custodian) is checked here, after the step was authorised (the
researcher is on the study, the coordinator may coordinate it): a request nobody may make is
never remembered, so it cannot fill the table. The key of a step names the step, the researcher
and the request's nonce; its requester is whoever sent the step (the researcher, or the
coordinator), and each requester is bounded on its own. Freshness, the future allowance and the
O(1) expiry are those of `ReplayGuard`.
"""

from __future__ import annotations

from node.records.protocol import ProtocolError
from node.core.replay import FRESHNESS_MS, FUTURE_MS, ReplayGuard, ReplayRefused

WINDOW_MS = FRESHNESS_MS  # as the signed reads and the custodian's fetches


class StepGuard:
    """Freshness and replay checks for authorised research steps."""

    def __init__(self, *, window_ms: int = WINDOW_MS, future_ms: int = FUTURE_MS,
                 max_per_requester: int = 1_000, max_total: int = 100_000) -> None:
        self.replay = ReplayGuard(window_ms=window_ms, future_ms=future_ms, max_per_requester=max_per_requester,
                                  max_total=max_total)
        self.window_ms = window_ms
        self.future_ms = future_ms

    def __len__(self) -> int:
        return len(self.replay)

    def check_time(self, timestamp_ms: int, now_ms: int) -> None:
        """Refuse a request stamped outside [now - window, now + future]."""
        try:
            self.replay.check_time(timestamp_ms, now_ms)
        except ReplayRefused as exc:
            raise ProtocolError(exc.code, exc.message) from None

    def check(self, requester: bytes, key: bytes, timestamp_ms: int, now_ms: int) -> None:
        """Accept a fresh key once and remember it; raise ProtocolError otherwise."""
        try:
            self.replay.check(requester, key, timestamp_ms, now_ms)
        except ReplayRefused as exc:
            raise ProtocolError(exc.code, exc.message) from None
