"""lock-split: a Byzantine validator that steers the schedule to leave a stale quorum behind (issue 14).

The random schedules rarely produce the one state in which a certificate's view matters: a
block X prepared by a quorum in one view that no honest validator is locked on, and a block Y
prepared later and final at one honest validator only. This adversary makes that state on
purpose, at one height of the fault window where it is the primary of view 3, using only what
the network model allows around it (messages lost between honest validators, as a partition
would lose them) and its own key:

1. view 0: honest PREPAREs do not reach each other, so nobody but the adversary holds X's
   quorum of PREPARE signatures; its own VIEW-CHANGEs hide the lock it holds;
2. view 1: the honest primary proposes Y; its COMMITs and everyone's reach only one honest
   validator F, which finalizes Y; the adversary prepares and commits nothing, so view 2 fails;
3. view 3: its VIEW-CHANGE carries X's PREPARE signatures as a certificate of view 2, and as
   primary it re-proposes X in a NEW-VIEW with the honest view changes (locked on Y at view 1).

An engine that checks a certificate without its view accepts that NEW-VIEW, and the honest
validators other than F finalize X: a fork. The real engine refuses the certificate, and once
the fault window ends F's DECISION brings the others to Y.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from consensus.certificate import PreparedCertificate
from consensus.messages import Commit, Decision, Message, NewView, Prepare, PrePrepare, ViewChange, sign_message
from consensus.validators import ValidatorSet

if TYPE_CHECKING:
    from consensus.simulation.cluster import Endpoint

STEER_VIEW = 3


class LockSplitter:
    """The plan of one steering adversary (see the module docstring); inert outside its height."""

    def __init__(self, chain_id: str, validators_at: Callable[[int], ValidatorSet], fault_window_ms: int) -> None:
        self._chain_id = chain_id
        self._validators_at = validators_at
        self._fault_window_ms = fault_window_ms
        self.height: int | None = None
        self._me: bytes | None = None
        self._f: bytes | None = None
        self._x: tuple[bytes, dict[bytes, bytes]] | None = None  # X's digest and PREPARE signatures (view 0)
        self._x_payload: bytes | None = None
        self._vcs: dict[bytes, ViewChange] = {}
        self.sent = False
        self._joined: set[int] = set()
        self.steps: list[str] = []

    def choose(self, ep: Endpoint, current: int, now: int) -> None:
        """Pick the height: the first after `current` (so that nothing of it was sent yet), early in the
        fault window, where `ep` is the primary of view 3 and of no earlier view."""
        if self.height is not None or now > self._fault_window_ms // 4:
            return
        me = ep.signer.public_key
        for height in range(current + 1, current + 1 + self._validators_at(current + 1).n):
            vs = self._validators_at(height)
            if vs.n >= 4 and vs.primary(height, STEER_VIEW) == me and me not in (vs.primary(height, v) for v in range(3)):
                self.height, self._me, self._f = height, me, vs.primary(height, 1)
                self.steps.append(f"height {height}")
                return

    def plays(self, ep: Endpoint) -> bool:
        """True if `ep` is the validator the plan was made for (colluders share one plan)."""
        return self.height is not None and ep.signer.public_key == self._me

    def active(self, now: int) -> bool:
        return self.height is not None and now < self._fault_window_ms

    def drop(self, src: Endpoint, dest: Endpoint, msg: Message, now: int) -> bool:
        """True if the message is lost (the adversary's own prompt answers are never passed here)."""
        if self.height is None or not self.active(now) or dest.behaviours:
            return False
        if msg.height != self.height:
            # Until the plan is played out, nothing of ours shows that a later height has begun
            # (with F's, that would send the others to block sync).
            return msg.height > self.height and not self.sent and src.signer.public_key == self._me
        kind = type(msg)
        if src.signer.public_key == self._me:
            return kind in (Commit, Decision) or (kind is Prepare and msg.view >= 1)
        if kind is Prepare and msg.view == 0:
            return True
        if kind is Commit and 1 <= msg.view < STEER_VIEW and dest.signer.public_key != self._f:
            return True
        return kind is Decision and src.signer.public_key == self._f

    def learn(self, msg: Message) -> None:
        if msg.height != self.height:
            return
        if type(msg) is PrePrepare and msg.view == 0:
            self._x_payload = msg.payload
        if type(msg) is Prepare and msg.view == 0:
            if self._x is None:
                self._x = (msg.digest, {})
            if msg.digest == self._x[0]:
                self._x[1][msg.sender] = msg.signature
        if type(msg) is ViewChange and msg.view == STEER_VIEW and msg.sender != self._me:
            self._vcs[msg.sender] = msg.stripped()

    def own_view_change(self, ep: Endpoint, vc: ViewChange) -> ViewChange:
        """Our VIEW-CHANGE as the plan needs it: no lock, then X's signatures as a certificate of view 2."""
        if vc.height != self.height:
            return vc
        prepared = self._stale_certificate() if vc.view == STEER_VIEW else None
        if prepared == vc.prepared:
            return vc
        payload = self._x_payload if prepared is not None else None
        return sign_message(ViewChange(chain_id=self._chain_id, height=vc.height, view=vc.view, sender=vc.sender,
                                       prepared=prepared, payload=payload), ep.signer)

    def _stale_certificate(self) -> PreparedCertificate | None:
        assert self.height is not None
        if self._x is None or len(self._x[1]) < self._validators_at(self.height).quorum:
            return None
        return PreparedCertificate(height=self.height, view=STEER_VIEW - 1, digest=self._x[0],
                                   votes=tuple(sorted(self._x[1].items())))

    def join(self, ep: Endpoint, vc: ViewChange, everyone: Sequence[Endpoint]) -> list[tuple[Endpoint, Message]]:
        """Our own VIEW-CHANGE for the view an honest one asks for (our engine may have moved on)."""
        if vc.height != self.height or self.sent or not 2 <= vc.view <= STEER_VIEW or vc.view in self._joined:
            return []
        self._joined.add(vc.view)
        own = self.own_view_change(ep, ViewChange(chain_id=self._chain_id, height=vc.height, view=vc.view,
                                                  sender=ep.signer.public_key))
        if not own.signature:
            own = sign_message(own, ep.signer)
        self.steps.append(f"view change {vc.view}")
        return [(d, own) for d in everyone if d.honest]

    def new_view(self, ep: Endpoint, everyone: Sequence[Endpoint]) -> list[tuple[Endpoint, Message]]:
        """As primary of view 3, once enough honest view changes are in: X, with the stale certificate as proof."""
        if self.sent or self.height is None or self._me is None or self._x_payload is None:
            return []  # (`_me` is set with `height`)
        vs = self._validators_at(self.height)
        cert = self._stale_certificate()
        if cert is None or len(self._vcs) < vs.quorum - 1:
            return []
        own = self.own_view_change(ep, ViewChange(chain_id=self._chain_id, height=self.height, view=STEER_VIEW,
                                                  sender=ep.signer.public_key))
        chosen = sorted([own.stripped(), *list(self._vcs.values())[:vs.quorum - 1]], key=lambda vc: vc.sender)
        pp = sign_message(PrePrepare(chain_id=self._chain_id, height=self.height, view=STEER_VIEW, sender=self._me,
                                     digest=cert.digest, payload=self._x_payload), ep.signer)
        nv = sign_message(NewView(chain_id=self._chain_id, height=self.height, view=STEER_VIEW, sender=self._me,
                                  view_changes=tuple(chosen), pre_prepare=pp), ep.signer)
        votes = [sign_message(cls(chain_id=self._chain_id, height=self.height, view=STEER_VIEW, sender=self._me,
                                  digest=cert.digest), ep.signer) for cls in (Prepare, Commit)]
        self.sent = True
        self.steps.append("new-view sent")
        return [(d, m) for d in everyone if d.honest for m in [nv, *votes]]
