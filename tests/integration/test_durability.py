"""A real node process driven by the CLI: commits survive SIGTERM and SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.cluster import Cluster

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).resolve().parents[2]))


def test_commits_survive_kill_and_restart(tmp_path):
    with Cluster.create(tmp_path / "net", 1) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        url = cluster.nodes[0].api_url
        committed = []
        for i in range(3):
            key = tmp_path / f"k{i}.key"
            assert cli("keys", "new", "--out", str(key)).returncode == 0
            r = cli("identity", "register", "--key", str(key), "--role", "patient", "--node", url, "--json")
            assert r.returncode == 0, r.stderr
            out = json.loads(r.stdout)
            assert out["status"] == "committed" and out["height"] >= 1
            committed.append(out["tx_hash"])
        # registering again is refused by the ledger, with the error code and the height it was recorded at
        r = cli("identity", "register", "--key", str(tmp_path / "k0.key"), "--role", "patient", "--node", url, "--json")
        assert r.returncode == 1 and json.loads(r.stdout)["status"] == "already_registered"

        def snapshot():
            s = json.loads(cli("status", "--node", url, "--json").stdout)
            return s["height"], s["state_root"], s["last_block_hash"]

        for how in ("stop", "kill"):
            height, state_root, last_hash = snapshot()
            if how == "stop":
                assert cluster.stop(0) == 0  # SIGTERM: a clean exit
            else:
                cluster.kill(0)
            cluster.start(0)
            cluster.wait_ready(30)
            # an idle node makes no blocks: it is back at exactly the height and state it had
            assert snapshot() == (height, state_root, last_hash)
            block = json.loads(cli("block", "show", str(height), "--node", url, "--json").stdout)
            assert block["hash"] == last_hash and block["header"]["state_root"] == state_root
            for h in committed:
                t = json.loads(cli("tx", "show", h, "--node", url, "--json").stdout)
                assert t["status"] == "committed" and t["result"] == "ok"
        cluster.check_consistency()


def test_bench_runs_its_own_network_and_reports_the_ceiling():
    r = cli("bench", "--nodes", "1", "--txs", "300", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for field in ("nodes", "submitted", "committed", "failed", "seconds", "tx_per_s", "latency_ms_p50", "latency_ms_p95",
                  "latency_ms_p99", "verify_per_s", "limit_tx_per_s", "ratio", "peak_rss_mb"):
        assert field in out, field
    assert out["committed"] == 300 and out["failed"] == 0 and out["nodes"] == 1
    assert out["limit_tx_per_s"] == out["cores"] * out["verify_per_s"] / 1
    assert 0 < out["ratio"] == round(out["tx_per_s"] / out["limit_tx_per_s"], 3)
    assert out["peak_rss_mb"] > 0


def test_bench_mix_commits_every_type_with_granted_and_denied_access(tmp_path):
    r = cli("bench", "--nodes", "1", "--txs", "200", "--mix", "--seed", "t", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["workload"] == "mix" and out["committed"] == 200
    assert out["results"] == {"access.request: denied": 40, "access.request: ok": 40, "consent.grant: ok": 40,
                              "identity.register: ok": 20, "record.add: ok": 60}


def test_bench_sweep_writes_the_plot_and_its_table(tmp_path):
    plot = tmp_path / "sweep.png"
    r = cli("bench", "--nodes", "1", "--sweep", "--sweep-rates", "100,300", "--sweep-seconds", "1", "--plot", str(plot), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [row["offered_tx_per_s"] for row in out["sweep"]] == [100, 300]
    assert all(row["committed"] == row["submitted"] for row in out["sweep"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("offered_tx_per_s,tx_per_s,latency_ms_p50") and len(lines) == 3


def test_bench_preloads_records_and_times_a_lagging_node_catching_up():
    r = cli("bench", "--nodes", "4", "--txs", "600", "--preload-records", "150", "--catch-up", "--seed", "c", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["preload_records"] == 150 and out["committed"] == 600
    assert out["validators"] == 4 and out["nodes"] == 3  # measured on three while the fourth was down
    assert out["catchup_txs"] >= 600 and out["catchup_tx_per_s"] > 0 and out["catchup_rss_mb"] > 0
