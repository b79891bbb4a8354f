"""One simulated run: validators, their runtimes, the network, the faults and the checks.

Theory of operation
-------------------
Everything happens in one process and one thread, driven by a heap of timed events and a mock
clock that jumps straight to the next event, so a run of minutes of simulated time takes
milliseconds and is a pure function of (configuration, seed). Each validator is an *endpoint*:
an `Engine` plus a small simulated runtime that does what the node runtime does for real:
executes actions in order, keeps a durable WAL and chain (which survive a crash unless the
scenario says otherwise), verifies every message signature once, builds and validates blocks
(payloads are opaque bytes, digest = SHA-256 of the payload) and serves block sync.

A run has a *fault window* (partitions, crashes and restarts, clock jumps; Byzantine behaviour
and message loss throughout) and then *heals*: every partition ends and every crashed validator
is back. The checks:

* safety, at every finalized block: no two non-Byzantine endpoints finalize different blocks
  at one height; every certificate verifies against the validator set of its height; every
  finalized block is one the application accepts; no evidence ever names a validator that did
  not misbehave;
* liveness, after healing: every non-Byzantine endpoint reaches `max(heights, H + 2)` (H = the
  highest height any of them had finalized at the heal) within `liveness_bound_ms`.

A restart "without state" loses the WAL and the chain: that validator may then sign votes
that conflict with its earlier ones, so the scenario counts it as faulty, like a Byzantine one,
and only uses it when the faulty total stays within f.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus.actions import (Action, Broadcast, CancelTimer, CommitBlock, NeedSync, Persist, PruneWal, ReportEvidence,
                               RequestProposal, Send, SetTimer, ValidateBlock, ViewChanged)
from consensus.certificate import CommitCertificate, QuorumCertificate, verify_certificate
from consensus.crypto import Signer, Verifier
from consensus.engine import Engine, EngineConfig
from consensus.errors import LocalProtocolError
from consensus.evidence import Evidence
from consensus.messages import Commit, Decision, Message, NewView, Prepare, PrePrepare, ViewChange, decode_message, sign_message
from consensus.wal import decode_record
from consensus.validators import ValidatorSet
from consensus.simulation.adversary import SyncedBlock
from consensus.simulation.byzantine import BEHAVIOURS, TICK_BEHAVIOURS, Adversary, block_payload
from consensus.simulation.fake_crypto import FakeKeyring, FakeVerifier
from consensus.simulation.network import Network, NetworkConfig, Partition
from consensus.simulation.reconfig import Reconfiguration, plan_reconfiguration, validator_set

CHAIN_ID = "medledger-sim"
ZERO = bytes(32)

# A function giving `count` signers and a verifier for all of them (fake by default; tests
# inject Ed25519 this way, since the consensus package itself never imports PyNaCl).
CryptoFactory = Callable[[int], tuple[list[Signer], Verifier]]


def fake_crypto(count: int) -> tuple[list[Signer], Verifier]:
    keyring = FakeKeyring()
    return [keyring.new_signer(b"validator-%d" % i) for i in range(count)], FakeVerifier(keyring)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything a run depends on besides its seed."""

    validators: int = 4
    byzantine: int = 0
    # Flat on purpose: every field is a keyword option of `run_sim` (and so of `medledger sim`);
    # the link fields below are handed to `NetworkConfig`, which checks them.
    behaviours: tuple[str, ...] = ()
    drop: float = 0.0
    partition: bool = False
    heights: int = 6
    crashes: bool = True
    amnesia: bool = False
    clock_jumps: bool = True
    reconfigure: bool = False
    collude: bool = True
    wire: bool = True
    duplicate: float = 0.02
    reorder: float = 0.05
    min_latency_ms: int = 5
    max_latency_ms: int = 60
    base_timeout_ms: int = 500
    max_timeout_ms: int = 8000
    resend_interval_ms: int = 250
    fault_window_ms: int = 8000
    liveness_bound_ms: int = 90_000
    max_events: int = 3_000_000

    def __post_init__(self) -> None:
        if type(self.validators) is not int or not 1 <= self.validators <= 128:
            raise ValueError("validators must be an int in 1..128")
        if type(self.byzantine) is not int or not 0 <= self.byzantine <= self.validators:
            raise ValueError("byzantine must be an int in 0..validators")
        unknown = set(self.behaviours) - set(BEHAVIOURS)
        if unknown:
            raise ValueError(f"unknown behaviours {sorted(unknown)}; known: {', '.join(BEHAVIOURS)}")
        if self.byzantine and not self.behaviours:
            raise ValueError("byzantine validators need at least one behaviour")
        if not 0.0 <= self.drop < 1.0:
            raise ValueError("drop must be in [0, 1)")
        if self.heights < 1:
            raise ValueError("heights must be >= 1")

    @property
    def f(self) -> int:
        return (self.validators - 1) // 3

    def engine_config(self) -> EngineConfig:
        return EngineConfig(base_timeout_ms=self.base_timeout_ms, max_timeout_ms=self.max_timeout_ms,
                            resend_interval_ms=self.resend_interval_ms,
                            max_resend_interval_ms=4 * self.resend_interval_ms, max_payload=1 << 16)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedResult:
    """The outcome of one seed; identical for identical (config, seed)."""

    seed: int
    safety_violations: tuple[str, ...]
    liveness_failures: tuple[str, ...]
    errors: tuple[str, ...]
    min_height: int
    max_height: int
    view_changes: int
    max_view: int
    evidence: int
    messages: int
    recovery_ms: int | None
    simulated_ms: int
    final_hashes: tuple[tuple[int, int, str], ...]  # (endpoint, height, tip digest hex) of each checked endpoint
    byzantine: tuple[int, ...]
    behaviours: tuple[tuple[str, ...], ...]
    # With reconfiguration: the schedule of changes, and why a liveness failure is no fault of the
    # protocol ("" if it is unexplained, i.e. a real failure).
    reconfiguration: tuple[str, ...] = ()
    liveness_explained: str = ""

    @property
    def ok(self) -> bool:
        return not (self.safety_violations or self.liveness_failures or self.errors)


