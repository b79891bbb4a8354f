"""A real node process driven by the CLI: commits survive SIGTERM and SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.devtools.cluster import Cluster

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
    # the node's own memory is part of its resident memory (the rest: files mapped in, libraries)
    assert 0 < out["peak_rss_anon_mb"] <= out["peak_rss_mb"]
    assert out["view_changes"] == 0  # one validator never needs to change view


# -- crashes in the middle of writing a block, and stores damaged on disk -----------------------

def _submit_one(url: str, tx, wait: int | None = None) -> dict:
    import urllib.request

    from node.core.encoding import canonical

    body = canonical([tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature])
    q = f"?wait={wait}" if wait else ""
    req = urllib.request.Request(url + "/v1/txs" + q, data=body, method="POST", headers={"Content-Type": "application/msgpack"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _tx_status(url: str, tx, wait: int = 0) -> str:
    import urllib.error

    from node.devtools.cluster import http_json

    try:
        return http_json(f"{url}/v1/txs/{tx.hash.hex()}" + (f"?wait={wait}" if wait else ""), timeout=30)["status"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return "unknown"
        raise


@pytest.mark.parametrize("point", ["commit-before-write", "commit-after-write", "wal-after-append"])
def test_a_crash_while_writing_a_block_leaves_a_sound_store_and_loses_no_commit(tmp_path, point):
    from node.devtools.bench import prepare
    from node.devtools.switches import ENV_CRASH_AT
    from storage.chain import CRASH_EXIT_CODE

    with Cluster.create(tmp_path / "net", 1, test_switches=True) as cluster:
        node = cluster.nodes[0]
        cluster.start()
        cluster.wait_ready(30)
        first, second = prepare(node.status()["chain_id"], 2, seed=b"durability-crash")
        assert _submit_one(node.api_url, first, wait=30)["status"] == "committed"  # block 1, before any crash
        cluster.stop(0)
        node.env = {ENV_CRASH_AT: point}
        cluster.start(0)
        cluster.wait_ready(30)
        try:
            _submit_one(node.api_url, second)
        except OSError:
            pass  # the node may die before it answers
        assert node.process is not None
        assert node.process.wait(60) == CRASH_EXIT_CODE  # it died at the named point
        cluster._reap(0, 5)
        node.env = {}
        cluster.start(0)
        cluster.wait_ready(30)  # the start-up integrity check passed
        assert _tx_status(node.api_url, first) == "committed"
        status = node.status()
        if point == "commit-after-write":
            # the block was written before the crash: it is there, with its transaction
            assert status["height"] == 2 and _tx_status(node.api_url, second, wait=20) == "committed"
        elif point == "wal-after-append":
            # the proposal of block 2 reached the WAL, not the block store: the restarted primary
            # prepares it again (consensus/engine.py, issue 14), so it may be final already
            assert status["height"] in (1, 2)
            if _tx_status(node.api_url, second) != "committed":
                assert _submit_one(node.api_url, second, wait=30)["status"] == "committed"
        else:
            # nothing of block 2 reached the disk; the client's retry commits it now
            assert status["height"] == 1
            if _tx_status(node.api_url, second) != "committed":
                assert _submit_one(node.api_url, second, wait=30)["status"] == "committed"
        assert node.status()["height"] == 2


DAMAGES = {
    "state entry altered": ("state", "the application state does not match its checksum"),
    "state entry lost": ("state-delete", "the application state does not match its checksum"),
    "head block lost": ("head-delete", "block 2 is missing"),
    "head block altered": ("head-flip", "block 2"),
    "older block altered": ("old-flip", "block 1"),
    "certificate swapped": ("cert", "the commit certificate stored for block 2 is for another block"),
    "state root altered": ("root", "the state root in block 2 differs from the stored state root"),
}


def _damage(chain_dir: Path, how: str) -> None:
    from storage.chain import K_STATE_ROOT, P_BLOCK, P_CERT, P_STATE, u64
    from storage.kv import LevelDBStore, WriteBatch

    kv = LevelDBStore(chain_dir, create=False)
    try:
        batch = WriteBatch()
        key, value = next(iter(kv.iterate(P_STATE)))
        if how == "state":
            batch.put(key, value + b"\x00")
        elif how == "state-delete":
            batch.delete(key)
        elif how == "head-delete":
            batch.delete(P_BLOCK + u64(2))
        elif how in ("head-flip", "old-flip"):
            k = P_BLOCK + u64(2 if how == "head-flip" else 1)
            raw = bytearray(kv.get(k) or b"")
            raw[len(raw) // 2] ^= 0x01
            batch.put(k, bytes(raw))
        elif how == "cert":
            batch.put(P_CERT + u64(2), kv.get(P_CERT + u64(1)) or b"")
        elif how == "root":
            batch.put(K_STATE_ROOT, b"\x01" * 32)
        kv.write(batch, sync=True)
    finally:
        kv.close()


def test_a_store_damaged_on_disk_is_refused_at_start_with_a_clear_message(tmp_path):
    import shutil

    from node.devtools.bench import prepare

    with Cluster.create(tmp_path / "net", 1) as cluster:
        node = cluster.nodes[0]
        cluster.start()
        cluster.wait_ready(30)
        for tx in prepare(node.status()["chain_id"], 2, seed=b"durability-dmg.."):
            assert _submit_one(node.api_url, tx, wait=30)["status"] == "committed"
        assert node.status()["height"] == 2
        cluster.stop(0)
    chain_dir = node.home / "data" / "chain"
    pristine = tmp_path / "pristine"
    shutil.copytree(chain_dir, pristine)
    # each damage in its own copy of the home, and the nodes started on them all at once (each is
    # refused before it opens a port; one after the other, the interpreters' start-ups added up)
    runs = {}
    for k, (name, (how, message)) in enumerate(DAMAGES.items()):
        home = tmp_path / f"damaged{k}"
        shutil.copytree(node.home, home)
        _damage(home / "data" / "chain", how)
        runs[name] = subprocess.Popen([sys.executable, "-m", "cli", "node", "run", "--home", str(home)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=str(Path(__file__).resolve().parents[2]))
    try:
        for name, (how, message) in DAMAGES.items():
            _, stderr = runs[name].communicate(timeout=60)
            assert runs[name].returncode == 2, (name, stderr[-1000:])
            assert "the data directory is damaged" in stderr and message in stderr, (name, stderr[-1000:])
    finally:
        for proc in runs.values():  # a node that started after all (the check missed a damage)
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    # the undamaged copy still starts (the check does not refuse a sound store)
    shutil.rmtree(chain_dir)
    shutil.copytree(pristine, chain_dir)
    with Cluster.open(tmp_path / "net") as again:
        again.start()
        again.wait_ready(30)
        assert again.nodes[0].status()["height"] == 2


def test_bench_mix_commits_every_type_with_granted_and_denied_access(tmp_path):
    r = cli("bench", "--nodes", "1", "--txs", "200", "--mix", "--seed", "t", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["workload"] == "mix" and out["committed"] == 200
    assert out["results"] == {"access.request: denied": 40, "access.request: ok": 40, "consent.grant: ok": 40,
                              "identity.register: ok": 20, "record.add: ok": 60}


def test_bench_fhir_loads_bundles_through_the_fhir_api_and_reads_them_back(tmp_path):
    r = cli("bench", "--nodes", "1", "--fhir", "3", "--loaders", "1", "--per-bundle", "2", "--seed", "f", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # 3 patients in 2 bundles, every resource registered on the ledger; a sample read back as sent
    assert out["fhir_bundles"] == 2 and out["fhir_resources"] > 3 * 10 and out["committed"] == out["fhir_resources"]
    assert out["fhir_read_back"] > 0 and out["resources_per_s"] > 0


def test_bench_sweep_writes_the_plot_and_its_table(tmp_path):
    plot = tmp_path / "sweep.png"
    # a step offers at least 500 transactions: at 100 tx/s that step alone took 5 s; at 300 and
    # 1000 tx/s the two steps take about 2 s, and the sweep, plot and table are the same
    r = cli("bench", "--nodes", "1", "--sweep", "--sweep-rates", "300,1000", "--sweep-seconds", "1", "--plot", str(plot), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [row["offered_tx_per_s"] for row in out["sweep"]] == [300, 1000]
    assert all(row["committed"] == row["submitted"] for row in out["sweep"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("offered_tx_per_s,tx_per_s,latency_ms_p50") and len(lines) == 3


def test_bench_preloads_records_and_times_a_lagging_node_catching_up():
    # half the load it was (600 transactions, 150 records): what is checked is that the options
    # work and report, and the lagging node still has every transaction to fetch
    r = cli("bench", "--nodes", "4", "--txs", "300", "--preload-records", "75", "--catch-up", "--seed", "c", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["preload_records"] == 75 and out["committed"] == 300
    assert out["validators"] == 4 and out["nodes"] == 3  # measured on three while the fourth was down
    assert out["catchup_txs"] >= 300 and out["catchup_tx_per_s"] > 0 and out["catchup_rss_mb"] > 0
    assert 0 < out["catchup_rss_anon_mb"] <= out["catchup_rss_mb"]
