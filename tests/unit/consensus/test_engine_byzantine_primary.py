"""A Byzantine primary that builds its own messages (issue 14): relabelled signatures, bad inner parts.

Each test hands one honest engine a message that a Byzantine validator with its own key could
build, and checks the engine's verdict. They are deterministic; the simulator's adversaries
(`consensus/simulation/`) look for the same attacks at random.
"""

from __future__ import annotations

import dataclasses

from consensus.messages import Commit, Decision, NewView, PrePrepare, ViewChange, sign_message

from .conftest import CHAIN, Cluster, Node, block


def _sent(node: Node, kind: type) -> list:
    from consensus.actions import Broadcast
    return [a.message for a in node.log if isinstance(a, Broadcast) and isinstance(a.message, kind)]


def _forked_new_view(byzantine: Node, view_changes: tuple[ViewChange, ...]) -> NewView:
    """A NEW-VIEW(1, 1) signed by `byzantine` enclosing `view_changes` and proposing a fork."""
    other_digest, other_payload = block(1, 1, "fork")
    pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=1, sender=byzantine.id, digest=other_digest,
                                 payload=other_payload), byzantine.signer)
    nv = sign_message(NewView(chain_id=CHAIN, height=1, view=1, sender=byzantine.id, view_changes=view_changes,
                              pre_prepare=pp), byzantine.signer)
    assert isinstance(nv, NewView)
    return nv


def _prepared_then_view_change(c: Cluster) -> bytes:
    """Height 1: everybody prepares the view-0 block, no COMMIT arrives, every view timer fires."""
    c.stop_height = 1
    c.filter = lambda to, msg: not isinstance(msg, (Commit, Decision, ViewChange, NewView))
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    digests = {_sent(n, Commit)[0].digest for n in c.nodes}
    assert len(digests) == 1 and c.heights() == [0, 0, 0, 0]
    c.fire_all("view")  # every node now holds its own VIEW-CHANGE(1), nothing delivered
    c.queue.clear()
    return digests.pop()


def test_a_new_view_relabelling_the_receivers_own_view_change_signature_is_refused() -> None:
    c = Cluster(4, start=False)
    locked = _prepared_then_view_change(c)
    victim, byzantine = c.nodes[0], c.nodes[2]  # node 2 is the primary of (1, 1)
    [own] = _sent(victim, ViewChange)
    assert own.prepared is not None and own.prepared.digest == locked
    # One real signature (the victim's own) relabelled as three validators' view changes, lock stripped.
    forged = tuple(sorted((ViewChange(chain_id=CHAIN, height=1, view=1, sender=n.id, prepared=None,
                                      signature=own.signature) for n in c.nodes if n is not c.nodes[3]),
                          key=lambda vc: vc.sender))
    verdict = c.deliver(victim.id, _forked_new_view(byzantine, forged))
    assert verdict.kind == "discard" and "invalid signature" in verdict.reason
    assert victim.engine.view == 1 and victim.engine.status()["phase"] == "view-change"


def test_a_new_view_reusing_a_checked_signature_with_other_content_is_refused() -> None:
    # The same signature and sender as a view change already verified, but its certificate stripped.
    c = Cluster(4, start=False)
    _prepared_then_view_change(c)
    victim, byzantine = c.nodes[0], c.nodes[2]
    genuine = [_sent(n, ViewChange)[0] for n in (c.nodes[1], c.nodes[3])]
    for vc in genuine:
        assert c.deliver(victim.id, vc.stripped()).kind == "process"  # verified and remembered
    mine = _sent(byzantine, ViewChange)[0]
    stripped = tuple(sorted([dataclasses.replace(vc.stripped(), prepared=None) for vc in genuine] + [mine.stripped()],
                            key=lambda vc: vc.sender))
    verdict = c.deliver(victim.id, _forked_new_view(byzantine, stripped))
    assert verdict.kind == "discard", verdict


def test_the_new_view_signature_covers_the_content_of_its_enclosed_view_changes() -> None:
    c = Cluster(4, start=False)
    _prepared_then_view_change(c)
    primary = c.nodes[2]
    vcs = tuple(sorted((_sent(n, ViewChange)[0].stripped() for n in c.nodes[1:]), key=lambda vc: vc.sender))
    digest, payload = block(1, 1, "x")
    pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=1, sender=primary.id, digest=digest,
                                 payload=payload), primary.signer)
    nv = NewView(chain_id=CHAIN, height=1, view=1, sender=primary.id, view_changes=vcs, pre_prepare=pp)
    altered = dataclasses.replace(nv, view_changes=tuple(dataclasses.replace(vc, prepared=None) for vc in vcs))
    assert nv.signing_bytes() != altered.signing_bytes()
