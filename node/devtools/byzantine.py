"""Byzantine validator modes for tests: a real node that lies on the wire.

A Byzantine node runs the honest runtime and engine (so it stays in step and its attacks are
timely); `ByzantineTransport` sits between the runtime and the peer network and rewrites the
node's outgoing consensus traffic, and a periodic tick adds unprompted traffic. It is enabled
only when the node runs with `--unsafe-test-switches` AND the environment names a mode
(`MEDLEDGER_TEST_BYZANTINE=<mode>`); a node refuses to start with the variable set but no test
switches.

| mode          | what the node does                                                           | how honest nodes catch it |
| ------------- | ---------------------------------------------------------------------------- | ------------------------- |
| equivocate    | as primary, signs two valid blocks for one height and view; one group of     | equivocation evidence     |
|               | peers gets A then B, the other B then A                                       |                           |
| double-vote   | with every PREPARE/COMMIT, also signs one for a random digest (order as above)| equivocation evidence     |
| garbage       | random bytes, wrong-typed and deeply nested msgpack, unknown frame kinds,     | discard + peer penalty,   |
|               | signed messages with huge payloads, and frames over the peers' size limit     | link closed, ban          |
| replay        | re-sends consensus messages it received or sent earlier                      | discarded as stale        |
| withhold      | never sends its PREPAREs and COMMITs                                          | the others reach quorum   |
| invalid-block | as primary, proposes blocks with a wrong state root or a badly signed tx     | block rejected, view change |
| impersonate   | sends every consensus message under another validator's id (signed by itself)| bad signature: discard + penalty |
| relabel       | the NEW-VIEW relabel attack (issue 14): to each peer whose VIEW-CHANGE it saw | invalid signature: the   |
|               | at a height, a NEW-VIEW for the next view it leads whose "quorum" of view     | NEW-VIEW is discarded     |
|               | changes all carry that peer's own signature relabelled to other senders, the  |                           |
|               | lock stripped and the view rewritten, re-proposing another valid block        |                           |

`Mutator` holds the rewriting rules and is pure apart from its seeded RNG and signer, so the
unit tests check each mode's output message by message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from consensus.encoding import MAX_VIEW
from consensus.messages import (
    Commit,
    Message,
    MessageDecodeError,
    NewView,
    Prepare,
    PrePrepare,
    ViewChange,
    decode_message,
    sign_message,
)
from consensus.validators import ValidatorSet

from node.chain.block import Block, BlockInvalid, Header, decode_block
from node.core.crypto import Identity
from node.core.encoding import canonical
from node.core.merkle import merkle_root
from node.chain.tx import Transaction
from node.devtools.switches import TestSwitchesHook, crash_point_from_env

log = logging.getLogger("medledger.byzantine")

ENV_MODE = "MEDLEDGER_TEST_BYZANTINE"
ENV_SEED = "MEDLEDGER_TEST_BYZANTINE_SEED"
MODES: tuple[str, ...] = ("equivocate", "double-vote", "garbage", "replay", "withhold", "invalid-block", "impersonate",
                          "relabel")
FRAME_CONSENSUS = 1  # node.runtime.FRAME_CONSENSUS (kept here so this module imports no runtime)
FRAME_TXS = 2
TICK_S = 0.5
OVERSIZED_BYTES = 5 * 1024 * 1024  # over the 4 MiB frame limit honest peers enforce
BIG_PAYLOAD_BYTES = 3 * 1024 * 1024
REPLAY_BUFFER = 200

Send = tuple[bytes, int, bytes]  # (peer id, frame kind, payload)


class ByzantineConfigError(ValueError):
    """The Byzantine mode is unknown or was asked for without test switches."""


def mode_from_env(test_switches: bool, env: dict[str, str] | None = None) -> str | None:
    """The Byzantine mode the environment asks for (None: an honest node)."""
    env = dict(os.environ) if env is None else env
    mode = env.get(ENV_MODE, "").strip()
    if not mode:
        return None
    if not test_switches:
        raise ByzantineConfigError(f"{ENV_MODE} is set but the node does not run with --unsafe-test-switches")
    if mode not in MODES:
        raise ByzantineConfigError(f"unknown Byzantine mode {mode!r} (one of {', '.join(MODES)})")
    return mode


def _copy(msg: Any, **changes: Any) -> Any:
    values = {f.name: getattr(msg, f.name) for f in fields(msg) if f.init}
    values.update(changes)
    values["signature"] = b""
    return type(msg)(**values)


class Mutator:
    """What a Byzantine validator sends instead of what the protocol says."""

    def __init__(
        self,
        mode: str,
        *,
        signer: Identity,
        chain_id: str,
        validators: Sequence[bytes],
        seed: int,
        alternative_block: Callable[[bytes], bytes | None] | None = None,
        fresh_block: Callable[[int], bytes | None] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ByzantineConfigError(f"unknown Byzantine mode {mode!r}")
        self.mode = mode
        self.signer = signer
        self.chain_id = chain_id
        self.me = signer.public_key
        self.others = sorted(v for v in validators if v != self.me)
        self.rng = random.Random(seed)
        shuffled = list(self.others)
        self.rng.shuffle(shuffled)
        self.group_one = frozenset(shuffled[: (len(shuffled) + 1) // 2])
        self.alternative_block = alternative_block
        self.fresh_block = fresh_block
        self.validator_set = ValidatorSet(validators=tuple(validators))
        # relabel: the latest VIEW-CHANGE seen from each validator, and the one block re-proposed
        # to all of them at a height (so that the victims could agree on it).
        self.seen_view_changes: dict[bytes, ViewChange] = {}
        self.forged_blocks: dict[int, bytes] = {}
        self.relabelled: set[tuple[bytes, int, int]] = set()
        self.replay_buffer: list[bytes] = []
        self.ticks = 0
        self.mutated = 0

    # -- outgoing consensus frames -----------------------------------------------------------
    def outgoing(self, payload: bytes, dests: Sequence[bytes]) -> list[Send]:
        """The frames to send for one consensus message the honest engine wants sent to `dests`."""
        honest = [(d, FRAME_CONSENSUS, payload) for d in dests]
        if self.mode == "replay":
            self._remember(payload)
        if self.mode not in ("equivocate", "double-vote", "withhold", "invalid-block", "impersonate"):
            return honest
        try:
            msg = decode_message(payload)
        except MessageDecodeError:
            return honest
        if msg.sender != self.me:
            return honest  # relayed traffic (decisions of others) passes unchanged
        out = self._rewrite(msg, dests)
        if out is None:
            return honest
        self.mutated += 1
        return out

    def _rewrite(self, msg: Message, dests: Sequence[bytes]) -> list[Send] | None:
        if self.mode == "withhold":
            return [] if type(msg) in (Prepare, Commit) else None
        if self.mode == "impersonate":
            victim = self.others[self.rng.randrange(len(self.others))] if self.others else self.me
            try:
                forged = _copy(msg, sender=victim)
            except ValueError:
                return None  # a NEW-VIEW must name its own sender: it goes out as it is
            values = {f.name: getattr(forged, f.name) for f in fields(forged) if f.init}
            values["signature"] = self.signer.sign(forged.signing_bytes())
            lie = type(msg)(**values)
            return [(d, FRAME_CONSENSUS, lie.encode()) for d in dests]
        if self.mode == "double-vote" and type(msg) in (Prepare, Commit):
            other = sign_message(_copy(msg, digest=self.rng.randbytes(32)), self.signer)
            return self._two_stories(msg.encode(), other.encode(), dests)
        if self.mode == "equivocate" and type(msg) is PrePrepare and self.alternative_block is not None:
            alt = self.alternative_block(msg.payload)
            if alt is None:
                return None
            other = sign_message(_copy(msg, digest=decode_block(alt).hash, payload=alt), self.signer)
            return self._two_stories(msg.encode(), other.encode(), dests)
        if self.mode == "invalid-block" and type(msg) is PrePrepare:
            bad = self.invalid_block(msg.payload)
            if bad is None:
                return None
            lie = sign_message(_copy(msg, digest=decode_block(bad).hash, payload=bad), self.signer)
            return [(d, FRAME_CONSENSUS, lie.encode()) for d in dests]
        if self.mode == "invalid-block" and type(msg) is NewView:
            bad = self.invalid_block(msg.pre_prepare.payload)
            if bad is None:
                return None
            pp = sign_message(_copy(msg.pre_prepare, digest=decode_block(bad).hash, payload=bad), self.signer)
            lie = sign_message(_copy(msg, pre_prepare=pp), self.signer)
            return [(d, FRAME_CONSENSUS, lie.encode()) for d in dests]
        return None

    def _two_stories(self, first: bytes, second: bytes, dests: Sequence[bytes]) -> list[Send]:
        """Group one hears `first` then `second`; the rest hear them the other way round."""
        out: list[Send] = []
        for d in dests:
            order = (first, second) if d in self.group_one else (second, first)
            out += [(d, FRAME_CONSENSUS, order[0]), (d, FRAME_CONSENSUS, order[1])]
        return out

    def invalid_block(self, payload: bytes) -> bytes | None:
        """The block with a wrong state root, or with a transaction whose signature is broken."""
        try:
            block = decode_block(payload)
        except BlockInvalid:
            return None
        h = block.header
        if self.rng.random() < 0.5:
            header = _copy_header(h, state_root=self.rng.randbytes(32))
            return Block(header=header, txs=block.txs).encode()
        stranger = Identity.from_seed(self.rng.randbytes(32))
        tx = Transaction.create(stranger, chain_id=self.chain_id, type="identity.register", nonce=1, body={"role": "patient"})
        sig = bytearray(tx.signature)
        sig[0] ^= 0xFF
        bad_tx = canonical([tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, bytes(sig)])
        txs = block.txs + (bad_tx,)
        return Block(header=_copy_header(h, tx_root=merkle_root(list(txs))), txs=txs).encode()

    # -- incoming and unprompted traffic -----------------------------------------------------
    def observe(self, kind: int, payload: bytes) -> None:
        """A frame reached this node: replay mode keeps consensus messages to send again later;
        relabel mode keeps the view changes it needs to build its NEW-VIEWs."""
        if kind != FRAME_CONSENSUS:
            return
        if self.mode == "replay":
            self._remember(payload)
        elif self.mode == "relabel":
            try:
                msg = decode_message(payload)
            except MessageDecodeError:
                return
            if type(msg) is ViewChange and msg.sender != self.me:
                known = self.seen_view_changes.get(msg.sender)
                if known is None or (known.height, known.view) < (msg.height, msg.view):
                    self.seen_view_changes[msg.sender] = msg

    def relabelled_new_views(self) -> list[Send]:
        """One forged NEW-VIEW per peer whose view change we saw: its own signature as a whole quorum."""
        out: list[Send] = []
        vs = self.validator_set
        for victim, vc in sorted(self.seen_view_changes.items()):
            view = next((w for w in range(vc.view + 1, min(vc.view + 1 + vs.n, MAX_VIEW + 1))
                         if vs.primary(vc.height, w) == self.me), None)
            if view is None or (victim, vc.height, view) in self.relabelled:
                continue
            alt = self.forged_blocks.get(vc.height)
            if alt is None and self.fresh_block is not None:
                alt = self.fresh_block(vc.height)
                if alt is not None:
                    self.forged_blocks = {vc.height: alt}
            if alt is None:
                continue
            senders = [victim] + [v for v in self.others if v != victim]
            forged = tuple(sorted((ViewChange(chain_id=self.chain_id, height=vc.height, view=view, sender=s,
                                              prepared=None, signature=vc.signature)
                                   for s in senders[:vs.quorum]), key=lambda m: m.sender))
            pp = sign_message(PrePrepare(chain_id=self.chain_id, height=vc.height, view=view, sender=self.me,
                                         digest=decode_block(alt).hash, payload=alt), self.signer)
            nv = sign_message(NewView(chain_id=self.chain_id, height=vc.height, view=view, sender=self.me,
                                      view_changes=forged, pre_prepare=pp), self.signer)
            self.relabelled.add((victim, vc.height, view))
            self.mutated += 1
            log.warning("relabel: forged NEW-VIEW (height %d, view %d) sent to %s", vc.height, view, victim.hex()[:16])
            out.append((victim, FRAME_CONSENSUS, nv.encode()))
        if len(self.relabelled) > 4096:
            self.relabelled.clear()
        return out

    def _remember(self, payload: bytes) -> None:
        if len(self.replay_buffer) < REPLAY_BUFFER:
            self.replay_buffer.append(payload)
        else:
            self.replay_buffer[self.rng.randrange(REPLAY_BUFFER)] = payload

    def tick(self, peers: Sequence[bytes]) -> list[Send]:
        """Unprompted traffic, every TICK_S seconds."""
        self.ticks += 1
        if not peers:
            return []
        rng = self.rng
        out: list[Send] = []
        if self.mode == "relabel":
            out += self.relabelled_new_views()
        if self.mode == "replay" and self.replay_buffer:
            for _ in range(min(3, len(self.replay_buffer))):
                out.append((rng.choice(list(peers)), FRAME_CONSENSUS, rng.choice(self.replay_buffer)))
        if self.mode == "garbage":
            for peer in peers:
                out.append((peer, *self._garbage()))
            if self.ticks % 10 == 0:
                out.append((rng.choice(list(peers)), FRAME_CONSENSUS, rng.randbytes(OVERSIZED_BYTES)))
        return out

    def _garbage(self) -> tuple[int, bytes]:
        rng = self.rng
        choice = rng.randrange(6)
        if choice == 0:
            return FRAME_CONSENSUS, rng.randbytes(rng.randrange(1, 512))
        if choice == 1:
            return FRAME_TXS, rng.randbytes(rng.randrange(1, 512))
        if choice == 2:
            return FRAME_CONSENSUS, b"\x91" * 100_000 + b"\xc0"  # an array nested 100,000 deep
        if choice == 3:
            return FRAME_CONSENSUS, canonical([rng.randrange(1, 7), "x" * 70, -5, None, [b"\x00"] * 3, 2**63])
        if choice == 4:
            return 77, rng.randbytes(64)  # a frame kind nobody speaks
        payload = rng.randbytes(BIG_PAYLOAD_BYTES)
        big = PrePrepare(chain_id=self.chain_id, height=1 + rng.randrange(1000), view=0, sender=self.me,
                         digest=rng.randbytes(32), payload=payload)
        return FRAME_CONSENSUS, sign_message(big, self.signer).encode()


def _copy_header(h: Header, **changes: Any) -> Header:
    values = {f.name: getattr(h, f.name) for f in fields(h) if f.init}
    values.update(changes)
    return Header(**values)


class ByzantineTransport:
    """The runtime's Transport for a Byzantine node: the real network behind a Mutator."""

    def __init__(self, inner: Any, mutator: Mutator) -> None:
        self.inner = inner  # node.network.NetworkService
        self.mutator = mutator
        self._task: asyncio.Task[None] | None = None

    def send(self, peer_id: bytes, kind: int, payload: bytes) -> bool:
        if kind != FRAME_CONSENSUS:
            return bool(self.inner.send(peer_id, kind, payload))
        return self._send_all(self.mutator.outgoing(payload, [peer_id])) > 0

    def broadcast(self, kind: int, payload: bytes, exclude: Sequence[bytes] = ()) -> int:
        if kind != FRAME_CONSENSUS:
            return int(self.inner.broadcast(kind, payload, exclude=exclude))
        dests = [p for p in self.inner.connected_peers() if p not in exclude]
        return self._send_all(self.mutator.outgoing(payload, dests))

    def _send_all(self, sends: Sequence[Send]) -> int:
        return sum(1 for peer, kind, data in sends if self.inner.send(peer, kind, data))

    def observe(self, peer_id: bytes, kind: int, payload: bytes) -> None:
        self.mutator.observe(kind, payload)
        if self.mutator.mode == "relabel" and kind == FRAME_CONSENSUS:
            self._send_all(self.mutator.relabelled_new_views())  # at once: the view change is short

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick_loop(), name="medledger-byzantine")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)  # a period, not a synchronisation
            try:
                self._send_all(self.mutator.tick(self.inner.connected_peers()))
            except Exception:  # a test adversary must not take the node down with it
                log.exception("byzantine tick failed")


