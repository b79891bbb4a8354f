"""Penalty scores and bans per peer, without IO: the clock is passed in.

A peer's score rises by the weight of each penalty and drains continuously at
``threshold / window`` points a second, so a peer that occasionally sends a
bad message (a race, a stale vote) is forgiven while a burst of bad messages
is not. When the score reaches the threshold the peer is banned for
``ban_seconds`` and its score starts again from zero once the ban ends.

Only authenticated peers are ever penalized, so the table is bounded by the
set of admitted node ids; entries that have fully drained are pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PenaltyBox", "PeerPenalties"]


@dataclass(slots=True)
class PeerPenalties:
    """The standing of one peer (mutable bookkeeping, not a message)."""

    score: float = 0.0
    updated_at: float = 0.0
    total_weight: int = 0
    banned_until: float = 0.0
    bans: int = 0
    last_reason: str = ""


class PenaltyBox:
    """Tracks penalty scores and bans of peers."""

    def __init__(self, *, threshold: int, window: float, ban_seconds: float) -> None:
        if threshold <= 0 or window <= 0 or ban_seconds <= 0:
            raise ValueError("threshold, window and ban_seconds must be positive")
        self._threshold = threshold
        self._drain_per_second = threshold / window
        self._ban_seconds = ban_seconds
        self._peers: dict[bytes, PeerPenalties] = {}

    @property
    def threshold(self) -> int:
        """The score at which a peer is banned."""
        return self._threshold

    def _drained(self, entry: PeerPenalties, now: float) -> float:
        elapsed = max(0.0, now - entry.updated_at)
        return max(0.0, entry.score - elapsed * self._drain_per_second)

    def penalize(self, peer_id: bytes, weight: int, reason: str, *, now: float) -> bool:
        """Add ``weight`` to the peer's score; True if this starts a ban."""
        if type(weight) is not int or weight < 1:
            raise ValueError(f"penalty weight must be a positive int, got {weight!r}")
        entry = self._peers.get(peer_id)
        if entry is None:
            entry = self._peers[peer_id] = PeerPenalties(updated_at=now)
        entry.total_weight += weight
        entry.last_reason = reason
        if entry.banned_until > now:
            return False  # already banned; nothing more to do
        entry.score = self._drained(entry, now) + weight
        entry.updated_at = now
        if entry.score < self._threshold:
            return False
        entry.score = 0.0
        entry.banned_until = now + self._ban_seconds
        entry.bans += 1
        return True

    def banned_for(self, peer_id: bytes, *, now: float) -> float:
        """Seconds left in the peer's ban, 0.0 if it is not banned."""
        entry = self._peers.get(peer_id)
        if entry is None:
            return 0.0
        return max(0.0, entry.banned_until - now)

    def score(self, peer_id: bytes, *, now: float) -> float:
        """The peer's current (drained) score."""
        entry = self._peers.get(peer_id)
        return 0.0 if entry is None else self._drained(entry, now)

    def standing(self, peer_id: bytes) -> PeerPenalties | None:
        """The raw bookkeeping of a peer, for statistics."""
        return self._peers.get(peer_id)

    def prune(self, *, now: float) -> None:
        """Forget peers that are neither banned nor carrying any score."""
        for peer_id in [
            p for p, e in self._peers.items() if e.banned_until <= now and self._drained(e, now) == 0.0
        ]:
            del self._peers[peer_id]
