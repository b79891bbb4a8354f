"""Verdicts: every message from a peer is processed, stashed or discarded with a reason."""

from __future__ import annotations

import dataclasses

from consensus.actions import ReportEvidence, Send
from consensus.engine import EngineConfig
from consensus.messages import Commit, Decision, Prepare, PrePrepare, sign_message
from consensus.simulation.fake_crypto import FakeKeyring
from consensus.verdict import Verdict

from .conftest import CHAIN, CONFIG, Cluster, block


def prepare(cluster: Cluster, i: int, *, height: int = 1, view: int = 0, digest: bytes | None = None,
            chain: str = CHAIN) -> Prepare:
    node = cluster.nodes[i]
    msg = Prepare(chain_id=chain, height=height, view=view, sender=node.id, digest=digest or block(height, view)[0])
    return sign_message(msg, node.signer)


def fresh(n: int = 4, config: EngineConfig = CONFIG) -> Cluster:
    cluster = Cluster(n, config=config, start=False)
    for node in cluster.nodes:
        node.engine.start()
    return cluster


def test_wrong_chain_is_discarded() -> None:
    c = fresh()
    verdict, actions = c.nodes[0].engine.on_message(prepare(c, 2, chain="other-chain"))
    assert (verdict.kind, verdict.reason, actions) == ("discard", "wrong chain", [])


def test_non_validator_is_discarded() -> None:
    c = fresh()
    outsider = FakeKeyring().new_signer(b"outsider")
    msg = sign_message(Prepare(chain_id=CHAIN, height=1, view=0, sender=outsider.public_key,
                               digest=block(1, 0)[0]), outsider)
    verdict, _ = c.nodes[0].engine.on_message(msg)
    assert verdict.kind == "discard" and "not a validator" in verdict.reason


def test_own_signature_is_discarded() -> None:
    c = fresh()
    verdict, _ = c.nodes[0].engine.on_message(prepare(c, 0))
    assert verdict.kind == "discard" and "own key" in verdict.reason


def test_first_vote_is_processed_and_a_repeat_is_a_duplicate() -> None:
    c = fresh()
    msg = prepare(c, 2)
    assert c.nodes[0].engine.on_message(msg)[0].kind == "process"
    verdict, _ = c.nodes[0].engine.on_message(msg)
    assert (verdict.kind, verdict.reason) == ("discard", "duplicate")


def test_conflicting_votes_are_discarded_and_reported_as_evidence_once() -> None:
    c = fresh()
    engine = c.nodes[0].engine
    first, second, third = (prepare(c, 2, digest=bytes([i]) * 32) for i in (1, 2, 3))
    engine.on_message(first)
    verdict, actions = engine.on_message(second)
    assert verdict.kind == "discard" and verdict.reason.startswith("equivocation")
    [report] = [a for a in actions if isinstance(a, ReportEvidence)]
    assert report.evidence.first == first and report.evidence.second == second
    assert report.evidence.verify(c.verifier)
    verdict, actions = engine.on_message(third)
    assert verdict.reason.startswith("equivocation") and actions == []
    assert engine.status()["evidence"] == 1 and len(engine.evidence) == 1


def test_equivocating_primary_is_reported() -> None:
    c = fresh()
    primary = c.nodes[1]
    a, b = (sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=primary.id, digest=d, payload=p),
                         primary.signer) for d, p in (block(1, 0, "a"), block(1, 0, "b")))
    engine = c.nodes[0].engine
    assert engine.on_message(a)[0].kind == "process"
    verdict, actions = engine.on_message(b)
    assert verdict.reason.startswith("equivocation")
    assert any(isinstance(x, ReportEvidence) for x in actions)


def test_pre_prepare_from_a_non_primary_is_discarded() -> None:
    c = fresh()
    other = c.nodes[2]
    digest, payload = block(1, 0)
    pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=other.id, digest=digest, payload=payload),
                      other.signer)
    verdict, _ = c.nodes[0].engine.on_message(pp)
    assert verdict.kind == "discard" and "not the primary" in verdict.reason


