"""`medledger chaos`: a local network under load and a seeded fault schedule (node/devtools/chaos.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from node.commands.options import CONTEXT, json_option
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, emit, fail


@click.command(context_settings=CONTEXT)
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(1, 31), help="Validators in the local network.")
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(5, 86_400), help="Seconds of faults and load.")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of the fault schedule, the keys and the Byzantine behaviour.")
@click.option("--faults", default="kill,pause,partition,lag", show_default=True,
              help="Comma-separated fault types: kill, pause, partition, lag, byzantine.")
@click.option("--byzantine", "byzantine_count", default=0, show_default=True, type=click.IntRange(0, 10),
              help="Byzantine validators (at most f; with 'byzantine' in --faults the default is f).")
@click.option("--byzantine-mode", default="mixed", show_default=True,
              help="mixed (a different mode per Byzantine validator) or one of: equivocate, double-vote, garbage, "
                   "replay, withhold, invalid-block, impersonate, relabel.")
@click.option("--rate", default=20.0, show_default=True, type=click.FloatRange(1, 5000), help="Offered load in tx/s.")
@click.option("--dir", "root", default=None, type=click.Path(file_okay=False), help="Keep the node homes and logs here (default: a scratch directory).")
@click.option("--reconfigure", is_flag=True,
              help="Also change the validator set during the run: two institutions join and are voted in, a validator "
                   "is voted out and stopped, one rotates its key (a seeded order). --faults '' for these alone.")
@json_option
def chaos(nodes: int, duration: float, seed: int, faults: str, byzantine_count: int, byzantine_mode: str, rate: float,
          root: str | None, reconfigure: bool, as_json: bool) -> None:
    """Run a local network under load and a seeded schedule of faults; check nothing was lost.

    Faults hit one honest validator at a time (SIGKILL and restart, SIGSTOP/SIGCONT, partitions
    that heal, a validator kept down until it is far behind); Byzantine validators lie for the
    whole run. At the end every honest node must hold identical blocks and state roots, and
    every transaction acknowledged as committed must be in the chain exactly once. Exits 1 if
    anything was lost or duplicated or safety was violated. See docs/reliability.md.

    \b
    Examples:
      medledger chaos --nodes 4 --duration 120 --seed 7 --json
      medledger chaos --nodes 7 --duration 120 --faults kill,pause,partition,lag,byzantine --byzantine 2
      medledger chaos --nodes 4 --duration 120 --reconfigure --faults '' --rate 150
    """
    from node.devtools.chaos import ChaosConfig, ChaosError, run_chaos

    cfg = ChaosConfig(nodes=nodes, duration_s=duration, seed=seed, rate=rate,
                      faults=tuple(x.strip() for x in faults.split(",") if x.strip()),
                      byzantine=byzantine_count, byzantine_mode=byzantine_mode,
                      root=Path(root) if root else None, reconfigure=reconfigure)
    try:
        report = run_chaos(cfg, progress=None if as_json else lambda msg: click.echo(msg, err=True))
    except ChaosError as exc:
        fail(str(exc), EXIT_USAGE)
    if as_json:
        emit(True, report, "")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"chaos: {nodes} validators, {duration:g} s, seed {seed}")
        for col in ("fault", "node", "start s", "healed s", "recovery s", "detail"):
            table.add_column(col)
        for f in report["faults"]:
            table.add_row(f["type"], str(f["target"]), str(f["started_s"]), str(f["healed_s"] or "-"),
                          str(f["recovery_s"] if f["recovery_s"] is not None else "-"), f["detail"])
        console = Console()
        console.print(table)
        for key in ("faults_injected", "submitted", "acknowledged", "lost", "duplicated", "safety_violations",
                    "max_recovery_s", "unrecovered", "final_height", "evidence", "validators", "epoch",
                    "validators_not_compared", "membership_failed", "membership_skipped"):
            console.print(f"{key:>18}: {report[key]}")
    if (report["lost"] or report["duplicated"] or report["safety_violations"] or report["validators_not_compared"]
            or report["membership_failed"]):
        sys.exit(EXIT_REFUSED)