def empty_alternative(node: Any, payload: bytes) -> bytes | None:
    """A second valid block for the same height as `payload`: the empty block on the same parent
    (`node` is the node.runtime.Node whose state it executes on)."""
    from node.app.executor import execute_block

    try:
        h = decode_block(payload).header
    except BlockInvalid:
        return None
    if h.height != node.store.height + 1 or h.prev_hash != node.store.last_hash:
        return None
    for timestamp in (h.timestamp_ms, h.timestamp_ms + 1):
        execution = execute_block(node.state_reader(), node.store.state_root, [], chain_id=node.chain_id,
                                  height=h.height, timestamp_ms=timestamp, known=lambda _: None,
                                  committed=lambda _: False)
        header = _copy_header(h, timestamp_ms=timestamp, tx_root=merkle_root([]),
                              results_root=execution.results_root, state_root=execution.state_root)
        if header.hash() != h.hash():
            return Block(header=header, txs=()).encode()
    return None


def empty_block(node: Any, height: int) -> bytes | None:
    """A valid empty block for `height` on this node's last block, proposed by this node (None if
    the node is not at `height`)."""
    from node.app.executor import execute_block

    if height != node.store.height + 1:
        return None
    timestamp = max(node.clock_ms(), node.last_block_time_ms() + 1)
    execution = execute_block(node.state_reader(), node.store.state_root, [], chain_id=node.chain_id, height=height,
                              timestamp_ms=timestamp, known=lambda _: None, committed=lambda _: False)
    prev_cert = (node.store.certificate(height - 1) or b"") if height > 1 else b""
    header = Header(chain_id=node.chain_id, height=height, prev_hash=node.store.last_hash, timestamp_ms=timestamp,
                    proposer=node.identity.public_key, tx_root=merkle_root([]), results_root=execution.results_root,
                    state_root=execution.state_root, prev_certificate=prev_cert)
    return Block(header=header, txs=()).encode()


