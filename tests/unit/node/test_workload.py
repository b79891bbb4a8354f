"""Bench workloads: proportions, one transaction per measured sender, every one admissible."""

import pytest

from node.app.registry import check_tx_body
from node.core.crypto import Identity
from node.chain.tx import check_signature
from node.devtools.workload import MIX, mix_counts, mix_workload, register_workload


def test_mix_counts_follow_the_proportions_and_add_up():
    for count in (1, 7, 100, 20_000):
        counts = mix_counts(count)
        assert sum(counts.values()) == count
        assert set(counts) == {name for name, _ in MIX}
    assert mix_counts(100) == {"identity.register": 10, "record.add": 30, "consent.grant": 20, "access.request": 40}


def test_mix_measured_transactions_have_distinct_senders_and_pass_admission_checks():
    inst = Identity.from_seed(b"\x01" * 32)
    w = mix_workload("c", 500, seed=b"s", institution=inst, now_ms=1_000, tx_bytes=0)
    assert len(w.measured) == 500 and w.counts == mix_counts(500)
    assert len({t.sender for t in w.measured}) == 500
    setup_senders = {t.sender for phase in w.setup for t in phase}
    for tx in [*w.measured, *(t for phase in w.setup for t in phase)]:
        check_tx_body(tx)
        check_signature(tx)
    # measured senders other than fresh registrants were registered in setup, with nonce 1
    for tx in w.measured:
        if tx.type != "identity.register":
            assert tx.sender in setup_senders and tx.nonce == 2
    # inside one setup phase no sender sends twice (phases are committed one after the other)
    for phase in w.setup:
        assert len({t.sender for t in phase}) == len(phase)


def test_workloads_are_reproducible_from_their_seed_and_access_requests_cannot_be_padded():
    a = register_workload("c", 20, seed=b"x")
    assert [t.hash for t in a.measured] == [t.hash for t in register_workload("c", 20, seed=b"x").measured]
    assert a.measured[0].hash != register_workload("c", 20, seed=b"y").measured[0].hash
    inst = Identity.from_seed(b"\x02" * 32)
    plain = mix_workload("c", 100, seed=b"s", institution=inst, now_ms=0)
    assert [t.hash for t in plain.measured] == [t.hash for t in mix_workload("c", 100, seed=b"s", institution=inst, now_ms=0).measured]
    # no free text on the chain: nothing to pad an access request with
    with pytest.raises(ValueError, match="padded"):
        mix_workload("c", 100, seed=b"s", institution=inst, now_ms=0, tx_bytes=400)
