"""A joiner derives the validator set of a snapshot's height from the genesis set and the
evidence of each change (node/runtime/snapshots.py: `change_evidence`, `verify_changes`): on a
harness chain that voted in a fifth validator and rotated a key, a snapshot taken after both
verifies with that evidence; forged or incomplete evidence is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from node.app import validator_sets
from node.app.types.validator_rotate import rotation_message
from node.core.crypto import Identity
from node.home.config import build_config
from node.runtime.runtime import Node
from node.runtime.snapshots import SetChange, change_evidence, start_from_snapshot, verify_changes
from storage.chain import ChainStore
from storage.kv import MemoryStore
from storage.snapshots import SnapshotInvalid, load_snapshot
from tests.harness.changes import commit_one, with_fifth_validator
from tests.harness.cluster import CHAIN, Cluster
from tests.unit.runtime.test_snapshots import INTERVAL, all_attestations, chunks_of, with_snapshots

ALL = [0, 1, 2, 3, 4]


def _fill_to(c: Cluster, height: int) -> None:
    while c.nodes[0].store.height < height:
        commit_one(c, ALL, b"fill%d" % c.nodes[0].store.height)


@pytest.fixture
def changed(tmp_path: Path):
    """(cluster, snapshot info, the evidence of the two changes, the snapshot's height)."""
    c, _, switch = with_fifth_validator()
    try:
        _fill_to(c, switch)
        new = Identity.from_seed(b"rotated-key".ljust(32, b"\0"))
        proof = new.sign(rotation_message(CHAIN, c.id(1), new.public_key))
        height = c.nodes[0].store.height + 1
        c.send(0, c.idents[1], "validator.rotate", {"new_key": new.public_key, "proof": proof})
        assert c.run_until(lambda: all(n.store.height >= height for n in c.nodes), max_steps=2_000)
        c.rekey(1, new)
        _fill_to(c, height + 2)
        with_snapshots(c, tmp_path)  # every validator of the new set (the new key included) attests
        target = (c.nodes[0].store.height // INTERVAL + 1) * INTERVAL
        _fill_to(c, target)
        history = validator_sets.history(c.nodes[0].state_reader())
        evidence = [SetChange.from_json(e.to_json()) for e in change_evidence(c.nodes[0].store, CHAIN, history)]
        assert [e.effective_height for e in evidence] == [switch, height + 2]
        yield c, tmp_path, load_snapshot(tmp_path / "snap0", target), evidence
    finally:
        c.stop()


def _start(c: Cluster, root: Path, info, changes) -> ChainStore:
    store = ChainStore(MemoryStore())
    start_from_snapshot(store, genesis=c.genesis, info=info, chunks=chunks_of(root / "snap0", info.height),
                        attestations=all_attestations(root, 5, info.height), changes=changes)
    return store


def test_a_snapshot_after_an_addition_and_a_rotation_verifies_with_the_chain_of_changes(changed):
    c, root, info, evidence = changed
    sets = verify_changes(c.genesis, evidence)
    assert [len(s) for _, s in sets] == [4, 5, 5] and c.id(1) in sets[-1][1] and c.id(4) in sets[-1][1]
    store = _start(c, root, info, evidence)
    assert (store.height, store.state_root, store.last_hash) == (info.height, info.state_root, info.block_hash)
    config = build_config({"node": {"observer": True}}, env={})
    joiner = Node(config=config, genesis=c.genesis, identity=Identity.from_seed(b"j" * 32), store=store, clock=c.clock)
    try:  # it starts on the snapshot and follows the blocks decided by the set of their height
        c.net.add(joiner)
        joiner.start()
        commit_one(c, ALL, b"after")
        assert c.run_until(lambda: joiner.store.height == c.nodes[0].store.height, max_steps=200)
        assert joiner.store.state_root == c.nodes[0].store.state_root
    finally:
        joiner.stop()

def test_forged_or_incomplete_evidence_is_refused(changed):
    c, root, info, evidence = changed
    add, rotate = evidence
    outsider = Identity.from_seed(b"outsider".ljust(32, b"\0")).public_key
    forged_set = dataclasses.replace(add, validators=(*add.validators[:4], outsider))
    with pytest.raises(SnapshotInvalid, match="does not make the claimed set"):
        verify_changes(c.genesis, [forged_set, rotate])
    other_cert = c.nodes[0].store.certificate(add.decided_height - 1)
    assert other_cert is not None
    with pytest.raises(SnapshotInvalid, match="lacks a commit certificate"):
        verify_changes(c.genesis, [dataclasses.replace(add, certificate=other_cert), rotate])
    with pytest.raises(SnapshotInvalid, match="not proven in block"):  # a transaction no certified block holds
        verify_changes(c.genesis, [add, dataclasses.replace(rotate, tx=add.tx)])
    with pytest.raises(SnapshotInvalid, match="out of order|lacks a commit certificate"):
        verify_changes(c.genesis, [rotate, add])
    for partial in ([add], []):  # a change left out: the snapshot's own history tells
        with pytest.raises(SnapshotInvalid, match="differs from the verified one|lacks a commit certificate|attest"):
            _start(c, root, info, partial)
