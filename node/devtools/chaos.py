"""`medledger chaos`: a local network of real node processes under a seeded schedule of faults.

The runner starts a cluster (node/devtools/cluster.py) with test switches, keeps a steady load of
signed `identity.register` transactions going to the honest nodes, and injects one fault at a
time, chosen by a seeded RNG:

| fault     | what happens                                                                  |
| --------- | ----------------------------------------------------------------------------- |
| kill      | SIGKILL a validator, restart it a few seconds later                           |
| pause     | SIGSTOP a validator, SIGCONT a few seconds later                              |
| partition | cut the network (one validator alone, or a split where no side has a quorum) |
|           | through the nodes' test partition switch, then heal it                        |
| lag       | stop a validator until the others are LAG_BLOCKS ahead (or LAG_MAX_S passed), |
|           | restart it: it must sync the missing blocks                                   |
| byzantine | up to f validators run a Byzantine mode (node/devtools/byzantine.py) for the whole run |

With `reconfigure`, the schedule also changes the validator set, in a seeded order
(node/devtools/membership.py): two institutions join and are voted in, an honest validator is
voted out and its process stopped, and one rotates its key and restarts with the new key once
the block before the switch height is committed. The checks then cover the set at the end:
every validator in it must be one of the nodes compared.

After each fault heals the runner measures the recovery: the seconds until every honest
validator has committed a block beyond the highest height any of them had when the fault
healed (measured right after the heal). Faults only hit honest validators; Byzantine ones lie
throughout.

A follower long-polls `/v1/commits` on a live honest node and records every transaction it
reports committed (acknowledged), with its height. A transaction not acknowledged within
RETRY_AFTER_S is sent again to another node, as a client would. At the end the load stops,
the honest nodes converge, and the runner checks: every honest node holds identical block
hashes and state roots (a disagreeing height is a safety violation, and so is a transaction
acknowledged at one height but found at another); every acknowledged transaction is in the
chain exactly once (else it is lost or duplicated).
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.devtools.byzantine import ENV_MODE, ENV_SEED, MODES
from node.devtools.cluster import Cluster, ClusterError, http_json
from node.core.encoding import canonical
from node.chain.tx import Transaction

FAULTS: tuple[str, ...] = ("kill", "pause", "partition", "lag", "byzantine")
SCHEDULED = ("kill", "pause", "partition", "lag")
MEMBERSHIP = ("join", "leave", "rotate")  # with --reconfigure (node/devtools/membership.py)
MEMBERSHIP_S = 30.0  # time kept for each change of the set still planned (a lag fault may take 25 s)
FAULT_MIN_S, FAULT_MAX_S = 3.0, 8.0
GAP_MIN_S, GAP_MAX_S = 2.0, 5.0
LAG_BLOCKS = 50
LAG_MAX_S = 25.0
RETRY_AFTER_S = 15.0
SUBMIT_INTERVAL_S = 0.25
HTTP_TIMEOUT_S = 3.0
MAX_TXS = 200_000


class ChaosError(Exception):
    """The run could not be set up (bad options, a node that never came up)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosConfig:
    nodes: int
    duration_s: float
    seed: int
    faults: tuple[str, ...] = SCHEDULED
    byzantine: int = 0
    byzantine_mode: str = "mixed"
    rate: float = 20.0  # offered transactions a second
    recovery_timeout_s: float = 60.0
    root: Path | None = None  # where the node homes go (a scratch directory if None)
    reconfigure: bool = False  # also join, remove and rotate validators (node/devtools/membership.py)

    def check(self) -> None:
        f = (self.nodes - 1) // 3
        unknown = [x for x in self.faults if x not in FAULTS]
        if unknown:
            raise ChaosError(f"unknown fault type(s) {', '.join(unknown)} (choose from {', '.join(FAULTS)})")
        if self.byzantine > f:
            raise ChaosError(f"at most f = {f} of {self.nodes} validators may be Byzantine (asked for {self.byzantine})")
        if self.byzantine_mode != "mixed" and self.byzantine_mode not in MODES:
            raise ChaosError(f"unknown Byzantine mode {self.byzantine_mode!r} (mixed or one of {', '.join(MODES)})")
        if self.nodes < 1 or self.duration_s <= 0 or self.rate <= 0:
            raise ChaosError("nodes, duration and rate must be positive")
        if self.reconfigure and self.nodes < 4:
            raise ChaosError("--reconfigure needs at least 4 validators (a change never leaves fewer)")


