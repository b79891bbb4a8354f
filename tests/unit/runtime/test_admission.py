"""Admission into the mempool, on a node of the harness: what is refused and why, and what a
peer that gossips bad transactions earns."""

from __future__ import annotations

from node.chain.tx import Transaction
from node.core.crypto import Identity, sha256
from node.core.encoding import canonical
from node.runtime.transport import FRAME_TXS
from tests.harness.cluster import CHAIN, Cluster, patient_registrations, wire


def with_bad_signature(tx: Transaction) -> list[object]:
    value = wire(tx)
    value[-1] = bytes([value[-1][0] ^ 1]) + value[-1][1:]
    return value


def test_a_bad_signature_is_refused(cluster: Cluster):
    [tx] = patient_registrations(1)
    [verdict] = cluster.nodes[0].admit([with_bad_signature(tx)])
    assert (verdict.hash, verdict.error) == (None, "bad_signature")
    assert len(cluster.nodes[0].mempool) == 0


def test_a_duplicate_is_admitted_once_and_gossiped_once(cluster: Cluster):
    [tx] = patient_registrations(1)
    first, again = cluster.nodes[1].admit([wire(tx)]) + cluster.nodes[1].admit([wire(tx)])
    assert first.error is None and not first.duplicate
    assert again.error is None and again.duplicate and again.hash == tx.hash
    gossip = [f for f in cluster.net.frames if f.kind == FRAME_TXS]
    assert sorted(f.dst for f in gossip) == sorted(cluster.id(i) for i in (0, 2, 3))  # once to each peer
    assert cluster.run_until(lambda: cluster.heights() == [1, 1, 1, 1])
    [late] = cluster.nodes[2].admit([wire(tx)])
    assert late.error == "already_committed"


def test_a_full_mempool_refuses_more():
    c = Cluster(4, config={"mempool": {"max_txs": 3}})
    c.start()
    try:
        verdicts = c.nodes[0].admit([wire(t) for t in patient_registrations(5)])
        assert [v.error for v in verdicts] == [None, None, None, "mempool_full", "mempool_full"]
        assert len(c.nodes[0].mempool) == 3
    finally:
        c.stop()


def test_an_unregistered_sender_is_refused_but_may_queue_behind_its_registration(cluster: Cluster):
    stranger = Identity.from_seed(sha256(b"stranger"))
    optout = Transaction.create(stranger, chain_id=CHAIN, type="consent.breakglass", nonce=2, body={"opt_out": True})
    [refused] = cluster.nodes[0].admit([wire(optout)])
    assert refused.error == "not_registered"
    register = Transaction.create(stranger, chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "patient"})
    verdicts = cluster.submit(0, [register, optout])  # behind its waiting registration: admitted
    assert [v.error for v in verdicts] == [None, None]
    assert cluster.run_until(lambda: all(n.tx_status(optout.hash)["status"] == "committed" for n in cluster.nodes))
    assert {n.tx_status(optout.hash)["result"] for n in cluster.nodes} == {"ok"}


def test_a_peer_gossiping_bad_signatures_is_penalized(cluster: Cluster):
    [good] = patient_registrations(1)
    [forged] = patient_registrations(1, seed=b"forger")
    bad = Transaction.create(Identity.from_seed(sha256(b"other")), chain_id=CHAIN, type=forged.type,
                             nonce=forged.nonce, body=forged.body)
    # the forger's transaction under another key's signature: decodes, but does not verify
    value = wire(forged)
    value[-1] = bad.signature
    payload = canonical([good.encoded, canonical(value)])
    assert cluster.net.post(cluster.id(1), cluster.id(0), FRAME_TXS, payload)
    cluster.net.deliver(max_frames=1)
    assert len(cluster.nodes[0].mempool) == 1  # the good one (a gossiped transaction is not forwarded)
    assert all(f.kind != FRAME_TXS for f in cluster.net.frames)
    assert cluster.net.penalties == [(cluster.id(1), cluster.id(0), "1 gossiped transactions with bad signatures")]


