"""The engine's tunables: timeouts, resend intervals and the bounds on what it keeps.

All times are milliseconds of the runtime's clock; the engine never reads a clock itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.messages import DEFAULT_MAX_PAYLOAD


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Tunables of the engine; all times are in milliseconds of the runtime's clock.

    `base_timeout_ms` should exceed the time a healthy primary needs to get a block agreed
    (proposal, two message rounds, validation); `resend_interval_ms` is how often the engine
    re-sends its current votes so that lost messages (and peers that were partitioned away or
    restarted) are caught up with. While a view makes no progress the interval doubles, up to
    `max_resend_interval_ms`, so a long outage does not mean a steady stream of repeats; it is
    back at `resend_interval_ms` in every new view and height.
    """

    base_timeout_ms: int = 2000
    max_timeout_ms: int = 60000
    resend_interval_ms: int = 1000
    max_resend_interval_ms: int = 4000
    max_payload: int = DEFAULT_MAX_PAYLOAD
    stash_per_sender: int = 64
    stash_total: int = 2048
    max_evidence: int = 256
    commit_view_window: int = 32
    wait_for_work: bool = False
    """When True, view 0 of a height does not time out until there is work: the runtime reports
    transactions waiting (`on_work(True)`), or a proposal or vote for the height arrives. An idle
    network then makes no empty blocks and no view changes; heights only advance with work."""

    def __post_init__(self) -> None:
        for name in ("base_timeout_ms", "max_timeout_ms", "resend_interval_ms", "max_resend_interval_ms", "max_payload",
                     "stash_per_sender", "stash_total", "max_evidence", "commit_view_window"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int")
        if self.max_timeout_ms < self.base_timeout_ms:
            raise ValueError("max_timeout_ms must be >= base_timeout_ms")
        if self.max_resend_interval_ms < self.resend_interval_ms:
            raise ValueError("max_resend_interval_ms must be >= resend_interval_ms")

    def view_timeout_ms(self, view: int) -> int:
        """Timeout of `view`: doubles with every failed view, capped."""
        if view >= 40:
            return self.max_timeout_ms
        return min(self.base_timeout_ms << view, self.max_timeout_ms)
