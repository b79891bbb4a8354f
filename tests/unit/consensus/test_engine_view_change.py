"""View change: timeouts, VIEW-CHANGE with and without a prepared block, NEW-VIEW and its proof."""

from __future__ import annotations

import dataclasses

from consensus.actions import Broadcast, SetTimer, ViewChanged
from consensus.certificate import PreparedCertificate
from consensus.messages import (
    Commit,
    Decision,
    NewView,
    Prepare,
    PrePrepare,
    ViewChange,
    sign_message,
)

from .conftest import CHAIN, Cluster, Node, block


def sent(node: Node, kind: type) -> list:
    return [a.message for a in node.log if isinstance(a, Broadcast) and isinstance(a.message, kind)]


def timers(node: Node, view: int) -> list[int]:
    return [a.delay_ms for a in node.log if isinstance(a, SetTimer) and a.key[0] == "view" and a.key[2] == view]


def test_silent_primary_is_replaced_and_the_next_primary_proposes_a_new_block() -> None:
    c = Cluster(4, start=False)
    c.stop_height = 1
    primary = c.nodes[1]  # primary of (1, 0)
    c.down.add(primary.id)
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    assert c.heights() == [0, 0, 0, 0]
    c.fire_all("view")
    c.run()
    live = [n for n in c.nodes if n is not primary]
    assert [len(n.committed) for n in live] == [1, 1, 1]
    commit = live[0].committed[0]
    assert commit.view == 1
    assert commit.payload == block(1, 1, c.nodes[2].id.hex()[:8])[1]  # proposed by the primary of view 1
    for node in live:
        assert ViewChanged(height=1, view=1) in node.log
        assert node.engine.status()["view_changes"] == 1
        [vc] = sent(node, ViewChange)
        assert vc.view == 1 and vc.prepared is None


def prepared_but_not_committed(c: Cluster) -> bytes:
    """Run height 1 so that every node prepares the primary's block but no COMMIT is delivered."""
    c.stop_height = 1
    c.filter = lambda to, msg: not isinstance(msg, (Commit, Decision))
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    c.filter = lambda to, msg: True
    digests = {sent(n, Commit)[0].digest for n in c.nodes}
    assert len(digests) == 1 and c.heights() == [0, 0, 0, 0]
    return digests.pop()


def view_changed_without_new_view(c: Cluster) -> bytes:
    """After `prepared_but_not_committed`: every view timer fires and no NEW-VIEW is delivered."""
    digest = prepared_but_not_committed(c)
    c.filter = lambda to, msg: not isinstance(msg, NewView)
    c.fire_all("view")
    c.run()
    return digest


def test_a_prepared_block_survives_the_view_change() -> None:
    c = Cluster(4, start=False)
    digest = prepared_but_not_committed(c)
    c.fire_all("view")
    c.run()
    assert c.heights() == [1, 1, 1, 1]
    assert {n.committed[0].digest for n in c.nodes} == {digest}
    assert {n.committed[0].view for n in c.nodes} <= {0, 1}
    for node in c.nodes:
        [vc] = sent(node, ViewChange)
        assert vc.prepared is not None and vc.prepared.digest == digest and vc.prepared.view == 0
    [nv] = sent(c.nodes[2], NewView)  # the primary of view 1
    assert nv.pre_prepare.digest == digest


def test_a_new_view_that_drops_the_prepared_block_is_refused() -> None:
    c = Cluster(4, start=False)
    digest = view_changed_without_new_view(c)
    new_primary = c.nodes[2]
    vcs = tuple(sorted((sent(n, ViewChange)[0].stripped() for n in c.nodes), key=lambda v: v.sender))[:3]
    other_digest, other_payload = block(1, 1, "sneaky")
    pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=1, sender=new_primary.id, digest=other_digest,
                                 payload=other_payload), new_primary.signer)
    forged = sign_message(NewView(chain_id=CHAIN, height=1, view=1, sender=new_primary.id, view_changes=vcs,
                                  pre_prepare=pp), new_primary.signer)
    verdict, _ = c.nodes[0].engine.on_message(forged)
    assert (verdict.kind, verdict.reason) == ("discard", "new-view does not re-propose the highest prepared block")
    assert digest != other_digest


