"""Four nodes in four Linux network namespaces, each with its own address, commit together.

The test builds a virtual network (a bridge in the test's namespace with one veth pair per
node namespace: node i is 10.77.S.(i+1)/24 for a subnet S no interface uses yet, the test
reaches them from 10.77.S.254), writes a
genesis that lists those addresses, runs each node inside its namespace (`ip netns exec`) with
the default ports (each namespace has its own port space, so only the addresses tell the
nodes apart), submits transactions to different nodes and checks that all four commit the same
blocks. Names carry the test's pid so that parallel runs do not collide; everything is removed
in a `finally` block. Skipped, with the reason, where namespaces cannot be created.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.client import HealthClient
from node.devtools.cluster import Cluster, ClusterNode
from node.core.crypto import Identity
from node.home.layout import init_network

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
NODES = 4


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def namespaces_unavailable() -> str | None:
    """Why this machine does not let us create network namespaces (None if it does)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"mlprobe{os.getpid()}"
    r = ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here: {r.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@dataclass
class VirtualNetwork:
    """The names created, so that teardown removes exactly what this run made."""

    tag: str
    subnet: str
    bridge: str = ""
    namespaces: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"


def free_subnet(pid: int) -> str:
    """A 10.77.N /24 no interface of this namespace uses yet (N starts from the pid)."""
    used = ip("-4", "-o", "addr", "show").stdout
    for k in range(250):
        candidate = f"10.77.{(pid + k) % 250}"
        if f" {candidate}." not in used:
            return candidate
    raise RuntimeError("every 10.77.N.0/24 subnet is in use")


@contextmanager
def virtual_network(count: int) -> Iterator[VirtualNetwork]:
    pid = os.getpid()
    net = VirtualNetwork(tag=str(pid), subnet=free_subnet(pid))
    try:
        net.bridge = f"mlbr{pid}"
        ip("link", "add", net.bridge, "type", "bridge")
        ip("addr", "add", f"{net.subnet}.254/24", "dev", net.bridge)
        ip("link", "set", net.bridge, "up")
        for i in range(count):
            ns, host_end, ns_end = f"ml{pid}-{i}", f"mlh{pid}{i}", f"mln{pid}{i}"
            ip("netns", "add", ns)
            net.namespaces.append(ns)
            ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            net.host_links.append(host_end)
            ip("link", "set", ns_end, "netns", ns)
            ip("link", "set", host_end, "master", net.bridge)
            ip("link", "set", host_end, "up")
            ip("-n", ns, "addr", "add", f"{net.address(i)}/24", "dev", ns_end)
            ip("-n", ns, "link", "set", ns_end, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield net
    finally:
        for ns in net.namespaces:
            ip("netns", "del", ns, check=False)
        for link in net.host_links:
            ip("link", "del", link, check=False)  # gone with its peer already, normally
        if net.bridge:
            ip("link", "del", net.bridge, check=False)


def test_four_nodes_in_four_namespaces_commit_together(tmp_path: Path) -> None:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    with virtual_network(NODES) as net:
        hosts = [net.address(i) for i in range(NODES)]
        dirs = [tmp_path / f"node{i}" for i in range(NODES)]
        made = init_network(dirs, chain_id="medledger-netns", names=[f"institution-{i}" for i in range(NODES)],
                            hosts=hosts, api_ports=[8700] * NODES, p2p_ports=[8800] * NODES)
        nodes = [ClusterNode(i, m.home, m.api_url, m.node_id) for i, m in enumerate(made)]
        assert [n.api_url for n in nodes] == [f"http://{h}:8700" for h in hosts]
        cluster = Cluster(tmp_path, nodes)
        try:
            for node, ns in zip(nodes, net.namespaces, strict=True):
                node.log_file = open(node.home / "node.log", "ab")
                node.process = subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, "-m", "cli", "node", "run", "--home", str(node.home)],
                    stdout=node.log_file, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            cluster.wait_ready(60)
            # every node is connected to the three others, over the virtual network
            for node in nodes:
                status = node.status(timeout=5)
                assert status is not None and status["validator_set"][node.index]["address"] == f"{hosts[node.index]}:8800"
            txs_by_node = {}
            for node in nodes:
                client = HealthClient(node.api_url)
                txs = [client.make_tx(Identity.from_seed((100 * node.index + j + 1).to_bytes(32, "big")),
                                      "identity.register", {"role": "patient"}) for j in range(5)]
                assert client.submit_many(txs)["accepted"] == 5
                txs_by_node[node.index] = txs
            for node in nodes:  # each node sees every transaction committed, whoever received it
                client = HealthClient(node.api_url)
                for txs in txs_by_node.values():
                    assert client.wait(txs[-1].hash_hex, 60)["status"] == "committed"
            height = max(h or 0 for h in cluster.heights())
            cluster.wait_for_height(height, 60)
            assert cluster.check_consistency() >= 1
            for node in nodes:
                assert len(node.status(timeout=5)["peers"]) == NODES - 1
        finally:
            cluster.stop_all()
    # the virtual network is gone
    assert not [ns for ns in net.namespaces if ns in ip("netns", "list").stdout]
    assert ip("link", "show", net.bridge, check=False).returncode != 0


def test_the_skip_reason_is_found_at_run_time(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert namespaces_unavailable() in ("creating network namespaces needs root",
                                        "the `ip` command (iproute2) is not installed")
