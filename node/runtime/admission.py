"""Admission of transactions into the mempool, and the waiters woken when they commit.

`TxAdmission` checks a submission (shape, type, nonce, sender, signature verified once) and
queues it; whoever submitted it may wait (`Waiters`) until a block holds it, or until the chain
reaches a height. Waiting is bounded by a real timeout: an API client waits on the event loop.

Signatures of a batch are verified in parallel on `verify_workers` processes (`[node]
verify_workers`, default one per core; node/core/verify_pool.py says why processes), so a 2-core
host verifies about twice as fast while the node's own thread goes on. Only the signatures are: the batch is first sifted with the cheap checks
(a known type, a sender that is registered or registering), so a stranger's transactions cost no
verification, and then every transaction goes through `admit_one` in its order, exactly as
before, its signature's verdict taken from the parallel pass. The outcome of a batch is the same
whatever the number of workers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from node.app.executor import REGISTRATION, read_nonce
from node.app.registry import known_type
from node.app.state import FuncReader
from node.app.types.identity import identity_key
from node.chain.tx import Transaction, TxRejected, check_signature, tx_from_value
from node.core.verify_pool import Triple, VerifyPool
from node.runtime.mempool import Mempool, MempoolFull, SenderLimit
from storage.chain import ChainStore

MAX_WAITERS = 10_000
MAX_PENDING_UNREGISTERED = 8  # waiting transactions of a key whose registration is not committed yet
PARALLEL_FROM = 32  # a batch with fewer signatures to check is verified inline (the pool costs more than it saves)


def signed_triple(tx: Transaction) -> Triple:
    """What the pool needs to check a transaction's signature."""
    return tx.sender, tx.signing_bytes(), tx.signature


def verify_workers(configured: int) -> int:
    """The processes that verify signatures: `configured`, or one per core when it is 0."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of submitting one transaction: its hash, or an error code and message."""

    hash: bytes | None
    error: str | None = None
    message: str = ""
    duplicate: bool = False


def known_type_or_none(tx: Transaction) -> bool:
    try:
        known_type(tx)
    except TxRejected:
        return False
    return True


