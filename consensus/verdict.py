"""What the engine did with a message from a peer: process it, stash it for later, or discard it (and why).

A peer's bad input is never an exception: it is a verdict with a reason, which the runtime may
count against the peer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VerdictKind = Literal["process", "stash", "discard"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What the engine did with a message from a peer, and why."""

    kind: VerdictKind
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("process", "stash", "discard"):
            raise ValueError(f"unknown verdict kind {self.kind!r}")


PROCESS = Verdict(kind="process")


def discard(reason: str) -> Verdict:
    """The message was dropped, for `reason`."""
    return Verdict(kind="discard", reason=reason)


def stash(reason: str) -> Verdict:
    """The message was kept, to be replayed when the engine reaches its height or view."""
    return Verdict(kind="stash", reason=reason)
