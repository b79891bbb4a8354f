"""Three gaps found from outside (issue 14), each pinned by a deterministic test.

- a primary restarted between persisting its proposal and its PREPARE prepares it after restart;
- evidence from a second NEW-VIEW is kept only when the enclosed PRE-PREPARE's signature holds;
- f validators filling the stash cannot crowd out an honest next-height proposal (n >= 97);
- `on_block_synced` checks the certificate of every height it is told about, not only the current one.
"""

from __future__ import annotations

import dataclasses

import pytest

from consensus.engine import Engine
from consensus.errors import LocalProtocolError
from consensus.messages import Commit, Decision, NewView, Prepare, PrePrepare, ViewChange, sign_message
from consensus.wal import decode_record

from .conftest import CHAIN, CONFIG, ZERO, Cluster, block


def _kind(entry: bytes) -> type:
    return type(decode_record(entry, max_payload=CONFIG.max_payload).message)


@pytest.mark.parametrize("n", [4, 7])
def test_a_primary_restarted_between_its_proposal_and_its_prepare_prepares_after_restart(n: int) -> None:
    c = Cluster(n, start=False)
    c.stop_height = 1
    primary = c.nodes[1]  # primary of (1, 0)
    silent = c.nodes[2:2 + c.validators.f]  # f silent validators: the primary's PREPARE is needed
    c.down.update(s.id for s in silent)
    c.filter = lambda to, msg: msg.sender != primary.id  # the primary "crashes" right after persisting
    for node in c.nodes:
        if node.id not in c.down:
            c.execute(node, node.engine.start())
    c.run()
    assert c.heights() == [0] * n
    # The crash happened after the PRE-PREPARE reached the WAL and before the PREPARE did.
    primary.wal = [(h, e) for h, e in primary.wal if _kind(e) is PrePrepare]
    assert len(primary.wal) == 1
    c.filter = lambda to, msg: True
    c.restart(primary)
    c.run()  # no view timer fires: the view must not need a view change
    live = [node for node in c.nodes if node.id not in c.down]
    assert all(len(node.committed) == 1 for node in live)
    assert {node.committed[0].view for node in live} == {0}


def test_a_new_view_primary_restarted_between_its_new_view_and_its_prepare_prepares_after_restart() -> None:
    c = Cluster(4, start=False)
    c.stop_height = 1
    silent, primary = c.nodes[1], c.nodes[2]  # primaries of (1, 0) and (1, 1)
    c.down.add(silent.id)
    c.filter = lambda to, msg: msg.sender != primary.id or type(msg) is ViewChange
    for node in c.nodes:
        if node is not silent:
            c.execute(node, node.engine.start())
    c.run()
    c.fire_all("view")
    c.run()
    assert any(_kind(e) is NewView for _, e in primary.wal) and c.heights() == [0, 0, 0, 0]
    primary.wal = [(h, e) for h, e in primary.wal if _kind(e) is not Prepare]  # crashed before its PREPARE
    c.filter = lambda to, msg: True
    c.restart(primary)
    c.run()  # no further view change
    assert [len(node.committed) for node in c.nodes if node is not silent] == [1, 1, 1]
    assert {node.committed[0].view for node in c.nodes if node is not silent} == {1}


def test_evidence_from_a_second_new_view_needs_a_valid_enclosed_pre_prepare() -> None:
    c = Cluster(4, start=False)
    c.stop_height = 1
    c.filter = lambda to, msg: not isinstance(msg, (Commit, Decision, Prepare))
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    c.filter = lambda to, msg: not isinstance(msg, (Commit, Decision, Prepare))
    c.fire_all("view")
    c.run()  # everybody is in view 1, with the NEW-VIEW of node 2 (primary of (1, 1)) accepted
    primary, victim = c.nodes[2], c.nodes[0]
    accepted = next(a.message for a in primary.log if type(getattr(a, "message", None)) is NewView)
    other_digest, other_payload = block(1, 1, "second")
    bad_pp = dataclasses.replace(
        sign_message(PrePrepare(chain_id=CHAIN, height=1, view=1, sender=primary.id, digest=other_digest,
                                payload=other_payload), primary.signer), signature=b"\x00" * 64)
    second = sign_message(NewView(chain_id=CHAIN, height=1, view=1, sender=primary.id,
                                  view_changes=accepted.view_changes, pre_prepare=bad_pp), primary.signer)
    verdict = c.deliver(victim.id, second)
    assert verdict.kind == "discard" and "invalid signature" in verdict.reason
    assert victim.engine.evidence == ()
    good_pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=1, sender=primary.id, digest=other_digest,
                                      payload=other_payload), primary.signer)
    third = sign_message(NewView(chain_id=CHAIN, height=1, view=1, sender=primary.id,
                                 view_changes=accepted.view_changes, pre_prepare=good_pp), primary.signer)
    assert c.deliver(victim.id, third).reason.startswith("equivocation")
    [evidence] = victim.engine.evidence
    assert evidence.offender == primary.id and evidence.verify(c.verifier)


def test_f_validators_filling_the_stash_cannot_drop_an_honest_next_height_proposal() -> None:
    n = 100  # f = 33; 33 senders x 64 = 2,112 > 2,048 stashed messages in all
    c = Cluster(n, start=False)
    me = c.nodes[0]
    me.engine.start()
    f = c.validators.f
    byzantine = c.nodes[n - f:]
    for bad in byzantine:
        for view in range(1, CONFIG.stash_per_sender + 1):
            msg = sign_message(Prepare(chain_id=CHAIN, height=2, view=view, sender=bad.id,
                                       digest=block(2, view, "spam")[0]), bad.signer)
            me.engine.on_message(msg)
    assert me.engine.status()["stashed"] == CONFIG.stash_total
    primary = next(node for node in c.nodes if node.id == c.validators.primary(2, 0))
    assert primary not in byzantine
    digest, payload = block(2, 0)
    proposal = sign_message(PrePrepare(chain_id=CHAIN, height=2, view=0, sender=primary.id, digest=digest,
                                       payload=payload), primary.signer)
    verdict, _ = me.engine.on_message(proposal)
    assert verdict.kind == "stash"
    assert me.engine.status()["stashed"] == CONFIG.stash_total
    # Every other honest validator's next-height vote gets in too, and the bound holds.
    honest = [node for node in c.nodes[1:n - f] if node is not primary]
    for node in honest:
        vote = sign_message(Prepare(chain_id=CHAIN, height=2, view=0, sender=node.id, digest=digest), node.signer)
        assert me.engine.on_message(vote)[0].kind == "stash"
    assert me.engine.status()["stashed"] == CONFIG.stash_total


def test_block_synced_past_the_current_height_checks_that_heights_certificate() -> None:
    source = Cluster(4)
    source.run()
    third = source.nodes[0].committed[2]
    node = source.nodes[3]
    engine = Engine(chain_id=CHAIN, validators=source.validators, signer=node.signer, verifier=source.verifier,
                    config=CONFIG, last_height=0, last_digest=ZERO)
    engine.start()
    weak = dataclasses.replace(third.certificate, votes=third.certificate.votes[:1])
    with pytest.raises(LocalProtocolError, match="certificate is invalid"):
        engine.on_block_synced(3, third.digest, weak)
    assert engine.height == 1
    engine.on_block_synced(3, third.digest, third.certificate)
    assert engine.height == 4
