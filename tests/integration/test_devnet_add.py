"""`medledger devnet add`: a running four-node devnet (`devnet up`) grows by one institution.
The new node is admitted by the validators' vote, started by the running `devnet up`, follows
the chain (no validator lists it or restarts: an admitted institution may link), and with
--validator is voted in: the chain keeps committing with five validators. The refusals (no
devnet, not running, TLS) are checked without processes. Every wait is on a condition with a
deadline."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from node.devtools.bench import prepare
from node.devtools.cluster import Cluster, http_json, running_pid
from tests.helpers import api_height as height, cli, submit_txs as submit, wait_until

ROOT = Path(__file__).resolve().parents[2]


def add(*args: str):
    return CliRunner().invoke(main, ["devnet", "add", *args], catch_exceptions=True)


def test_devnet_add_refuses_no_devnet_a_stopped_one_and_tls(tmp_path: Path):
    r = add("--dir", str(tmp_path / "none"))
    assert r.exit_code != 0 and "no devnet at" in r.output and "devnet up" in r.output
    Cluster.create(tmp_path / "plain", 4)
    r = add("--dir", str(tmp_path / "plain"))
    assert r.exit_code != 0 and "is not running" in r.output and "devnet up --dir" in r.output
    assert not (tmp_path / "plain" / "node4").exists()  # nothing made for a devnet that cannot vote
    Cluster.create(tmp_path / "tls", 4, tls=True)
    r = add("--dir", str(tmp_path / "tls"))
    assert r.exit_code != 0 and "TLS devnet" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_devnet_add_grows_a_running_devnet_to_five_validators(tmp_path: Path):
    root = tmp_path / "devnet"
    urls = [n.api_url for n in Cluster.create(root, 4).nodes]  # free ports; `devnet up` starts these homes
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "cli", "devnet", "up", "--dir", str(root)],
                          stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True)
    output = lambda: (tmp_path / "up.log").read_text(errors="replace")  # noqa: E731
    try:
        wait_until(lambda: "press Ctrl-C" in output(), 60, "the devnet to come up")
        chain_id = http_json(urls[0] + "/v1/status")["chain_id"]
        submit(urls[0], prepare(chain_id, 5, seed=b"devnet-add-0"))
        r = cli("devnet", "add", "--dir", str(root), "--validator", "--name", "St Mary", "--json")
        assert r.returncode == 0, (r.stdout, r.stderr, output())
        added = json.loads(r.stdout)
        assert added["node"] == "node4" and added["started_by"] == "devnet up" and added["validator"] is True
        assert "node4 added" in output()  # the supervisor started it: it is in its table now
        assert running_pid(root / "node4") == added["pid"]
        effective = added["effective_height"]
        new = added["api_url"]
        # the chain goes on past the switch, with the new node following and voting
        for round_ in range(1, 30):
            if min(height(u) for u in urls) >= effective + 2:
                break
            start = height(urls[0])
            submit(urls[round_ % 4], prepare(chain_id, 3, seed=b"devnet-add-%d" % round_))
            wait_until(lambda: height(urls[0]) > start, 30, f"a block after height {start}")
        head = height(urls[0])
        assert head >= effective + 2
        wait_until(lambda: height(new) >= head, 30, f"node4 to reach height {head}")
        shown = json.loads(cli("validators", "--node", urls[1], "--json").stdout)
        assert len(shown["validators"]) == 5 and added["node_id"] in [v["id"] for v in shown["validators"]]
        assert http_json(new + "/v1/status")["validator"] is True
        mine, theirs = (http_json(f"{u}/v1/blocks/{head}") for u in (new, urls[2]))
        assert (mine["hash"], mine["header"]["state_root"]) == (theirs["hash"], theirs["header"]["state_root"])
        assert up.poll() is None
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
        log.close()


@pytest.mark.slow
def test_devnet_add_without_devnet_up_runs_its_own_process_from_a_snapshot(tmp_path: Path):
    from storage.snapshots import heights

    interval = 5
    c = Cluster.create(tmp_path / "devnet", 4, extra_env={"MEDLEDGER_STORAGE_SNAPSHOT_INTERVAL": str(interval)})
    urls = [n.api_url for n in c.nodes]
    home = c.root / "node4"
    try:
        c.start()
        c.wait_ready(60)
        chain_id = http_json(urls[0] + "/v1/status")["chain_id"]
        for round_ in range(30):
            if height(urls[0]) >= interval:
                break
            start = height(urls[0])
            submit(urls[round_ % 4], prepare(chain_id, 3, seed=b"devnet-add-own-%d" % round_))
            wait_until(lambda: height(urls[0]) > start, 30, f"a block after height {start}")
        wait_until(lambda: all(interval in heights(n.home / "snapshots") for n in c.nodes), 30, "a snapshot everywhere")
        assert height(urls[0]) < 2 * interval  # the snapshot of `interval` is the newest one
        r = cli("devnet", "add", "--dir", str(c.root), "--json")
        assert r.returncode == 0, (r.stdout, r.stderr)
        added = json.loads(r.stdout)
        assert added["started_by"] == "its own process" and added["validator"] is False
        assert added["snapshot_height"] == interval and running_pid(home) == added["pid"]
        # no validator lists it or restarted: it links as an admitted institution and follows
        submit(urls[1], prepare(chain_id, 3, seed=b"devnet-add-own-last"))
        head = wait_until(lambda: height(urls[0]) > interval and height(urls[0]), 30, "a block after the snapshot")
        wait_until(lambda: height(added["api_url"]) >= head, 30, f"node4 to reach height {head}")
        status = http_json(added["api_url"] + "/v1/status")
        assert status["validator"] is False
        assert len(json.loads(cli("validators", "--node", urls[0], "--json").stdout)["validators"]) == 4
    finally:
        pid = running_pid(home)
        if pid is not None:
            import os

            os.kill(pid, signal.SIGTERM)
        c.stop_all()