class TxAdmission:
    """The mempool's door: `admitted(txs, gossip)` hears of every batch of fresh transactions."""

    def __init__(self, *, chain_id: str, store: ChainStore, mempool: Mempool, state_reader: Callable[[], FuncReader],
                 admitted: Callable[[list[Transaction], bool], None], workers: int = 1) -> None:
        self.chain_id = chain_id
        self.store = store
        self.mempool = mempool
        self.state_reader = state_reader
        self.admitted = admitted
        self.workers = max(1, workers)
        self._pool = VerifyPool(self.workers) if self.workers > 1 else None

    def start_verifiers(self) -> bool:
        """Start the verifying processes on the running event loop, if there are to be any
        (False: they cannot start)."""
        return True if self._pool is None else self._pool.start()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def _to_verify(self, txs: Sequence[Transaction]) -> list[int]:
        """The indexes of `txs` whose signatures the pool checks (none: the batch is verified
        inline, in `admit_one`): not a stranger's, not already waiting, of a known type."""
        if self._pool is None:
            return []
        state = self.state_reader()
        batch_registering = set()
        wanted = []
        for i, tx in enumerate(txs):
            if tx.type == REGISTRATION:
                batch_registering.add(tx.sender)
            elif not (state.get(identity_key(tx.sender)) is not None or tx.sender in batch_registering
                      or self.mempool.registering(tx.sender)):
                continue  # a stranger: refused before any signature is checked
            if tx.hash not in self.mempool and known_type_or_none(tx):
                wanted.append(i)
        return wanted if len(wanted) >= PARALLEL_FROM else []

    @staticmethod
    def _apply(txs: Sequence[Transaction], wanted: list[int], oks: Iterable[bool]) -> list[bool | None]:
        verdicts: list[bool | None] = [None] * len(txs)
        for i, ok in zip(wanted, oks):
            verdicts[i] = ok
        return verdicts

    def _verdicts(self, txs: Sequence[Transaction]) -> list[bool | None]:
        """No verdict yet for any of `txs`: a synchronous caller has no event loop for the pool to
        answer on, so `admit_one` checks each signature itself, in its turn."""
        return [None] * len(txs)

    async def _verdicts_async(self, txs: Sequence[Transaction]) -> list[bool | None]:
        """Each transaction's signature verdict from the pool (None: not checked there; `admit_one`
        then checks it itself, if it gets that far), the event loop free meanwhile: the node
        executes, commits and answers while the verifying processes work."""
        wanted = self._to_verify(txs)
        if not wanted:
            return [None] * len(txs)
        assert self._pool is not None
        return self._apply(txs, wanted, await self._pool.check_async([signed_triple(txs[i]) for i in wanted]))

    def _decode(self, values: Sequence[Any]) -> list[Transaction | Admission]:
        decoded: list[Transaction | Admission] = []
        for value in values:
            try:
                decoded.append(tx_from_value(value, chain_id=self.chain_id))
            except TxRejected as exc:
                decoded.append(Admission(None, exc.code, exc.message))
        return decoded

    def _admit_decoded(self, decoded: Sequence[Transaction | Admission], verdicts: Iterator[bool | None],
                       fresh: list[Transaction]) -> list[Admission]:
        """Admit in order; the fresh ones are appended to `fresh` for the caller to announce."""
        out: list[Admission] = []
        for item in decoded:
            if isinstance(item, Admission):
                out.append(item)
                continue
            verdict = self.admit_one(item, next(verdicts))
            out.append(verdict)
            if verdict.error is None and not verdict.duplicate:
                fresh.append(item)
        return out

    def _announce(self, fresh: list[Transaction]) -> None:
        if fresh:
            self.admitted(fresh, True)

    def admit(self, values: Sequence[Any]) -> list[Admission]:
        """Admit client submissions: shape, type, nonce, signature (verified once), mempool."""
        decoded = self._decode(values)
        verdicts = iter(self._verdicts([d for d in decoded if isinstance(d, Transaction)]))
        fresh: list[Transaction] = []
        out = self._admit_decoded(decoded, verdicts, fresh)
        self._announce(fresh)
        return out

    async def admit_async(self, values: Sequence[Any], *, chunk: int = 100) -> list[Admission]:
        """`admit`, the signatures verified on the pool while the event loop goes on, then the
        transactions admitted in their order, `chunk` at a time with the loop's turn between.
        The fresh ones are announced once, at the end: the proposer then sees the whole request,
        not a block per chunk."""
        decoded = self._decode(values)
        verdicts = iter(await self._verdicts_async([d for d in decoded if isinstance(d, Transaction)]))
        out: list[Admission] = []
        fresh: list[Transaction] = []
        for i in range(0, len(decoded), chunk):
            if i:
                await asyncio.sleep(0)
            out.extend(self._admit_decoded(decoded[i : i + chunk], verdicts, fresh))
        self._announce(fresh)
        return out

    async def admit_transactions_async(self, txs: Sequence[Transaction], *, gossip: bool) -> int:
        """`admit_transactions`, the signatures verified on the pool while the event loop goes on."""
        return self._admit_checked(txs, await self._verdicts_async(txs), gossip=gossip)

    def admit_transactions(self, txs: Sequence[Transaction], *, gossip: bool) -> int:
        """Admit decoded transactions (from a peer); returns how many had bad signatures."""
        return self._admit_checked(txs, self._verdicts(txs), gossip=gossip)

    def _admit_checked(self, txs: Sequence[Transaction], verdicts: Sequence[bool | None], *, gossip: bool) -> int:
        fresh: list[Transaction] = []
        bad = 0
        for tx, checked in zip(txs, verdicts):
            verdict = self.admit_one(tx, checked)
            if verdict.error == "bad_signature":
                bad += 1
            elif verdict.error is None and not verdict.duplicate:
                fresh.append(tx)
        if fresh:
            self.admitted(fresh, gossip)
        return bad

    def knows_tx(self, tx_hash: bytes) -> bool:
        """True when the transaction is waiting in the mempool or already committed."""
        return tx_hash in self.mempool or self.store.has_tx(tx_hash)

    def tx_status(self, tx_hash: bytes) -> dict[str, Any]:
        loc = self.store.tx_location(tx_hash)
        if loc is not None:
            return {"hash": tx_hash.hex(), "status": "committed", "height": loc.height, "index": loc.index, "result": loc.result}
        if tx_hash in self.mempool:
            return {"hash": tx_hash.hex(), "status": "pending"}
        return {"hash": tx_hash.hex(), "status": "unknown"}

    def admit_one(self, tx: Transaction, signature_ok: bool | None = None) -> Admission:
        """Admit one transaction; `signature_ok` is its signature's verdict when the parallel
        pass checked it already (None: checked here, in its turn)."""
        if tx.hash in self.mempool:
            return Admission(tx.hash, duplicate=True)
        state = self.state_reader()
        if tx.nonce <= read_nonce(state, tx.sender):
            # a committed transaction's nonce is never above its sender's (executor.execute_block):
            # only here is the transaction index asked
            if self.store.has_tx(tx.hash):
                return Admission(tx.hash, "already_committed", "this transaction is already on the chain")
            return Admission(None, "nonce_replayed", "nonce already used by this sender")
        try:
            # its type, who sends it, its signature, then its body: a body check may cost more than
            # a signature (an agreement's policy is parsed and type-checked), so a stranger's or a
            # forger's transaction is refused before it can make the node do that work
            tx_type = known_type(tx)
            self.check_sender(state, tx)
            if signature_ok is None:
                check_signature(tx)
            elif not signature_ok:
                raise TxRejected("bad_signature", "the signature does not match the sender and contents")
            tx_type.check_body(tx)
            if tx_type.check_admission is not None:  # rules for new submissions only (registry.py)
                tx_type.check_admission(tx)
            self.mempool.add(tx)
        except TxRejected as exc:
            return Admission(None, exc.code, exc.message)
        except SenderLimit as exc:
            return Admission(None, "sender_limit", str(exc))
        except MempoolFull as exc:
            return Admission(None, "mempool_full", str(exc))
        return Admission(tx.hash)

    def check_sender(self, state: FuncReader, tx: Transaction) -> None:
        """Admission of senders (docs/api.md): only a registered identity sends transactions, but
        for the `identity.register` that makes it one. A key whose registration is still waiting
        in the pool may queue a few more behind it (they go in the same block or leave with it);
        an identity that is registered may not register again."""
        registered = state.get(identity_key(tx.sender)) is not None
        if tx.type == REGISTRATION:
            if registered:
                raise TxRejected("already_registered", "this identity is already registered")
            if self.mempool.registering(tx.sender):
                raise SenderLimit("a registration of this key is already waiting; wait for it to commit")
            return
        if registered:
            return
        if not self.mempool.registering(tx.sender):
            raise TxRejected("not_registered", "the sender has no registered identity: register it first "
                                               "(identity.register) and wait for the commit")
        if self.mempool.pending_of(tx.sender) >= MAX_PENDING_UNREGISTERED:
            raise SenderLimit(f"a key whose registration is not committed yet may queue {MAX_PENDING_UNREGISTERED} "
                              "transactions; wait for the registration to commit")


