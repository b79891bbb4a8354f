"""The normal case: PRE-PREPARE, PREPARE, COMMIT, finality, persistence before sending."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from consensus.actions import (
    Broadcast,
    CommitBlock,
    Persist,
    PruneWal,
    RequestProposal,
    Send,
    SetTimer,
    ValidateBlock,
)
from consensus.certificate import verify_certificate
from consensus.engine import Engine, EngineConfig
from consensus.errors import LocalProtocolError
from consensus.messages import Commit, Prepare, PrePrepare, ViewChange, sign_message
from consensus.wal import decode_record

from .conftest import CHAIN, CONFIG, ZERO, Cluster, block


def assert_safe_and_certified(cluster: Cluster) -> None:
    by_height: dict[int, bytes] = {}
    for node in cluster.nodes:
        for c in node.committed:
            assert by_height.setdefault(c.height, c.digest) == c.digest
            assert verify_certificate(c.certificate, chain_id=CHAIN, validators=cluster.validators,
                                      verifier=cluster.verifier)
            assert hashlib.sha256(c.payload).digest() == c.digest


def test_a_single_validator_finalizes_on_its_own_votes() -> None:
    cluster = Cluster(1)
    node = cluster.nodes[0]
    assert [c.height for c in node.committed] == [1, 2, 3]
    assert all(len(c.certificate.votes) == 1 for c in node.committed)
    assert_safe_and_certified(cluster)
    assert node.engine.status()["height"] == 4


@pytest.mark.parametrize("n", [4, 7])
def test_all_validators_finalize_the_same_blocks(n: int) -> None:
    cluster = Cluster(n)
    cluster.run()
    assert cluster.heights() == [3] * n
    assert_safe_and_certified(cluster)
    # Each height was proposed by its view-0 primary: validators[(h + 0) % n].
    for c in cluster.nodes[0].committed:
        proposer = cluster.validators.primary(c.height, 0)
        assert c.payload == block(c.height, 0, proposer.hex()[:8])[1]
        assert c.view == 0


def test_every_vote_is_persisted_before_it_is_sent() -> None:
    cluster = Cluster(4)
    cluster.run()
    for node in cluster.nodes:
        persisted: set[bytes] = set()
        sent = 0
        for action in node.log:
            if isinstance(action, Persist):
                persisted.add(decode_record(action.entry, max_payload=1 << 20).message.signature)
            elif isinstance(action, (Broadcast, Send)) and isinstance(action.message, (PrePrepare, Prepare, Commit, ViewChange)):
                assert action.message.signature in persisted, f"{type(action.message).__name__} sent before persisted"
                sent += 1
        assert sent >= 6


def test_wal_is_pruned_below_each_final_height() -> None:
    cluster = Cluster(4)
    cluster.run()
    node = cluster.nodes[0]
    prunes = [a.below_height for a in node.log if isinstance(a, PruneWal)]
    assert prunes == [2, 3, 4]
    assert all(h >= 4 for h, _ in node.wal)


def test_a_replica_prepares_only_after_the_block_is_validated() -> None:
    cluster = Cluster(4, start=False)
    replica = cluster.nodes[0]  # validators[1] is the primary of height 1
    replica.engine.start()
    primary = cluster.nodes[1]
    digest, payload = block(1, 0, "x")
    pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=primary.id, digest=digest,
                                 payload=payload), primary.signer)
    verdict, actions = replica.engine.on_message(pp)
    assert verdict.kind == "process"
    assert actions == [ValidateBlock(height=1, view=0, digest=digest, payload=payload)]
    actions = replica.engine.on_block_validated(1, digest, True)
    assert [type(a) for a in actions] == [Persist, Broadcast, SetTimer]
    assert isinstance(actions[1], Broadcast) and isinstance(actions[1].message, Prepare)
    # the proposal is good: the view timer starts again, so checking it cost the round nothing
    assert actions[2] == SetTimer(key=("view", 1, 0), delay_ms=replica.engine.config.view_timeout_ms(0))
    assert replica.engine.status()["phase"] == "prepare"


def test_a_rejected_block_is_not_prepared() -> None:
    cluster = Cluster(4, validate=lambda h, d, p: False)
    cluster.run()
    assert cluster.heights() == [0, 0, 0, 0]
    for node in cluster.nodes:
        assert not any(isinstance(a, Broadcast) and isinstance(a.message, Prepare) and
                       node.id != cluster.validators.primary(1, 0) for a in node.log)


def test_stale_proposals_and_validations_are_ignored() -> None:
    cluster = Cluster(4, start=False)
    primary = cluster.nodes[1]
    actions = primary.engine.start()
    assert RequestProposal(height=1, view=0) in actions
    digest, payload = block(1, 0)
    assert primary.engine.on_proposal_ready(1, 1, digest, payload) == []  # wrong view
    assert primary.engine.on_proposal_ready(2, 0, digest, payload) == []  # wrong height
    assert cluster.nodes[0].engine.start() and cluster.nodes[0].engine.on_proposal_ready(1, 0, digest, payload) == []
    assert primary.engine.on_block_validated(1, digest, True) == []  # nothing was asked
    first = primary.engine.on_proposal_ready(1, 0, digest, payload)
    assert any(isinstance(a, Broadcast) and isinstance(a.message, PrePrepare) for a in first)
    other_digest, other_payload = block(1, 0, "other")
    assert primary.engine.on_proposal_ready(1, 0, other_digest, other_payload) == []  # never two proposals


def test_engine_refuses_use_before_start_and_double_start() -> None:
    cluster = Cluster(4, start=False)
    engine = cluster.nodes[0].engine
    with pytest.raises(LocalProtocolError):
        engine.on_timer(("resend", 1))
    engine.start()
    with pytest.raises(LocalProtocolError):
        engine.start()


def test_constructor_checks_its_arguments() -> None:
    cluster = Cluster(1, start=False)
    node = cluster.nodes[0]
    with pytest.raises(LocalProtocolError):
        Engine(chain_id=CHAIN, validators=cluster.validators, signer=node.signer, verifier=cluster.verifier,
               config=CONFIG, last_height=-1, last_digest=ZERO)
    with pytest.raises(ValueError):
        EngineConfig(base_timeout_ms=100, max_timeout_ms=50)


def test_timeouts_double_per_view_and_are_capped() -> None:
    config = EngineConfig(base_timeout_ms=100, max_timeout_ms=1000)
    assert [config.view_timeout_ms(v) for v in range(6)] == [100, 200, 400, 800, 1000, 1000]
    assert config.view_timeout_ms(10**9) == 1000


def test_commit_block_carries_the_quorum_certificate_and_the_payload() -> None:
    cluster = Cluster(4)
    cluster.run()
    commit = cluster.nodes[2].committed[0]
    assert isinstance(commit, CommitBlock)
    assert len(commit.certificate.votes) >= cluster.validators.quorum
    assert commit.certificate.digest == commit.digest and commit.certificate.height == 1


def test_a_payload_swapped_in_transit_fails_the_signature_and_a_rejected_one_is_retried() -> None:
    cluster = Cluster(4, start=False)
    replica, primary = cluster.nodes[0], cluster.nodes[1]
    replica.engine.start()
    digest, payload = block(1, 0)
    honest = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=primary.id, digest=digest,
                                     payload=payload), primary.signer)
    swapped = dataclasses.replace(honest, payload=b"garbage")
    assert not cluster.verifier.verify(swapped.sender, swapped.signing_bytes(), swapped.signature)
    # A primary that signs a payload that is not its digest's block gets no prepare.
    bad = sign_message(dataclasses.replace(honest, payload=b"garbage", signature=b""), primary.signer)
    _, actions = replica.engine.on_message(bad)
    assert actions == [ValidateBlock(height=1, view=0, digest=digest, payload=b"garbage")]
    assert replica.engine.on_block_validated(1, digest, False) == []
    assert replica.engine.status()["phase"] == "pre-prepare"
