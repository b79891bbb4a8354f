"""The pure part of a view change: which prepared certificate wins, and which quorum a primary encloses.

A NEW-VIEW must re-propose the block of the highest prepared certificate among the view changes
it encloses (Lemma 2 of docs/consensus.md). Any quorum of genuine view changes is a valid proof;
an honest primary prefers those with the highest certificates, so it honours as many locks as it
can see. Both functions are deterministic: ties go by sender id.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.certificate import PreparedCertificate
from consensus.messages import ViewChange


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