def test_next_height_is_stashed_and_replayed_when_the_engine_gets_there() -> None:
    c = Cluster(4, start=False)
    late = c.nodes[3]
    held: list = []
    # Hold back every height-1 message to the late node, so it sees height 2 first.
    c.filter = lambda to, msg: not (to == late.id and msg.height == 1 and held.append(msg) is None)
    c.stop_height = 2
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    assert c.heights() == [2, 2, 2, 0]
    stashed = [(m, v) for m, v in late.verdicts if v.kind == "stash"]
    assert stashed and all(m.height == 2 and v.reason == "future height" for m, v in stashed)
    # The held height-1 votes arrive: it finalizes 1, replays its stash and finalizes 2.
    c.filter = lambda to, msg: True
    for msg in held:
        c.deliver(late.id, msg)
    c.run()
    assert c.heights() == [2, 2, 2, 2]
    assert late.engine.status()["stashed"] == 0


def test_far_future_heights_are_discarded() -> None:
    c = fresh()
    verdict, _ = c.nodes[0].engine.on_message(prepare(c, 2, height=5))
    assert (verdict.kind, verdict.reason) == ("discard", "far-future height")


def test_stash_is_bounded_per_sender_and_in_total() -> None:
    config = dataclasses.replace(CONFIG, stash_per_sender=3, stash_total=5)
    c = fresh(7, config)
    engine = c.nodes[0].engine
    kinds = [engine.on_message(prepare(c, 2, height=2, view=v))[0] for v in range(5)]
    assert [v.kind for v in kinds] == ["stash"] * 3 + ["discard"] * 2
    assert kinds[-1].reason == "stash full"
    # The total is full; a sender holding fewer takes the newest slot of the longest queue.
    kinds = [engine.on_message(prepare(c, i, height=2))[0] for i in (3, 4, 5)]
    assert [v.kind for v in kinds] == ["stash", "stash", "stash"]
    assert engine.status()["stashed"] == 5
    # Now every queue holds one or two: a sender that already holds the most gets nothing more.
    verdict = engine.on_message(prepare(c, 2, height=2, view=9))[0]
    assert (verdict.kind, verdict.reason) == ("discard", "stash full")
    assert engine.status()["stashed"] == 5


def test_old_height_gets_a_decision_in_reply_once_per_resend_interval() -> None:
    c = Cluster(4)
    c.run()
    node = c.nodes[0]
    straggler = c.nodes[2]
    old = sign_message(Commit(chain_id=CHAIN, height=3, view=0, sender=straggler.id, digest=bytes(32)),
                       straggler.signer)
    verdict, actions = node.engine.on_message(old)
    assert (verdict.kind, verdict.reason) == ("discard", "old height")
    [reply] = actions
    assert isinstance(reply, Send) and reply.to == straggler.id and isinstance(reply.message, Decision)
    assert reply.message.height == 3 and reply.message.certificate.height == 3
    assert node.engine.on_message(old)[1] == []  # rate limited
    node.engine.on_timer(("resend", 4))
    assert node.engine.on_message(old)[1] != []
    # Heights older than the last one get nothing.
    older = sign_message(Commit(chain_id=CHAIN, height=2, view=0, sender=straggler.id, digest=bytes(32)),
                         straggler.signer)
    assert node.engine.on_message(older) [1] == []


def test_a_decision_lets_a_validator_that_missed_the_votes_finalize() -> None:
    c = Cluster(4)
    late = c.nodes[3]
    c.down.add(late.id)
    c.stop_height = 1
    c.run()
    decision_source = c.nodes[0]
    c.down.discard(late.id)
    c.restart(late)  # lost everything in flight; still at height 1
    old = sign_message(Commit(chain_id=CHAIN, height=1, view=0, sender=late.id, digest=bytes(32)), late.signer)
    _, actions = decision_source.engine.on_message(old)
    [reply] = actions
    verdict, actions = late.engine.on_message(reply.message)
    assert verdict.kind == "process"
    c.execute(late, actions)  # validation of the enclosed block, then the commit
    assert [x.height for x in late.committed] == [1]
    assert late.committed[0].digest == c.nodes[0].committed[0].digest


