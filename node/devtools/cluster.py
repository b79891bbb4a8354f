"""A local cluster of real node processes: the harness behind `medledger devnet up`, the
integration tests and the benchmarks.

`Cluster` initialises node homes (or reuses existing ones), starts each node as a child process
(`python -m cli node run --home ...`) on 127.0.0.1, and lets a caller kill (SIGKILL), stop
(SIGTERM), pause (SIGSTOP), resume (SIGCONT) and restart nodes, wait for heights with a
deadline, and check that every node holds the same blocks and state roots. With `tls=True` the
nodes serve https and link over TLS under a local CA (`root/ca.pem`, see node/home/tls.py).

Each running node's process id is in `root/node<i>/node.pid` (so an operator can stop one by
hand, or with `medledger devnet stop --node i`). `Supervisor` is what keeps `devnet up` going
when a node exits: it reports the exit and restarts the node after a growing back-off, while
the other nodes run on. A running `devnet up` writes its own pid to `root/devnet-up.pid` and
starts any home that appears after the last one (`Cluster.discover`: how `devnet add` hands it
a new node).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.chain.vocabulary import devnet_kinds, devnet_names
from node.home.layout import init_network


class ClusterError(Exception):
    """A node did not come up, did not reach a height in time, or nodes disagree."""


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free now (bound and released; good enough on loopback)."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def http_json(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> Any:
    with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
        return json.loads(resp.read())


def _post_json(url: str, doc: Any, timeout: float = 5.0, context: ssl.SSLContext | None = None) -> Any:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        return json.loads(resp.read())


def _ca_context(ca_file: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None


@dataclass
class ClusterNode:
    index: int
    home: Path
    api_url: str
    node_id: str
    process: subprocess.Popen[bytes] | None = None
    log_file: Any = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)  # trusts the devnet CA (https nodes)
    env: dict[str, str] = field(default_factory=dict)  # this node's extra environment (test modes)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            return http_json(self.api_url + "/v1/status", timeout, self.ssl_context)
        except (urllib.error.URLError, OSError, ValueError):
            return None


PID_FILE = "node.pid"


def _remove_pid_file(home: Path) -> None:
    try:
        (home / PID_FILE).unlink()
    except OSError:
        pass


def _live_pid(pid_file: Path, *words: bytes) -> int | None:
    """The pid in `pid_file` if that process still runs with all of `words` in its command line
    (a stale file whose pid now belongs to another program is ignored)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if all(w in cmdline for w in words) else None


def running_pid(home: Path) -> int | None:
    """The pid of the node process running in `home` (from its pid file), if it is still that node."""
    return _live_pid(home / PID_FILE, b"node", b"run", str(home.resolve()).encode())


def home_config(home: Path) -> dict[str, Any] | None:
    """The parsed config.toml of a node home, or None when the directory holds none."""
    import tomllib

    try:
        return tomllib.loads((home / "config.toml").read_text())
    except FileNotFoundError:
        return None


SUPERVISOR_FILE = "devnet-up.pid"  # in the devnet's directory: the pid of its running `devnet up`


def write_supervisor_pid(root: Path) -> None:
    (root / SUPERVISOR_FILE).write_text(f"{os.getpid()}\n")


def remove_supervisor_pid(root: Path) -> None:
    try:
        (root / SUPERVISOR_FILE).unlink()
    except OSError:
        pass


def running_supervisor(root: Path) -> int | None:
    """The pid of the `devnet up` supervising root, if one runs (a stale file is ignored)."""
    return _live_pid(root / SUPERVISOR_FILE, b"devnet", b"up")


VERIFY_WORKERS_ENV = "MEDLEDGER_NODE_VERIFY_WORKERS"


