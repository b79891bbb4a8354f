"""Penalty scores and bans per peer, without IO: the clock is passed in.

A peer's score rises by the weight of each penalty and drains by one point
every ``window / threshold`` seconds, so a peer that occasionally sends a bad
message (a race, a stale vote) is forgiven while a burst of bad messages is
not. Scores are whole points, so "the threshold-th bad message in a burst
bans" holds exactly. When the score reaches the threshold the peer is banned
for ``ban_seconds``; its score starts again from zero.

Only authenticated peers are ever penalized, so the table is bounded by the
set of admitted node ids; entries that have fully drained can be pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PenaltyBox", "PeerPenalties"]


@dataclass(slots=True)
class PeerPenalties:
    """The standing of one peer (mutable bookkeeping, not a message)."""

    score: int = 0
    drained_until: float = 0.0
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
        self._seconds_per_point = window / threshold
        self._ban_seconds = ban_seconds
        self._peers: dict[bytes, PeerPenalties] = {}

    def __len__(self) -> int:
        return len(self._peers)

    @property
    def threshold(self) -> int:
        """The score at which a peer is banned."""
        return self._threshold

    def _drain(self, entry: PeerPenalties, now: float) -> None:
        if entry.score == 0:
            entry.drained_until = now
            return
        points = int((now - entry.drained_until) / self._seconds_per_point)
        if points <= 0:
            return
        if points >= entry.score:
            entry.score = 0
            entry.drained_until = now
        else:
            entry.score -= points
            entry.drained_until += points * self._seconds_per_point

    def penalize(self, peer_id: bytes, weight: int, reason: str, *, now: float) -> bool:
        """Add ``weight`` to the peer's score; True if this starts a ban."""
        if type(weight) is not int or weight < 1:
            raise ValueError(f"penalty weight must be a positive int, got {weight!r}")
        entry = self._peers.get(peer_id)
        if entry is None:
            entry = self._peers[peer_id] = PeerPenalties(drained_until=now)
        entry.total_weight += weight
        entry.last_reason = reason
        if entry.banned_until > now:
            return False  # already banned; nothing more to do
        self._drain(entry, now)
        entry.score += weight
        if entry.score < self._threshold:
            return False
        entry.score = 0
        entry.drained_until = now
        entry.banned_until = now + self._ban_seconds
        entry.bans += 1
        return True

    def banned_for(self, peer_id: bytes, *, now: float) -> float:
        """Seconds left in the peer's ban, 0.0 if it is not banned."""
        entry = self._peers.get(peer_id)
        if entry is None:
            return 0.0
        return max(0.0, entry.banned_until - now)

    def score(self, peer_id: bytes, *, now: float) -> int:
        """The peer's current (drained) score."""
        entry = self._peers.get(peer_id)
        if entry is None:
            return 0
        self._drain(entry, now)
        return entry.score

    def standing(self, peer_id: bytes) -> PeerPenalties | None:
        """The raw bookkeeping of a peer, for statistics."""
        return self._peers.get(peer_id)

    def prune(self, *, now: float) -> None:
        """Forget peers that are neither banned nor carrying any score."""
        for peer_id in [p for p, e in self._peers.items() if e.banned_until <= now and self.score(p, now=now) == 0]:
            del self._peers[peer_id]
