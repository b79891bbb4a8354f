"""The verifying processes (node/core/verify_pool.py): the same verdicts as verifying inline, in
order, whatever the chunks and however many batches are in flight; a worker that dies costs a
batch nothing but time; a worker ends when its node's end of the pipe closes."""

from __future__ import annotations

import asyncio
import io
import random
import subprocess
import sys
import warnings

import msgpack

from node.core.crypto import Identity, sha256, verify
from node.core.verify_pool import _LENGTH, MAX_CHUNK_BYTES, Triple, VerifyPool, serve, verify_all


def triples(count: int, seed: int) -> tuple[list[Triple], list[bool]]:
    """Signed messages, about a fifth of them spoiled in one of several ways, and the truth."""
    rng = random.Random(seed)
    out: list[Triple] = []
    for n in range(count):
        who = Identity.from_seed(sha256(b"pool/%d/%d" % (seed, n)))
        msg = rng.randbytes(rng.randrange(1, 300))
        sig = who.sign(msg)
        spoil = rng.randrange(10)
        if spoil == 0:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        elif spoil == 1:
            msg = msg + b"!"
        elif spoil == 2:
            sig = sig[:-1]  # not a signature's length
        out.append((who.public_key, msg, sig))
    return out, [verify(pk, m, s) for pk, m, s in out]


def test_the_processes_give_the_inline_verdicts_in_order_for_concurrent_batches():
    batches = [triples(n, seed) for seed, n in enumerate((1, 2, 97, 300, 41))]
    pool = VerifyPool(3)

    async def run() -> list[list[bool]]:
        assert pool.start()
        return list(await asyncio.gather(*(pool.check_async(t) for t, _ in batches)))

    try:
        got = asyncio.run(run())
    finally:
        pool.close()
    assert got == [truth for _, truth in batches]
    assert pool.verified_on_workers == sum(len(t) for t, _ in batches)
    assert any(not v for truth in got for v in truth) and any(v for truth in got for v in truth)


def test_a_worker_that_dies_costs_the_batch_nothing_and_the_pool_starts_again():
    batch, truth = triples(200, seed=7)
    pool = VerifyPool(2)

    async def run() -> None:
        assert await pool.check_async(batch) == truth
        on_workers = pool.verified_on_workers
        for worker in pool._procs:
            worker.proc.kill()
            worker.proc.wait()
        assert await pool.check_async(batch) == truth  # verified inline, or on new workers
        assert await pool.check_async(batch) == truth
        assert pool.verified_on_workers > on_workers, "the pool started again"
        assert all(w.alive for w in pool._procs)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no subprocess or transport left behind
        try:
            asyncio.run(run())
        finally:
            pool.close()


def test_a_pool_outlives_its_event_loop_cleanly_and_follows_the_next_one():
    batch, truth = triples(64, seed=3)
    pool = VerifyPool(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            assert asyncio.run(pool.check_async(batch)) == truth
            first = [w.proc.pid for w in pool._procs]
            assert asyncio.run(pool.check_async(batch)) == truth  # a new loop: new workers on it
            assert [w.proc.pid for w in pool._procs] != first
            assert pool.verified_on_workers == 128
        finally:
            pool.close()
    assert not pool._procs


def frame(items: list[Triple]) -> bytes:
    payload = msgpack.packb(items, use_bin_type=True)
    return _LENGTH.pack(len(payload)) + payload


def test_a_worker_answers_each_chunk_and_ends_on_a_closed_truncated_or_oversized_input():
    a, truth_a = triples(5, seed=1)
    b, truth_b = triples(3, seed=2)
    sink = io.BytesIO()
    serve(io.BytesIO(frame(a) + frame(b) + frame(a)[:-1]), sink)  # the last chunk is cut short
    out = sink.getvalue()
    assert out == _LENGTH.pack(5) + verify_all(a) + _LENGTH.pack(3) + verify_all(b)
    assert [v == 1 for v in verify_all(a)] == truth_a and [v == 1 for v in verify_all(b)] == truth_b
    sink = io.BytesIO()
    serve(io.BytesIO(_LENGTH.pack(MAX_CHUNK_BYTES + 1) + b"x" * 10), sink)
    assert sink.getvalue() == b""


def test_a_worker_process_ends_when_its_node_closes_the_pipe():
    proc = subprocess.Popen([sys.executable, "-m", "node.core.verify_pool"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    batch, _ = triples(4, seed=9)
    out, _ = proc.communicate(frame(batch), timeout=60)  # writes, closes stdin, waits for the end
    assert proc.returncode == 0
    assert out == _LENGTH.pack(4) + verify_all(batch)


def test_the_workers_run_at_a_lower_cpu_priority_than_their_node():
    # the node's event loop is the serial stage: a worker must take only what it leaves
    import os

    from node.core.verify_pool import WORKER_NICENESS

    pool = VerifyPool(2)

    async def run() -> list[int]:
        assert pool.start()
        await pool.check_async(triples(50, seed=3)[0])  # the workers are up and have served
        return [os.getpriority(os.PRIO_PROCESS, w.proc.pid) for w in pool._procs]

    try:
        niceness = asyncio.run(run())
    finally:
        pool.close()
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness == [min(own + WORKER_NICENESS, 19)] * 2
