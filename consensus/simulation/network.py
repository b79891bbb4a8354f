"""The simulated network: per-link latency, loss, duplication, reordering and partitions.

Endpoints are numbered. Every ordered pair of endpoints is a link with its own base latency,
drawn once per run; each message adds jitter, and a fraction of messages is delayed much more
than the others (reordering). A message may be dropped or delivered twice. A partition splits
the endpoints into groups for a time; messages between groups are lost, both when sent and
when they would arrive. All randomness comes from the `random.Random` the simulation passes in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    """Link behaviour; probabilities in [0, 1), times in simulated milliseconds."""

    min_latency_ms: int = 5
    max_latency_ms: int = 60
    jitter_ms: int = 20
    drop: float = 0.0
    duplicate: float = 0.02
    reorder: float = 0.05
    reorder_delay_ms: int = 200

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1)")
        if not 0 <= self.min_latency_ms <= self.max_latency_ms:
            raise ValueError("latencies must satisfy 0 <= min <= max")


@dataclass(frozen=True, slots=True, kw_only=True)
class Partition:
    """From `start_ms` to `end_ms`, only endpoints in the same group can talk."""

    start_ms: int
    end_ms: int
    groups: tuple[frozenset[int], ...]

    def separates(self, a: int, b: int) -> bool:
        for group in self.groups:
            if a in group:
                return b not in group
        return True


class Network:
    """Decides the fate of each message: when it arrives, if at all, and whether twice."""

    def __init__(self, config: NetworkConfig, endpoints: int, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._latency = [[rng.randint(config.min_latency_ms, config.max_latency_ms) for _ in range(endpoints)]
                         for _ in range(endpoints)]
        self.partitions: list[Partition] = []
        self.dropped = 0
        self.duplicated = 0

    def partitioned(self, a: int, b: int, now: int) -> bool:
        for p in self.partitions:
            if p.start_ms <= now < p.end_ms and p.separates(a, b):
                return True
        return False

    def delays(self, src: int, dst: int, now: int) -> list[int]:
        """Delays after which copies of a message sent now from `src` arrive at `dst` (maybe none)."""
        cfg = self.config
        rng = self._rng
        if self.partitioned(src, dst, now) or (cfg.drop and rng.random() < cfg.drop):
            self.dropped += 1
            return []
        base = self._latency[src][dst]
        delay = base + int(rng.random() * cfg.jitter_ms)
        if cfg.reorder and rng.random() < cfg.reorder:
            delay += int(rng.random() * cfg.reorder_delay_ms)
        if cfg.duplicate and rng.random() < cfg.duplicate:
            self.duplicated += 1
            return [delay, base + int(rng.random() * (cfg.jitter_ms + cfg.reorder_delay_ms))]
        return [delay]

    def round_trip(self, a: int, b: int) -> int:
        return self._latency[a][b] + self._latency[b][a]
