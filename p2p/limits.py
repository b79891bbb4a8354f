"""Every bound the transport enforces, in one validated value.

Principle 7 of the design: every queue, message and per-peer rate has a
limit. They live here so an operator (or a test) can see and tune all of them
at once, and so that an inconsistent set is refused when it is built rather
than discovered under load.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["P2PLimits"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class P2PLimits:
    """Bounds and timings of the peer-to-peer transport.

    Sizes are in bytes, durations in seconds.
    """

    max_frame_bytes: int = 4 * MiB
    """Largest websocket message in either direction (also the websocket's own
    ``max_msg_size``). One message carries one or more whole frames, so this is
    also the largest single encoded frame."""

    send_queue_frames: int = 1024
    """Frames waiting to be written to one peer; beyond this ``send`` drops."""

    send_queue_bytes: int = 16 * MiB
    """Bytes waiting to be written to one peer; beyond this ``send`` drops."""

    handshake_timeout: float = 5.0
    """A connection that has not authenticated within this is closed."""

    connect_timeout: float = 5.0
    """Time allowed to open the TCP (and TLS) connection and upgrade it."""

    heartbeat_interval: float = 5.0
    """A ping is sent after this much silence; no pong within half of it
    closes the link (so a dead or paused peer is noticed within 1.5x this)."""

    write_timeout: float = 30.0
    """A single websocket write blocked this long means the peer stopped
    reading: the link is closed."""

    close_timeout: float = 2.0
    """How long a clean close waits for the peer's close reply."""

    reconnect_base: float = 0.5
    """First reconnection delay; it doubles after each failed attempt."""

    reconnect_cap: float = 30.0
    """Largest reconnection delay (before jitter)."""

    max_pending_requests: int = 256
    """Our requests to one peer that may await an answer at once."""

    max_inflight_requests: int = 32
    """Requests from one peer we serve at once; more are answered 'busy'."""

    max_pending_handshakes: int = 16
    """Unauthenticated inbound connections held at once; more get HTTP 503.
    Each may buffer up to one ``max_frame_bytes`` message before it is
    refused, so this also bounds what strangers can make us hold."""

    penalty_threshold: int = 100
    """Penalty score at which a peer is disconnected and banned."""

    penalty_window: float = 60.0
    """The score drains by one point every ``penalty_window /
    penalty_threshold`` seconds, so occasional mistakes are forgiven and
    bursts are not."""

    ban_seconds: float = 600.0
    """How long a banned peer is refused (in both directions)."""

    inbound_frames_per_second: float = 10_000.0
    """Sustained rate of frames accepted from one peer. A frame beyond the
    rate (and the burst) is dropped with the rest of its message, and each
    message cut short this way costs the peer one penalty point."""

    inbound_frames_burst: int = 20_000
    """Frames one peer may send in a burst above the sustained rate."""

    def __post_init__(self) -> None:
        positive = (
            "max_frame_bytes",
            "send_queue_frames",
            "send_queue_bytes",
            "handshake_timeout",
            "connect_timeout",
            "heartbeat_interval",
            "write_timeout",
            "close_timeout",
            "reconnect_base",
            "reconnect_cap",
            "max_pending_requests",
            "max_inflight_requests",
            "max_pending_handshakes",
            "penalty_threshold",
            "penalty_window",
            "ban_seconds",
            "inbound_frames_per_second",
            "inbound_frames_burst",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"P2PLimits.{name} must be a positive number, got {value!r}")
        if self.max_frame_bytes < 1024:
            raise ValueError("P2PLimits.max_frame_bytes must be at least 1024 (a handshake must fit)")
        if self.send_queue_bytes < self.max_frame_bytes:
            raise ValueError("P2PLimits.send_queue_bytes must hold at least one maximum-size frame")
        if self.reconnect_cap < self.reconnect_base:
            raise ValueError("P2PLimits.reconnect_cap must not be below reconnect_base")
