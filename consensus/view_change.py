"""The pure part of a view change: which prepared certificate wins, which quorum a primary encloses,
and whether a NEW-VIEW is valid.

A NEW-VIEW must re-propose the block of the highest prepared certificate among the view changes
it encloses (Lemma 2 of docs/consensus.md). Any quorum of genuine view changes is a valid proof;
an honest primary prefers those with the highest certificates, so it honours as many locks as it
can see. The choices are deterministic: ties go by sender id. `check_new_view` checks a proof;
the only state it touches is the caller's cache of view changes already verified (keyed by
`verified_key`, bounded by `remember_verified`), so each signature is checked once per height.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.certificate import PreparedCertificate, verify_prepared
from consensus.crypto import Verifier
from consensus.height import HeightState, NewViewPlan
from consensus.messages import NewView, ViewChange, message_key
from consensus.validators import ValidatorSet


def highest_prepared(view_changes: Sequence[ViewChange]) -> PreparedCertificate | None:
    """The prepared certificate of the highest view among `view_changes` (None if none has one)."""
    best: PreparedCertificate | None = None
    for vc in view_changes:
        if vc.prepared is not None and (best is None or vc.prepared.view > best.view):
            best = vc.prepared
    return best


def choose_quorum(candidates: Sequence[ViewChange], quorum: int) -> tuple[ViewChange, ...]:
    """The `quorum` view changes with the highest prepared certificates, in sender order."""
    ranked = sorted(candidates, key=lambda vc: (-(vc.prepared.view if vc.prepared else -1), vc.sender))
    return tuple(sorted(ranked[:quorum], key=lambda vc: vc.sender))


def plan_new_view(h: HeightState) -> NewViewPlan | None:
    """As primary of `h.view`: the plan for NEW-VIEW once a quorum asked for the view (else None)."""
    candidates = [vc for vc in h.view_changes.values() if vc.view == h.view]
    if len(candidates) < h.validators.quorum:
        return None
    chosen = choose_quorum(candidates, h.validators.quorum)
    highest = highest_prepared(chosen)
    return NewViewPlan(view=h.view, view_changes=chosen, digest=None if highest is None else highest.digest)


def joined_view(h: HeightState, me: bytes) -> int | None:
    """The highest view that f + 1 other validators (so at least one honest) asked for, if above ours."""
    views = sorted((vc.view for s, vc in h.view_changes.items() if s != me), reverse=True)
    weak = h.validators.weak_quorum
    if len(views) >= weak and views[weak - 1] > h.view:
        return views[weak - 1]
    return None


def check_view_change(msg: ViewChange, h: HeightState, *, chain_id: str, verifier: Verifier) -> str:
    """Why VIEW-CHANGE `msg` is not to be counted at height `h`, or "" if it is."""
    if msg.view < h.view or (msg.view == h.view and not h.in_view_change):
        return "old view"
    known = h.view_changes.get(msg.sender)
    if known is not None:
        if msg.view < known.view:
            return "older than this validator's latest view change"
        if msg.view == known.view:
            return "duplicate" if msg.signature == known.signature else "conflicting view change"
    if msg.prepared is not None and not verify_prepared(msg.prepared, chain_id=chain_id,
                                                        validators=h.validators, verifier=verifier):
        return "view change with an invalid prepared certificate"
    return ""


def verified_key(vc: ViewChange) -> bytes:
    """The key of a view change whose signature and prepared certificate were checked (see `message_key`)."""
    return message_key(vc)


def remember_verified(cache: set[bytes], vc: ViewChange, validators: ValidatorSet) -> None:
    """Remember a view change whose signature and certificate were checked; bounded against spam."""
    if len(cache) >= 8 * validators.n:
        cache.clear()
    cache.add(verified_key(vc))


def check_new_view(msg: NewView, *, chain_id: str, validators: ValidatorSet, verifier: Verifier,
                   verified: set[bytes]) -> str:
    """Why `msg` is not a valid NEW-VIEW, or "" if it is; view changes it checks join `verified`."""
    if len(msg.view_changes) < validators.quorum:
        return "new-view without a quorum of view changes"
    for vc in msg.view_changes:
        if vc.sender not in validators:
            return "new-view encloses a view change from a non-validator"
        if verified_key(vc) in verified:
            continue
        if not verifier.verify(vc.sender, vc.signing_bytes(), vc.signature):
            return "new-view encloses a view change with an invalid signature"
        if vc.prepared is not None and not verify_prepared(vc.prepared, chain_id=chain_id,
                                                           validators=validators, verifier=verifier):
            return "new-view encloses an invalid prepared certificate"
        remember_verified(verified, vc, validators)
    highest = highest_prepared(msg.view_changes)
    if highest is not None and highest.digest != msg.pre_prepare.digest:
        return "new-view does not re-propose the highest prepared block"
    pp = msg.pre_prepare
    if not verifier.verify(pp.sender, pp.signing_bytes(), pp.signature):
        return "new-view encloses a pre-prepare with an invalid signature"
    return ""
