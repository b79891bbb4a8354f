"""Votes of one kind (PREPARE or COMMIT) at one height: the first of each validator per view, counted.

An honest validator sends at most one vote of a kind per view, so the set keeps the first vote
it sees from each validator in each view; a second, identical one is a duplicate, a second,
different one a conflict (the caller turns it into evidence). Counts per (view, digest) are kept
as votes arrive, so a quorum check costs nothing; the signatures of a quorum become a certificate.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from consensus.messages import Commit, Prepare

AddResult = Literal["added", "duplicate", "conflict"]
V = TypeVar("V", Prepare, Commit)


class VoteSet(Generic[V]):
    """The first vote of each validator in each view, and how many votes each (view, digest) has."""

    __slots__ = ("_by_view", "_count")

    def __init__(self) -> None:
        self._by_view: dict[int, dict[bytes, V]] = {}
        self._count: dict[tuple[int, bytes], int] = {}

    def add(self, vote: V) -> tuple[AddResult, V | None]:
        """Count `vote` unless its sender already voted in its view; returns what happened and the earlier vote."""
        votes = self._by_view.setdefault(vote.view, {})
        known = votes.get(vote.sender)
        if known is not None:
            return ("duplicate" if known.digest == vote.digest else "conflict"), known
        votes[vote.sender] = vote
        key = (vote.view, vote.digest)
        self._count[key] = self._count.get(key, 0) + 1
        return "added", None

    def count(self, view: int, digest: bytes) -> int:
        """How many validators voted for `digest` in `view`."""
        return self._count.get((view, digest), 0)

    def voted(self, view: int, sender: bytes) -> bool:
        """Whether `sender` has a vote counted in `view`."""
        return sender in self._by_view.get(view, {})

    def signatures(self, view: int, digest: bytes) -> tuple[tuple[bytes, bytes], ...]:
        """(voter, signature) of every vote for `digest` in `view`, sorted by voter: a certificate's votes."""
        return tuple(sorted((s, v.signature) for s, v in self._by_view.get(view, {}).items() if v.digest == digest))
