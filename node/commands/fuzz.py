"""`medledger fuzz`: seeded hostile input to every API endpoint and the peer port (node/devtools/fuzz.py;
needs the tools extra)."""

from __future__ import annotations

import os
import sys

import click

from node.commands.args import load_identity
from node.commands.options import CONTEXT, json_option, passphrase_env_option
from node.commands.output import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, emit, fail, require_extra


@click.command(context_settings=CONTEXT)
@click.option("--target", "targets", required=True, help="Comma-separated API URLs of running nodes to fuzz.")
@click.option("--cases", default=1000, show_default=True, type=click.IntRange(1, 10_000_000), help="Cases per endpoint.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every case (same seed, same cases).")
@click.option("--endpoints", default="", help="Comma-separated endpoint names, or parts of names, to fuzz (default: all), e.g. 'txs,p2p'.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Cases per endpoint between two health checks (status + a committed transaction).")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 256), help="Cases in flight per target.")
@click.option("--peer-key", "peer_key", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Key file of a peer the targets admit (an observer's): adds the 'p2p frames' endpoint.")
@passphrase_env_option
@json_option
def fuzz(targets: str, cases: int, seed: int, endpoints: str, batch: int, concurrency: int, peer_key: str | None,
         passphrase_env: str | None, as_json: bool) -> None:
    """Send seeded hostile input to every API endpoint and the peer port; check the nodes survive.

    A case passes when the node answers it as a client mistake (HTTP below 500, or a refused or
    closed peer handshake; with --peer-key, garbage frames from an admitted peer discarded or the
    link closed). Between batches every node must answer /v1/status and commit a new transaction.
    Exits non-zero on any failure; each failure carries its endpoint, seed and case index to replay it.

    \b
    Examples:
      medledger fuzz --target http://127.0.0.1:8700 --cases 200
      medledger fuzz --target http://127.0.0.1:8700,http://127.0.0.1:8701 --cases 10000 --seed 7 --json
      medledger fuzz --target http://127.0.0.1:8700 --endpoints "POST /v1/txs,p2p" --cases 500
      medledger fuzz --target http://127.0.0.1:8700 --endpoints "p2p frames" --peer-key ./observer/institution.key
    """
    import asyncio
    import tempfile

    require_extra("hypothesis", "medledger fuzz (its values are drawn from hypothesis strategies)")
    from node.devtools.fuzz import FuzzConfig, FuzzError, passed, run_fuzz

    scratch = tempfile.TemporaryDirectory(prefix="medledger-fuzz-")  # hypothesis's cache, not a .hypothesis/ here
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", scratch.name)

    cfg = FuzzConfig(targets=tuple(t.strip().rstrip("/") for t in targets.split(",") if t.strip()), cases=cases, seed=seed,
                     endpoints=tuple(e.strip() for e in endpoints.split(",") if e.strip()), batch=batch, concurrency=concurrency,
                     peer_key=load_identity(peer_key, passphrase_env) if peer_key else None)
    from rich.progress import Progress

    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("fuzzing", total=None)
        try:
            result = asyncio.run(run_fuzz(cfg, progress=lambda name, done, total: bar.update(task, description=f"{name} {done}/{total}")))
        except FuzzError as exc:
            fail(str(exc), EXIT_USAGE if "endpoint" in str(exc) else EXIT_UNREACHABLE)

    def text() -> str:
        lines = [f"{name:<40} {r['cases']:>7} cases  {r['failures']:>5} failures  {r['outcomes']}" for name, r in result["endpoints"].items()]
        lines += [f"{f['endpoint']} case {f['case']} (seed {f['seed']}, {f['family']}): {f['reason']}" for f in result["failures"][:20]]
        lines.append(f"node_up={result['node_up']} committed_after={result['committed_after']} nodes_agree={result['nodes_agree']} "
                     f"failures={result['failures_total']} rss_mb {result['rss_mb_before']} -> {result['rss_mb_after']} "
                     f"(peak seen {result['rss_mb_peak']}) in {result['duration_s']} s")
        return "\n".join(lines)

    emit(as_json, result, text)
    if not passed(result):
        sys.exit(EXIT_REFUSED)