def test_new_view_proof_is_checked() -> None:
    c = Cluster(4, start=False)
    view_changed_without_new_view(c)
    new_primary = c.nodes[2]
    vcs = tuple(sorted((sent(n, ViewChange)[0].stripped() for n in c.nodes), key=lambda v: v.sender))
    good_pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=1, sender=new_primary.id,
                                      digest=vcs[0].prepared.digest, payload=b"whatever"), new_primary.signer)

    def nv(view_changes: tuple, pp: PrePrepare = good_pp, signer: Node = new_primary) -> NewView:
        return sign_message(NewView(chain_id=CHAIN, height=1, view=1, sender=signer.id, view_changes=view_changes,
                                    pre_prepare=pp), signer.signer)

    judge = c.nodes[0].engine
    assert judge.on_message(nv(vcs[:2]))[0].reason == "new-view without a quorum of view changes"
    bad_sig = (dataclasses.replace(vcs[0], signature=b"\x00" * 64),) + vcs[1:3]
    # A judge that has not seen these view changes directly (same keys, fresh engine).
    fresh_judge = Cluster(4).nodes[3].engine
    assert fresh_judge.on_message(nv(bad_sig))[0].reason == "new-view encloses a view change with an invalid signature"
    weak = dataclasses.replace(vcs[0].prepared, votes=vcs[0].prepared.votes[:2])
    forged_vc = sign_message(dataclasses.replace(vcs[0], prepared=weak, signature=b""), c.node(vcs[0].sender).signer)
    assert fresh_judge.on_message(nv((forged_vc,) + vcs[1:3]))[0].reason == \
        "new-view encloses an invalid prepared certificate"
    bad_pp = dataclasses.replace(good_pp, signature=b"\x01" * 64)
    assert fresh_judge.on_message(nv(vcs[:3], bad_pp))[0].reason == \
        "new-view encloses a pre-prepare with an invalid signature"
    impostor = c.nodes[3]
    pp3 = sign_message(dataclasses.replace(good_pp, sender=impostor.id, signature=b""), impostor.signer)
    assert judge.on_message(nv(vcs[:3], pp3, impostor))[0].reason == \
        "new-view from a validator that is not the primary of that view"
    assert judge.on_message(nv(vcs[:3]))[0].kind == "process"
    assert judge.on_message(nv(vcs[:3]))[0].reason == "duplicate"


def test_view_change_with_a_forged_prepared_certificate_is_discarded() -> None:
    c = Cluster(4, start=False)
    for node in c.nodes:
        node.engine.start()
    liar = c.nodes[3]
    digest, _ = block(1, 0)
    fake = PreparedCertificate(height=1, view=0, digest=digest,
                               votes=tuple(sorted((n.id, b"\x00" * 64) for n in c.nodes[:3])))
    vc = sign_message(ViewChange(chain_id=CHAIN, height=1, view=1, sender=liar.id, prepared=fake), liar.signer)
    verdict, _ = c.nodes[0].engine.on_message(vc)
    assert (verdict.kind, verdict.reason) == ("discard", "view change with an invalid prepared certificate")
    honest = sign_message(ViewChange(chain_id=CHAIN, height=1, view=1, sender=liar.id), liar.signer)
    assert c.nodes[0].engine.on_message(honest)[0].kind == "process"
    assert c.nodes[0].engine.on_message(honest)[0].reason == "duplicate"


def view_change(c: Cluster, i: int, view: int, height: int = 1) -> ViewChange:
    node = c.nodes[i]
    return sign_message(ViewChange(chain_id=CHAIN, height=height, view=view, sender=node.id), node.signer)


def test_a_lagging_validator_joins_after_f_plus_one_view_changes_but_not_after_f() -> None:
    c = Cluster(4, start=False)
    for node in c.nodes:
        node.engine.start()
    laggard = c.nodes[0].engine
    _, actions = laggard.on_message(view_change(c, 1, 3))
    assert laggard.status()["view"] == 0 and actions == []  # one (f = 1) may be Byzantine
    _, actions = laggard.on_message(view_change(c, 2, 5))
    # f + 1 = 2 validators asked for views >= 3: join view 3 (the highest that f + 1 reached).
    assert laggard.status()["view"] == 3 and laggard.status()["phase"] == "view-change"
    [mine] = [a.message for a in actions if isinstance(a, Broadcast)]
    assert isinstance(mine, ViewChange) and mine.view == 3


def test_view_change_timer_is_armed_only_once_a_quorum_asks_and_doubles_per_view() -> None:
    c = Cluster(4, start=False)
    c.stop_height = 1
    for node in c.nodes:
        c.execute(node, node.engine.start())
    node = c.nodes[0]
    c.down.update(n.id for n in c.nodes[1:])  # alone: nobody else answers
    c.fire(node, ("view", 1, 0))
    assert node.engine.status()["phase"] == "view-change" and ("view", 1, 1) not in node.timers
    # A quorum (itself + 2) asks for view >= 1: now the timer of view 1 runs, at twice the base timeout.
    node.engine.on_message(view_change(c, 2, 1))
    _, actions = node.engine.on_message(view_change(c, 3, 2))
    c.execute(node, actions)
    assert timers(node, 1) == [2000]
    c.fire(node, ("view", 1, 1))
    assert node.engine.status()["view"] == 2
    assert [vc.view for vc in sent(node, ViewChange)] == [1, 2]