@dataclass(eq=False)
class Endpoint:
    """One running instance of a validator (a twin is two endpoints with one key)."""

    index: int
    validator: int
    signer: Signer
    behaviours: frozenset[str] = frozenset()
    engine: Engine | None = None
    up: bool = True
    epoch: int = 0
    amnesiac: bool = False
    timers: dict[object, tuple[int, int]] = field(default_factory=dict)  # key -> (token, deadline)
    timer_seq: int = 0
    wal: list[tuple[int, bytes]] = field(default_factory=list)
    chain: list[tuple[bytes, bytes, CommitCertificate]] = field(default_factory=list)
    view_changes: int = 0
    max_view: int = 0
    crash_armed: bool = False
    sync_busy_until: int = -1

    @property
    def honest(self) -> bool:
        return not self.behaviours


# Event kinds (small ints keep heap entries cheap).
_DELIVER, _TIMER, _PROPOSAL, _VALIDATED, _SYNC, _CRASH, _CRASH_NOW, _RESTART, _JUMP, _TICK, _HEAL = range(11)


class Simulation:
    """A seeded, deterministic run of a cluster (see the module docstring)."""

    def __init__(self, config: SimConfig, seed: int, crypto: CryptoFactory | None = None) -> None:
        self.config = config
        self.seed = seed
        master = random.Random(seed)
        self._scenario_rng = random.Random(master.getrandbits(64))
        self._net_rng = random.Random(master.getrandbits(64))
        self._app_rng = random.Random(master.getrandbits(64))
        self._byz_rng = random.Random(master.getrandbits(64))
        reconfig_rng = random.Random(master.getrandbits(64))
        self._ghost_rng = random.Random(master.getrandbits(64))
        n = config.validators
        rng = self._scenario_rng
        self.byzantine_validators = sorted(rng.sample(range(n), config.byzantine))
        # Reconfiguration: a schedule of changes, each decided in block d and in force from d + 2.
        self.reconfiguration: Reconfiguration | None = None
        if config.reconfigure:
            self.reconfiguration = plan_reconfiguration(reconfig_rng, n, frozenset(self.byzantine_validators),
                                                        config.heights)
        key_count = n + (self.reconfiguration.spares if self.reconfiguration else 0)
        self.signers, self.verifier = (crypto or fake_crypto)(key_count)
        self.ids = [s.public_key for s in self.signers]
        self.genesis = ValidatorSet(validators=tuple(self.ids[:n]))
        self._sets: dict[tuple[int, ...], ValidatorSet] = {tuple(range(n)): self.genesis}
        # Retired keys (removed, or rotated out) by validator number: the height from which they must not count.
        self.retired = self.reconfiguration.retired_at() if self.reconfiguration else {}
        self.ghost_votes = 0  # votes and proposals signed by retired keys after their switch
        self.engine_config = config.engine_config()
        self.now = 0
        # (time, sequence, event kind, the event's arguments: their shape depends on the kind)
        self._heap: list[tuple[int, int, int, tuple[Any, ...]]] = []
        self._seq = 0
        self._events = 0
        self.safety: list[str] = []
        self.errors: list[str] = []
        self.finalized: dict[int, tuple[bytes, int]] = {}
        self.messages = 0
        self.evidence_count = 0
        self.healed = False
        self.heal_time = config.fault_window_ms
        self.target: int | None = None
        self.done_time: int | None = None

        self.behaviours_of: dict[int, frozenset[str]] = {}
        for v in self.byzantine_validators:
            # A random mix of the behaviours asked for; "silent" excludes the rest, so it is
            # drawn as one option among them rather than in a mix it would silence.
            pool = [b for b in config.behaviours if b != "silent"]
            if not pool or ("silent" in config.behaviours and rng.randrange(len(pool) + 1) == 0):
                self.behaviours_of[v] = frozenset({"silent"})
            else:
                self.behaviours_of[v] = frozenset(rng.sample(pool, rng.randint(1, len(pool))))
        self.endpoints: list[Endpoint] = []
        for v in range(key_count):
            self._add_endpoint(v)
        for v in self.byzantine_validators:
            if "twin" in self.behaviours_of[v]:
                self._add_endpoint(v)
        self.network = Network(NetworkConfig(min_latency_ms=config.min_latency_ms, max_latency_ms=config.max_latency_ms,
                                             drop=config.drop, duplicate=config.duplicate, reorder=config.reorder),
                               len(self.endpoints), self._net_rng)
        honest_eps = [ep.index for ep in self.endpoints if ep.honest]
        self.adversary = Adversary(self._byz_rng, CHAIN_ID, honest_eps, validators_at=self._validators_at,
                                   byzantine_ids=frozenset(self.ids[v] for v in self.byzantine_validators),
                                   fault_window_ms=config.fault_window_ms)
        self._adaptive = any("adaptive-split" in ep.behaviours for ep in self.endpoints)
        self._steering = any("lock-split" in ep.behaviours for ep in self.endpoints)
        self._sync_servers = [ep for ep in self.endpoints if "byzantine-sync" in ep.behaviours]
        self.sync_rejected = 0  # synced blocks the runtime's checks refused
        self.amnesiacs: set[int] = set()
        # Every vote an honest validator ever sent: (validator, kind, height, view) -> what it said.
        self._signed: dict[tuple[int, str, int, int], bytes] = {}
        self._plan_faults()

    # -- setup ---------------------------------------------------------------------------------

    def _add_endpoint(self, validator: int) -> Endpoint:
        ep = Endpoint(index=len(self.endpoints), validator=validator, signer=self.signers[validator],
                      behaviours=self.behaviours_of.get(validator, frozenset()))
        self.endpoints.append(ep)
        return ep

    def _plan_faults(self) -> None:
        cfg = self.config
        rng = self._scenario_rng
        window = cfg.fault_window_ms
        count = len(self.endpoints)
        if cfg.partition:
            for _ in range(rng.randint(1, 2)):
                start = rng.randint(0, window * 6 // 10)
                end = min(window, start + rng.randint(500, 4000))
                members = list(range(count))
                rng.shuffle(members)
                groups = rng.choice([2, 2, 3]) if count >= 3 else 2
                cuts = sorted(rng.sample(range(1, count), min(groups - 1, count - 1))) if count > 1 else []
                parts, last = [], 0
                for cut in cuts + [count]:
                    parts.append(frozenset(members[last:cut]))
                    last = cut
                self.network.partitions.append(Partition(start_ms=start, end_ms=end, groups=tuple(parts)))
        honest = [ep for ep in self.endpoints if ep.honest and ep.validator < cfg.validators]
        if cfg.crashes and honest:
            for ep in rng.sample(honest, min(len(honest), rng.randint(1, 2))):
                at = rng.randint(0, window * 7 // 10)
                back = min(window, at + rng.randint(200, 3000))
                budget = self._least_f() - cfg.byzantine - len(self.amnesiacs)
                keep = not (cfg.amnesia and budget > 0 and rng.random() < 0.5)
                if not keep:
                    self.amnesiacs.add(ep.index)
                self._push(at, _CRASH, (ep,))
                self._push(back, _RESTART, (ep, keep))
        if cfg.clock_jumps and honest:
            for _ in range(rng.randint(1, 3)):
                self._push(rng.randint(0, window), _JUMP, (rng.choice(honest),))
        for ep in self.endpoints:
            if ep.behaviours & TICK_BEHAVIOURS:
                self._push(rng.randint(50, 300), _TICK, (ep,))
        self._push(window, _HEAL, ())

    def _least_f(self) -> int:
        """The smallest f of the sets in force during the run (the faults it tolerates at every height)."""
        if self.reconfiguration is None:
            return self.config.f
        return min([self.config.f] + [(len(members) - 1) // 3 for _, members in self.reconfiguration.sets])

    # -- the event loop ------------------------------------------------------------------------

    def _push(self, at: int, kind: int, args: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, args))

    def run(self) -> SeedResult:
        """Run to completion (or to the liveness deadline) and check the outcome."""
        for ep in self.endpoints:
            self._boot(ep)
        deadline = self.heal_time + self.config.liveness_bound_ms
        heap = self._heap
        while heap and self.done_time is None:
            at, _, kind, args = heapq.heappop(heap)
            if at > deadline:
                break
            self.now = at
            self._events += 1
            if self._events > self.config.max_events:
                self.errors.append(f"event budget of {self.config.max_events} exhausted at {self.now} ms")
                break
            try:
                self._dispatch(kind, args)
            except (LocalProtocolError, AssertionError, ValueError, KeyError, TypeError, AttributeError) as exc:
                self.errors.append(f"t={self.now}: {type(exc).__name__}: {exc}")
                break
        if self.done_time is None and not self.errors:
            self.now = max(self.now, deadline) if not heap else self.now
        return self._result()

    def _dispatch(self, kind: int, args: tuple[Any, ...]) -> None:
        if kind == _DELIVER:
            self._deliver(*args)
        elif kind == _TIMER:
            ep, key, token, epoch = args
            if ep.up and ep.epoch == epoch and ep.timers.get(key, (None,))[0] == token:
                del ep.timers[key]
                self._execute(ep, ep.engine.on_timer(key))
        elif kind == _PROPOSAL:
            ep, height, view, epoch = args
            if ep.up and ep.epoch == epoch:
                payload = block_payload(height, view, ep.validator, f"{self._app_rng.getrandbits(32):08x}")
                if ep.behaviours:
                    payload = self.adversary.proposal(ep, height, view, payload)
                digest = hashlib.sha256(payload).digest()
                self._execute(ep, ep.engine.on_proposal_ready(height, view, digest, payload))
        elif kind == _VALIDATED:
            ep, height, digest, ok, epoch = args
            if ep.up and ep.epoch == epoch:
                self._execute(ep, ep.engine.on_block_validated(height, digest, ok))
        elif kind == _SYNC:
            self._sync_reply(*args)
        elif kind == _CRASH:
            ep = args[0]
            if self._scenario_rng.random() < 0.5:
                self._crash(ep)
            else:
                ep.crash_armed = True  # crash in the middle of the next list of actions
                self._push(self.now + 30, _CRASH_NOW, (ep, ep.epoch))
        elif kind == _CRASH_NOW:
            ep, epoch = args
            if ep.up and ep.epoch == epoch:
                self._crash(ep)
        elif kind == _RESTART:
            ep, keep = args
            self._restart(ep, keep)
        elif kind == _JUMP:
            self._clock_jump(args[0])
        elif kind == _TICK:
            ep = args[0]
            if self.now < self.heal_time + self.config.liveness_bound_ms:
                for dest, msg in self.adversary.tick(ep, self.endpoints):
                    self._transmit(ep, dest, msg)
                self._push(self.now + self._scenario_rng.randint(100, 400), _TICK, (ep,))
        elif kind == _HEAL:
            self._heal()

    # -- the simulated runtime ---------------------------------------------------------------

    def _new_engine(self, ep: Endpoint) -> Engine:
        height = len(ep.chain)
        last = ep.chain[-1] if ep.chain else None
        return Engine(chain_id=CHAIN_ID, validators=self._validators_at(height + 1), signer=ep.signer,
                      verifier=self.verifier, config=self.engine_config, last_height=height,
                      last_digest=last[0] if last else ZERO, wal=tuple(e for _, e in ep.wal),
                      last_certificate=last[2] if last else None, last_payload=last[1] if last else None,
                      previous_validators=self._validators_at(height) if height else None)

    def _boot(self, ep: Endpoint) -> None:
        ep.engine = self._new_engine(ep)
        self._reschedule_validators(ep)
        self._execute(ep, ep.engine.start())

    def _validators_at(self, height: int) -> ValidatorSet:
        if self.reconfiguration is None:
            return self.genesis
        members = self.reconfiguration.members_at(height)
        known = self._sets.get(members)
        if known is None:
            known = self._sets[members] = validator_set(self.ids, members)
        return known

    def _reschedule_validators(self, ep: Endpoint) -> None:
        """What the runtime does at start-up: tell the engine about changes decided but not yet in force."""
        if self.reconfiguration is None:
            return
        assert ep.engine is not None
        height = len(ep.chain)
        for change in self.reconfiguration.changes:
            if change.decided <= height < change.effective - 1:
                ep.engine.schedule_validators(change.effective, self._validators_at(change.effective))

    def _execute(self, ep: Endpoint, actions: list[Action]) -> None:
        cut = len(actions) + 1
        if ep.crash_armed:
            cut = self._scenario_rng.randint(0, len(actions))
        for i, action in enumerate(actions):
            if i == cut:
                self._crash(ep)
                return
            if not ep.up:
                return
            if type(action) is Broadcast:
                self._send(ep, action.message)
            elif type(action) is Send:
                self._send(ep, action.message, to=action.to)
            elif type(action) is Persist:
                if ep.honest:
                    self._check_accepted(ep, action.entry)
                ep.wal.append((action.height, action.entry))
            elif type(action) is SetTimer:
                ep.timer_seq += 1
                deadline = self.now + action.delay_ms
                ep.timers[action.key] = (ep.timer_seq, deadline)
                self._push(deadline, _TIMER, (ep, action.key, ep.timer_seq, ep.epoch))
            elif type(action) is CancelTimer:
                ep.timers.pop(action.key, None)
            elif type(action) is PruneWal:
                ep.wal = [w for w in ep.wal if w[0] >= action.below_height]
            elif type(action) is RequestProposal:
                self._push(self.now + self._app_rng.randint(1, 30), _PROPOSAL,
                           (ep, action.height, action.view, ep.epoch))
            elif type(action) is ValidateBlock:
                ok = _valid_block(action.height, action.payload) and hashlib.sha256(action.payload).digest() == action.digest
                self._push(self.now + self._app_rng.randint(1, 10), _VALIDATED,
                           (ep, action.height, action.digest, ok, ep.epoch))
            elif type(action) is CommitBlock:
                self._apply_block(ep, action.height, action.digest, action.payload, action.certificate)
            elif type(action) is ReportEvidence:
                self._check_evidence(ep, action.evidence)
            elif type(action) is ViewChanged:
                ep.view_changes += 1
                ep.max_view = max(ep.max_view, action.view)
            elif type(action) is NeedSync:
                self._request_sync(ep)
            else:
                raise AssertionError(f"unknown action {action!r}")
        if cut == len(actions):
            self._crash(ep)

    def _wire(self, msg: Message) -> Message:
        """Send the message through the codec, as the real transport does."""
        if not self.config.wire:
            return msg
        return decode_message(msg.encode(), max_payload=self.engine_config.max_payload)

    def _note_signed(self, ep: Endpoint, msg: Message) -> None:
        """A restarted validator must never contradict a vote it sent before its crash."""
        if not ep.honest or ep.index in self.amnesiacs or msg.sender != ep.signer.public_key:
            return
        kind = type(msg)
        if kind is Decision:
            return
        said = msg.signing_bytes()
        key = (ep.validator, kind.__name__, msg.height, msg.view)
        first = self._signed.setdefault(key, said)
        if first != said:
            self.safety.append(f"validator {ep.validator} signed two different {kind.__name__} messages at "
                               f"height {msg.height} view {msg.view}")

    def _check_accepted(self, ep: Endpoint, entry: bytes) -> None:
        """An honest validator prepares only a proposal its primary signed (else it could never prove it)."""
        record = decode_record(entry, max_payload=self.engine_config.max_payload)
        pp = record.accepted
        if pp is None:
            return
        primary = self._validators_at(pp.height).primary(pp.height, pp.view)
        if pp.sender != primary or not self.verifier.verify(pp.sender, pp.signing_bytes(), pp.signature):
            self.safety.append(f"height {pp.height}: endpoint {ep.index} prepared a proposal of view {pp.view} "
                               f"that its primary did not sign")

    def _send(self, ep: Endpoint, msg: Message, to: bytes | None = None) -> None:
        """Send `msg` from `ep` to validator `to`, or to every other endpoint (None): a Byzantine
        endpoint's traffic goes through the adversary first."""
        self._note_signed(ep, msg)
        msg = self._wire(msg)
        me = ep.signer.public_key
        if to is None:
            dests = [d for d in self.endpoints if d.signer.public_key != me]
        else:
            dests = [d for d in self.endpoints if d.signer.public_key == to and d is not ep]
        if ep.behaviours:
            for dest, m in self.adversary.outgoing(ep, msg, dests):
                self._transmit(ep, dest, m)
        else:
            for dest in dests:
                self._transmit(ep, dest, msg)
            if self.retired:
                self._check_sent_certificates(ep, msg)
                self._ghost_echo(ep, msg, dests)

    # -- reconfiguration -----------------------------------------------------------------------

    def _ghost_echo(self, ep: Endpoint, msg: Message, dests: list[Endpoint]) -> None:
        """Retired keys keep voting: each retired key's owner signs a copy of an honest vote or
        proposal of a height at or after its switch (half the time for another block) and sends it."""
        if type(msg) not in (PrePrepare, Prepare, Commit, ViewChange, NewView):
            return
        rng = self._ghost_rng
        for validator, switch in self.retired.items():
            if msg.height < switch or rng.random() < 0.5:
                continue
            ghost = self.endpoints[validator]
            if not ghost.up:
                continue
            key = ghost.signer.public_key
            if type(msg) is NewView:  # the enclosed proposal is the sender's own too
                pp = sign_message(dataclasses.replace(msg.pre_prepare, sender=key, signature=b""), ghost.signer)
                fake: Message = dataclasses.replace(msg, sender=key, pre_prepare=pp, signature=b"")
            elif isinstance(msg, (Prepare, Commit)) and rng.random() < 0.5:  # a vote for another block
                fake = dataclasses.replace(msg, sender=key, digest=rng.randbytes(32), signature=b"")
            else:
                fake = dataclasses.replace(msg, sender=key, signature=b"")
            signed = self._wire(sign_message(fake, ghost.signer))
            self.ghost_votes += 1
            for dest in dests:
                if dest is not ghost:
                    self._transmit(ghost, dest, signed, prompt=True)

    def _check_sent_certificates(self, ep: Endpoint, msg: Message) -> None:
        """The certificates an honest endpoint sends are made of the set of their height."""
        if type(msg) is ViewChange and msg.prepared is not None:
            self._check_members(ep, msg.prepared, f"a prepared certificate of height {msg.height}")
        elif type(msg) is NewView:
            for vc in msg.view_changes:
                if vc.sender not in self._validators_at(msg.height):
                    self.safety.append(f"height {msg.height}: endpoint {ep.index} sent a NEW-VIEW enclosing a "
                                       f"view change of a key outside the set of that height")
                if vc.prepared is not None:
                    self._check_members(ep, vc.prepared, f"a prepared certificate of height {msg.height}")
        elif type(msg) is Decision:
            self._check_members(ep, msg.certificate, f"the DECISION certificate of height {msg.height}")

    def _check_members(self, ep: Endpoint, cert: QuorumCertificate, what: str) -> None:
        """Every vote of a certificate of height H is by a member of H's set; name a retired key's vote."""
        validators = self._validators_at(cert.height)
        for voter, _ in cert.votes:
            if voter in validators:
                continue
            number = self.ids.index(voter)
            switch = self.retired.get(number)
            if switch is not None and cert.height >= switch:
                self.safety.append(f"endpoint {ep.index} holds {what} counting a vote of validator {number}, "
                                   f"whose key was retired at height {switch}")
            else:
                self.safety.append(f"endpoint {ep.index} holds {what} with a vote outside the set of that height")

    def _transmit(self, src: Endpoint, dest: Endpoint, msg: Message, prompt: bool = False) -> None:
        """Send `msg` over the network; unless `prompt` (the adversary's own answers), an adaptive
        adversary may hold it back a little."""
        extra = 0
        forger = self.adversary.forger
        if forger is not None:  # always, in a simulation (validators_at is given)
            forger.now = self.now
            if self._steering and not prompt and forger.splitter.drop(src, dest, msg, self.now):
                return
            if self._adaptive and not prompt:
                extra = forger.extra_delay(src, dest, msg, self.now)
        for delay in self.network.delays(src.index, dest.index, self.now):
            self._push(self.now + delay + extra, _DELIVER, (dest, msg, src.index))

    def _deliver(self, dest: Endpoint, msg: Message, src: int) -> None:
        if not dest.up or self.network.partitioned(src, dest.index, self.now):
            return
        # The runtime checks the outer signature once, before the engine sees the message.
        if not self.verifier.verify(msg.sender, msg.signing_bytes(), msg.signature):
            return
        self.messages += 1
        if dest.behaviours:
            for to, m in self.adversary.observe(dest, msg, self.endpoints):
                self._transmit(dest, to, self._wire(m), prompt=True)
        if not dest.up:
            return
        assert dest.engine is not None  # an endpoint that is up has one
        _, actions = dest.engine.on_message(msg)
        if actions:
            self._execute(dest, actions)

    def _apply_block(self, ep: Endpoint, height: int, digest: bytes, payload: bytes, cert: CommitCertificate) -> bool:
        """Store a final block (committed or synced); check it; False if it could not be applied."""
        if height != len(ep.chain) + 1:
            raise AssertionError(f"endpoint {ep.index} applied height {height} on top of {len(ep.chain)}")
        validators = self._validators_at(height)
        if not verify_certificate(cert, chain_id=CHAIN_ID, validators=validators, verifier=self.verifier):
            self.safety.append(f"height {height}: endpoint {ep.index} finalized a block whose certificate does not verify")
        if not _valid_block(height, payload) or hashlib.sha256(payload).digest() != digest:
            self.safety.append(f"height {height}: endpoint {ep.index} finalized a block the application rejects")
        ep.chain.append((digest, payload, cert))
        if ep.honest:
            first = self.finalized.setdefault(height, (digest, ep.index))
            if first[0] != digest:
                self.safety.append(f"height {height}: endpoint {ep.index} finalized {digest.hex()[:12]} but endpoint "
                                   f"{first[1]} finalized {first[0].hex()[:12]}")
            if self.target is not None and self.done_time is None:
                self._check_done()
        self._check_members(ep, cert, f"the commit certificate of height {height}")
        decided = self.reconfiguration.decided_in(height) if self.reconfiguration else None
        if decided is not None and ep.engine is not None:
            # Every node, while applying block d, schedules the set that block decided on (for d + 2).
            ep.engine.schedule_validators(decided[0], self._validators_at(decided[0]))
        return True

    def _check_evidence(self, ep: Endpoint, evidence: Evidence) -> None:
        self.evidence_count += 1
        if not evidence.verify(self.verifier):
            self.safety.append(f"endpoint {ep.index} reported evidence whose signatures do not verify")
        offender = self.ids.index(evidence.offender)
        switch = self.retired.get(offender)
        if switch is not None and evidence.first.height >= switch:
            self.safety.append(f"endpoint {ep.index} counted votes of validator {offender} at height "
                               f"{evidence.first.height}, after its key was retired at height {switch}")
        elif offender not in self.behaviours_of and not any(
                e.index in self.amnesiacs for e in self.endpoints if e.validator == offender):
            self.safety.append(f"endpoint {ep.index} reported evidence against validator {offender}, which is honest")

    # -- block sync ----------------------------------------------------------------------------

    def _request_sync(self, ep: Endpoint) -> None:
        if ep.sync_busy_until > self.now:
            return
        mine = len(ep.chain)
        peers = [p for p in self.endpoints if p.honest and p.up and p is not ep and len(p.chain) > mine
                 and not self.network.partitioned(ep.index, p.index, self.now)]
        # A Byzantine sync server claims to be ahead of everybody.
        peers += [p for p in self._sync_servers if p.up and p is not ep
                  and not self.network.partitioned(ep.index, p.index, self.now)]
        if not peers:
            return
        peer = self._net_rng.choice(peers)
        rtt = self.network.round_trip(ep.index, peer.index)
        ep.sync_busy_until = self.now + rtt + 200
        if self.config.drop and self._net_rng.random() < self.config.drop:
            return
        self._push(self.now + rtt + 5, _SYNC, (ep, peer, ep.epoch))

    def _sync_reply(self, ep: Endpoint, peer: Endpoint, epoch: int) -> None:
        if not ep.up or ep.epoch != epoch or self.network.partitioned(ep.index, peer.index, self.now):
            return
        if peer.honest:
            served: list[SyncedBlock] | None = [(h, *peer.chain[h - 1])
                                                for h in range(len(ep.chain) + 1, len(peer.chain) + 1)]
        else:
            assert self.adversary.forger is not None  # a simulation's adversary has one
            served = self.adversary.forger.serve_sync(peer, len(ep.chain) + 1)
        if served is None:
            return  # withheld: the request times out (sync_busy_until) and goes to another peer
        for height, digest, payload, cert in served:
            if not ep.up:
                return
            # The runtime's checks of a synced block (node/runtime/runtime.py, apply_synced_block).
            problem = self._synced_block_problem(ep, height, digest, payload, cert)
            if problem:
                self.sync_rejected += 1
                if peer.honest:
                    self.safety.append(f"height {height}: an honest sync server served a block that {problem}")
                break
            self._apply_block(ep, height, digest, payload, cert)
            assert ep.engine is not None
            self._execute(ep, ep.engine.on_block_synced(height, digest, cert, payload))
        ep.sync_busy_until = -1

    def _synced_block_problem(self, ep: Endpoint, height: int, digest: bytes, payload: bytes,
                              cert: CommitCertificate) -> str:
        if height != len(ep.chain) + 1:
            return f"is for height {height}, not {len(ep.chain) + 1}"
        if hashlib.sha256(payload).digest() != digest or (cert.height, cert.digest) != (height, digest):
            return "is not the block its certificate names"
        if not verify_certificate(cert, chain_id=CHAIN_ID, validators=self._validators_at(height),
                                  verifier=self.verifier):
            return "has a certificate that does not verify"
        if not _valid_block(height, payload):
            return "the application rejects"
        return ""

    # -- faults --------------------------------------------------------------------------------

    def _crash(self, ep: Endpoint) -> None:
        if not ep.up:
            return
        ep.up = False
        ep.epoch += 1
        ep.timers.clear()
        ep.crash_armed = False
        ep.engine = None

    def _restart(self, ep: Endpoint, keep_state: bool) -> None:
        if ep.up:
            self._crash(ep)
        if not keep_state:
            ep.wal = []
            ep.chain = []
            ep.amnesiac = True
        ep.up = True
        ep.sync_busy_until = -1
        self._boot(ep)

    def _clock_jump(self, ep: Endpoint) -> None:
        """The endpoint's clock leaps forward: every timer it has armed fires now, in deadline order."""
        if not ep.up:
            return
        for key, (token, _deadline) in sorted(ep.timers.items(), key=lambda kv: kv[1][1]):
            if not ep.up or ep.timers.get(key, (None,))[0] != token:
                continue
            del ep.timers[key]
            assert ep.engine is not None  # an endpoint that is up has one
            self._execute(ep, ep.engine.on_timer(key))

    def _heal(self) -> None:
        self.healed = True
        for ep in self.endpoints:
            if not ep.up:
                self._restart(ep, True)
        checked = self._checked()
        reached = max((len(ep.chain) for ep in checked), default=0)
        self.target = max(self.config.heights, reached + 2)
        self._check_done()

    def _checked(self) -> list[Endpoint]:
        return [ep for ep in self.endpoints if ep.honest]

    def _check_done(self) -> None:
        assert self.target is not None
        if all(len(ep.chain) >= self.target for ep in self._checked()):
            self.done_time = self.now

    # -- the outcome ---------------------------------------------------------------------------

    def _result(self) -> SeedResult:
        checked = self._checked()
        liveness: list[str] = []
        if not self.errors:
            if self.target is None:
                liveness.append("the run ended before the network healed")
            elif self.done_time is None:
                for ep in checked:
                    if len(ep.chain) < self.target:
                        liveness.append(f"endpoint {ep.index} reached height {len(ep.chain)}, not {self.target}, "
                                        f"within {self.config.liveness_bound_ms} ms of healing")
        heights = [len(ep.chain) for ep in checked] or [0]
        explained = self._explain_liveness(min(heights) + 1) if liveness else ""
        return SeedResult(
            seed=self.seed,
            safety_violations=tuple(self.safety),
            liveness_failures=tuple(liveness),
            errors=tuple(self.errors),
            min_height=min(heights),
            max_height=max(heights),
            view_changes=sum(ep.view_changes for ep in checked),
            max_view=max((ep.max_view for ep in checked), default=0),
            evidence=self.evidence_count,
            messages=self.messages,
            recovery_ms=None if self.done_time is None else self.done_time - self.heal_time,
            simulated_ms=self.now,
            final_hashes=tuple((ep.index, len(ep.chain), ep.chain[-1][0].hex() if ep.chain else "")
                               for ep in checked),
            byzantine=tuple(self.byzantine_validators),
            behaviours=tuple(tuple(sorted(self.behaviours_of[v])) for v in self.byzantine_validators),
            reconfiguration=tuple(self.reconfiguration.describe()) if self.reconfiguration else (),
            liveness_explained=explained,
        )

    def _explain_liveness(self, height: int) -> str:
        """Why the set of `height` could not commit, if the schedule took more than f of it down ("" if not)."""
        if self.reconfiguration is None:
            return ""
        validators = self._validators_at(height)
        down = [v for v in self.reconfiguration.members_at(height)
                if v in self.behaviours_of or not any(ep.up and ep.honest for ep in self.endpoints if ep.validator == v)]
        if len(down) <= validators.f:
            return ""
        return (f"the schedule left {len(down)} of the {validators.n} validators of height {height} faulty or down "
                f"(more than f = {validators.f}): not a failure of the protocol")


def _valid_block(height: int, payload: bytes) -> bool:
    return payload.startswith(b"block|%d|" % height)


def run_seed(config: SimConfig, seed: int, crypto: CryptoFactory | None = None) -> SeedResult:
    """Run one seed of `config`; the same (config, seed) always gives the same result."""
    return Simulation(config, seed, crypto).run()

