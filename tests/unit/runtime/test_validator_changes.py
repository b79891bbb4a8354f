"""Validator-set changes applied by the runtime on the harness: a fifth validator voted in votes
from the change's height + 2, a removed one's votes no longer count, a rotated key's old votes
and proposals are refused while the node restarted on the new key votes, and a node down
across two changes catches up verifying every certificate against the set of its height."""

from __future__ import annotations

import pytest

from consensus.certificate import CommitCertificate, verify_certificate
from consensus.encoding import KIND_COMMIT, vote_signing_bytes
from consensus.messages import Prepare, PrePrepare, sign_message
from node.app.types.validator_rotate import rotation_message
from node.chain.block import BlockInvalid
from node.core.crypto import Identity
from tests.harness.changes import ADDRESS, commit_one, decide, with_fifth_validator
from tests.harness.cluster import CHAIN, Cluster

def test_a_fifth_validator_votes_from_the_switch_height():
    c, e, switch = with_fifth_validator()
    try:
        engine = c.nodes[e].engine
        assert engine is None or not engine.status()["member"]  # decided, not yet in force
        while c.nodes[0].store.height < switch:
            commit_one(c, [0, 1, 2, 3, 4], b"fill%d" % c.nodes[0].store.height)
        before = CommitCertificate.decode(c.nodes[0].store.certificate(switch - 1))
        assert c.id(e) not in {voter for voter, _ in before.votes}  # a vote before the switch does not count
        assert c.nodes[e].engine is not None and c.nodes[e].engine.status()["member"]
        assert c.nodes[0].status()["validators"] == 5 and c.nodes[0].status()["epoch"] == 1
        # five validators need four votes: with node 3 cut off, blocks commit only if the newcomer votes
        c.net.isolate(c.id(3))
        for k in range(3):
            commit_one(c, [0, 1, 2, e], b"five%d" % k)
        cert = CommitCertificate.decode(c.nodes[0].store.certificate(c.nodes[0].store.height))
        assert c.id(e) in {voter for voter, _ in cert.votes}
    finally:
        c.stop()


def test_a_removed_validator_no_longer_counts():
    c, e, switch = with_fifth_validator()
    try:
        while c.nodes[0].store.height < switch:
            commit_one(c, [0, 1, 2, 3, 4], b"fill%d" % c.nodes[0].store.height)
        decided = decide(c, [0, 1, 2, e], "validator.remove", {"validator": c.id(3)}, [0, 1, 2, 3, 4])
        while c.nodes[0].store.height < decided + 2:
            commit_one(c, [0, 1, 2, 3, 4], b"fill%d" % c.nodes[0].store.height)
        assert not c.nodes[3].engine.status()["member"]  # it follows, and votes no more
        assert c.nodes[0].status()["validators"] == 4
        # 4 validators (quorum 3): with node 2 cut off too, 0, 1 and the newcomer commit alone
        c.net.isolate(c.id(2))
        for k in range(2):
            commit_one(c, [0, 1, e, 3], b"four%d" % k)
        # a certificate the genesis set would accept (votes of 0, 1 and the removed 3) does not
        # certify a block of a height where 3 is out
        h = c.nodes[0].store.height
        real = CommitCertificate.decode(c.nodes[0].store.certificate(h))
        votes = tuple(sorted((c.id(i), c.idents[i].sign(vote_signing_bytes(KIND_COMMIT, CHAIN, h, real.view, c.id(i), real.digest)))
                             for i in (0, 1, 3)))
        forged = CommitCertificate(height=h, view=real.view, digest=real.digest, votes=votes)
        assert verify_certificate(forged, chain_id=CHAIN, validators=c.nodes[0].validators, verifier=c.nodes[0].verifier)
        with pytest.raises(BlockInvalid):
            c.nodes[0].blocks.check_certificate(h, real.digest, forged.encode())
        c.nodes[0].blocks.check_certificate(h, real.digest, real.encode())
        # a vote signed by the removed key for the current height is refused
        height = c.nodes[0].store.height + 1
        vote = sign_message(Prepare(chain_id=CHAIN, height=height, view=0, sender=c.id(3), digest=bytes(32)),
                            c.idents[3])
        assert c.nodes[0].on_consensus_bytes(c.id(3), vote.encode()) == ("discard", "sender is not a validator at this height")
    finally:
        c.stop()


