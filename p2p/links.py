"""The link table: which of a peer's links carries frames, and when to dial it.

Pure bookkeeping with no IO, no event loop and no clock: ``PeerLinks`` holds
the (at most two) authenticated links to one peer, one per direction, and
answers each change with a decision that ``p2p.network`` carries out on the
sockets. ``DialSchedule`` says how long to wait before the next dial.

The rules (``docs/p2p.md``, "One link per pair"):

* A link is *attached* while it is one of its peer's links. A new link in the
  same direction as an attached one replaces it (the peer restarted): the old
  one is retired.
* With an inbound and an outbound link at once, the link *dialed by the lower
  id* wins. The higher-id end retires its own outbound link at once; the
  lower-id end keeps both and lets the peer close the other. Both ends apply
  the same rule, so they agree without a message about it.
* The link to send on (``current``) is the lower id's dial when there is one,
  else whichever link there is.
* A retired link is no longer attached, but the network still reads it for a
  grace period before it closes it: the peer may have written on it before it
  learned of the switch. Retiring a link changes nothing for the node (no
  connected or disconnected event).
* Detaching a peer's last link disconnects the peer; detaching any other link,
  or one already retired or detached, is silent.
* The higher id gives the lower one a head start: it waits an extra jittered
  ``base`` before each dial, so that the expected dialer usually dials first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from p2p.backoff import Backoff

__all__ = [
    "REASON_REPLACED",
    "REASON_DUPLICATE",
    "LinkEnd",
    "Retire",
    "Attached",
    "PeerLinks",
    "dials_first",
    "DialSchedule",
]

REASON_REPLACED = "replaced by a newer connection"
REASON_DUPLICATE = "duplicate link"


class LinkEnd(Protocol):
    """What the table needs to know of a link: which end dialed it."""

    @property
    def outbound(self) -> bool:
        """True if we dialed it, False if the peer did."""
        ...


L = TypeVar("L", bound=LinkEnd)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retire(Generic[L]):
    """Stop sending on ``link``; read it for the grace period, then close it normally with ``reason``."""

    link: L
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Attached(Generic[L]):
    """What attaching a link decided.

    ``retire`` lists the links to retire: the one the new link replaced, or a
    duplicate (possibly the new link itself); ``connected`` is True when the
    peer had no link before (the node is told it connected); ``current`` is the
    link to send on from now.
    """

    retire: tuple[Retire[L], ...]
    connected: bool
    current: L


def dials_first(local_id: bytes, peer_id: bytes) -> bool:
    """Whether we are the end whose dial wins (the lower id)."""
    return local_id < peer_id


class PeerLinks(Generic[L]):
    """The attached links to one peer and the one we send on."""

    __slots__ = ("_ours_win", "inbound", "outbound", "current")

    def __init__(self, local_id: bytes, peer_id: bytes) -> None:
        self._ours_win = dials_first(local_id, peer_id)
        self.inbound: L | None = None
        self.outbound: L | None = None
        self.current: L | None = None

    def __len__(self) -> int:
        """How many links are attached (0, 1 or 2)."""
        return (self.inbound is not None) + (self.outbound is not None)

    def attached(self) -> tuple[L, ...]:
        """The attached links, outbound first."""
        return tuple(link for link in (self.outbound, self.inbound) if link is not None)

    def _choose(self) -> L | None:
        if self._ours_win:
            return self.outbound or self.inbound
        return self.inbound or self.outbound

    def attach(self, link: L) -> Attached[L]:
        """Make a freshly authenticated link one of the peer's.

        Even a link retired at once (a duplicate) is to be read until its
        retirement closes it.
        """
        if link.outbound:
            old, self.outbound = self.outbound, link
        else:
            old, self.inbound = self.inbound, link
        was_connected = self.current is not None
        retire: list[Retire[L]] = []
        if old is not None:
            retire.append(Retire(link=old, reason=REASON_REPLACED))
        if self.inbound is not None and self.outbound is not None and not self._ours_win:
            retire.append(Retire(link=self.outbound, reason=REASON_DUPLICATE))
            self.outbound = None
        current = self.current = self._choose()
        assert current is not None  # the new link or the one it lost to is attached
        return Attached(retire=tuple(retire), connected=not was_connected, current=current)

    def detach(self, link: L) -> bool:
        """Remove a link (it ended); True if the peer is now disconnected.

        That is the case only when ``link`` was the one we sent on and no other
        is left. A link that is not attached (retired, or detached already) is
        ignored.
        """
        if self.outbound is link:
            self.outbound = None
        elif self.inbound is link:
            self.inbound = None
        else:
            return False
        if self.current is not link:
            return False
        self.current = self._choose()
        return self.current is None


class DialSchedule:
    """When to dial one peer next: a head start for the lower id, then capped backoff.

    The network sleeps ``take_delay()`` before each attempt and reports each
    attempt's outcome to ``dialed``. Randomness comes from the injected ``rng``
    only, drawn in a fixed order (the head start, then after each attempt the
    backoff and the head start again).
    """

    __slots__ = ("_head_start_base", "_ours_win", "_rng", "_backoff", "_delay")

    def __init__(self, *, local_id: bytes, peer_id: bytes, base: float, cap: float, rng: random.Random) -> None:
        self._ours_win = dials_first(local_id, peer_id)
        self._head_start_base = base
        self._rng = rng
        self._backoff = Backoff(base=base, cap=cap, rng=rng)
        self._delay = self._head_start()

    def _head_start(self) -> float:
        """Extra wait before dialing a lower id, which is the one expected to dial."""
        if self._ours_win:
            return 0.0
        return self._rng.uniform(0.5, 1.0) * self._head_start_base

    def take_delay(self) -> float:
        """The pause due before the next attempt; taking it leaves none due."""
        delay, self._delay = self._delay, 0.0
        return delay

    def dialed(self, linked: bool) -> None:
        """One attempt ended; ``linked`` if it established a link (the backoff starts over)."""
        if linked:
            self._backoff.reset()
        self._delay = self._backoff.next_delay() + self._head_start()