@dataclass(slots=True)
class FaultRecord:
    type: str
    target: int
    started_s: float
    healed_s: float | None = None
    recovery_s: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "target": self.target, "started_s": round(self.started_s, 2),
                "healed_s": None if self.healed_s is None else round(self.healed_s, 2),
                "duration_s": None if self.healed_s is None else round(self.healed_s - self.started_s, 2),
                "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
                "detail": self.detail}


def _post(url: str, body: bytes, timeout: float) -> Any:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/msgpack"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _get(url: str, timeout: float = HTTP_TIMEOUT_S) -> Any | None:
    try:
        return http_json(url, timeout)
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Load:
    """The load generator and the commit follower (two threads), and what they saw."""

    cluster: Cluster
    txs: list[Transaction]
    rate: float
    available: set[int]
    rng: random.Random
    sent_at: dict[bytes, float] = field(default_factory=dict)
    attempts: Counter[bytes] = field(default_factory=Counter)
    acknowledged: dict[bytes, int] = field(default_factory=dict)  # tx hash -> height it was reported at
    conflicts: int = 0  # a tx reported committed at two different heights
    heights_seen: dict[int, str] = field(default_factory=dict)
    fork_reports: int = 0  # two nodes reported different blocks for one height
    stop_submit: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_tx: int = 0

    def targets(self) -> list[int]:
        with self.lock:
            return sorted(self.available)

    def submit_loop(self) -> None:
        per_tick = max(1, round(self.rate * SUBMIT_INTERVAL_S))
        next_at = time.monotonic()
        while not self.stop.is_set():
            next_at += SUBMIT_INTERVAL_S
            # after stop_submit only retries go out, until the follower has seen everything
            batch = [] if self.stop_submit.is_set() else self.txs[self.next_tx : self.next_tx + per_tick]
            self.next_tx += len(batch)
            now = time.monotonic()
            with self.lock:
                retry = [t for t in self.txs[: self.next_tx - len(batch)]
                         if t.hash not in self.acknowledged and self.attempts[t.hash] < 3
                         and now - self.sent_at.get(t.hash, now) > RETRY_AFTER_S][:per_tick * 4]
            for group in (batch, retry):
                if group:
                    self._send(group)
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def _send(self, group: list[Transaction]) -> None:
        targets = self.targets()
        if not targets:
            return
        node = self.cluster.nodes[self.rng.choice(targets)]
        now = time.monotonic()
        for t in group:
            self.sent_at[t.hash] = now
            self.attempts[t.hash] += 1
        body = canonical([[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in group])
        try:
            _post(node.api_url + "/v1/txs", body, HTTP_TIMEOUT_S)
        except (urllib.error.URLError, OSError, ValueError):
            pass  # a node that is down or paused: the retry sends it elsewhere later

    def follow_loop(self) -> None:
        since = 1
        while not self.stop.is_set():
            targets = self.targets()
            if not targets:
                self.stop.wait(0.2)
                continue
            node = self.cluster.nodes[self.rng.choice(targets)]
            doc = _get(f"{node.api_url}/v1/commits?since={since}&wait=1&limit=200", timeout=HTTP_TIMEOUT_S)
            if doc is None:
                self.stop.wait(0.2)
                continue
            with self.lock:
                for b in doc.get("blocks", []):
                    h = b["height"]
                    if self.heights_seen.setdefault(h, b["hash"]) != b["hash"]:
                        self.fork_reports += 1
                    for hx in b["txs"]:
                        th = bytes.fromhex(hx)
                        if th in self.sent_at:
                            if self.acknowledged.setdefault(th, h) != h:
                                self.conflicts += 1
                    since = max(since, h + 1)


class ChaosRun:
    """One chaos run: set up, load, faults, final checks."""

    def __init__(self, cfg: ChaosConfig, *, progress: Callable[[str], None] | None = None) -> None:
        cfg.check()
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.progress = progress or (lambda _msg: None)
        self.faults: list[FaultRecord] = []
        self.t0 = 0.0
        n = cfg.nodes
        k = cfg.byzantine if cfg.byzantine or "byzantine" not in cfg.faults else (n - 1) // 3
        self.byzantine = list(range(n - k, n))  # the last k validators lie
        self.honest = [i for i in range(n) if i not in self.byzantine]
        modes = list(MODES)
        self.rng.shuffle(modes)
        self.modes = {i: (modes[j % len(modes)] if cfg.byzantine_mode == "mixed" else cfg.byzantine_mode)
                      for j, i in enumerate(self.byzantine)}
        self.plan: list[str] = []
        if cfg.reconfigure:
            from node.devtools.membership import membership_plan

            self.plan = membership_plan(random.Random(cfg.seed + 7), n, len(self.byzantine))
        self.left: list[int] = []  # validators voted out (and stopped)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- the run -----------------------------------------------------------------------------
    def run(self, root: Path) -> dict[str, Any]:
        cfg = self.cfg
        cluster = Cluster.create(root, cfg.nodes, test_switches=True)
        for i, mode in self.modes.items():
            cluster.nodes[i].env = {ENV_MODE: mode, ENV_SEED: str(cfg.seed + i)}
        with cluster:
            cluster.start()
            try:
                cluster.wait_ready(90)
            except ClusterError as exc:
                raise ChaosError(str(exc)) from None
            status = cluster.nodes[0].status()
            if status is None:  # answered wait_ready, then stopped answering
                raise ChaosError("node 0 stopped answering after it was ready")
            chain_id = status["chain_id"]
            count = min(MAX_TXS, int(cfg.rate * (cfg.duration_s + 30)) + 100)
            txs = prepare_txs(chain_id, count, cfg.seed)
            load = Load(cluster=cluster, txs=txs, rate=cfg.rate, available=set(self.honest), rng=random.Random(cfg.seed + 1))
            threads = [threading.Thread(target=load.submit_loop, daemon=True, name="chaos-submit"),
                       threading.Thread(target=load.follow_loop, daemon=True, name="chaos-follow")]
            self.t0 = time.monotonic()
            for i, mode in self.modes.items():
                self.faults.append(FaultRecord("byzantine", i, 0.0, detail=mode))
            for t in threads:
                t.start()
            try:
                self._schedule(cluster, load)
            except BaseException:
                load.stop.set()
                raise
            finally:
                load.stop_submit.set()
                for i in self.honest + self.byzantine:  # whatever the schedule left behind: everyone back
                    self._revive(cluster, i)
                with load.lock:
                    load.available = set(self.honest)
            # the follower keeps listening until what was sent is acknowledged (or a deadline)
            deadline = time.monotonic() + cfg.recovery_timeout_s
            while time.monotonic() < deadline and len(load.acknowledged) < len(load.sent_at):
                load.stop.wait(0.2)
            load.stop.set()
            for t in threads:
                t.join(10)
            return self._finish(cluster, load)

    def _schedule(self, cluster: Cluster, load: Load) -> None:
        cfg = self.cfg
        kinds = [k for k in cfg.faults if k in SCHEDULED]
        end = cfg.duration_s
        self._wait_progress(cluster, 30.0)  # the first block, before any fault
        while (kinds or self.plan) and self.elapsed() < end - FAULT_MIN_S:
            self.rng_sleep(GAP_MIN_S, GAP_MAX_S, end)
            if self.elapsed() >= end - FAULT_MIN_S:
                break
            # a change of the set half the time, and always once the time left is short for the rest
            if self.plan and (not kinds or len(self.plan) * MEMBERSHIP_S > end - self.elapsed()
                              or self.rng.random() < 0.5):
                self._membership(cluster, load, self.plan.pop(0))
                continue
            kind = self.rng.choice(kinds)
            target = self.rng.choice(self.honest)
            record = FaultRecord(kind, target, self.elapsed())
            self.faults.append(record)
            self.progress(f"{record.started_s:6.1f}s {kind} node{target}")
            healed = self._inject(cluster, load, record, min(self.rng.uniform(FAULT_MIN_S, FAULT_MAX_S), end - self.elapsed()))
            record.healed_s = healed - self.t0
            record.recovery_s = self._recovery(cluster, healed)
            self.progress(f"{self.elapsed():6.1f}s healed; recovery {record.recovery_s}")
        while self.elapsed() < end:
            load.stop.wait(min(1.0, end - self.elapsed()))

    def _membership(self, cluster: Cluster, load: Load, step: str) -> None:
        """One change of the validator set (module docstring), recorded like a fault: it heals
        when the change is in force (and the node it concerns is back)."""
        from node.client import HealthClient
        from node.core.crypto import Identity
        from node.devtools import membership
        from node.devtools.grow import GrowError, add_node

        client = HealthClient(cluster.nodes[self.honest[0]].api_url, timeout=10.0)
        originals = [i for i in self.honest if i < self.cfg.nodes and i != self.honest[0]]
        target = len(cluster.nodes) if step == "join" else self.rng.choice(originals)
        record = FaultRecord(step, target, self.elapsed())
        self.faults.append(record)
        self.progress(f"{record.started_s:6.1f}s {step} node{target}")

        def start_new(home: Path) -> None:
            cluster.discover()
            cluster.start(len(cluster.nodes) - 1)

        try:
            if step == "join":
                added = add_node(cluster.root, validator=True, starter=start_new, timeout=90.0)
                effective = added.effective_height or 0
                self._wait_height(cluster, effective)
                self.honest.append(added.index)
                with load.lock:
                    load.available.add(added.index)
                record.detail = f"votes from height {effective}"
            elif step == "leave":
                effective = membership.remove_validator(cluster.root, client, cluster.nodes[target].node_id)
                self._wait_height(cluster, effective)
                with load.lock:
                    load.available.discard(target)
                cluster.stop(target)
                self.honest.remove(target)
                self.left.append(target)
                record.detail = f"out from height {effective}, stopped"
            else:
                new = Identity.generate()
                effective = membership.rotate_validator(cluster.nodes[target].home, client, new)
                self._wait_height(cluster, effective - 1, [target])
                with load.lock:
                    load.available.discard(target)
                cluster.stop(target)
                membership.install_key(cluster.nodes[target].home, new)
                cluster.nodes[target].node_id = new.id
                self._revive(cluster, target)
                with load.lock:
                    load.available.add(target)
                record.detail = f"new key {new.id[:16]}... from height {effective}"
        except GrowError as exc:
            record.detail = f"failed: {exc}"
            self.progress(f"{self.elapsed():6.1f}s {step} failed: {exc}")
            return
        healed = time.monotonic()
        record.healed_s = healed - self.t0
        record.recovery_s = self._recovery(cluster, healed)
        self.progress(f"{self.elapsed():6.1f}s {record.detail}; recovery {record.recovery_s}")

    def _wait_height(self, cluster: Cluster, height: int, nodes: list[int] | None = None) -> None:
        """Until the nodes (the honest ones by default) have committed `height`, or the recovery timeout."""
        deadline = time.monotonic() + self.cfg.recovery_timeout_s
        while time.monotonic() < deadline and min(self._heights(cluster, nodes or self.honest)) < height:
            threading.Event().wait(0.2)

    def rng_sleep(self, lo: float, hi: float, end: float) -> None:
        pause = min(self.rng.uniform(lo, hi), max(0.0, end - self.elapsed()))
        threading.Event().wait(pause)  # the schedule's own pacing, not a synchronisation

    def _inject(self, cluster: Cluster, load: Load, record: FaultRecord, duration: float) -> float:
        """Apply the fault for `duration` seconds and heal it; returns when it healed (monotonic)."""
        i = record.target
        healed = 0.0
        with load.lock:
            load.available.discard(i)
        if record.type == "kill":
            cluster.kill(i)
            threading.Event().wait(duration)
            healed = time.monotonic()  # the restart heals it; starting up is part of the recovery
            self._revive(cluster, i)
        elif record.type == "pause":
            cluster.pause(i)
            threading.Event().wait(duration)
            healed = time.monotonic()
            cluster.resume(i)
        elif record.type == "partition":
            n = len(cluster.nodes)
            f = (n - 1) // 3
            if n >= 4 and self.rng.random() < 0.5:
                others = [x for x in range(n) if x != i]
                self.rng.shuffle(others)
                side = sorted([i] + others[: n // 2 - 1])  # neither side has 2f+1
                rest = sorted(set(range(n)) - set(side))
                record.detail = f"split {side}|{rest}"
            else:
                others = [x for x in self.honest if x != i]
                self.rng.shuffle(others)
                side = sorted([i] + others[: max(0, f - 1)])
                rest = sorted(set(range(n)) - set(side))
                record.detail = f"isolate {side}|{rest}"
            cluster.partition([side, rest])
            threading.Event().wait(duration)
            healed = time.monotonic()
            cluster.heal()
        elif record.type == "lag":
            before = self._max_height(cluster)
            cluster.kill(i)
            deadline = time.monotonic() + LAG_MAX_S
            while time.monotonic() < deadline and self._max_height(cluster) < before + LAG_BLOCKS:
                load.stop.wait(0.2)
            behind = self._max_height(cluster) - before
            record.detail = f"{behind} blocks behind"
            healed = time.monotonic()
            self._revive(cluster, i)
        with load.lock:
            if i in self.honest:
                load.available.add(i)
        return healed

    def _revive(self, cluster: Cluster, i: int) -> None:
        node = cluster.nodes[i]
        if node.running:
            cluster.resume(i)
            return
        cluster.start(i)
        try:
            cluster.wait_ready(60, i)
        except ClusterError:
            pass  # counted when it does not recover

    # -- observation ----------------------------------------------------------------------
    def _heights(self, cluster: Cluster, nodes: list[int]) -> list[int]:
        out = []
        for i in nodes:
            s = cluster.nodes[i].status(timeout=1.0)
            out.append(s["height"] if s else -1)
        return out

    def _max_height(self, cluster: Cluster) -> int:
        return max(self._heights(cluster, self.honest))

    def _wait_progress(self, cluster: Cluster, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._max_height(cluster) < 1 and time.monotonic() < deadline:
            threading.Event().wait(0.1)

    def _recovery(self, cluster: Cluster, start: float) -> float | None:
        """Seconds from `start` (the heal) until every honest validator passes the highest height
        any of them has now."""
        target = self._max_height(cluster) + 1
        deadline = start + self.cfg.recovery_timeout_s
        while time.monotonic() < deadline:
            if min(self._heights(cluster, self.honest)) >= target:
                return time.monotonic() - start
            threading.Event().wait(0.1)
        return None

    # -- final checks ----------------------------------------------------------------------
    def _finish(self, cluster: Cluster, load: Load) -> dict[str, Any]:
        honest = self.honest
        deadline = time.monotonic() + self.cfg.recovery_timeout_s
        while time.monotonic() < deadline:  # let the honest nodes settle on one height
            hs = self._heights(cluster, honest)
            if min(hs) >= 0 and len(set(hs)) == 1:
                threading.Event().wait(1.0)
                if self._heights(cluster, honest) == hs:
                    break
            threading.Event().wait(0.2)
        heights = self._heights(cluster, honest)
        common = min(heights)
        violations = load.conflicts + load.fork_reports
        for h in range(1, common + 1):
            seen = set()
            for i in honest:
                b = _get(f"{cluster.nodes[i].api_url}/v1/blocks/{h}", timeout=10)
                seen.add((b["hash"], b["header"]["state_root"]) if b else None)
            if len(seen) != 1:
                violations += 1
        occurrences: Counter[bytes] = Counter()
        position: dict[bytes, int] = {}
        url = cluster.nodes[honest[0]].api_url
        since = 1
        while since <= common:
            doc = _get(f"{url}/v1/commits?since={since}&limit=200", timeout=10)
            if doc is None or not doc["blocks"]:
                break
            for b in doc["blocks"]:
                if b["height"] > common:
                    break
                for hx in b["txs"]:
                    th = bytes.fromhex(hx)
                    occurrences[th] += 1
                    position[th] = b["height"]
                since = b["height"] + 1
        acknowledged = dict(load.acknowledged)
        lost = sum(1 for th in acknowledged if occurrences[th] == 0)
        duplicated = sum(1 for th in load.sent_at if occurrences[th] > 1)
        violations += sum(1 for th, h in acknowledged.items() if occurrences[th] and position[th] != h)
        evidence = []
        for i in honest:
            s = cluster.nodes[i].status() or {}
            evidence.append(s.get("evidence", 0))
        recoveries = [f.recovery_s for f in self.faults if f.type in SCHEDULED + MEMBERSHIP]
        status = cluster.nodes[honest[0]].status() or {}
        compared = {cluster.nodes[i].node_id for i in honest + self.byzantine}
        final_set = [str(v["id"]) if isinstance(v, dict) else str(v) for v in status.get("validator_set", [])]
        measured = [r for r in recoveries if r is not None]
        return {
            "nodes": self.cfg.nodes,
            "duration_s": self.cfg.duration_s,
            "seed": self.cfg.seed,
            "fault_types": [k for k in self.cfg.faults],
            "byzantine": {str(i): m for i, m in self.modes.items()},
            "faults_injected": len(self.faults),
            "reconfigure": self.cfg.reconfigure,
            "validators": len(final_set),
            "epoch": status.get("epoch"),
            "validators_not_compared": sum(1 for v in final_set if v not in compared),
            "membership_failed": sum(1 for f in self.faults if f.type in MEMBERSHIP and f.healed_s is None),
            "membership_skipped": len(self.plan),  # planned changes the duration left no time for
            "submitted": len(load.sent_at),
            "acknowledged": len(acknowledged),
            "lost": lost,
            "duplicated": duplicated,
            "safety_violations": violations,
            "max_recovery_s": round(max(measured), 2) if measured else 0.0,
            "unrecovered": sum(1 for r in recoveries if r is None),
            "final_height": common,
            "final_heights": heights,
            "evidence": evidence,
            "seconds": round(self.elapsed(), 1),
            "faults": [f.to_json() for f in self.faults],
        }


def prepare_txs(chain_id: str, count: int, seed: int) -> list[Transaction]:
    """Signed identity registrations from keys derived from the seed (made before the run)."""
    from node.devtools.bench import prepare

    return prepare(chain_id, count, seed=(seed % 2**64).to_bytes(8, "big") + b"chaos-tx")


def run_chaos(cfg: ChaosConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a chaos experiment in cfg.root (or a scratch directory) and return its report."""
    import tempfile

    run = ChaosRun(cfg, progress=progress)
    if cfg.root is not None:
        cfg.root.mkdir(parents=True, exist_ok=True)
        return run.run(cfg.root)
    with tempfile.TemporaryDirectory(prefix="medledger-chaos-") as scratch:
        return run.run(Path(scratch))