def test_timeouts_grow_with_failed_views_and_reset_after_progress() -> None:
    c = Cluster(4, start=False)
    c.stop_height = 2
    # The primary of (1, 0) is down and the NEW-VIEW of view 1 is lost; view 2 succeeds.
    c.down.add(c.nodes[1].id)
    c.filter = lambda to, msg: not (isinstance(msg, NewView) and msg.view == 1)
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    c.fire_all("view")
    c.run()
    c.fire_all("view")
    c.run()
    node = c.nodes[0]
    assert (timers(node, 0)[0], timers(node, 1), timers(node, 2)[0]) == (1000, [2000], 4000)
    assert [x.view for x in node.committed] == [2, 0]  # height 2 went through in view 0
    # Height 2 starts again from view 0 with the base timeout.
    height2 = [a for a in node.log if isinstance(a, SetTimer) and a.key[:2] == ("view", 2)]
    assert height2[0].key == ("view", 2, 0) and height2[0].delay_ms == 1000


def test_restart_in_view_change_resends_the_same_view_change_and_never_votes_in_the_old_view() -> None:
    c = Cluster(4, start=False)
    c.stop_height = 1
    c.filter = lambda to, msg: False
    node, primary = c.nodes[0], c.nodes[1]
    c.execute(node, node.engine.start())
    c.fire(node, ("view", 1, 0))
    [vc] = sent(node, ViewChange)
    node.log.clear()
    c.restart(node)
    assert node.engine.status()["view"] == 1 and node.engine.status()["phase"] == "view-change"
    assert sent(node, ViewChange) == [vc]
    digest, payload = block(1, 0)
    pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=primary.id, digest=digest,
                                 payload=payload), primary.signer)
    verdict, actions = node.engine.on_message(pp)
    assert verdict.reason == "old view" and actions == []


def test_restarted_new_view_primary_resends_its_new_view() -> None:
    c = Cluster(4, start=False)
    view_changed_without_new_view(c)
    new_primary = c.nodes[2]
    [nv] = sent(new_primary, NewView)
    new_primary.log.clear()
    c.restart(new_primary)
    resent = [a.message for a in new_primary.log if hasattr(a, "message") and isinstance(a.message, NewView)]
    assert resent and all(m == nv for m in resent)
    c.filter = lambda to, msg: True
    c.run()
    assert c.heights() == [1, 1, 1, 1]


def test_commits_from_an_earlier_view_still_finalize() -> None:
    c = Cluster(4, start=False)
    digest = prepared_but_not_committed(c)
    node = c.nodes[0]
    c.fire(node, ("view", 1, 0))  # it moved on to a view change ...
    for other in c.nodes[1:]:
        c.deliver(node.id, sent(other, Commit)[0])  # ... when the view-0 commits arrive
    assert [x.digest for x in node.committed] == [digest] and node.committed[0].view == 0


def test_prepares_for_a_view_not_yet_entered_are_stashed_then_used() -> None:
    c = Cluster(4, start=False)
    for node in c.nodes:
        node.engine.start()
    digest, _ = block(1, 2)
    msg = sign_message(Prepare(chain_id=CHAIN, height=1, view=2, sender=c.nodes[2].id, digest=digest),
                       c.nodes[2].signer)
    verdict, _ = c.nodes[0].engine.on_message(msg)
    assert (verdict.kind, verdict.reason) == ("stash", "future view")


def test_a_reproposed_block_is_validated_as_prepared_before() -> None:
    """A validator that first sees the prepared block in the NEW-VIEW is told a quorum prepared it
    (so the runtime accepts its old time), while a fresh proposal is not (issue 15, 12b)."""
    from consensus.actions import ValidateBlock

    c = Cluster(4, start=False)
    c.stop_height = 1
    late = c.nodes[3]
    c.filter = lambda to, msg: not isinstance(msg, (Commit, Decision)) and not (to == late.id and isinstance(msg, PrePrepare))
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    c.filter = lambda to, msg: True
    c.fire_all("view")
    c.run()
    assert c.heights() == [1, 1, 1, 1]
    fresh = [a for n in c.nodes for a in n.log if isinstance(a, ValidateBlock) and a.view == 0]
    again = [a for a in late.log if isinstance(a, ValidateBlock) and a.view >= 1]
    assert fresh and not any(a.prepared_before for a in fresh)
    assert again and all(a.prepared_before for a in again)
