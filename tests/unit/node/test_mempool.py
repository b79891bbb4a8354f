"""The mempool's bounds and order."""

import pytest

from node.core.crypto import Identity
from node.runtime.mempool import Mempool, MempoolFull, SenderLimit
from node.chain.tx import Transaction


def tx(seed, nonce=1):
    return Transaction.create(Identity.from_seed(bytes([seed]) * 32), chain_id="c", type="identity.register", nonce=nonce, body={"role": "patient"})



@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The mempool's monotonic clock, set by the test: now[0] = seconds."""
    import node.runtime.mempool as mp

    now = [100.0]
    monkeypatch.setattr(mp.time, "monotonic", lambda: now[0])
    return now

def test_fifo_dedup_and_remove():
    pool = Mempool(max_txs=10)
    a, b, c = tx(1), tx(2), tx(3)
    assert pool.add(a) and pool.add(b) and pool.add(c)
    assert not pool.add(a)
    assert [t.hash for t in pool.take(2, 1 << 20)] == [a.hash, b.hash]
    assert len(pool) == 3  # taking does not remove
    pool.remove([a.hash, b.hash])
    assert [t.hash for t in pool.take(10, 1 << 20)] == [c.hash]
    assert pool.size_bytes == len(c.encoded)


def test_bounds():
    pool = Mempool(max_txs=2)
    pool.add(tx(1))
    pool.add(tx(2))
    with pytest.raises(MempoolFull):
        pool.add(tx(3))
    per_sender = Mempool(max_per_sender=2)
    per_sender.add(tx(1, 1))
    per_sender.add(tx(1, 2))
    with pytest.raises(SenderLimit, match="sender"):  # its own code (429 sender_limit), a kind of MempoolFull
        per_sender.add(tx(1, 3))
    per_sender.remove([tx(1, 1).hash])
    per_sender.add(tx(1, 3))
    small = Mempool(max_bytes=len(tx(1).encoded) + 5)
    small.add(tx(1))
    with pytest.raises(MempoolFull):
        small.add(tx(2))
    assert len(pool.take(1, 1)) == 0  # nothing fits in one byte


def test_waiting_since_offers_each_transaction_again_after_doubling_intervals(clock):
    now = clock
    pool = Mempool()
    a, b = tx(1), tx(2)
    pool.add(a)
    now[0] = 101.0
    pool.add(b)
    now[0] = 102.5
    assert [t.hash for t in pool.waiting_since(2.0, 10)] == [a.hash]  # b has waited 1.5 s only
    assert pool.waiting_since(2.0, 10) == []  # a was just offered again
    now[0] = 104.6
    assert [t.hash for t in pool.waiting_since(2.0, 10)] == [b.hash]  # a's next offer waits 4 s
    now[0] = 106.6
    assert [t.hash for t in pool.waiting_since(2.0, 10)] == [a.hash]
    pool.remove([a.hash])
    now[0] = 200.0
    assert [t.hash for t in pool.waiting_since(2.0, 1)] == [b.hash]
    for _ in range(10):  # the interval stops doubling at 32 times the first
        now[0] += 64.0
        assert [t.hash for t in pool.waiting_since(2.0, 1)] == [b.hash]


def test_a_long_queue_stretches_the_wait_before_a_transaction_is_offered_again(clock):
    """While blocks take transactions out at a known rate, the one at position i waits
    i x patience too before it is offered again; the walk stops where no later one can be due."""
    now = clock
    pool = Mempool()
    txs = [tx(i) for i in range(1, 201)]
    for t in txs:
        pool.add(t)
    now[0] = 131.0  # 31 s on: past the 30 s floor for everyone
    assert len(pool.waiting_since(30.0, 1000)) == 200  # no patience: all are due
    pool = Mempool()
    for t in txs:
        pool.add(t)  # (arrived at 131)
    now[0] = 162.0
    # 0.25 s per position: positions 0..124 are due after 31 s (max(30, i/4) <= 31), the rest not yet
    due = pool.waiting_since(30.0, 1000, patience_per_tx_s=0.25)
    assert [t.hash for t in due] == [t.hash for t in txs[:125]]
    now[0] = 182.0  # 51 s: positions up to 204 would be due; the first 125 were just offered (next at 2 x)
    assert [t.hash for t in pool.waiting_since(30.0, 1000, patience_per_tx_s=0.25)] == [t.hash for t in txs[125:]]


def test_the_drain_rate_counts_what_commits_took_out_lately(clock):
    now = clock
    pool = Mempool()
    txs = [tx(i) for i in range(1, 41)]
    for t in txs:
        pool.add(t)
    assert pool.drain_per_s() == 0.0
    pool.remove([t.hash for t in txs[:10]])
    now[0] = 102.0
    pool.remove([t.hash for t in txs[10:30]] + [b"\0" * 32])  # an unknown hash takes nothing out
    assert pool.drain_per_s() == 15.0  # 30 in the 2 s since the first removal
    now[0] = 200.0
    assert pool.drain_per_s() == 0.0  # nothing lately