def install(node: Any, network: Any, mode: str, seed: int) -> ByzantineTransport:
    """Put a Byzantine transport between `node` (node.runtime.Node) and `network` (NetworkService)."""
    mutator = Mutator(mode, signer=node.identity, chain_id=node.chain_id,
                      validators=[v.id for v in node.genesis.validators], seed=seed,
                      alternative_block=lambda payload: empty_alternative(node, payload),
                      fresh_block=lambda height: empty_block(node, height))
    transport = ByzantineTransport(network, mutator)
    node.attach_transport(transport)
    network.observe_frame = transport.observe
    log.warning("TEST SWITCH: this node is Byzantine (mode %s)", mode)
    return transport


class ByzantineHook:
    """The Byzantine part of a test node's hook (switches.TestSwitchesHook carries it): wider
    peer limits for `mode` and the Byzantine transport."""

    def __init__(self, mode: str, seed: int) -> None:
        self.mode = mode
        self.seed = seed

    def p2p_limits(self, limits: Any) -> Any:
        # a garbage-sending test node may send frames over the limit its honest peers enforce
        if self.mode == "garbage":
            import dataclasses

            return dataclasses.replace(limits, max_frame_bytes=8 * 1024 * 1024)
        return limits

    def install(self, node: Any, network: Any) -> ByzantineTransport:
        return install(node, network, self.mode, self.seed)


def hook_from_env(test_switches: bool, env: dict[str, str] | None = None) -> TestSwitchesHook | None:
    """The test wiring of `medledger node run`: None without test switches (a Byzantine mode asked
    for without them is refused); with them, the partition switch and the crash point
    (node/devtools/switches.py), plus the Byzantine mode if the environment names one."""
    env = dict(os.environ) if env is None else env
    mode = mode_from_env(test_switches, env)
    if not test_switches:
        return None
    byzantine = None if mode is None else ByzantineHook(mode, int(env.get(ENV_SEED, "0") or 0))
    return TestSwitchesHook(crash_at=crash_point_from_env(env), byzantine=byzantine)
