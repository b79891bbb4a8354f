"""Falling behind (NeedSync, block sync) and validator-set changes decided at one height, effective later."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.actions import NeedSync, PruneWal, RequestProposal
from consensus.engine import Engine
from consensus.errors import LocalProtocolError
from consensus.messages import Prepare, sign_message
from consensus.validators import ValidatorSet

from .conftest import CHAIN, CONFIG, ZERO, Cluster, block


def prepare_at(c: Cluster, i: int, height: int) -> Prepare:
    node = c.nodes[i]
    return sign_message(Prepare(chain_id=CHAIN, height=height, view=0, sender=node.id,
                                digest=block(height, 0)[0]), node.signer)


def test_need_sync_after_f_plus_one_validators_are_two_heights_ahead() -> None:
    c = Cluster(4, start=False)
    engine = c.nodes[0].engine
    engine.start()
    _, actions = engine.on_message(prepare_at(c, 1, 9))
    assert not any(isinstance(a, NeedSync) for a in actions)  # one validator may lie about its height
    _, actions = engine.on_message(prepare_at(c, 2, 5))
    assert [a for a in actions if isinstance(a, NeedSync)] == [NeedSync(height=4)]  # f+1 are at >= 5
    _, actions = engine.on_message(prepare_at(c, 3, 5))
    assert not any(isinstance(a, NeedSync) for a in actions)  # already asked for that much


def test_one_height_behind_relies_on_decisions_not_sync() -> None:
    c = Cluster(4, start=False)
    engine = c.nodes[0].engine
    engine.start()
    for i in (1, 2, 3):
        _, actions = engine.on_message(prepare_at(c, i, 2))
        assert not any(isinstance(a, NeedSync) for a in actions)


def test_block_synced_jumps_past_the_block() -> None:
    source = Cluster(4)
    source.run()
    commits = source.nodes[0].committed
    node = source.nodes[3]
    engine = Engine(chain_id=CHAIN, validators=source.validators, signer=node.signer, verifier=source.verifier,
                    config=CONFIG, last_height=0, last_digest=ZERO)
    engine.start()
    actions = engine.on_block_synced(1, commits[0].digest, commits[0].certificate, commits[0].payload)
    assert PruneWal(below_height=2) in actions and engine.height == 2
    assert engine.on_block_synced(1, commits[0].digest, commits[0].certificate) == []  # already past it
    engine.on_block_synced(3, commits[2].digest, commits[2].certificate)  # the runtime verified this one
    assert engine.height == 4 and engine.view == 0
    with pytest.raises(LocalProtocolError):
        engine.on_block_synced(5, commits[2].digest, commits[2].certificate)  # certificate of another block


def test_block_synced_with_a_bad_certificate_is_the_runtimes_bug() -> None:
    source = Cluster(4)
    source.run()
    first = source.nodes[0].committed[0]
    fresh = Cluster(4, start=False).nodes[0].engine  # same keys, at height 1
    fresh.start()
    weak = dataclasses.replace(first.certificate, votes=first.certificate.votes[:1])
    with pytest.raises(LocalProtocolError):
        fresh.on_block_synced(1, first.digest, weak)
    assert fresh.height == 1


def test_validator_set_change_takes_effect_at_the_scheduled_height() -> None:
    c = Cluster(5, start=False)
    four = ValidatorSet(validators=c.validators.validators[:4])
    five = c.validators
    # Start with the first four validators; the fifth node follows as an observer.
    for node in c.nodes:
        node.engine = Engine(chain_id=CHAIN, validators=four, signer=node.signer, verifier=c.verifier,
                             config=CONFIG, last_height=0, last_digest=ZERO)
    c.validators = four
    newcomer = c.nodes[4]
    c.stop_height = 1
    for node in c.nodes:
        c.execute(node, node.engine.start())
    c.run()
    assert c.heights() == [1] * 5
    assert newcomer.engine.status()["member"] is False
    # Block 1 held a governance transaction: from height 3 on, five validators.
    for node in c.nodes:
        node.engine.schedule_validators(3, five)
    c.stop_height = 4
    c.propose_pending("p")
    c.run()
    assert c.heights() == [4] * 5
    assert newcomer.engine.status()["member"] is True and newcomer.engine.status()["validators"] == 5
    for commit in newcomer.committed:
        voters = {v for v, _ in commit.certificate.votes}
        expected = four if commit.height < 3 else five
        assert voters <= set(expected.validators) and len(voters) >= expected.quorum
    # The newcomer voted from height 3 on, and only then.
    assert all(newcomer.id not in {v for v, _ in x.certificate.votes} for x in newcomer.committed[:2])
    assert any(newcomer.id in {v for v, _ in x.certificate.votes} for x in newcomer.committed[2:])
    # Height 4's primary under five validators is validators[4 % 5]: the newcomer proposed it.
    assert five.primary(4, 0) == newcomer.id
    assert any(isinstance(a, RequestProposal) and a.height == 4 for a in newcomer.log)


def test_removed_validator_stops_voting_and_its_votes_no_longer_count() -> None:
    c = Cluster(4)
    c.stop_height = 1
    c.run()
    three = ValidatorSet(validators=c.validators.validators[:3])
    for node in c.nodes:
        node.engine.schedule_validators(3, three)
    leaver = c.nodes[3]
    c.stop_height = 3
    c.propose_pending("p")
    c.run()
    assert c.heights() == [3] * 4
    third = c.nodes[0].committed[2]
    assert leaver.id not in {v for v, _ in third.certificate.votes}
    assert leaver.engine.status()["member"] is False
    msg = sign_message(Prepare(chain_id=CHAIN, height=4, view=0, sender=leaver.id, digest=bytes(32)), leaver.signer)
    verdict, _ = c.nodes[0].engine.on_message(msg)
    assert verdict.kind == "discard" and "not a validator" in verdict.reason


def test_a_change_must_take_effect_after_the_height_being_decided() -> None:
    c = Cluster(4)
    c.run()
    engine = c.nodes[0].engine
    height = engine.height
    with pytest.raises(LocalProtocolError):
        engine.schedule_validators(height, c.validators)
    engine.schedule_validators(height + 1, c.validators)
    with pytest.raises(LocalProtocolError):
        engine.schedule_validators(height + 1, ValidatorSet(validators=c.validators.validators[:3]))
