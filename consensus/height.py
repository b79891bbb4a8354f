"""Everything the engine knows about the height being decided, with named records; dropped when final.

`HeightState` holds our own signed messages by view, the proposals accepted, the votes of
others (`VoteSet`s), the latest view change of each validator, the highest prepared
certificate, block payloads and where they came from, and what a new primary or a decided
height is waiting for. Its `phase` is the one place the engine's phase is read from:

| phase          | when                                                                  |
| -------------- | --------------------------------------------------------------------- |
| pre-prepare    | in view v, waiting for (or validating) the view's proposal             |
| prepare        | our PREPARE for view v is out, waiting for a quorum of them            |
| commit         | our COMMIT for view v is out, waiting for a quorum of commits          |
| view-change    | our VIEW-CHANGE for view v is out, waiting for NEW-VIEW (or sending it)|
| awaiting-block | a quorum of commits is seen; waiting for a valid payload of the block  |

`TRANSITIONS` is the engine's table of legal moves, as data: (phase, event) -> the phases that
may follow (`NEXT_HEIGHT`: the height is final and the engine moves on). One call into the
engine may make several moves in a row (a stashed quorum replayed on entering a view), and
views only grow within a height. `tests/unit/consensus/test_transitions.py` runs the simulator
and fails on any phase change the table does not allow.

| phase                       | event                                          | next                       |
| --------------------------- | ---------------------------------------------- | -------------------------- |
| pre-prepare                 | the view's proposal is validated               | prepare                    |
| prepare                     | a quorum of PREPAREs                           | commit                     |
| pre-prepare/prepare/commit  | the view timer fires                           | view-change                |
| any but awaiting-block      | f + 1 view changes for higher views            | view-change                |
| view-change                 | a quorum asks for this view or a later one     | view-change (timer armed)  |
| view-change                 | the timer of the view change fires             | view-change (next view)    |
| any but awaiting-block      | a valid NEW-VIEW (received, or sent as primary)| pre-prepare (a later view) |
| any but awaiting-block      | a quorum of COMMITs, or a valid DECISION       | awaiting-block, next height|
| awaiting-block              | the decided block's payload is validated       | next height                |
| any                         | `on_block_synced` for this height or later     | next height                |

`restore` rebuilds our own votes at this height from the WAL after a restart.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from consensus.certificate import CommitCertificate, PreparedCertificate
from consensus.messages import Commit, NewView, Prepare, PrePrepare, ViewChange
from consensus.validators import ValidatorSet
from consensus.votes import VoteSet
from consensus.wal import WalRecord


class Phase(enum.Enum):
    """Where the engine is within the height (see the module table)."""

    PRE_PREPARE = "pre-prepare"
    PREPARE = "prepare"
    COMMIT = "commit"
    VIEW_CHANGE = "view-change"
    AWAITING_BLOCK = "awaiting-block"


class Event(enum.Enum):
    """What moves the engine from one phase to another (see `TRANSITIONS`)."""

    PROPOSAL_VALID = "the view's proposal is validated"
    PREPARE_QUORUM = "a quorum of PREPAREs"
    VIEW_TIMER = "the view timer fires"
    JOIN = "f + 1 view changes for higher views"
    QUORUM_ASKS = "a quorum asks for this view or a later one"
    NEW_VIEW = "a valid NEW-VIEW (received, or sent as primary)"
    COMMIT_QUORUM = "a quorum of COMMITs, or a valid DECISION"
    BLOCK_VALID = "the decided block's payload is validated"
    SYNCED = "`on_block_synced` for this height or later"


NEXT_HEIGHT: Final = "next height"
Next = Phase | Literal["next height"]
_NORMAL = (Phase.PRE_PREPARE, Phase.PREPARE, Phase.COMMIT)
_UNDECIDED = _NORMAL + (Phase.VIEW_CHANGE,)

TRANSITIONS: dict[tuple[Phase, Event], frozenset[Next]] = {
    (Phase.PRE_PREPARE, Event.PROPOSAL_VALID): frozenset({Phase.PREPARE}),
    (Phase.PREPARE, Event.PREPARE_QUORUM): frozenset({Phase.COMMIT}),
    **{(p, Event.VIEW_TIMER): frozenset({Phase.VIEW_CHANGE}) for p in _UNDECIDED},
    **{(p, Event.JOIN): frozenset({Phase.VIEW_CHANGE}) for p in _UNDECIDED},
    (Phase.VIEW_CHANGE, Event.QUORUM_ASKS): frozenset({Phase.VIEW_CHANGE}),
    **{(p, Event.NEW_VIEW): frozenset({Phase.PRE_PREPARE}) for p in _UNDECIDED},
    **{(p, Event.COMMIT_QUORUM): frozenset({Phase.AWAITING_BLOCK, NEXT_HEIGHT}) for p in _UNDECIDED},
    (Phase.AWAITING_BLOCK, Event.BLOCK_VALID): frozenset({NEXT_HEIGHT}),
    **{(p, Event.SYNCED): frozenset({NEXT_HEIGHT}) for p in Phase},
}


def reachable(phase: Phase) -> frozenset[Next]:
    """Every phase (or `NEXT_HEIGHT`) that one or more moves of `TRANSITIONS` lead to from `phase`."""
    seen: set[Next] = set()
    todo: list[Next] = [phase]
    while todo:
        p = todo.pop()
        for (start, _event), targets in TRANSITIONS.items():
            if start == p:
                todo.extend(t for t in targets if t not in seen)
                seen.update(targets)
    return frozenset(seen)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewViewPlan:
    """As primary of `view`: the view changes to enclose, and the digest to re-propose (None: a new block)."""

    view: int
    view_changes: tuple[ViewChange, ...]
    digest: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """A quorum of commits seen for `digest` in `view`, waiting for the block's payload."""

    view: int
    digest: bytes
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True, kw_only=True)
class LastDecision:
    """The last final block: what a DECISION for a validator one height behind is made of."""

    view: int
    digest: bytes
    payload: bytes | None
    certificate: CommitCertificate


