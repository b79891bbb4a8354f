"""The verifying processes of a local cluster's nodes (node/devtools/cluster.py): nodes sharing
one machine get its cores shared among them where a node's config.toml leaves the number
automatic (0, as `devnet init` writes it) and the environment names none; a named number wins."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from node.devtools import cluster as cluster_mod
from node.devtools.cluster import VERIFY_WORKERS_ENV, Cluster


class _Started:
    """Stands in for a node process: records the environment it was started with."""

    envs: list[dict[str, str]] = []

    def __init__(self, args: list[str], **kw: Any) -> None:
        _Started.envs.append(kw["env"])
        self.pid = 1

    def poll(self) -> int | None:
        return None


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    _Started.envs = []
    monkeypatch.setattr(cluster_mod.subprocess, "Popen", _Started)
    monkeypatch.delenv(VERIFY_WORKERS_ENV, raising=False)
    return _Started.envs


@pytest.mark.parametrize("cores, nodes, share", [(2, 4, 1), (8, 4, 2), (16, 3, 5), (1, 1, 1), (None, 2, 1)])
def test_each_node_gets_its_share_of_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               started: list[dict[str, str]], cores: int | None, nodes: int, share: int) -> None:
    monkeypatch.setattr(cluster_mod.os, "cpu_count", lambda: cores)
    cluster = Cluster.create(tmp_path, nodes, base_port=24100)
    cluster.start()
    assert [env[VERIFY_WORKERS_ENV] for env in started] == [str(share)] * nodes


def test_a_named_number_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[dict[str, str]]) -> None:
    monkeypatch.setattr(cluster_mod.os, "cpu_count", lambda: 8)
    cluster = Cluster.create(tmp_path, 2, base_port=24200)
    config = cluster.nodes[1].home / "config.toml"
    config.write_text(config.read_text().replace("verify_workers = 0\n", "verify_workers = 3\n", 1))
    assert "verify_workers = 3" in config.read_text()
    cluster.start()
    assert VERIFY_WORKERS_ENV not in started[1]  # the node reads its config.toml
    assert started[0][VERIFY_WORKERS_ENV] == "4"
    started.clear()
    for node in cluster.nodes:
        node.process = None
    monkeypatch.setenv(VERIFY_WORKERS_ENV, "6")
    cluster.start()
    assert [env[VERIFY_WORKERS_ENV] for env in started] == ["6", "6"]
    for node in cluster.nodes:
        node.log_file and node.log_file.close()