def test_a_decision_with_a_bad_certificate_is_discarded() -> None:
    c = Cluster(4, start=False)
    late = c.nodes[3]
    c.filter = lambda to, msg: to != late.id
    c.stop_height = 1
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    old = sign_message(Commit(chain_id=CHAIN, height=1, view=0, sender=late.id, digest=bytes(32)), late.signer)
    _, [reply] = c.nodes[0].engine.on_message(old)
    decision = reply.message
    weak = dataclasses.replace(decision.certificate, votes=decision.certificate.votes[:2])
    forged = sign_message(dataclasses.replace(decision, certificate=weak), c.nodes[0].signer)
    verdict, actions = late.engine.on_message(forged)
    assert (verdict.kind, verdict.reason, actions) == ("discard", "decision with an invalid commit certificate", [])
    assert late.engine.on_message(decision)[0].kind == "process"


def test_a_retransmitted_stashed_message_is_a_duplicate_not_a_second_entry() -> None:
    c = fresh()
    engine = c.nodes[0].engine
    msg = prepare(c, 2, height=2)
    assert engine.on_message(msg)[0].kind == "stash"
    assert engine.on_message(msg)[0] == discard_verdict("duplicate")
    assert engine.status()["stashed"] == 1


def discard_verdict(reason: str) -> Verdict:
    from consensus.engine import discard
    return discard(reason)


def test_a_restarted_validator_still_answers_for_its_last_block() -> None:
    c = Cluster(4)
    c.run()
    node, straggler = c.nodes[0], c.nodes[2]
    last = node.committed[-1]
    node.engine = c._engine(node.signer, last_height=last.height, last_digest=last.digest)
    node.engine.start()
    old = sign_message(Commit(chain_id=CHAIN, height=last.height, view=0, sender=straggler.id, digest=bytes(32)),
                       straggler.signer)
    assert node.engine.on_message(old)[1] == []  # without the last block it has nothing to offer
    from consensus.engine import Engine
    node.engine = Engine(chain_id=CHAIN, validators=c.validators, signer=node.signer, verifier=c.verifier,
                         config=CONFIG, last_height=last.height, last_digest=last.digest,
                         last_certificate=last.certificate, last_payload=last.payload)
    node.engine.start()
    [reply] = node.engine.on_message(old)[1]
    assert isinstance(reply, Send) and reply.message.certificate == last.certificate


def test_remaining_discard_reasons() -> None:
    c = fresh()
    engine = c.nodes[0].engine
    node2, primary = c.nodes[2], c.nodes[1]
    far_view = CONFIG.commit_view_window + 1
    commit = sign_message(Commit(chain_id=CHAIN, height=1, view=far_view, sender=node2.id, digest=bytes(32)),
                          node2.signer)
    assert engine.on_message(commit)[0].reason == "commit for a view too far ahead"
    assert engine.on_message(prepare(c, 2, view=far_view))[0].reason == "prepare for a view too far ahead"
    digest, payload = block(1, 1)
    bare = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=1, sender=c.nodes[2].id, digest=digest,
                                   payload=payload), c.nodes[2].signer)
    assert engine.on_message(bare)[0].reason == "a pre-prepare for a view after 0 travels inside a NEW-VIEW"
    from consensus.messages import ViewChange
    first = sign_message(ViewChange(chain_id=CHAIN, height=1, view=2, sender=node2.id), node2.signer)
    assert engine.on_message(first)[0].kind == "process"
    older = sign_message(ViewChange(chain_id=CHAIN, height=1, view=1, sender=node2.id), node2.signer)
    assert engine.on_message(older)[0].reason == "older than this validator's latest view change"
    assert primary is not None