class HeightState:
    """The state of one height (see the module docstring)."""

    def __init__(self, height: int, validators: ValidatorSet, resend_ms: int) -> None:
        self.height = height
        self.validators = validators
        self.resend_ms = resend_ms
        self.view = 0
        self.in_view_change = False
        self.view_timer_armed = False
        # Our own signed messages, by view.
        self.my_pre_prepare: dict[int, PrePrepare] = {}
        self.my_prepare: dict[int, Prepare] = {}
        self.my_commit: dict[int, Commit] = {}
        self.my_view_change: dict[int, ViewChange] = {}
        self.my_new_view: dict[int, NewView] = {}
        # The proposal accepted in each view (from the primary, or enclosed in a NEW-VIEW).
        self.pre_prepare: dict[int, PrePrepare] = {}
        self.new_view: dict[int, NewView] = {}
        # First vote seen from each validator, by view; a second, different one is evidence.
        self.prepares: VoteSet[Prepare] = VoteSet()
        self.commits: VoteSet[Commit] = VoteSet()
        # The latest (highest-view) view change of each validator, ours included.
        self.view_changes: dict[bytes, ViewChange] = {}
        # Keys (`consensus.view_change.verified_key`) of view changes whose signature and certificate
        # were checked: each names the signer, the exact signed bytes and the signature.
        self.verified_view_changes: set[bytes] = set()
        # The highest prepared certificate we hold.
        self.prepared: PreparedCertificate | None = None
        # Block payloads known to be the valid block of their digest, and those being checked.
        self.good_payloads: dict[bytes, bytes] = {}
        self.validating: dict[bytes, bytes] = {}
        # Payloads waiting to be validated for a digest, one per validator that offered one.
        self.candidates: dict[bytes, dict[bytes, bytes]] = {}
        self.new_view_pending: NewViewPlan | None = None
        self.decided: Decided | None = None
        self.decisions_sent: set[bytes] = set()

    def view_timer(self) -> tuple[str, int, int]:
        return ("view", self.height, self.view)

    def resend_timer(self) -> tuple[str, int]:
        return ("resend", self.height)

    @property
    def phase(self) -> Phase:
        if self.decided is not None:
            return Phase.AWAITING_BLOCK
        if self.in_view_change:
            return Phase.VIEW_CHANGE
        if self.view in self.my_commit:
            return Phase.COMMIT
        if self.view in self.my_prepare:
            return Phase.PREPARE
        return Phase.PRE_PREPARE

    def prepared_before(self, digest: bytes) -> bool:
        """Whether a verified certificate shows a quorum prepared (or committed) `digest` at this
        height. Such a block was validated by honest validators when it was fresh, and must be
        re-proposed after a view change however long that took: the runtime then does not hold
        its (old) time against it."""
        if self.decided is not None and self.decided.digest == digest:
            return True
        changes = list(self.view_changes.values()) + [vc for nv in self.new_view.values() for vc in nv.view_changes]
        return any(vc.prepared is not None and vc.prepared.digest == digest for vc in changes)

    def payload_offers(self, digest: bytes) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        """(source, payload) offers for `digest` held here: from proposals, and from view changes."""
        proposals = [(pp.sender, pp.payload) for pp in self.pre_prepare.values() if pp.digest == digest and pp.payload]
        changes = [(vc.sender, vc.payload) for vc in self.view_changes.values()
                   if vc.payload is not None and vc.prepared is not None and vc.prepared.digest == digest]
        return proposals, changes

    def raise_prepared(self, cert: PreparedCertificate | None) -> None:
        """Hold `cert` if it is of a higher view than the prepared certificate held."""
        if cert is not None and (self.prepared is None or cert.view > self.prepared.view):
            self.prepared = cert

    def restore(self, records: Sequence[WalRecord], me: bytes) -> None:
        """Rebuild our own votes at this height from the WAL, so we resend them and never contradict them."""
        for record in records:
            msg = record.message
            if type(msg) is PrePrepare:
                self.my_pre_prepare[msg.view] = msg
                self.pre_prepare[msg.view] = msg
                self.good_payloads[msg.digest] = msg.payload
            elif type(msg) is Prepare:
                self.my_prepare[msg.view] = msg
                self.prepares.add(msg)
                if record.accepted is not None:
                    self.pre_prepare.setdefault(msg.view, record.accepted)
                    self.good_payloads[msg.digest] = record.accepted.payload
            elif type(msg) is Commit:
                self.my_commit[msg.view] = msg
                self.commits.add(msg)
                self.raise_prepared(record.prepared)
            elif type(msg) is ViewChange:
                self.my_view_change[msg.view] = msg
                known = self.view_changes.get(me)
                if known is None or known.view < msg.view:
                    self.view_changes[me] = msg
                self.raise_prepared(msg.prepared)
                if msg.payload is not None and msg.prepared is not None:
                    self.good_payloads.setdefault(msg.prepared.digest, msg.payload)
            elif type(msg) is NewView:
                self.my_new_view[msg.view] = msg
                self.new_view[msg.view] = msg
                self.my_pre_prepare[msg.view] = msg.pre_prepare
                self.pre_prepare[msg.view] = msg.pre_prepare
                self.good_payloads[msg.pre_prepare.digest] = msg.pre_prepare.payload
            self.view = max(self.view, msg.view)
        if records:
            v = self.view
            self.in_view_change = v in self.my_view_change and not (
                v in self.my_new_view or v in self.my_prepare or v in self.my_commit)
