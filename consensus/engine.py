"""The agreement engine: PBFT for one height at a time, as a pure state machine.

Theory of operation
-------------------
Heights are decided one after another. At height h the engine runs views 0, 1, 2, ...; the
primary of view v is validator (h + v) mod n, and views start again at 0 at every height, so
view numbers never accumulate across heights.

Normal case, in view v:

1. The primary asks the runtime for a block (`RequestProposal`), signs a PRE-PREPARE with it,
   persists it and broadcasts it.
2. A validator that gets the primary's PRE-PREPARE asks the runtime to validate the block
   (`ValidateBlock`); when told it is good it persists and broadcasts PREPARE(h, v, digest).
   It never prepares two blocks in one view.
3. With a quorum of matching PREPAREs (its own among them) it holds a prepared certificate; it
   persists its COMMIT with that certificate and broadcasts the COMMIT.
4. A quorum of COMMITs for one digest, in any view of the height, makes the block final: the
   engine emits `CommitBlock` with the commit certificate and moves to height h + 1.

(The view-change half of the protocol is added in the next increment.)

Every vote goes out as `Persist` then `Broadcast`, and the runtime makes the `Persist` durable
before executing the next action, so a vote on the wire is always on disk first.

What the engine accepts from a peer
-----------------------------------
Every message gets a `Verdict`: "process", "stash" (for the next height or a later view; kept
in bounded memory and replayed when the engine gets there) or "discard" with a reason. Bad
input from a peer never raises; a contract broken by this node's runtime raises
`LocalProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Literal, Sequence

from .actions import (
    Action,
    Broadcast,
    CancelTimer,
    CommitBlock,
    Persist,
    PruneWal,
    ReportEvidence,
    RequestProposal,
    Send,
    SetTimer,
    ValidateBlock,
)
from .certificate import CommitCertificate, PreparedCertificate, sorted_votes, verify_certificate
from .crypto import Signer, Verifier
from .encoding import DIGEST_SIZE
from .errors import LocalProtocolError
from .evidence import Evidence
from .messages import (
    DEFAULT_MAX_PAYLOAD,
    Commit,
    Decision,
    Message,
    NewView,
    PrePrepare,
    Prepare,
    ViewChange,
    sign_message,
)
from .validators import ValidatorSet
from .wal import WalRecord, decode_record

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
_VOTE_KINDS = {PrePrepare: 1, Prepare: 2, Commit: 3}


def discard(reason: str) -> Verdict:
    return Verdict(kind="discard", reason=reason)


def stash(reason: str) -> Verdict:
    return Verdict(kind="stash", reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Tunables of the engine; all times are in milliseconds of the runtime's clock."""

    base_timeout_ms: int = 2000
    max_timeout_ms: int = 60000
    resend_interval_ms: int = 1000
    max_payload: int = DEFAULT_MAX_PAYLOAD
    stash_per_sender: int = 64
    stash_total: int = 2048
    max_evidence: int = 256
    commit_view_window: int = 32

    def __post_init__(self) -> None:
        for name in ("base_timeout_ms", "max_timeout_ms", "resend_interval_ms", "max_payload",
                     "stash_per_sender", "stash_total", "max_evidence", "commit_view_window"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int")
        if self.max_timeout_ms < self.base_timeout_ms:
            raise ValueError("max_timeout_ms must be >= base_timeout_ms")

    def view_timeout_ms(self, view: int) -> int:
        """Timeout of `view`: doubles with every failed view, capped."""
        if view >= 40:
            return self.max_timeout_ms
        return min(self.base_timeout_ms << view, self.max_timeout_ms)


class _Height:
    """Everything the engine knows about the height being decided; dropped when it is final."""

    def __init__(self, height: int, validators: ValidatorSet) -> None:
        self.height = height
        self.validators = validators
        self.view = 0
        # Our own signed messages, by view.
        self.my_pre_prepare: dict[int, PrePrepare] = {}
        self.my_prepare: dict[int, Prepare] = {}
        self.my_commit: dict[int, Commit] = {}
        # The proposal accepted in each view (from the primary, or enclosed in a NEW-VIEW).
        self.pre_prepare: dict[int, PrePrepare] = {}
        # First vote seen from each validator, by view; a second, different one is evidence.
        self.prepares: dict[int, dict[bytes, Prepare]] = {}
        self.commits: dict[int, dict[bytes, Commit]] = {}
        self.prepare_count: dict[tuple[int, bytes], int] = {}
        self.commit_count: dict[tuple[int, bytes], int] = {}
        # The highest prepared certificate we hold.
        self.prepared: PreparedCertificate | None = None
        # Block payloads known to be the valid block of their digest.
        self.good_payloads: dict[bytes, bytes] = {}
        self.validating: dict[bytes, bytes] = {}
        self.candidates: dict[bytes, list[bytes]] = {}
        self.rejected: set[tuple[int, bytes]] = set()
        # A quorum of commits seen, waiting for the payload: (view, digest, certificate).
        self.decided: tuple[int, bytes, CommitCertificate] | None = None
        self.decisions_sent: set[bytes] = set()

    def view_timer(self) -> tuple[str, int, int]:
        return ("view", self.height, self.view)

    def resend_timer(self) -> tuple[str, int]:
        return ("resend", self.height)


class Engine:
    """PBFT agreement on one block per height; events in, actions out (see the module docstring)."""

    def __init__(self, *, chain_id: str, validators: ValidatorSet, signer: Signer, verifier: Verifier,
                 config: EngineConfig, last_height: int, last_digest: bytes, wal: Sequence[bytes] = ()) -> None:
        if type(last_height) is not int or last_height < 0:
            raise LocalProtocolError("last_height must be an int >= 0")
        if type(last_digest) is not bytes or len(last_digest) != DIGEST_SIZE:
            raise LocalProtocolError("last_digest must be 32 bytes")
        self.chain_id = chain_id
        self.config = config
        self._signer = signer
        self._verifier = verifier
        self._me = signer.public_key
        self._last_height = last_height
        self._last_digest = last_digest
        self._schedule: dict[int, ValidatorSet] = {}
        self._previous_validators = validators
        self._last_decision: tuple[int, bytes, bytes | None, CommitCertificate] | None = None
        self._decision_message: Decision | None = None
        self._stash: dict[bytes, list[Message]] = {}
        self._stash_size = 0
        self._evidence: list[Evidence] = []
        self._evidence_keys: set[tuple[bytes, int, int, int]] = set()
        self._view_changes = 0
        self._started = False
        self._out: list[Action] = []
        self._restored: dict[int, list[WalRecord]] = {}
        for entry in wal:
            record = decode_record(entry, max_payload=config.max_payload)
            if record.message.sender != self._me or record.message.chain_id != chain_id:
                raise LocalProtocolError("the WAL holds a vote that is not ours or not for this chain")
            if record.message.height > last_height:
                self._restored.setdefault(record.message.height, []).append(record)
        self._h = _Height(last_height + 1, validators)
        self._restore(self._h)

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Arm timers and, if this validator leads, ask for a proposal (or resend restored votes)."""
        if self._started:
            raise LocalProtocolError("start() called twice")
        self._started = True
        self._enter_view_actions(resend=True)
        return self._drain()

    def on_message(self, msg: Message) -> tuple[Verdict, list[Action]]:
        """Judge and handle a message whose outer signature the runtime has verified."""
        self._require_started()
        verdict = self._handle(msg)
        return verdict, self._drain()

    def on_timer(self, key: Hashable) -> list[Action]:
        """A timer armed with `SetTimer(key, ...)` fired."""
        self._require_started()
        h = self._h
        if key == h.resend_timer():
            self._resend()
        return self._drain()

    def on_proposal_ready(self, height: int, view: int, digest: bytes, payload: bytes) -> list[Action]:
        """The runtime built the block asked for by `RequestProposal(height, view)`; stale answers are ignored."""
        self._require_started()
        h = self._h
        if (height, view) != (h.height, h.view) or not self._is_primary() or view in h.my_pre_prepare:
            return self._drain()
        if view == 0:
            pp = self._sign(PrePrepare(chain_id=self.chain_id, height=height, view=view, sender=self._me,
                                       digest=digest, payload=payload))
            assert isinstance(pp, PrePrepare)
            h.my_pre_prepare[view] = pp
            h.pre_prepare[view] = pp
            h.good_payloads[digest] = payload
            self._persist(WalRecord(message=pp))
            self._out.append(Broadcast(message=pp))
            self._try_prepare()
        return self._drain()

    def on_block_validated(self, height: int, digest: bytes, ok: bool) -> list[Action]:
        """The runtime's answer to `ValidateBlock` for `digest` at `height`."""
        self._require_started()
        h = self._h
        if height != h.height or digest not in h.validating:
            return self._drain()
        payload = h.validating.pop(digest)
        if ok:
            h.good_payloads[digest] = payload
            h.candidates.pop(digest, None)
            self._on_good_payload(digest)
        else:
            h.rejected.add((h.view, digest))
            queue = h.candidates.get(digest)
            if queue:
                self._validate(digest, queue.pop(0))
        return self._drain()

    def status(self) -> dict[str, object]:
        """A snapshot for `medledger status` and the tests."""
        h = self._h
        return {
            "height": h.height,
            "view": h.view,
            "phase": self._phase(),
            "primary": h.validators.primary(h.height, h.view).hex(),
            "view_changes": self._view_changes,
            "evidence": len(self._evidence),
            "last_height": self._last_height,
            "stashed": self._stash_size,
        }

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        """Equivocation evidence kept so far (bounded by `config.max_evidence`)."""
        return tuple(self._evidence)

    # -- message handling ---------------------------------------------------------------------

    def _handle(self, msg: Message) -> Verdict:
        if msg.chain_id != self.chain_id:
            return discard("wrong chain")
        if msg.sender == self._me:
            return discard("message signed with our own key")
        h = self._h
        if msg.height < h.height:
            return self._old_height(msg)
        if msg.height > h.height:
            return self._future_height(msg)
        if msg.sender not in h.validators:
            return discard("sender is not a validator at this height")
        if type(msg) is PrePrepare:
            return self._on_pre_prepare(msg)
        if type(msg) is Prepare:
            return self._on_prepare(msg)
        if type(msg) is Commit:
            return self._on_commit(msg)
        if type(msg) is Decision:
            return self._on_decision(msg)
        if type(msg) in (ViewChange, NewView):
            return discard("view change not supported yet")
        raise LocalProtocolError(f"not a consensus message: {type(msg).__name__}")

    def _old_height(self, msg: Message) -> Verdict:
        if (msg.height == self._last_height and msg.sender in self._previous_validators
                and self._last_decision is not None and msg.sender not in self._h.decisions_sent):
            decision = self._decision()
            if decision is not None:
                self._h.decisions_sent.add(msg.sender)
                self._out.append(Send(to=msg.sender, message=decision))
        return discard("old height")

    def _future_height(self, msg: Message) -> Verdict:
        h = self._h
        if msg.height > h.height + 1:
            return discard("far-future height")
        if msg.sender not in self._validators_at(msg.height):
            return discard("sender is not a validator at that height")
        return self._stash_message(msg, "future height")

    def _stash_message(self, msg: Message, reason: str) -> Verdict:
        queue = self._stash.setdefault(msg.sender, [])
        if len(queue) >= self.config.stash_per_sender or self._stash_size >= self.config.stash_total:
            return discard("stash full")
        queue.append(msg)
        self._stash_size += 1
        return stash(reason)

    def _unstash(self) -> None:
        """Replay stashed messages that may now be processed (the rest are stashed again)."""
        if not self._stash_size:
            return
        pending = [m for queue in self._stash.values() for m in queue]
        self._stash = {}
        self._stash_size = 0
        for m in pending:
            self._handle(m)

    def _on_pre_prepare(self, msg: PrePrepare) -> Verdict:
        h = self._h
        if msg.view != 0:
            return discard("a pre-prepare for a view after 0 travels inside a NEW-VIEW")
        if msg.sender != h.validators.primary(h.height, 0):
            return discard("pre-prepare from a validator that is not the primary")
        known = h.pre_prepare.get(0)
        if known is not None:
            if known.digest == msg.digest:
                return discard("duplicate")
            self._record_evidence(known, msg)
            return discard("equivocation: second pre-prepare in this view")
        if h.view != 0:
            return discard("old view")
        h.pre_prepare[0] = msg
        self._want_payload(msg.digest, msg.payload)
        self._try_prepare()
        return PROCESS

    def _on_prepare(self, msg: Prepare) -> Verdict:
        h = self._h
        if msg.view < h.view:
            return discard("old view")
        if msg.view > h.view:
            return self._stash_message(msg, "future view")
        votes = h.prepares.setdefault(msg.view, {})
        known = votes.get(msg.sender)
        if known is not None:
            if known.digest == msg.digest:
                return discard("duplicate")
            self._record_evidence(known, msg)
            return discard("equivocation: second prepare in this view")
        votes[msg.sender] = msg
        key = (msg.view, msg.digest)
        h.prepare_count[key] = h.prepare_count.get(key, 0) + 1
        self._try_commit()
        return PROCESS

    def _on_commit(self, msg: Commit) -> Verdict:
        h = self._h
        if msg.view > h.view + self.config.commit_view_window:
            return discard("commit for a view too far ahead")
        votes = h.commits.setdefault(msg.view, {})
        known = votes.get(msg.sender)
        if known is not None:
            if known.digest == msg.digest:
                return discard("duplicate")
            self._record_evidence(known, msg)
            return discard("equivocation: second commit in this view")
        votes[msg.sender] = msg
        key = (msg.view, msg.digest)
        count = h.commit_count.get(key, 0) + 1
        h.commit_count[key] = count
        if count >= h.validators.quorum and h.decided is None:
            self._decide(msg.view, msg.digest, self._commit_certificate(msg.view, msg.digest))
        return PROCESS

    def _on_decision(self, msg: Decision) -> Verdict:
        h = self._h
        if h.decided is not None and h.decided[1] in h.good_payloads:
            return discard("duplicate")
        if not verify_certificate(msg.certificate, chain_id=self.chain_id, validators=h.validators,
                                  verifier=self._verifier):
            return discard("decision with an invalid commit certificate")
        if h.decided is None:
            self._decide(msg.view, msg.digest, msg.certificate)
        if h.decided is not None and h.decided[1] == msg.digest:
            self._want_payload(msg.digest, msg.payload)
        return PROCESS

    # -- the normal case ----------------------------------------------------------------------

    def _want_payload(self, digest: bytes, payload: bytes) -> None:
        """Learn a candidate payload for `digest`; validate it unless a good one is known."""
        h = self._h
        if digest in h.good_payloads:
            self._on_good_payload(digest)
            return
        if digest in h.validating:
            queue = h.candidates.setdefault(digest, [])
            if len(queue) < 4 and payload != h.validating[digest] and payload not in queue:
                queue.append(payload)
            return
        self._validate(digest, payload)

    def _validate(self, digest: bytes, payload: bytes) -> None:
        h = self._h
        h.validating[digest] = payload
        self._out.append(ValidateBlock(height=h.height, view=h.view, digest=digest, payload=payload))

    def _on_good_payload(self, digest: bytes) -> None:
        h = self._h
        if h.decided is not None:
            if h.decided[1] == digest:
                self._finalize()
            return
        self._try_prepare()

    def _try_prepare(self) -> None:
        h = self._h
        pp = h.pre_prepare.get(h.view)
        if (pp is None or h.view in h.my_prepare or not self._is_member()
                or pp.digest not in h.good_payloads or (h.view, pp.digest) in h.rejected):
            return
        prepare = self._sign(Prepare(chain_id=self.chain_id, height=h.height, view=h.view, sender=self._me,
                                     digest=pp.digest))
        assert isinstance(prepare, Prepare)
        h.my_prepare[h.view] = prepare
        self._persist(WalRecord(message=prepare, accepted=pp))
        self._out.append(Broadcast(message=prepare))
        h.prepares.setdefault(h.view, {})[self._me] = prepare
        key = (h.view, pp.digest)
        h.prepare_count[key] = h.prepare_count.get(key, 0) + 1
        self._try_commit()

    def _try_commit(self) -> None:
        h = self._h
        mine = h.my_prepare.get(h.view)
        if mine is None or h.view in h.my_commit:
            return
        if h.prepare_count.get((h.view, mine.digest), 0) < h.validators.quorum:
            return
        votes = {s: p.signature for s, p in h.prepares[h.view].items() if p.digest == mine.digest}
        prepared = PreparedCertificate(height=h.height, view=h.view, digest=mine.digest, votes=sorted_votes(votes))
        h.prepared = prepared
        commit = self._sign(Commit(chain_id=self.chain_id, height=h.height, view=h.view, sender=self._me,
                                   digest=mine.digest))
        assert isinstance(commit, Commit)
        h.my_commit[h.view] = commit
        self._persist(WalRecord(message=commit, prepared=prepared))
        self._out.append(Broadcast(message=commit))
        self._on_commit_from_self(commit)

    def _on_commit_from_self(self, commit: Commit) -> None:
        h = self._h
        h.commits.setdefault(commit.view, {})[self._me] = commit
        key = (commit.view, commit.digest)
        count = h.commit_count.get(key, 0) + 1
        h.commit_count[key] = count
        if count >= h.validators.quorum and h.decided is None:
            self._decide(commit.view, commit.digest, self._commit_certificate(commit.view, commit.digest))

    def _commit_certificate(self, view: int, digest: bytes) -> CommitCertificate:
        votes = {s: c.signature for s, c in self._h.commits[view].items() if c.digest == digest}
        return CommitCertificate(height=self._h.height, view=view, digest=digest, votes=sorted_votes(votes))

    def _decide(self, view: int, digest: bytes, certificate: CommitCertificate) -> None:
        h = self._h
        h.decided = (view, digest, certificate)
        if digest in h.good_payloads:
            self._finalize()
        else:
            pp = next((p for p in h.pre_prepare.values() if p.digest == digest), None)
            if pp is not None:
                self._want_payload(digest, pp.payload)

    def _finalize(self) -> None:
        h = self._h
        assert h.decided is not None
        view, digest, certificate = h.decided
        payload = h.good_payloads[digest]
        self._out.append(CancelTimer(key=h.view_timer()))
        self._out.append(CancelTimer(key=h.resend_timer()))
        self._out.append(CommitBlock(height=h.height, view=view, digest=digest, payload=payload,
                                     certificate=certificate))
        self._last_decision = (view, digest, payload, certificate)
        self._decision_message = None
        self._advance_to(h.height + 1, digest)

    def _advance_to(self, height: int, last_digest: bytes) -> None:
        """Leave the current height for `height` (the one after the last final block)."""
        self._previous_validators = self._h.validators
        self._last_height = height - 1
        self._last_digest = last_digest
        self._h = _Height(height, self._validators_at(height))
        for old in [k for k in self._schedule if k <= height - 1]:
            del self._schedule[old]
        self._restored = {k: v for k, v in self._restored.items() if k >= height}
        self._restore(self._h)
        self._out.append(PruneWal(below_height=height))
        self._enter_view_actions(resend=True)
        self._unstash()

    def _enter_view_actions(self, *, resend: bool) -> None:
        h = self._h
        self._out.append(SetTimer(key=h.view_timer(), delay_ms=self.config.view_timeout_ms(h.view)))
        self._out.append(SetTimer(key=h.resend_timer(), delay_ms=self.config.resend_interval_ms))
        if resend:
            self._send_own_votes()
        if self._is_primary() and h.view not in h.my_pre_prepare:
            self._out.append(RequestProposal(height=h.height, view=h.view))

    def _send_own_votes(self) -> None:
        h = self._h
        pp = h.my_pre_prepare.get(h.view)
        if pp is not None:
            prepared = h.prepares.get(h.view, {})
            for v in h.validators:
                if v != self._me and v not in prepared:
                    self._out.append(Send(to=v, message=pp))
        if h.view in h.my_prepare:
            self._out.append(Broadcast(message=h.my_prepare[h.view]))
        if h.my_commit:
            self._out.append(Broadcast(message=h.my_commit[max(h.my_commit)]))

    def _resend(self) -> None:
        h = self._h
        h.decisions_sent.clear()
        self._send_own_votes()
        self._out.append(SetTimer(key=h.resend_timer(), delay_ms=self.config.resend_interval_ms))

    # -- restart ------------------------------------------------------------------------------

    def _restore(self, h: _Height) -> None:
        """Rebuild our own votes at `h` from the WAL, so we resend them and never contradict them."""
        for record in self._restored.pop(h.height, []):
            msg = record.message
            if type(msg) is PrePrepare:
                h.my_pre_prepare[msg.view] = msg
                h.pre_prepare[msg.view] = msg
                h.good_payloads[msg.digest] = msg.payload
            elif type(msg) is Prepare:
                h.my_prepare[msg.view] = msg
                h.prepares.setdefault(msg.view, {})[self._me] = msg
                key = (msg.view, msg.digest)
                h.prepare_count[key] = h.prepare_count.get(key, 0) + 1
                if record.accepted is not None:
                    h.pre_prepare.setdefault(msg.view, record.accepted)
                    h.good_payloads[msg.digest] = record.accepted.payload
            elif type(msg) is Commit:
                h.my_commit[msg.view] = msg
                h.commits.setdefault(msg.view, {})[self._me] = msg
                key = (msg.view, msg.digest)
                h.commit_count[key] = h.commit_count.get(key, 0) + 1
                if record.prepared is not None and (h.prepared is None or record.prepared.view > h.prepared.view):
                    h.prepared = record.prepared
            h.view = max(h.view, msg.view)

    # -- helpers ------------------------------------------------------------------------------

    def _validators_at(self, height: int) -> ValidatorSet:
        best = None
        for effective in self._schedule:
            if effective <= height and (best is None or effective > best):
                best = effective
        return self._schedule[best] if best is not None else self._h.validators

    def _is_member(self) -> bool:
        return self._me in self._h.validators

    def _is_primary(self) -> bool:
        h = self._h
        return h.validators.primary(h.height, h.view) == self._me

    def _sign(self, msg: Message) -> Message:
        return sign_message(msg, self._signer)

    def _persist(self, record: WalRecord) -> None:
        self._out.append(Persist(height=self._h.height, entry=record.encode()))

    def _decision(self) -> Decision | None:
        if self._last_decision is None:
            return None
        view, digest, payload, certificate = self._last_decision
        if payload is None or not self._is_member_of(self._previous_validators):
            return None
        if self._decision_message is None:
            msg = self._sign(Decision(chain_id=self.chain_id, height=self._last_height, view=view,
                                      sender=self._me, digest=digest, payload=payload, certificate=certificate))
            assert isinstance(msg, Decision)
            self._decision_message = msg
        return self._decision_message

    def _is_member_of(self, validators: ValidatorSet) -> bool:
        return self._me in validators

    def _record_evidence(self, first: Message, second: Message) -> None:
        key = (first.sender, first.height, first.view, _VOTE_KINDS[type(first)])
        if key in self._evidence_keys:
            return
        evidence = Evidence(first=first, second=second)  # type: ignore[arg-type]
        self._evidence_keys.add(key)
        if len(self._evidence) >= self.config.max_evidence:
            self._evidence.pop(0)
        self._evidence.append(evidence)
        self._out.append(ReportEvidence(evidence=evidence))

    def _phase(self) -> str:
        h = self._h
        if h.decided is not None:
            return "awaiting-block"
        if h.view in h.my_commit:
            return "commit"
        if h.view in h.my_prepare:
            return "prepare"
        return "pre-prepare"

    def _require_started(self) -> None:
        if not self._started:
            raise LocalProtocolError("call start() before feeding events to the engine")

    def _drain(self) -> list[Action]:
        out, self._out = self._out, []
        return out