def _rotate(c: Cluster, i: int, new: Identity, live: list[int]) -> int:
    old = c.idents[i]
    proof = new.sign(rotation_message(CHAIN, old.public_key, new.public_key))
    height = max(c.nodes[j].store.height for j in live) + 1
    c.send(live[0], old, "validator.rotate", {"new_key": new.public_key, "proof": proof})
    assert c.run_until(lambda: all(c.nodes[j].store.height >= height for j in live), max_steps=2_000)
    return height


def test_a_rotated_key_is_refused_and_the_new_key_votes():
    c = Cluster(4)
    c.start()
    try:
        old = c.idents[1]
        new = Identity.from_seed(b"rotated-key".ljust(32, b"\0"))
        decided = _rotate(c, 1, new, [0, 1, 2, 3])
        c.rekey(1, new)  # the operator restarts the node with its new key
        while c.nodes[0].store.height < decided + 2:
            commit_one(c, [0, 1, 2, 3], b"fill%d" % c.nodes[0].store.height)
        assert c.nodes[1].engine is not None and c.nodes[1].engine.status()["member"]
        # quorum 3 of {0, new 1, 2, 3}: with 3 cut off, the new key's votes are needed
        c.net.isolate(c.id(3))
        for k in range(2):
            commit_one(c, [0, 1, 2], b"rot%d" % k)
        cert = CommitCertificate.decode(c.nodes[0].store.certificate(c.nodes[0].store.height))
        assert new.public_key in {voter for voter, _ in cert.votes}
        assert verify_certificate(cert, chain_id=CHAIN, validators=c.nodes[0].membership.at(cert.height),
                                  verifier=c.nodes[0].verifier)
        assert not verify_certificate(cert, chain_id=CHAIN, validators=c.nodes[0].validators, verifier=c.nodes[0].verifier)
        # a restart checks the head's certificate against the set of its height (not the genesis set)
        c.rekey(0, c.idents[0])
        commit_one(c, [0, 1, 2], b"after-restart")
        # votes and proposals signed by the old key are refused everywhere
        height = c.nodes[0].store.height + 1
        vote = sign_message(Prepare(chain_id=CHAIN, height=height, view=0, sender=old.public_key, digest=bytes(32)), old)
        proposal = sign_message(PrePrepare(chain_id=CHAIN, height=height, view=0, sender=old.public_key,
                                           digest=bytes(32), payload=b""), old)
        for node in (c.nodes[0], c.nodes[2]):
            assert node.on_consensus_bytes(old.public_key, vote.encode())[0] == "discard"
            assert node.on_consensus_bytes(old.public_key, proposal.encode())[0] == "discard"
        assert c.nodes[0].status()["epoch"] == 1
    finally:
        c.stop()


def test_a_node_down_across_two_changes_catches_up():
    c, e, switch = with_fifth_validator()
    try:
        c.net.isolate(c.id(3))  # down across the add's switch and a rotation
        live = [0, 1, 2, e]
        while c.nodes[0].store.height < switch:
            commit_one(c, live, b"fill%d" % c.nodes[0].store.height)
        new = Identity.from_seed(b"rotated-key-2".ljust(32, b"\0"))
        decided = _rotate(c, 1, new, live)
        commit_one(c, live, b"last-with-old-key")  # the old key still votes on height decided + 1
        c.rekey(1, new)  # ... and the node runs on the new key from the switch height on
        for k in range(4):
            commit_one(c, live, b"after%d" % k)
        assert c.nodes[0].store.height >= decided + 2
        c.net.heal(c.id(3))
        assert c.run_until(lambda: c.nodes[3].store.height == c.nodes[0].store.height, max_steps=200)
        assert c.same_chain() and c.net.penalties == []
        behind = c.nodes[3]
        genesis_set_failed = False
        for h in range(1, behind.store.height + 1):
            cert = CommitCertificate.decode(behind.store.certificate(h))
            assert verify_certificate(cert, chain_id=CHAIN, validators=behind.membership.at(h), verifier=behind.verifier)
            genesis_set_failed |= not verify_certificate(cert, chain_id=CHAIN, validators=behind.validators,
                                                         verifier=behind.verifier)
        assert genesis_set_failed  # the later blocks are certified by sets the genesis does not know
        assert behind.status()["epoch"] == 2
    finally:
        c.stop()
