"""`medledger devnet up` keeps a network of four running when one node exits: the others keep
committing, the exit is shown with its code, and the node is started again after a back-off.
A real devnet of four processes; every wait is on a condition with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node.devtools.bench import prepare
from node.devtools.cluster import Cluster, http_json, running_pid
from tests.helpers import api_height as height, submit_txs as submit, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_devnet_up_keeps_the_others_running_and_restarts_a_node_that_exits(tmp_path):
    root = tmp_path / "devnet"
    homes = Cluster.create(root, 4)  # free ports; `devnet up` finds and starts these homes
    urls = [n.api_url for n in homes.nodes]
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "cli", "devnet", "up", "--dir", str(root), "--restart-delay", "1"],
                          stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True)
    output = lambda: (tmp_path / "up.log").read_text(errors="replace")  # noqa: E731
    try:
        wait_until(lambda: "press Ctrl-C" in output(), 90, "the devnet to come up")
        chain_id = http_json(urls[0] + "/v1/status")["chain_id"]
        for round_, (victim, sig, said) in enumerate(((2, signal.SIGKILL, "killed by signal 9"),
                                                       (3, signal.SIGTERM, "cleanly (exit code 0)"))):
            pid = wait_until(lambda: running_pid(root / f"node{victim}"), 30, f"node{victim}'s pid file")
            os.kill(pid, sig)
            wait_until(lambda: f"node{victim} exited {said}" in output(), 30, f"devnet up to report node{victim}'s exit")
            assert up.poll() is None, output()  # devnet up itself is still running
            # the three others keep committing while it is down
            others = [u for i, u in enumerate(urls) if i != victim]
            start = max(height(u) for u in others)
            submit(others[0], prepare(chain_id, 5, seed=b"devnet-up-%d" % round_))
            wait_until(lambda: all(height(u) > start for u in others), 60, "the others to commit a new block")
            # and the node comes back, with a new process, and catches up
            wait_until(lambda: f"node{victim} restarted" in output(), 30, f"node{victim} to be restarted")
            new_pid = wait_until(lambda: running_pid(root / f"node{victim}"), 30, f"node{victim}'s new pid")
            assert new_pid != pid
            target = max(height(u) for u in others)
            wait_until(lambda: height(urls[victim]) >= target, 60, f"node{victim} to catch up to height {target}")
        assert up.poll() is None
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
        code = up.wait(60)
        log.close()
    assert code == 0, output()
    assert all(running_pid(root / f"node{i}") is None for i in range(4))  # Ctrl-C stopped every node


def test_devnet_stop_refuses_a_node_that_is_not_running(tmp_path):
    root = tmp_path / "devnet"
    Cluster.create(root, 1)
    r = subprocess.run([sys.executable, "-m", "cli", "devnet", "stop", "--node", "0", "--dir", str(root)],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert r.returncode == 1 and "node0 is not running" in r.stderr and "Traceback" not in r.stderr
