"""Restart from the persisted WAL: a validator re-sends what it signed and never contradicts it."""

from __future__ import annotations

import pytest

from consensus.actions import Broadcast, RequestProposal, Send
from consensus.errors import WalCorruptError
from consensus.messages import M, Commit, Decision, Prepare, PrePrepare, sign_message

from .conftest import CHAIN, Cluster, Node, block, two_final_heights


def sent(node: Node, kind: type[M]) -> list[M]:
    return [a.message for a in node.log if isinstance(a, (Broadcast, Send)) and isinstance(a.message, kind)]


def test_restarted_primary_resends_its_proposal_instead_of_making_another() -> None:
    c = Cluster(4, start=False)
    primary = c.nodes[1]
    c.filter = lambda to, msg: False  # nothing gets through: the primary proposes and crashes
    c.execute(primary, primary.engine.start())
    c.run()
    [pp] = sent(primary, PrePrepare)
    primary.log.clear()
    c.restart(primary)
    assert not any(isinstance(a, RequestProposal) for a in primary.log)
    assert {m.digest for m in sent(primary, PrePrepare)} == {pp.digest}
    assert primary.engine.on_proposal_ready(1, 0, *block(1, 0, "new")) == []
    # With the network back, everyone finalizes the original proposal.
    c.filter = lambda to, msg: True
    for node in c.nodes:
        if node is not primary:
            c.execute(node, node.engine.start())
    c.stop_height = 1
    c.run()
    assert {n.committed[0].digest for n in c.nodes} == {pp.digest}


def test_restarted_replica_resends_its_prepare_and_refuses_a_conflicting_one() -> None:
    c = Cluster(4, start=False)
    replica, primary = c.nodes[0], c.nodes[1]
    c.filter = lambda to, msg: False
    for node in (replica, primary):
        c.execute(node, node.engine.start())
    digest, payload = block(1, 0, primary.id.hex()[:8])
    pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=primary.id, digest=digest,
                                 payload=payload), primary.signer)
    c.deliver(replica.id, pp)
    [mine] = sent(replica, Prepare)
    replica.log.clear()
    c.restart(replica)
    assert sent(replica, Prepare) == [mine]
    assert replica.engine.status()["phase"] == "prepare"
    # The same primary's pre-prepare arrives again (or a conflicting one): no second prepare.
    other = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=primary.id,
                                    digest=block(1, 0, "x")[0], payload=block(1, 0, "x")[1]), primary.signer)
    verdict, actions = replica.engine.on_message(other)
    assert verdict.reason.startswith("equivocation")
    assert not any(isinstance(a, Broadcast) and isinstance(a.message, Prepare) for a in actions)


def test_restart_after_commit_restores_the_commit_and_its_certificate() -> None:
    c = Cluster(4, start=False)
    node = c.nodes[0]
    c.filter = lambda to, msg: to != node.id or msg.height != 1 or not isinstance(msg, (Commit, Decision))
    c.stop_height = 1
    for n in c.nodes:
        c.execute(n, n.engine.start())
    c.run()
    assert node.committed == [] and len(sent(node, Commit)) == 1
    node.log.clear()
    c.restart(node)
    assert len(sent(node, Commit)) == 1 and node.engine.status()["phase"] == "commit"
    # Once the missing commits arrive it finalizes the block it committed to.
    c.filter = lambda to, msg: True
    for other in c.nodes[1:]:
        c.deliver(node.id, [m for m in sent(other, Commit) if m.height == 1][0])
    assert [x.height for x in node.committed] == [1]


def test_restart_ignores_unpruned_entries_of_heights_already_final() -> None:
    c, node, everything = two_final_heights()
    assert {h for h, _ in everything} == {1, 2}
    node.wal = everything  # as if the prunes had not happened before the crash
    node.log.clear()
    c.restart(node)
    assert node.engine.status()["height"] == 3 and node.engine.status()["phase"] == "pre-prepare"
    assert sent(node, Prepare) == [] and sent(node, Commit) == []


def test_a_corrupt_wal_raises() -> None:
    c = Cluster(4)
    c.run()
    node = c.nodes[0]
    node.wal.append((9, b"\x93\x01\x02"))
    with pytest.raises(WalCorruptError):
        c.restart(node)


def test_a_wal_with_someone_elses_votes_raises() -> None:
    c = Cluster(4, start=False)
    replica, other = c.nodes[0], c.nodes[2]
    c.filter = lambda to, msg: False
    c.execute(other, other.engine.start())
    digest, payload = block(1, 0)
    pp = sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=c.nodes[1].id, digest=digest,
                                 payload=payload), c.nodes[1].signer)
    c.deliver(other.id, pp)
    replica.wal = list(other.wal)
    from consensus.errors import LocalProtocolError
    with pytest.raises(LocalProtocolError):
        c.restart(replica)