class Waiters:
    """Futures waiting for a transaction's commit or for a height, woken by each commit."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._height_waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def wait_committed(self, tx_hash: bytes, timeout: float) -> bool:
        """Wait until `tx_hash` is committed or `timeout` seconds pass."""
        if self.store.has_tx(tx_hash):
            return True
        if sum(len(v) for v in self._waiters.values()) >= MAX_WAITERS:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_hash, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        finally:
            waiters = self._waiters.get(tx_hash)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[tx_hash]
        return self.store.has_tx(tx_hash)

    async def wait_height(self, height: int, timeout: float) -> bool:
        if self.store.height >= height:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._height_waiters.append((height, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        return self.store.height >= height

    def wake(self, hashes: Sequence[bytes], height: int) -> None:
        if self._waiters:
            for h in hashes:
                for fut in self._waiters.pop(h, ()):
                    if not fut.done():
                        fut.set_result(None)
        if self._height_waiters:
            keep = []
            for target, fut in self._height_waiters:
                if target <= height:
                    if not fut.done():
                        fut.set_result(None)
                elif not fut.done():
                    keep.append((target, fut))
            self._height_waiters = keep

    def cancel(self) -> None:
        """The node stops: nobody waits for a commit any more."""
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.cancel()
        self._waiters.clear()
