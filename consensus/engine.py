"""The agreement engine: PBFT for one height at a time, as a pure state machine.

Heights are decided one after another; at height h the engine runs views 0, 1, 2, ..., the
primary of view v being validator (h + v) mod n. The theory of operation (the normal case in
steps 1-4, the view change in steps 5-8, why it is safe, the legal transitions, verdicts and
catching up) is the docstring of the `consensus` package; `docs/consensus.md` has it all with
the proofs. The transitions are data, `consensus.height.TRANSITIONS`, and the tests hold the
engine to them.

`Engine` is the one class: the public methods are the events (`start`, `on_message`,
`on_timer`, `on_work`, `on_proposal_ready`, `on_block_validated`, `on_block_synced`,
`schedule_validators`), each returning the actions to run in order. What does not need the
engine's state lives in its own module: `view_change` (the checks and choices of a view
change), `schedule`, `peers`, `decision`, `resend`, `wal`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from consensus.actions import (Action, Broadcast, CancelTimer, CommitBlock, NeedSync, Persist, PruneWal,
                               ReportEvidence, RequestProposal, Send, SetTimer, ValidateBlock, ViewChanged)
from consensus.certificate import CommitCertificate, PreparedCertificate, verify_certificate
from consensus.config import EngineConfig
from consensus.crypto import Signer, Verifier
from consensus.encoding import DIGEST_SIZE, MAX_VIEW
from consensus.errors import LocalProtocolError
from consensus.decision import LastBlock
from consensus.evidence import Evidence, EvidenceLog, Vote
from consensus.height import Decided, HeightState
from consensus.messages import (Commit, Decision, Message, NewView, Prepare, PrePrepare, ViewChange, message_key,
                                sign_message)
from consensus.peers import PeerHeights
from consensus.resend import own_votes
from consensus.schedule import ValidatorSchedule
from consensus.stash import Stash
from consensus.validators import ValidatorSet
from consensus.verdict import PROCESS, Verdict, discard, stash
from consensus.view_change import (check_new_view, check_view_change, joined_view, plan_new_view, remember_verified,
                                   verified_key)
from consensus.votes import VoteSet
from consensus.wal import WalRecord, records_by_height

__all__ = ["Engine", "EngineConfig", "Verdict", "discard", "message_key", "stash", "verified_key"]

M = TypeVar("M", PrePrepare, Prepare, Commit, ViewChange, NewView, Decision)


class Engine:
    """PBFT agreement on one block per height; events in, actions out (see the module docstring)."""

    def __init__(self, *, chain_id: str, validators: ValidatorSet, signer: Signer, verifier: Verifier,
                 config: EngineConfig, last_height: int, last_digest: bytes, wal: Sequence[bytes] = (),
                 last_certificate: CommitCertificate | None = None, last_payload: bytes | None = None,
                 previous_validators: ValidatorSet | None = None) -> None:
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
        self._schedule = ValidatorSchedule(validators, previous_validators)  # previous: the set of last_height
        self._last_block = LastBlock()
        if last_certificate is not None:
            if (last_certificate.height, last_certificate.digest) != (last_height, last_digest):
                raise LocalProtocolError("last_certificate is not the certificate of the last block")
            self._last_block.set(view=last_certificate.view, digest=last_digest, payload=last_payload,
                                 certificate=last_certificate)
        self._stash = Stash(per_sender=config.stash_per_sender, total=config.stash_total)
        self._evidence = EvidenceLog(config.max_evidence)
        self._view_changes = 0
        self._peers = PeerHeights()
        self._started = False
        self._work = not config.wait_for_work
        self._out: list[Action] = []
        self._restored = records_by_height(wal, me=self._me, chain_id=chain_id, above=last_height,
                                           max_payload=config.max_payload)
        self._h = HeightState(last_height + 1, validators, config.resend_interval_ms)
        self._restore(self._h)

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Arm timers and, if this validator leads, ask for a proposal (or resend restored votes)."""
        if self._started:
            raise LocalProtocolError("start() called twice")
        self._started = True
        self._enter_height_actions()
        return self._drain()

    def on_message(self, msg: Message) -> tuple[Verdict, list[Action]]:
        """Judge and handle a message whose outer signature the runtime has verified."""
        self._require_started()
        verdict = self._handle(msg)
        if verdict.kind == "process" and msg.height == self._h.height:
            self._arm_if_idle()  # someone is working on this height: its view may now time out
        return verdict, self._drain()

    def on_work(self, pending: bool) -> list[Action]:
        """The runtime has (or no longer has) transactions waiting; see `EngineConfig.wait_for_work`."""
        self._require_started()
        self._work = pending or not self.config.wait_for_work
        h = self._h
        if pending:
            self._arm_if_idle()
        elif (not self._work and h.view_timer_armed and h.view == 0 and not h.in_view_change
              and 0 not in h.pre_prepare and h.decided is None):
            self._out.append(CancelTimer(key=h.view_timer()))  # nothing to wait for: stay idle
            h.view_timer_armed = False
        return self._drain()

    def _arm_if_idle(self) -> None:
        h = self._h
        if not h.view_timer_armed and not h.in_view_change and h.decided is None:
            self._arm_view_timer()

    def on_timer(self, key: Hashable) -> list[Action]:
        """A timer armed with `SetTimer(key, ...)` fired; stale keys are ignored."""
        self._require_started()
        h = self._h
        if key == h.resend_timer():
            self._resend()
        elif key == h.view_timer() and h.decided is None:
            h.view_timer_armed = False
            self._start_view_change(h.view + 1)
        return self._drain()

    def on_proposal_ready(self, height: int, view: int, digest: bytes, payload: bytes) -> list[Action]:
        """The runtime built the block asked for by `RequestProposal(height, view)`; stale answers are ignored."""
        self._require_started()
        h = self._h
        if (height, view) != (h.height, h.view) or not self._is_primary() or view in h.my_pre_prepare:
            return self._drain()
        if view == 0 and not h.in_view_change:
            pp = self._sign(PrePrepare(chain_id=self.chain_id, height=height, view=0, sender=self._me,
                                       digest=digest, payload=payload))
            h.my_pre_prepare[0] = pp
            h.pre_prepare[0] = pp
            h.good_payloads[digest] = payload
            self._persist(WalRecord(message=pp))
            self._out.append(Broadcast(message=pp))
            self._try_prepare()
        elif h.new_view_pending is not None and h.new_view_pending.view == view and h.new_view_pending.digest is None:
            h.good_payloads[digest] = payload
            self._send_new_view(digest)
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
            # This payload is not the valid block `digest`; another candidate may still be.
            queue = h.candidates.get(digest)
            if queue:
                source = next(iter(queue))
                self._validate(digest, queue.pop(source))
        return self._drain()

    def on_block_synced(self, height: int, digest: bytes, certificate: CommitCertificate,
                        payload: bytes | None = None) -> list[Action]:
        """The runtime applied final block `height` obtained by block sync; jump past it.

        `payload` (optional) lets this validator answer peers that are one height behind.
        """
        self._require_started()
        h = self._h
        if (certificate.height, certificate.digest) != (height, digest):
            raise LocalProtocolError("on_block_synced: the certificate is for another block")
        if height < h.height:
            return self._drain()
        if not verify_certificate(certificate, chain_id=self.chain_id, validators=self._schedule.at(height),
                                  verifier=self._verifier):
            raise LocalProtocolError("on_block_synced: the runtime applied a block whose certificate is invalid")
        self._leave_height(height, certificate.view, digest, payload, certificate)
        return self._drain()

    def schedule_validators(self, effective_height: int, validators: ValidatorSet) -> list[Action]:
        """Use `validators` from `effective_height` on (which must be after the height being decided)."""
        self._schedule.add(effective_height, validators, self._h.height)
        return []

    def status(self) -> dict[str, object]:
        """A snapshot for `medledger status` and the tests."""
        h = self._h
        return {
            "height": h.height,
            "view": h.view,
            "phase": h.phase.value,
            "primary": h.validators.primary(h.height, h.view).hex(),
            "view_changes": self._view_changes,
            "evidence": len(self._evidence),
            "last_height": self._last_height,
            "validators": h.validators.n,
            "member": self._is_member(),
            "stashed": len(self._stash),
        }

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        """Equivocation evidence kept so far (bounded by `config.max_evidence`)."""
        return self._evidence.items

    @property
    def height(self) -> int:
        """The height being decided."""
        return self._h.height

    @property
    def view(self) -> int:
        return self._h.view

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
        self._note_peer_height(msg.sender, msg.height)
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            raise LocalProtocolError(f"not a consensus message: {type(msg).__name__}")
        return handler(self, msg)

    def _old_height(self, msg: Message) -> Verdict:
        if (msg.height == self._last_height and msg.sender in self._schedule.previous
                and msg.sender not in self._h.decisions_sent and type(msg) is not Decision):
            decision = self._last_block.decision(self.chain_id, self._last_height, self._signer)
            if decision is not None:
                self._h.decisions_sent.add(msg.sender)
                self._out.append(Send(to=msg.sender, message=decision))
        return discard("old height")

    def _future_height(self, msg: Message) -> Verdict:
        h = self._h
        later = self._schedule.at(msg.height)
        if msg.sender in h.validators:
            self._note_peer_height(msg.sender, msg.height)
        elif msg.sender not in later:
            return discard("sender is not a validator")
        if msg.height > h.height + 1:
            return discard("far-future height")
        if msg.sender not in later:
            return discard("sender is not a validator at that height")
        return self._stash_message(msg, "future height")

    def _note_peer_height(self, sender: bytes, height: int) -> None:
        """Track how far validators are; f + 1 of them two heights ahead means we must sync."""
        target = self._peers.note(sender, height, self._h.validators, self._h.height)
        if target is not None:
            self._out.append(NeedSync(height=target))

    def _stash_message(self, msg: Message, reason: str) -> Verdict:
        refused = self._stash.add(msg)
        return discard(refused) if refused else stash(reason)

    def _unstash(self) -> None:
        """Replay stashed messages that may now be processed (the rest are stashed again)."""
        if len(self._stash):
            for m in self._stash.take_all():
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
        if h.view != 0 or h.in_view_change:
            return discard("old view")
        h.pre_prepare[0] = msg
        self._want_payload(msg.digest, msg.payload, msg.sender)
        return PROCESS

    def _on_prepare(self, msg: Prepare) -> Verdict:
        h = self._h
        if msg.view < h.view:
            return discard("old view")
        if msg.view > h.view or h.in_view_change:
            if msg.view > h.view + self.config.commit_view_window:
                return discard("prepare for a view too far ahead")
            return self._stash_message(msg, "future view")
        refused = self._add_vote(h.prepares, msg, "prepare")
        if refused is not None:
            return refused
        self._try_commit()
        return PROCESS

    def _on_commit(self, msg: Commit) -> Verdict:
        h = self._h
        if msg.view > h.view + self.config.commit_view_window:
            return discard("commit for a view too far ahead")
        refused = self._add_vote(h.commits, msg, "commit")
        if refused is not None:
            return refused
        self._check_commit_quorum(msg.view, msg.digest)
        return PROCESS

    def _add_vote(self, votes: VoteSet[Prepare] | VoteSet[Commit], msg: Prepare | Commit, kind: str) -> Verdict | None:
        """Count a peer's vote; the verdict if it is not counted (a repeat, or a conflict kept as evidence)."""
        result, known = votes.add(msg)  # type: ignore[arg-type]  # the kinds match by construction
        if result == "duplicate":
            return discard("duplicate")
        if result == "conflict":
            assert known is not None
            self._record_evidence(known, msg)
            return discard(f"equivocation: second {kind} in this view")
        return None

    def _check_commit_quorum(self, view: int, digest: bytes) -> None:
        h = self._h
        if h.commits.count(view, digest) >= h.validators.quorum and h.decided is None:
            cert = CommitCertificate(height=h.height, view=view, digest=digest,
                                     votes=h.commits.signatures(view, digest))
            self._decide(cert)

    def _on_decision(self, msg: Decision) -> Verdict:
        h = self._h
        if h.decided is not None and h.decided.digest in h.good_payloads:
            return discard("duplicate")
        if h.decided is not None and h.decided.digest != msg.digest:
            # Two valid certificates for different blocks cannot exist with at most f faulty.
            return discard("decision for another block than the one certified here")
        if h.decided is None:
            if not verify_certificate(msg.certificate, chain_id=self.chain_id, validators=h.validators,
                                      verifier=self._verifier):
                return discard("decision with an invalid commit certificate")
            self._decide(msg.certificate)
            if self._h is not h:
                return PROCESS
        self._want_payload(msg.digest, msg.payload, msg.sender)
        return PROCESS

    # -- the normal case ----------------------------------------------------------------------

    def _want_payload(self, digest: bytes, payload: bytes, source: bytes) -> None:
        """Learn a candidate payload for `digest` from validator `source`; validate it unless a good one is known.

        Candidates are kept one per source, so a Byzantine validator offering bad payloads can
        delay, but never crowd out, the honest ones.
        """
        h = self._h
        if digest in h.good_payloads:
            self._on_good_payload(digest)
            return
        if digest in h.validating:
            if payload != h.validating[digest]:
                h.candidates.setdefault(digest, {})[source] = payload
            return
        self._validate(digest, payload)

    def _validate(self, digest: bytes, payload: bytes) -> None:
        h = self._h
        h.validating[digest] = payload
        self._out.append(ValidateBlock(height=h.height, view=h.view, digest=digest, payload=payload,
                                       prepared_before=h.prepared_before(digest)))

    def _on_good_payload(self, digest: bytes) -> None:
        h = self._h
        if h.decided is not None:
            if h.decided.digest == digest:
                self._finalize()
            return
        pending = h.new_view_pending
        if pending is not None and pending.digest == digest and pending.view == h.view:
            self._send_new_view(digest)
            return
        self._try_prepare()

    def _try_prepare(self) -> None:
        h = self._h
        if h.in_view_change or h.view in h.my_prepare or not self._is_member():
            return
        pp = h.pre_prepare.get(h.view)
        if pp is None or pp.digest not in h.good_payloads:
            return
        prepare = self._sign(Prepare(chain_id=self.chain_id, height=h.height, view=h.view, sender=self._me,
                                     digest=pp.digest))
        h.my_prepare[h.view] = prepare
        accepted = pp if pp.payload else PrePrepare(
            chain_id=pp.chain_id, height=pp.height, view=pp.view, sender=pp.sender, digest=pp.digest,
            payload=h.good_payloads[pp.digest], signature=pp.signature)
        self._persist(WalRecord(message=prepare, accepted=accepted))
        self._out.append(Broadcast(message=prepare))
        if h.view_timer_armed:
            # The primary of this view is alive and its proposal is good: the rest of the round
            # gets a full timeout. Checking a large first block of a burst could take most of
            # the timeout, which then expired while the votes were on their way. At most once
            # per view (one proposal per view), so a slow view still ends within two timeouts.
            self._arm_view_timer()
        h.prepares.add(prepare)
        self._try_commit()

    def _try_commit(self) -> None:
        h = self._h
        mine = h.my_prepare.get(h.view)
        if mine is None or h.view in h.my_commit or h.in_view_change:
            return
        if h.prepares.count(h.view, mine.digest) < h.validators.quorum:
            return
        prepared = PreparedCertificate(height=h.height, view=h.view, digest=mine.digest,
                                       votes=h.prepares.signatures(h.view, mine.digest))
        h.prepared = prepared
        commit = self._sign(Commit(chain_id=self.chain_id, height=h.height, view=h.view, sender=self._me,
                                   digest=mine.digest))
        h.my_commit[h.view] = commit
        self._persist(WalRecord(message=commit, prepared=prepared))
        self._out.append(Broadcast(message=commit))
        h.commits.add(commit)
        self._check_commit_quorum(h.view, mine.digest)

    def _decide(self, certificate: CommitCertificate) -> None:
        h = self._h
        h.decided = Decided(view=certificate.view, digest=certificate.digest, certificate=certificate)
        digest = certificate.digest
        if digest in h.good_payloads:
            self._finalize()
            return
        proposals, changes = h.payload_offers(digest)
        for source, payload in proposals + changes:
            self._want_payload(digest, payload, source)

    def _finalize(self) -> None:
        h = self._h
        assert h.decided is not None
        view, digest, certificate = h.decided.view, h.decided.digest, h.decided.certificate
        self._leave_height(h.height, view, digest, h.good_payloads[digest], certificate, commit=True)

    def _leave_height(self, height: int, view: int, digest: bytes, payload: bytes | None,
                      certificate: CommitCertificate, *, commit: bool = False) -> None:
        """Block `height` is final (decided here, or applied by sync): on to the next height."""
        h = self._h
        self._out += [CancelTimer(key=h.view_timer()), CancelTimer(key=h.resend_timer())]
        if commit:
            assert payload is not None
            self._out.append(CommitBlock(height=height, view=view, digest=digest, payload=payload,
                                         certificate=certificate))
        self._last_block.set(view=view, digest=digest, payload=payload, certificate=certificate)
        self._advance_to(height + 1, digest)

    def _advance_to(self, height: int, last_digest: bytes) -> None:
        """Leave the current height for `height` (the one after the last final block)."""
        self._last_height = height - 1
        self._last_digest = last_digest
        self._h = HeightState(height, self._schedule.advance(height), self.config.resend_interval_ms)
        self._restored = {k: v for k, v in self._restored.items() if k >= height}
        self._peers.prune(height)
        self._restore(self._h)
        self._out.append(PruneWal(below_height=height))
        self._enter_height_actions()
        self._unstash()

    def _enter_height_actions(self) -> None:
        """Timers, resends and the proposal request on entering a height (or starting up)."""
        h = self._h
        self._out.append(SetTimer(key=h.resend_timer(), delay_ms=self.config.resend_interval_ms))
        if not h.in_view_change:
            if self._work or h.view > 0 or 0 in h.pre_prepare:
                self._arm_view_timer()
        else:
            self._check_view_change_quorum()
        self._out += own_votes(self._h, self._me)
        # A primary restarted between persisting its proposal (PRE-PREPARE or NEW-VIEW) and its
        # PREPARE prepares it now; everyone else prepares once the proposal is validated.
        self._try_prepare()
        if h.view == 0 and not h.in_view_change and self._is_primary() and 0 not in h.my_pre_prepare:
            self._out.append(RequestProposal(height=h.height, view=0))
        self._try_new_view()

    def _arm_view_timer(self) -> None:
        h = self._h
        h.view_timer_armed = True
        self._out.append(SetTimer(key=h.view_timer(), delay_ms=self.config.view_timeout_ms(h.view)))

    # -- view change --------------------------------------------------------------------------

    def _set_view(self, view: int, *, in_view_change: bool) -> None:
        h = self._h
        if view < h.view or (view == h.view and in_view_change and h.in_view_change):
            raise LocalProtocolError(f"view would go from {h.view} back to {view}")
        if h.view_timer_armed:
            self._out.append(CancelTimer(key=h.view_timer()))
            h.view_timer_armed = False
        if view > h.view:
            self._view_changes += 1
            self._out.append(ViewChanged(height=h.height, view=view))
        if h.resend_ms != self.config.resend_interval_ms:
            h.resend_ms = self.config.resend_interval_ms
            self._out.append(SetTimer(key=h.resend_timer(), delay_ms=h.resend_ms))
        h.view = view
        h.in_view_change = in_view_change
        h.new_view_pending = None

    def _start_view_change(self, view: int) -> None:
        """Leave the current view for `view` (> current); sign and send VIEW-CHANGE if a member."""
        h = self._h
        if view > MAX_VIEW:
            return
        self._set_view(view, in_view_change=True)
        if self._is_member():
            payload = None
            if h.prepared is not None:
                payload = h.good_payloads.get(h.prepared.digest)
            vc = self._sign(ViewChange(chain_id=self.chain_id, height=h.height, view=view, sender=self._me,
                                       prepared=h.prepared, payload=payload))
            h.my_view_change[view] = vc
            h.view_changes[self._me] = vc
            h.verified_view_changes.add(verified_key(vc))
            self._persist(WalRecord(message=vc))
            self._out.append(Broadcast(message=vc))
        self._check_view_change_quorum()
        self._try_new_view()

    def _on_view_change(self, msg: ViewChange) -> Verdict:
        h = self._h
        problem = check_view_change(msg, h, chain_id=self.chain_id, verifier=self._verifier)
        if problem:
            return discard(problem)
        remember_verified(h.verified_view_changes, msg, h.validators)
        h.view_changes[msg.sender] = msg
        if msg.payload is not None and msg.prepared is not None:
            digest = msg.prepared.digest
            wanted = (h.decided is not None and h.decided.digest == digest) or (
                h.new_view_pending is not None and h.new_view_pending.digest == digest)
            if wanted:
                self._want_payload(digest, msg.payload, msg.sender)
                if self._h is not h:
                    return PROCESS
        self._join_higher_view()
        self._check_view_change_quorum()
        self._try_new_view()
        return PROCESS

    def _join_higher_view(self) -> None:
        """Follow f + 1 validators (so at least one honest) that asked for views above ours."""
        view = joined_view(self._h, self._me) if self._h.decided is None else None
        if view is not None:
            self._start_view_change(view)

    def _check_view_change_quorum(self) -> None:
        """Arm the timer of a view change once a quorum asks for this view or a later one."""
        h = self._h
        if not h.in_view_change or h.view_timer_armed or h.decided is not None:
            return
        count = sum(1 for vc in h.view_changes.values() if vc.view >= h.view)
        if count >= h.validators.quorum:
            self._arm_view_timer()

    def _try_new_view(self) -> None:
        """As primary of the view being changed to, send NEW-VIEW once a quorum asked for it."""
        h = self._h
        if (not h.in_view_change or h.decided is not None or h.new_view_pending is not None
                or not self._is_primary() or h.view in h.my_new_view):
            return
        plan = plan_new_view(h)
        if plan is None:
            return
        h.new_view_pending, digest = plan, plan.digest
        if digest is None:
            self._out.append(RequestProposal(height=h.height, view=h.view))
            return
        if digest in h.good_payloads:
            self._send_new_view(digest)
            return
        proposals, changes = h.payload_offers(digest)
        for source, payload in changes + proposals:
            self._want_payload(digest, payload, source)

    def _send_new_view(self, digest: bytes) -> None:
        h = self._h
        assert h.new_view_pending is not None
        view, chosen = h.new_view_pending.view, h.new_view_pending.view_changes
        payload = h.good_payloads[digest]
        pp = self._sign(PrePrepare(chain_id=self.chain_id, height=h.height, view=view, sender=self._me,
                                   digest=digest, payload=payload))
        nv = self._sign(NewView(chain_id=self.chain_id, height=h.height, view=view, sender=self._me,
                                view_changes=tuple(vc.stripped() for vc in chosen), pre_prepare=pp))
        h.my_new_view[view] = nv
        h.my_pre_prepare[view] = pp
        h.new_view[view] = nv
        self._persist(WalRecord(message=nv))
        self._out.append(Broadcast(message=nv))
        self._enter_view(view, pp)

    def _enter_view(self, view: int, pp: PrePrepare) -> None:
        """Start normal operation in `view` with the proposal `pp` (ours or from a valid NEW-VIEW)."""
        h = self._h
        self._set_view(view, in_view_change=False)
        h.pre_prepare[view] = pp
        self._arm_view_timer()
        self._want_payload(pp.digest, pp.payload, pp.sender)
        self._unstash()

    def _on_new_view(self, msg: NewView) -> Verdict:
        h = self._h
        w = msg.view
        accepted = h.new_view.get(w)
        if accepted is not None:
            if accepted.pre_prepare.digest != msg.pre_prepare.digest:
                pp = msg.pre_prepare
                if not self._verifier.verify(pp.sender, pp.signing_bytes(), pp.signature):
                    return discard("new-view encloses a pre-prepare with an invalid signature")
                self._record_evidence(accepted.pre_prepare, pp)
                return discard("equivocation: second new-view proposal in this view")
            return discard("duplicate")
        if w < h.view or (w == h.view and not h.in_view_change):
            return discard("old view")
        if msg.sender != h.validators.primary(h.height, w):
            return discard("new-view from a validator that is not the primary of that view")
        problem = check_new_view(msg, chain_id=self.chain_id, validators=h.validators, verifier=self._verifier,
                                 verified=h.verified_view_changes)
        if problem:
            return discard(problem)
        h.new_view[w] = msg
        self._enter_view(w, msg.pre_prepare)
        return PROCESS

    # -- resending ----------------------------------------------------------------------------

    def _resend(self) -> None:
        h = self._h
        h.decisions_sent.clear()
        self._out += own_votes(self._h, self._me)
        target = self._peers.synced_height(h.validators)
        if target >= h.height:
            self._out.append(NeedSync(height=target))
        h.resend_ms = min(2 * h.resend_ms, self.config.max_resend_interval_ms)
        self._out.append(SetTimer(key=h.resend_timer(), delay_ms=h.resend_ms))

    # -- restart ------------------------------------------------------------------------------

    def _restore(self, h: HeightState) -> None:
        """Rebuild our own votes at `h` from the WAL, so we resend them and never contradict them."""
        h.restore(self._restored.pop(h.height, []), self._me)
        for vc in h.my_view_change.values():
            h.verified_view_changes.add(verified_key(vc))

    # -- helpers ------------------------------------------------------------------------------

    def _is_member(self) -> bool:
        return self._me in self._h.validators

    def _is_primary(self) -> bool:
        h = self._h
        return h.validators.primary(h.height, h.view) == self._me

    def _sign(self, msg: M) -> M:
        return sign_message(msg, self._signer)

    def _persist(self, record: WalRecord) -> None:
        self._out.append(Persist(height=self._h.height, entry=record.encode()))

    def _record_evidence(self, first: Vote, second: Vote) -> None:
        evidence = self._evidence.add(first, second)
        if evidence is not None:
            self._out.append(ReportEvidence(evidence=evidence))

    def _require_started(self) -> None:
        if not self._started:
            raise LocalProtocolError("call start() before feeding events to the engine")

    def _drain(self) -> list[Action]:
        out, self._out = self._out, []
        return out


# How `Engine._handle` dispatches a message of the height being decided, by its exact type.
_HANDLERS: dict[type, Callable[[Engine, Any], Verdict]] = {
    Prepare: Engine._on_prepare, Commit: Engine._on_commit, PrePrepare: Engine._on_pre_prepare,
    ViewChange: Engine._on_view_change, NewView: Engine._on_new_view, Decision: Engine._on_decision,
}

