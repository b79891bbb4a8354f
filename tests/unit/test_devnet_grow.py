"""The pieces of `devnet add` that need no running node: a home appears to a running
`devnet up` only once its configuration is written, the next ports follow the existing ones,
and a stale supervisor pid file is ignored."""

from __future__ import annotations

import os
from pathlib import Path

from node.chain.genesis import Genesis
from node.devtools.cluster import Cluster, SUPERVISOR_FILE, Supervisor, running_supervisor
from node.devtools.grow import _ports
from node.home.layout import add_node_home, join_identity


def test_a_new_home_is_discovered_once_its_configuration_is_written(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    c = Cluster.create(root, 4, base_port=21700)
    supervisor = Supervisor(c, clock=lambda: 0.0)
    assert _ports(c) == (21704, 21804)  # after node3's 21703 / 21803
    ident = join_identity(root / "node4")  # the key first (it is admitted with it) ...
    assert c.discover() == []  # ... not a home yet
    made = add_node_home(root / "node4", genesis=Genesis.load(root / "node0" / "genesis.json"), name="St Mary",
                         api_port=21704, p2p_port=21804, peers="", research_secret="ab" * 32)
    assert made.node_id == ident.id and (root / "node4" / "research.secret").read_text() == "ab" * 32 + "\n"
    found = c.discover()
    assert [(n.index, n.api_url, n.node_id) for n in found] == [(4, "http://127.0.0.1:21704", ident.id)]
    supervisor.adopt(4)
    assert supervisor.describe(4) == "up" and c.discover() == []
    assert len(Cluster.open(root).nodes) == 5  # the next `devnet up` runs it with the others


def test_a_stale_supervisor_pid_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / SUPERVISOR_FILE).write_text(f"{os.getpid()}\n")  # a live pid, but not a `devnet up`
    assert running_supervisor(tmp_path) is None
    (tmp_path / SUPERVISOR_FILE).write_text("not a pid\n")
    assert running_supervisor(tmp_path) is None
