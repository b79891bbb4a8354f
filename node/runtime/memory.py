"""The node's memory, as `GET /v1/status` reports it: resident sizes read from the kernel, and
a sampler that keeps the peak of the anonymous resident size (what the node itself holds).
"""

from __future__ import annotations

import os
import resource

from node.runtime.clock import Clock, TimerHandle

MEMORY_SAMPLE_S = 1.0  # how often the node samples its anonymous memory (for its peak)


def peak_rss_mb() -> int:
    """This process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def rss_mb() -> int:
    """This process's resident memory now, in MiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def rss_anon_mb() -> int:
    """This process's anonymous resident memory in MiB: its own (Python objects, LevelDB's
    memtables and block cache), without the file pages mapped into it. LevelDB maps its table
    files into memory, and every page of them read counts in the resident size too, though they
    are the kernel's page cache, shared and dropped under memory pressure. 0 without /proc."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class MemorySampler:
    """Samples the anonymous resident size every MEMORY_SAMPLE_S on `clock` and keeps its peak."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.peak_anon_mb = 0  # largest anonymous resident memory sampled (see rss_anon_mb)
        self._handle: TimerHandle | None = None

    def start(self) -> None:
        self.peak_anon_mb = max(self.peak_anon_mb, rss_anon_mb())
        self._handle = self.clock.call_later(MEMORY_SAMPLE_S, self.start)

    def stop(self) -> None:
        if self._handle:
            self._handle.cancel()
            self._handle = None

    def report(self) -> dict[str, int]:
        """The memory fields of the node's status."""
        anon = rss_anon_mb()
        return {"peak_rss_mb": peak_rss_mb(), "rss_mb": rss_mb(), "rss_anon_mb": anon,
                "peak_rss_anon_mb": max(self.peak_anon_mb, anon)}
