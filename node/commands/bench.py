"""`medledger bench`: checks its options, runs node/devtools/bench_run.py and prints the result."""

from __future__ import annotations

import sys

import click

from node.commands.args import load_identity
from node.commands.options import CONTEXT, json_option
from node.commands.output import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, emit, fail, require_extra


@click.command(context_settings=CONTEXT)
@click.option("--nodes", "own_nodes", type=click.IntRange(1, 31), default=None, help="Start a local network of this many validators for the run.")
@click.option("--target", "targets", default=None, help="Comma-separated API URLs of running nodes to load (instead of --nodes).")
@click.option("--txs", default=2000, show_default=True, type=click.IntRange(1, 10_000_000), help="Transactions to measure.")
@click.option("--batch", default=None, type=click.IntRange(1, 5000),
              help="Transactions per request (default: 500, or 50 ms of the offered load with --rate).")
@click.option("--rate", default=0.0, show_default=True, help="Offered load in tx/s (0: as fast as accepted).")
@click.option("--mix", is_flag=True, help="Measure a hospital mix (registrations, record writes, consent grants, access "
              "requests: 10/30/20/40) instead of identity registrations only.")
@click.option("--tx-bytes", default=0, type=click.IntRange(0, 4096),
              help="No longer supported (0 only): access requests carry no free-text reason to pad them with.")
@click.option("--institution-key", type=click.Path(dir_okay=False), default=None,
              help="With --mix and --target: the key file of an institution that attests the practitioners.")
@click.option("--seed", default=None, help="Seed for the generated keys (default: random; a seed makes a run repeatable on a fresh network).")
@click.option("--sweep", is_flag=True, help="Run a series of offered loads (--sweep-rates), write a latency-versus-"
              "throughput plot (--plot) and the table behind it (same name, .csv).")
@click.option("--sweep-rates", default="500,1000,2000,3000,4000,6000", show_default=True, help="Offered loads for --sweep, tx/s.")
@click.option("--sweep-seconds", default=8.0, show_default=True, type=click.FloatRange(1, 600), help="Seconds of load per --sweep step.")
@click.option("--plot", "plot_path", default="bench-sweep.png", show_default=True, type=click.Path(dir_okay=False),
              help="Where --sweep writes its PNG plot.")
@click.option("--preload-records", default=0, type=click.IntRange(0, 10_000_000),
              help="Before measuring, commit this many record.add transactions so the state holds that many records.")
@click.option("--catch-up", "catch_up", is_flag=True, help="With --nodes (at least 4): stop the last node, measure on the "
              "others, then restart it and report how fast it catches up (catchup_tx_per_s).")
@click.option("--join", "join", is_flag=True, help="With --nodes: after the load, time a new institution joining by a "
              "full replay from the genesis and one joining from a snapshot of the tip (join_* fields).")
@click.option("--snapshot-interval", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="With --join: the validators take a snapshot every this many blocks (the chain is driven to the "
              "next one after the load).")
@click.option("--fhir", "fhir_patients", default=0, type=click.IntRange(0, 100_000),
              help="With --nodes: instead of transactions, load this many patients' Synthea-shaped FHIR transaction "
              "Bundles through every node's FHIR API (POST /fhir/R4) and report resources_per_s.")
@click.option("--loaders", "fhir_loaders", default=2, show_default=True, type=click.IntRange(1, 64),
              help="With --fhir: loaders per node (practitioners, each sending one Bundle at a time).")
@click.option("--per-bundle", "fhir_per_bundle", default=5, show_default=True, type=click.IntRange(1, 100),
              help="With --fhir: patients per transaction Bundle.")
@click.option("--workers", "verify_workers", default=None, type=click.IntRange(1, 256),
              help="With --nodes: processes each node verifies signatures on ([node] verify_workers); default: this "
              "machine's cores shared among the nodes.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for every commit.")