def cores_share(nodes: int) -> int:
    """This machine's cores shared among `nodes` nodes running on it, at least one each."""
    return max(1, (os.cpu_count() or 1) // max(1, nodes))


class Cluster:
    """N node processes sharing one genesis, under `root/node<i>`."""

    def __init__(self, root: Path, nodes: list[ClusterNode], *, extra_env: dict[str, str] | None = None,
                 test_switches: bool = False, ca_file: Path | None = None) -> None:
        self.root = root
        self.nodes = nodes
        self.extra_env = extra_env or {}
        self.test_switches = test_switches
        self.ca_file = ca_file  # the local CA of a TLS cluster (clients pass it as ca_file / --ca)
        self.ssl_context = _ca_context(ca_file)
        for node in nodes:
            node.ssl_context = self.ssl_context

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, n: int, *, base_port: int | None = None, chain_id: str = "medledger-devnet",
               observers: int = 0, tls: bool = False, kinds: Sequence[str] | None = None, **kw: Any) -> "Cluster":
        """Initialise n validator homes (node0..) and `observers` observer homes after them
        (with `tls`, under a local CA written to root/ca.pem). The institutions are named by
        kind (`vocabulary.devnet_names`: hospital, clinic, pharmacy, insurer, research, ...), or
        have the `kinds` given (one per validator; a repeated kind is numbered: pharmacy-2)."""
        total = n + observers
        if base_port is None:
            ports = free_ports(2 * total)
            api_ports, p2p_ports = ports[:total], ports[total:]
        else:
            api_ports = [base_port + i for i in range(total)]
            p2p_ports = [base_port + 100 + i for i in range(total)]
        dirs = [root / f"node{i}" for i in range(total)]
        if kinds is not None and len(kinds) != n:
            raise ValueError(f"{len(kinds)} kinds for {n} validators")
        chosen = list(kinds) if kinds is not None else devnet_kinds(n)
        names = [k if chosen[:i].count(k) == 0 else f"{k}-{chosen[:i].count(k) + 1}" for i, k in enumerate(chosen)] \
            if kinds is not None else devnet_names(n)
        made = init_network(dirs[:n], chain_id=chain_id, names=names, kinds=chosen,
                            api_ports=api_ports[:n], p2p_ports=p2p_ports[:n], observer_dirs=dirs[n:],
                            observer_api_ports=api_ports[n:], observer_p2p_ports=p2p_ports[n:], tls=tls)
        if tls:
            kw.setdefault("ca_file", root / "ca.pem")
        return cls(root, [ClusterNode(i, m.home, m.api_url, m.node_id) for i, m in enumerate(made)], **kw)

    @staticmethod
    def _home_node(root: Path, i: int) -> ClusterNode | None:
        """The node of the home root/node<i>, if that directory holds one (its config.toml)."""
        from node.home.keys import key_file_id

        home = root / f"node{i}"
        cfg = home_config(home)
        if cfg is None:
            return None
        api = cfg.get("api", {})
        scheme = "https" if api.get("tls_cert") else "http"
        url = f"{scheme}://{api.get('host', '127.0.0.1')}:{api.get('port', 8700)}"
        return ClusterNode(i, home, url, key_file_id(home / cfg.get("node", {}).get("key_file", "institution.key")))

    @classmethod
    def open(cls, root: Path, **kw: Any) -> "Cluster":
        """Attach to node homes that already exist under root."""
        nodes: list[ClusterNode] = []
        while (node := cls._home_node(root, len(nodes))) is not None:
            nodes.append(node)
        if not nodes:
            raise ClusterError(f"no node homes under {root} (expected {root}/node0/config.toml)")
        if nodes[0].api_url.startswith("https:") and (root / "ca.pem").exists():
            kw.setdefault("ca_file", root / "ca.pem")
        return cls(root, nodes, **kw)

    def discover(self) -> list[ClusterNode]:
        """Homes added under root since (`devnet add`: root/node<len(nodes)> ...), now part of the cluster."""
        found = []
        while (node := self._home_node(self.root, len(self.nodes))) is not None:
            node.ssl_context = self.ssl_context
            self.nodes.append(node)
            found.append(node)
        return found

    # -- processes ----------------------------------------------------------------------------
    def start(self, i: int | None = None) -> None:
        for node in self._select(i):
            if node.running:
                continue
            env = {**os.environ, **self.extra_env, **node.env, "PYTHONUNBUFFERED": "1"}
            if VERIFY_WORKERS_ENV not in env and not (home_config(node.home) or {}).get("node", {}).get("verify_workers"):
                env[VERIFY_WORKERS_ENV] = str(self.verify_share())
            node.log_file = open(node.home / "node.log", "ab")
            node.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "node", "run", "--home", str(node.home.resolve())]
                + (["--unsafe-test-switches"] if self.test_switches else []),
                stdout=node.log_file, stderr=subprocess.STDOUT, env=env, cwd=str(Path(__file__).resolve().parents[2]),  # the repository root: from node/, node/fhir would shadow fhir.resources
                start_new_session=True,
            )
            try:
                (node.home / PID_FILE).write_text(f"{node.process.pid}\n")
            except OSError:
                pass  # the pid file is a convenience for operators, not needed to run

    def verify_share(self) -> int:
        """The verifying processes each node of this cluster gets when its config.toml leaves the
        number automatic (`verify_workers = 0`, one per core) and the environment names none:
        the machine's cores shared among the nodes, at least one.
        Nodes sharing one host each at one process per core only compete (docs/benchmarks.md,
        "Parallel verification"); a node alone on its host keeps one per core."""
        return cores_share(len(self.nodes))

    def wait_ready(self, timeout: float = 30.0, i: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        for node in self._select(i):
            while node.status(timeout=1.0) is None:
                if node.process is not None and node.process.poll() is not None:
                    raise ClusterError(f"node{node.index} exited with {node.process.returncode}; see {node.home / 'node.log'}")
                if time.monotonic() > deadline:
                    raise ClusterError(f"node{node.index} did not answer within {timeout}s")
                time.sleep(0.05)

    def _signal(self, i: int, sig: int) -> None:
        node = self.nodes[i]
        if node.process is None:
            raise ClusterError(f"node{i} is not running")
        try:
            node.process.send_signal(sig)
        except ProcessLookupError:
            pass

    def kill(self, i: int) -> None:
        """SIGKILL node i and reap it."""
        self._signal(i, signal.SIGKILL)
        self._reap(i, 10)

    def stop(self, i: int, timeout: float = 15.0) -> int:
        """SIGTERM node i and wait for a clean exit; returns its exit code."""
        self._signal(i, signal.SIGCONT)
        self._signal(i, signal.SIGTERM)
        return self._reap(i, timeout)

    def pause(self, i: int) -> None:
        self._signal(i, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self._signal(i, signal.SIGCONT)

    def restart(self, i: int) -> None:
        if self.nodes[i].running:
            self.stop(i)
        self.start(i)

    def _reap(self, i: int, timeout: float) -> int:
        node = self.nodes[i]
        assert node.process is not None
        try:
            code = node.process.wait(timeout)
        except subprocess.TimeoutExpired:
            node.process.kill()
            code = node.process.wait(5)
        if node.log_file:
            node.log_file.close()
            node.log_file = None
        node.process = None
        _remove_pid_file(node.home)
        return code

    def exited(self) -> list[tuple[int, int]]:
        """Nodes whose process ended on its own since the last look: [(index, exit code)], reaped."""
        out = []
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                out.append((node.index, self._reap(node.index, 1)))
        return out

    def stop_all(self) -> None:
        """SIGTERM every running node at once, then wait for each (a node's shutdown does not
        wait on the others', so stopping them one by one only adds up their times)."""
        running = [node.index for node in self.nodes if node.running]
        for i in running:
            self._signal(i, signal.SIGCONT)
            self._signal(i, signal.SIGTERM)
        for node in self.nodes:
            if node.index in running:
                self._reap(node.index, 15.0)
            elif node.process is not None:
                self._reap(node.index, 1)

    def _select(self, i: int | None) -> list[ClusterNode]:
        return self.nodes if i is None else [self.nodes[i]]

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()

    # -- partitions (nodes started with test switches only) -------------------------------
    def partition(self, groups: list[list[int]]) -> None:
        """Cut the network into groups of node indexes; traffic between groups is dropped."""
        if not self.test_switches:
            raise ClusterError("partitions need a cluster created with test_switches=True")
        id_groups = [[self.nodes[i].node_id for i in g] for g in groups]
        for node in self.nodes:
            if node.running:
                _post_json(node.api_url + "/v1/test/partition", {"groups": id_groups}, context=self.ssl_context)

    def heal(self) -> None:
        for node in self.nodes:
            if node.running:
                _post_json(node.api_url + "/v1/test/partition", {"groups": []}, context=self.ssl_context)

    # -- observation ------------------------------------------------------------------------
    def heights(self) -> list[int | None]:
        out = []
        for node in self.nodes:
            s = node.status(timeout=1.0) if node.running else None
            out.append(s["height"] if s else None)
        return out

    def wait_for_height(self, height: int, timeout: float, nodes: list[int] | None = None) -> None:
        """Wait until every selected running node reports at least `height`."""
        chosen = [self.nodes[i] for i in nodes] if nodes is not None else [n for n in self.nodes if n.running]
        deadline = time.monotonic() + timeout
        while True:
            hs = [(n.status(timeout=1.0) or {}).get("height", -1) for n in chosen]
            if all(h >= height for h in hs):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"height {height} not reached within {timeout}s: heights {hs}")
            time.sleep(0.05)

    def check_consistency(self, up_to: int | None = None) -> int:
        """Every running node has identical block hashes and state roots up to a common height."""
        running = [n for n in self.nodes if n.running]
        common = min((n.status() or {}).get("height", 0) for n in running)
        if up_to is not None:
            common = min(common, up_to)
        for h in range(1, common + 1):
            seen = {}
            for n in running:
                b = http_json(f"{n.api_url}/v1/blocks/{h}", context=self.ssl_context)
                seen[n.index] = (b["hash"], b["header"]["state_root"])
            if len(set(seen.values())) != 1:
                raise ClusterError(f"nodes disagree at height {h}: {seen}")
        return common


# -- keeping a devnet running ---------------------------------------------------------------------
@dataclass
class NodeWatch:
    """What the supervisor knows of one node: up, or down since when, with its last exit code."""

    state: str = "up"  # "up", "down" (restart pending), "stopped" (not restarted)
    exit_code: int | None = None
    restarts: int = 0
    failures: int = 0  # exits in a row without a long enough run in between (sets the back-off)
    restart_at: float | None = None
    up_since: float = 0.0


class Supervisor:
    """Watches a started cluster: a node that exits (crashed, killed or stopped cleanly) is
    reported and, with `restart`, started again after a back-off that doubles with each exit in
    a row (`backoff_s`, 2x, 4x ... up to `max_backoff_s`; a node that ran `stable_s` counts as
    healthy again). The other nodes are never touched: with n >= 3f+1 they keep committing.

    `poll()` does one round and returns what happened as sentences; the caller decides how
    often to call it (no thread, no sleep here) and owns the clock (`clock`, for tests)."""

    def __init__(self, cluster: Cluster, *, restart: bool = True, backoff_s: float = 2.0, max_backoff_s: float = 30.0,
                 stable_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.restart = restart
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.clock = clock
        now = clock()
        self.watch = {n.index: NodeWatch(up_since=now) for n in cluster.nodes}

    def adopt(self, index: int) -> None:
        """Watch a node added to the cluster since (`Cluster.discover`), started by the caller."""
        self.watch[index] = NodeWatch(up_since=self.clock())

    def backoff(self, failures: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * (2 ** max(0, failures - 1)))

    def poll(self) -> list[str]:
        now = self.clock()
        events = []
        for index, code in self.cluster.exited():
            w = self.watch[index]
            w.exit_code = code
            w.failures = 1 if now - w.up_since >= self.stable_s else w.failures + 1
            how = "cleanly (exit code 0)" if code == 0 else f"with exit code {code}" if code > 0 else f"killed by signal {-code}"
            log = self.cluster.nodes[index].home / "node.log"
            if self.restart:
                delay = self.backoff(w.failures)
                w.state, w.restart_at = "down", now + delay
                events.append(f"node{index} exited {how}; the others keep running; restarting it in {delay:g} s (log {log})")
            else:
                w.state, w.restart_at = "stopped", None
                events.append(f"node{index} exited {how}; the others keep running; it stays down (--no-restart; log {log})")
        for index, w in self.watch.items():
            if w.state == "down" and w.restart_at is not None and now >= w.restart_at:
                self.cluster.start(index)
                w.state, w.restart_at, w.up_since = "up", None, now
                w.restarts += 1
                events.append(f"node{index} restarted (restart {w.restarts})")
        return events

    def describe(self, index: int) -> str:
        """The node's state for a status table: up, down (restart in N s), stopped."""
        w = self.watch[index]
        if w.state == "down" and w.restart_at is not None:
            return f"down, restart in {max(0.0, w.restart_at - self.clock()):.0f} s"
        return w.state