def test_a_strangers_or_forgers_costly_body_is_not_checked(cluster: Cluster, monkeypatch):
    """A body check may cost more than a signature (an agreement's policy is parsed and
    type-checked): an unregistered sender, or a forged signature, is refused before it."""
    from node.app import agreements
    from node.app.policies.check import canonical_form

    checked: list[str] = []
    real = agreements.check_stored_policy
    monkeypatch.setattr(agreements, "check_stored_policy", lambda policy: checked.append(policy) or real(policy))

    def propose(sender: Identity) -> Transaction:
        body = {"agreement": "a1", "version": 1, "parties": sorted([sender.public_key, b"\x01" * 32]),
                "purposes": ["treatment"], "policy": canonical_form('permit (principal, action, resource) when { principal.profession == "pharmacist" };')}
        return Transaction.create(sender, chain_id=CHAIN, type="agreement.propose", nonce=10**12, body=body)

    stranger = Identity.from_seed(b"\x09" * 32)
    [verdict] = cluster.nodes[0].admit([wire(propose(stranger))])
    assert verdict.error == "not_registered" and checked == []
    institution = cluster.idents[0]  # registered by the genesis
    [verdict] = cluster.nodes[0].admit([with_bad_signature(propose(institution))])
    assert verdict.error == "bad_signature" and checked == []
    [verdict] = cluster.nodes[0].admit([wire(propose(institution))])
    assert verdict.error is None and len(checked) == 1  # its own: checked, once


def test_parallel_verification_gives_every_verdict_one_worker_gives():
    """A mixed batch (valid registrations and follow-ups, forged signatures, strangers, duplicates)
    is admitted alike on the node's own thread and on four verifying processes, in the same
    order; a stranger's signature is never sent to the processes."""
    import asyncio
    from unittest import mock

    from node.runtime import admission as admission_module

    batch: list[list[object]] = []
    for n in range(60):
        who = Identity.from_seed(sha256(b"parallel/%d" % n))
        register = Transaction.create(who, chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "patient"})
        follow = Transaction.create(who, chain_id=CHAIN, type="consent.breakglass", nonce=2, body={"opt_out": True})
        batch += [wire(register), with_bad_signature(follow) if n % 7 == 0 else wire(follow)]
        if n % 11 == 0:
            stranger = Identity.from_seed(sha256(b"stranger/%d" % n))
            batch.append(wire(Transaction.create(stranger, chain_id=CHAIN, type="consent.breakglass", nonce=2,
                                                 body={"opt_out": True})))
        if n % 13 == 0:
            batch.append(wire(register))  # a duplicate within the batch
    outcomes = []
    for workers in (1, 4):
        c = Cluster(4, config={"node": {"verify_workers": workers}})
        c.start()
        try:
            assert c.nodes[0].admission.workers == workers
            sent: list[bytes] = []
            real = admission_module.signed_triple

            def spy(tx: Transaction) -> tuple[bytes, bytes, bytes]:
                sent.append(tx.sender)
                return real(tx)

            with mock.patch("node.runtime.admission.signed_triple", spy):
                verdicts = asyncio.run(c.nodes[0].admit_async(batch))
            outcomes.append([(v.hash, v.error, v.duplicate) for v in verdicts])
            pool = c.nodes[0].admission._pool
            if workers > 1:
                assert pool is not None and pool.verified_on_workers == len(sent) > 0, "verified on the processes"
                strangers = {Identity.from_seed(sha256(b"stranger/%d" % n)).public_key for n in range(0, 60, 11)}
                assert not strangers & set(sent)
            else:
                assert pool is None and not sent
        finally:
            c.stop()
    assert outcomes[0] == outcomes[1]
    errors = [e for _, e, _ in outcomes[0]]
    assert errors.count("bad_signature") == 9 and errors.count("not_registered") == 6


def test_admission_off_the_event_loop_gives_the_same_verdicts_and_announces_a_request_once():
    """`admit_async` (the API's path: the signatures checked on the pool while the loop goes on)
    admits a mixed batch exactly as `admit` does on one thread, and hands the fresh transactions
    to the proposer and the gossip once, after the whole request."""
    import asyncio

    batch: list[list[object]] = []
    for n in range(150):
        who = Identity.from_seed(sha256(b"async/%d" % n))
        register = Transaction.create(who, chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "patient"})
        batch.append(with_bad_signature(register) if n % 9 == 0 else wire(register))
        if n % 17 == 0:
            batch.append(wire(register))  # a duplicate within the batch
    outcomes = []
    for workers, path in ((1, "admit"), (2, "admit_async")):
        c = Cluster(4, config={"node": {"verify_workers": workers}})
        c.start()
        try:
            announced: list[int] = []
            admission = c.nodes[0].admission
            real = admission.admitted
            admission.admitted = lambda txs, gossip: (announced.append(len(txs)), real(txs, gossip))[1]
            if path == "admit":
                verdicts = c.nodes[0].admit(batch)
            else:
                verdicts = asyncio.run(c.nodes[0].admit_async(batch))
                assert announced == [sum(1 for v in verdicts if v.error is None and not v.duplicate)]
            outcomes.append([(v.hash, v.error, v.duplicate) for v in verdicts])
        finally:
            c.stop()
    assert outcomes[0] == outcomes[1]
    assert [e for _, e, _ in outcomes[0]].count("bad_signature") == 17