@json_option
def bench(own_nodes: int | None, targets: str | None, txs: int, batch: int | None, rate: float, mix: bool, tx_bytes: int,
          institution_key: str | None, seed: str | None, sweep: bool, sweep_rates: str, sweep_seconds: float, plot_path: str,
          preload_records: int, catch_up: bool, join: bool, snapshot_interval: int, fhir_patients: int,
          fhir_loaders: int, fhir_per_bundle: int, verify_workers: int | None, timeout: float, as_json: bool) -> None:
    """Measure committed throughput and latency against this machine's limit.

    Keys and signatures are prepared before the clock starts (and, with --mix, the
    practitioners, patients and records the measured transactions need are committed first);
    latency runs from sending a transaction's batch to its commit being visible at the node it
    was sent to. In the same run it measures this machine's Ed25519 verification rate and
    reports the ceiling limit_tx_per_s = cores x verify_per_s / nodes (every node verifies every
    transaction once) and ratio = tx_per_s / limit_tx_per_s; `workers` is how many processes each
    node verifies on (--workers; by default the machine's cores shared among the nodes it starts),
    `cores` the machine's.

    With --fhir N it loads N patients' FHIR transaction Bundles (Synthea-shaped, seeded) through
    the FHIR API of every node at once, each resource validated, encrypted, stored by its custodian
    and registered on the ledger before its Bundle is answered, then reads a sample back
    (resources_per_s; docs/benchmarks.md, "FHIR bulk load").

    With --join it then times two new institutions joining the loaded chain, one after the other:
    one replaying every block from the genesis (join_replay_s), one from the validators' snapshot
    of the tip (join_snapshot_s, fetching and checking it included); join_time_ratio is the second
    over the first (docs/benchmarks.md, "Joining from a snapshot").

    \b
    Examples:
      medledger bench --nodes 4 --txs 20000 --json
      medledger bench --nodes 4 --txs 20000 --mix
      medledger bench --target http://127.0.0.1:8700,http://127.0.0.1:8701 --txs 2000 --rate 1000
      medledger bench --nodes 4 --sweep --sweep-rates 1000,2000,4000 --plot sweep.png
      medledger bench --nodes 4 --txs 20000 --preload-records 1000000 --json
      medledger bench --nodes 4 --txs 100000 --catch-up --json
      medledger bench --nodes 4 --txs 200000 --join --json
      medledger bench --nodes 4 --fhir 400 --json
      medledger bench --nodes 1 --workers 2 --txs 20000 --json
    """
    from node.devtools.bench import BenchError, sweep_rates as parse_rates
    from node.devtools.bench_run import BenchRun, TargetsUnreachable, run_benchmark

    if (own_nodes is None) == (targets is None):
        fail("give either --nodes N (a local network for the run) or --target URL,...", EXIT_USAGE)
    if sweep:
        require_extra("matplotlib", "bench --sweep (its plot)")
    if tx_bytes:
        fail("--tx-bytes is no longer supported: transactions carry no free text (a break-glass reason is a code), "
             "so there is nothing to pad them with; leave it out", EXIT_USAGE)
    if (mix or preload_records) and targets is not None and institution_key is None:
        fail("--mix and --preload-records with --target need --institution-key (an institution attests the practitioners)",
             EXIT_USAGE)
    if catch_up and (own_nodes is None or own_nodes < 4 or sweep):
        fail("--catch-up needs --nodes 4 or more (the others keep committing while one is down) and no --sweep", EXIT_USAGE)
    if join and (own_nodes is None or sweep):
        fail("--join needs --nodes N (the bench starts the joiners beside its own network) and no --sweep", EXIT_USAGE)
    if verify_workers is not None and own_nodes is None:
        fail("--workers sets the verifying processes of the nodes the bench starts: it goes with --nodes", EXIT_USAGE)
    if fhir_patients and (own_nodes is None or sweep or mix or catch_up or join or preload_records):
        fail("--fhir needs --nodes N and none of --sweep, --mix, --catch-up, --join, --preload-records", EXIT_USAGE)
    try:
        rates = parse_rates(sweep_rates) if sweep else []
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    run = BenchRun(own_nodes=own_nodes, targets=tuple(t.strip() for t in str(targets).split(",") if t.strip()) if targets else (),
                   txs=txs, batch=batch, rate=rate, mix=mix, tx_bytes=tx_bytes, seed=seed, rates=tuple(rates),
                   sweep_seconds=sweep_seconds, plot_path=plot_path, preload_records=preload_records, catch_up=catch_up,
                   timeout=timeout, show_progress=not as_json, join=join, snapshot_interval=snapshot_interval,
                   fhir=fhir_patients, fhir_loaders=fhir_loaders, fhir_per_bundle=fhir_per_bundle, workers=verify_workers)
    try:
        result = run_benchmark(run, institution_key=lambda: load_identity(str(institution_key), None),
                               say=(lambda m: None) if as_json else (lambda m: click.echo(m, err=True)))
    except TargetsUnreachable as exc:
        fail(f"cannot reach the targets: {exc}", EXIT_UNREACHABLE)
    except BenchError as exc:
        fail(str(exc), EXIT_REFUSED)
    if as_json:
        emit(True, result, "")
    else:
        from rich.console import Console
        from rich.table import Table

        if sweep:
            table = Table(title=f"medledger bench --sweep: {result['nodes']} node(s); plot {plot_path}")
            for name in ("offered tx/s", "committed tx/s", "p50 ms", "p95 ms", "p99 ms", "ratio"):
                table.add_column(name, justify="right")
            for row in result["sweep"]:
                table.add_row(*(f"{row[k]:,}" for k in ("offered_tx_per_s", "tx_per_s", "latency_ms_p50", "latency_ms_p95",
                                                         "latency_ms_p99", "ratio")))
        else:
            table = Table(title=f"medledger bench: {result['nodes']} node(s), {result['submitted']} transactions")
            table.add_column("measure")
            table.add_column("value", justify="right")
            for key, value in result.items():
                table.add_row(key, f"{value:,}" if isinstance(value, (int, float)) else str(value))
        Console().print(table)
    rows_done = result["sweep"] if sweep else [result]
    if any(r["committed"] < r["submitted"] for r in rows_done):
        sys.exit(EXIT_REFUSED)
