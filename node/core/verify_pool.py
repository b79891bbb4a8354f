"""Ed25519 signatures checked in bulk on worker processes (`[node] verify_workers`).

A node hands a batch of (public key, message, signature) triples to the pool and gets one verdict
per triple back, in order. Processes, not threads, because they measured faster
(docs/benchmarks.md, "Parallel verification on processes"): libsodium runs without the GIL, but a
verifying thread must take the GIL back after every signature, and a busy node's event loop keeps
it for up to the interpreter's switch interval, so the threads mostly wait. A worker process has
its own interpreter, and nothing of the pool runs on a thread of the node: the event loop writes
a chunk (msgpack, a few hundred kilobytes at most) to a worker's stdin without blocking and reads
a string of verdict bytes back from its stdout.

A worker is `python -m node.core.verify_pool`: it imports this module, msgpack and PyNaCl only,
lowers its CPU priority below its node's (`WORKER_NICENESS`), reads length-prefixed chunks until its stdin closes (so it ends with its node, however the node
ends) and answers each with one byte per signature. The node never unpickles or evaluates what a
worker writes: a verdict is a byte, 1 or not.

A node's daemon starts the processes before it serves (`start`); otherwise they start with the
first batch that needs them (an in-process test node that never sees a large batch starts none). A worker that dies, or cannot be started, fails the chunks it held: those
batches are verified on the caller's thread instead and the pool starts again for the next one,
so a verdict is never lost or guessed. The pool belongs to the event loop that started it (a
synchronous caller verifies on its own thread).
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from typing import BinaryIO

import msgpack

from node.core.crypto import verify

Triple = tuple[bytes, bytes, bytes]  # public key, message, signature
_LENGTH = struct.Struct(">I")
MAX_CHUNK_BYTES = 64 << 20  # a worker refuses (ends on) a larger frame: a chunk is far smaller
# How much less CPU priority a worker takes than its node (Unix niceness, added to the node's).
# The node's event loop is the serial stage every transaction passes through (decode, admission,
# execution, commit); the workers only add capacity. With workers as eager as the loop, the
# kernel shares a busy host's cores evenly among them and the loop, so the loop ran a third of
# the time behind on a 2-core host: one validator with two workers committed 1.42-1.59x what it
# committed with one; with the workers at niceness 10 they take what the loop leaves, and it
# committed 1.72-1.77x (docs/benchmarks.md, "Parallel verification on processes").
WORKER_NICENESS = 10


def verify_all(triples: Sequence[Triple]) -> bytes:
    """One byte per triple, 1 where the signature holds (a worker's job, and the inline path)."""
    return bytes(verify(pk, msg, sig) for pk, msg, sig in triples)


class PoolBroken(Exception):
    """A worker died or could not be started: the caller verifies the batch itself."""


class _Worker:
    """One worker process, the chunks it has been sent (oldest first) and the bytes in between.
    Its pipes are non-blocking and watched by the event loop: nothing here waits on them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.proc = subprocess.Popen([sys.executable, "-m", "node.core.verify_pool"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out, self._in = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self._out, False)
        os.set_blocking(self._in, False)
        self._unsent = bytearray()
        self._unread = bytearray()
        self._writing = False
        self.waiting: deque[tuple[asyncio.Future[bytes], int]] = deque()
        self.load = 0  # signatures sent and not answered yet
        self.alive = True
        loop.add_reader(self._in, self._readable)

    def send(self, triples: Sequence[Triple]) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = self.loop.create_future()
        if not self.alive:
            fut.set_exception(PoolBroken("the worker has ended"))
            return fut
        payload = msgpack.packb(list(triples), use_bin_type=True)
        self.waiting.append((fut, len(triples)))
        self.load += len(triples)
        self._unsent += _LENGTH.pack(len(payload))
        self._unsent += payload
        self._writable()
        return fut

    def _writable(self) -> None:
        try:
            while self._unsent:
                written = os.write(self._out, self._unsent)
                del self._unsent[:written]
        except BlockingIOError:
            pass  # the pipe is full: the loop calls again when the worker has read some
        except OSError as exc:  # the worker has ended (a broken pipe)
            self._fail(exc)
            return
        if self._unsent and not self._writing:
            self.loop.add_writer(self._out, self._writable)
            self._writing = True
        elif not self._unsent and self._writing:
            self.loop.remove_writer(self._out)
            self._writing = False

    def _readable(self) -> None:
        try:
            data = os.read(self._in, 1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not data:
            self._fail(EOFError("the worker closed its output"))
            return
        self._unread += data
        while len(self._unread) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(self._unread)
            if len(self._unread) < _LENGTH.size + size:
                return
            verdicts = bytes(self._unread[_LENGTH.size : _LENGTH.size + size])
            del self._unread[: _LENGTH.size + size]
            if not self.waiting or len(verdicts) != self.waiting[0][1]:
                self._fail(PoolBroken("the worker answered a chunk it was not sent"))
                return
            fut, count = self.waiting.popleft()
            self.load -= count
            if not fut.done():
                fut.set_result(verdicts)

    def _fail(self, exc: BaseException) -> None:
        self.stop()
        while self.waiting:
            fut, _ = self.waiting.popleft()
            if not fut.done() and not self.loop.is_closed():
                fut.set_exception(PoolBroken(f"a verifying worker ended: {exc}"))
        self.load = 0

    def stop(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if not self.loop.is_closed():
            self.loop.remove_reader(self._in)
            if self._writing:
                self.loop.remove_writer(self._out)
        self.proc.kill()
        self.proc.wait()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()


class VerifyPool:
    """`workers` processes verifying signatures; `check_async` splits a batch among them."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.verified_on_workers = 0  # signatures the processes have checked (tests, stats)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._procs: list[_Worker] = []

    def _ready(self) -> list[_Worker]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or not all(w.alive for w in self._procs):
            self.close()
            self._loop = loop
            try:
                for _ in range(self.workers):
                    self._procs.append(_Worker(loop))
            except OSError as exc:
                self.close()
                raise PoolBroken(f"cannot start a verifying worker: {exc}") from exc
        return self._procs

    def start(self) -> bool:
        """Start the processes on the running event loop now (a node does so before it serves, so
        its first large batch does not wait for them to import); False when they cannot start:
        batches are then verified inline."""
        try:
            self._ready()
        except PoolBroken:
            return False
        return True

    async def check_async(self, triples: Sequence[Triple]) -> list[bool]:
        """Each signature's verdict, in order, the event loop free while the processes verify:
        the batch is cut in one chunk per worker, each sent to the least loaded one."""
        if not triples:
            return []
        try:
            procs = self._ready()
            size = -(-len(triples) // len(procs))
            futures = []
            for i in range(0, len(triples), size):
                worker = min(procs, key=lambda w: w.load)
                futures.append(worker.send(triples[i : i + size]))
            parts = await asyncio.gather(*futures)
        except PoolBroken:
            return [v == 1 for v in verify_all(triples)]
        self.verified_on_workers += len(triples)
        return [v == 1 for part in parts for v in part]

    def close(self) -> None:
        """Stop the processes (a chunk still being verified fails, and its caller checks it)."""
        for worker in self._procs:
            worker._fail(PoolBroken("the pool was closed"))
        self._procs = []


def yield_to_node(niceness: int = WORKER_NICENESS) -> None:
    """Lower this process's CPU priority below its node's (a worker's first step); where the
    platform cannot, the worker runs at the node's priority."""
    try:
        os.nice(niceness)
    except (AttributeError, OSError):
        pass


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """A worker's loop: read a chunk, answer its verdicts, until `source` ends."""
    while True:
        head = source.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        (size,) = _LENGTH.unpack(head)
        if size > MAX_CHUNK_BYTES:
            return
        payload = source.read(size)
        if len(payload) < size:
            return
        verdicts = verify_all([(pk, msg, sig) for pk, msg, sig in msgpack.unpackb(payload)])
        sink.write(_LENGTH.pack(len(verdicts)) + verdicts)
        sink.flush()


if __name__ == "__main__":
    yield_to_node()
    serve(sys.stdin.buffer, sys.stdout.buffer)
