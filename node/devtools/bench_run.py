"""The runs of `medledger bench`: a local network or given targets, a workload, a preload, a
single measurement or a sweep of offered loads, the catch-up of a node kept down, and a new
institution joining by replay and from a snapshot (node/devtools/bench_join.py), and the load of
FHIR transaction Bundles through every node's FHIR API (node/devtools/bench_fhir.py).

The command (node/commands/bench.py) checks its options and renders the result; everything
between the two is here: the network it starts, the seeds of every step's keys, the setup that
is committed before the clock starts, and the measurements themselves (node/devtools/bench.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.core.crypto import Identity
from node.devtools.bench import (
    BenchConfig, BenchError, add_ceiling, chain_status, commit_setup, measure_verify_rate, node_peak_rss, run_bench,
    write_sweep,
)
from node.devtools.bench_join import committed_txs, interval_env, measure_join
from node.devtools.cluster import Cluster, ClusterError, cores_share, http_json
from node.devtools.workload import mix_workload, preload_phases, register_workload
from node.home.keys import load_key_file


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchRun:
    """What `medledger bench` was asked to measure, its options checked."""

    own_nodes: int | None  # start a local network of this many validators, or
    targets: tuple[str, ...]  # load these running nodes
    txs: int
    batch: int | None
    rate: float
    mix: bool
    tx_bytes: int
    seed: str | None
    rates: tuple[int, ...]  # the offered loads of a sweep; empty for one measurement
    sweep_seconds: float
    plot_path: str
    preload_records: int
    catch_up: bool
    timeout: float
    show_progress: bool
    join: bool = False  # after the load, time a new institution joining by replay and from a snapshot
    snapshot_interval: int = 0  # with join: the validators' snapshot interval (blocks)
    fhir: int = 0  # load this many patients' transaction Bundles through the FHIR API instead of transactions
    fhir_loaders: int = 2  # with fhir: loaders (practitioners, one request at a time each) per node
    fhir_per_bundle: int = 5  # with fhir: patients per transaction Bundle
    workers: int | None = None  # with own_nodes: each node's verifying processes (None: its default, one per core)


def bench_workers(run: BenchRun) -> int:
    """The verifying processes of each node the bench starts: --workers, else this machine's
    cores shared among the nodes (four validators on two cores: one each)."""
    if run.workers is not None:
        return run.workers
    return cores_share(run.own_nodes or 1)


class TargetsUnreachable(BenchError):
    """The measurement failed on an OSError: the targets could not be reached."""


def measure_catch_up(cluster: Any, lagging: int, from_height: int, timeout: float) -> dict[str, Any]:
    """Restart the stopped node `lagging` (stopped at `from_height`) and time it until it holds
    the others' height: from the restart, so the process's start-up counts against the rate."""
    others = [i for i in range(len(cluster.nodes)) if i != lagging]
    target = max(h or 0 for h in (cluster.heights()[i] for i in others))
    ready = time.perf_counter()
    cluster.start(lagging)
    cluster.wait_ready(60, lagging)
    deadline = ready + timeout
    status: dict[str, Any] = {}
    while time.perf_counter() < deadline:
        status = http_json(cluster.nodes[lagging].api_url + "/v1/status")
        if status["height"] >= target:
            break
        time.sleep(0.02)
    else:
        raise BenchError(f"the restarted node reached height {status.get('height')} of {target} in {timeout:.0f} s")
    seconds = time.perf_counter() - ready
    synced_txs = committed_txs(cluster.nodes[others[0]].api_url, from_height + 1, target)
    return {"catchup_blocks": target - from_height, "catchup_txs": synced_txs, "catchup_s": round(seconds, 2),
            "catchup_tx_per_s": round(synced_txs / seconds, 1) if seconds > 0 else 0.0,
            "catchup_rss_mb": int(status.get("peak_rss_mb", 0)),
            "catchup_rss_anon_mb": int(status.get("peak_rss_anon_mb", 0))}


def run_benchmark(run: BenchRun, *, institution_key: Callable[[], Identity],
                  say: Callable[[str], None]) -> dict[str, Any]:
    """Measure as `run` asks and return the result `medledger bench` prints. `institution_key`
    gives the attesting institution's identity with --target (a local network uses node0's);
    `say` takes the line printed after each step of a sweep. Raises BenchError when the network
    does not come up or the measurement fails, TargetsUnreachable (a BenchError) when the targets
    cannot be reached."""
    cores = os.cpu_count() or 1
    verify_per_s = measure_verify_rate()
    base_seed = run.seed.encode() if run.seed is not None else os.urandom(16)
    scratch = tempfile.TemporaryDirectory(prefix="medledger-bench-") if run.own_nodes else None
    cluster = None

    def institution() -> Identity:
        if cluster is not None:
            return load_key_file(cluster.nodes[0].home / "institution.key")
        return institution_key()

    def workload(urls: tuple[str, ...], count: int, step: int) -> tuple[list[Any], Any]:
        status = asyncio.run(chain_status(urls[0]))
        step_seed = hashlib.sha256(base_seed + step.to_bytes(4, "big")).digest()
        if not run.mix:
            return [], register_workload(status["chain_id"], count, seed=step_seed)
        w = mix_workload(status["chain_id"], count, seed=step_seed, institution=institution(), now_ms=time.time_ns() // 1_000_000,
                         tx_bytes=run.tx_bytes)
        return list(w.setup), w

    def measure(urls: tuple[str, ...], count: int, offered: float, step: int, show: bool) -> dict[str, Any]:
        setup, w = workload(urls, count, step)
        if setup:
            asyncio.run(commit_setup(urls, setup, timeout_s=max(run.timeout, 300.0)))
        size = run.batch if run.batch is not None else (500 if offered <= 0 else max(1, min(500, int(offered / 20))))
        cfg = BenchConfig(targets=urls, txs=len(w.measured), batch=size, timeout_s=run.timeout, rate=offered)
        from rich.progress import Progress

        with Progress(transient=True, disable=not show) as bar:
            task = bar.add_task("committed", total=len(w.measured))
            result = asyncio.run(run_bench(cfg, progress=lambda done, total: bar.update(task, completed=done), txs=w.measured))
        result["workload"] = w.name
        result["tx_bytes"] = w.mean_tx_bytes
        if w.name == "mix":
            result["mix"] = w.counts
        return result

    try:
        if run.own_nodes:
            assert scratch is not None
            env = interval_env(run.snapshot_interval) if run.join else {}
            # the nodes share this machine's cores: by default each verifies on its share of them
            env = {**env, "MEDLEDGER_NODE_VERIFY_WORKERS": str(bench_workers(run))}
            cluster = Cluster.create(Path(scratch.name), run.own_nodes, extra_env=env)
            cluster.start()
            try:
                cluster.wait_ready(60)
            except ClusterError as exc:
                raise BenchError(str(exc)) from exc
            urls = tuple(n.api_url for n in cluster.nodes)
        else:
            urls = run.targets
        try:
            preload_s = None
            if run.preload_records:
                status = asyncio.run(chain_status(urls[0]))
                phases = preload_phases(status["chain_id"], run.preload_records, seed=base_seed, institution=institution())
                from rich.progress import Progress

                with Progress(transient=True, disable=not run.show_progress) as bar:
                    task = bar.add_task("preloading records", total=run.preload_records + 2 * min(10_000, run.preload_records))
                    started = time.perf_counter()
                    asyncio.run(commit_setup(urls, phases, timeout_s=max(run.timeout, 300.0),
                                             progress=lambda n: bar.update(task, completed=n)))
                    preload_s = round(time.perf_counter() - started, 1)
            lagging: int | None = None
            stopped_at = 0
            if run.catch_up:
                assert cluster is not None
                lagging = len(cluster.nodes) - 1
                stopped_at = cluster.heights()[lagging] or 0
                cluster.stop(lagging)
                urls = urls[:lagging]
            if run.rates:
                rows = []
                for step, offered in enumerate(run.rates, start=1):
                    count = max(500, int(offered * run.sweep_seconds))
                    row = add_ceiling(measure(urls, count, float(offered), step, run.show_progress), verify_per_s, cores)
                    row["offered_tx_per_s"] = offered
                    rows.append(row)
                    say(f"offered {offered:>6,} tx/s: committed {row['tx_per_s']:>8,.1f} tx/s, "
                        f"p50 {row['latency_ms_p50']:,.0f} ms, p99 {row['latency_ms_p99']:,.0f} ms")
                csv_path = str(Path(run.plot_path).with_suffix(".csv"))
                write_sweep(rows, csv_path, run.plot_path, f"medledger bench --sweep: {len(urls)} validators, {cores} cores, "
                            f"{'mix' if run.mix else 'identity.register'}")
                result = {"nodes": len(urls), "sweep": rows, "plot": run.plot_path, "table": csv_path,
                          "verify_per_s": verify_per_s, "cores": cores}
            elif run.fhir:
                assert cluster is not None
                from node.devtools.bench_fhir import FhirBenchError, measure_fhir

                try:
                    result = {"nodes": len(urls), "cores": cores, **measure_fhir(
                        cluster, patients=run.fhir, loaders=run.fhir_loaders, per_bundle=run.fhir_per_bundle,
                        seed=base_seed, timeout=run.timeout)}
                except FhirBenchError as exc:
                    raise BenchError(str(exc)) from exc
                result["submitted"] = result["committed"] = result["fhir_resources"]
            else:
                result = add_ceiling(measure(urls, run.txs, run.rate, 0, run.show_progress), verify_per_s, cores)
            if run.preload_records:
                result["preload_records"] = run.preload_records
                result["preload_s"] = preload_s
            if lagging is not None:
                assert cluster is not None
                result["validators"] = len(cluster.nodes)
                result.update(measure_catch_up(cluster, lagging, stopped_at, run.timeout))
                urls = tuple(n.api_url for n in cluster.nodes)
            if run.join:
                assert cluster is not None
                result.update(measure_join(cluster, interval=run.snapshot_interval, seed=base_seed, say=say))
        except OSError as exc:
            raise TargetsUnreachable(str(exc)) from exc
        result["peak_rss_mb"], result["peak_rss_anon_mb"] = asyncio.run(node_peak_rss(urls))
        if run.own_nodes:  # the nodes' verifying processes (node/core/verify_pool.py)
            result["workers"] = bench_workers(run)
        return result
    finally:
        if cluster is not None:
            cluster.stop_all()
        if scratch is not None:
            scratch.cleanup()
