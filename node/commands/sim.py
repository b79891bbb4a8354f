"""`medledger sim`: the seeded consensus simulator, checking safety and liveness in every run."""

from __future__ import annotations

from typing import Any

import click

from node.commands.options import CONTEXT, json_option
from node.commands.output import EXIT_USAGE, emit, fail


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a seed or a range like 0-999", param_hint="--seeds") from None
    if not seeds:
        raise click.BadParameter("no seeds given", param_hint="--seeds")
    return seeds


@click.command(context_settings=CONTEXT)
@click.option("--validators", default=4, show_default=True, type=click.IntRange(1, 64), help="Validators in the simulated network.")
@click.option("--byzantine", default=0, show_default=True, type=click.IntRange(0, 64), help="How many of them misbehave.")
@click.option("--behaviour", "behaviours", default="",
              help="Comma-separated Byzantine behaviours, or 'all' (the default); see consensus/simulation/byzantine.py.")
@click.option("--drop", default=0.0, show_default=True, type=click.FloatRange(0.0, 0.9), help="Probability that a message is lost.")
@click.option("--partition/--no-partition", default=False, show_default=True, help="Partition the network for a while, then heal it.")
@click.option("--seeds", "seeds_text", default="0-99", show_default=True, help="Seeds to run: 7, 0-999 or 1,5,9.")
@click.option("--heights", default=None, type=click.IntRange(1, 10_000), help="Heights each run aims for.")
@click.option("--reconfigure", is_flag=True, default=False,
              help="Give each seed a random schedule of validator-set changes (add, remove, rotate a key).")
@json_option
def sim(validators: int, byzantine: int, behaviours: str, drop: float, partition: bool, seeds_text: str, heights: int | None,
        reconfigure: bool, as_json: bool) -> None:
    """Run the seeded consensus simulator and check safety and liveness in every run.

    Each seed is one deterministic run: the same seed gives the same result and the same
    final block hashes. Failing seeds are listed so each can be replayed alone.

    \b
    Examples:
      medledger sim --validators 4 --byzantine 1 --drop 0.2 --partition --seeds 0-999 --json
      medledger sim --validators 7 --byzantine 2 --behaviour equivocate,double-vote --seeds 42
      medledger sim --validators 4 --byzantine 1 --behaviour relabel-new-view,withhold --drop 0.3 --partition
      medledger sim --validators 4 --byzantine 2 --seeds 0-199   # above f: violations appear
      medledger sim --validators 7 --byzantine 2 --reconfigure --drop 0.1 --partition --seeds 0-99
    """
    from consensus.simulation.byzantine import BEHAVIOURS
    from consensus.simulation.runner import run_sim

    seeds = _parse_seeds(seeds_text)
    chosen = [b.strip() for b in behaviours.split(",") if b.strip()]
    if not chosen or "all" in chosen:
        chosen = list(BEHAVIOURS)
    unknown = [b for b in chosen if b not in BEHAVIOURS]
    if unknown:
        fail(f"unknown behaviour {', '.join(unknown)}; choose from {', '.join(BEHAVIOURS)}", EXIT_USAGE)
    if byzantine > validators:
        fail("--byzantine cannot exceed --validators", EXIT_USAGE)
    kwargs: dict[str, Any] = {}
    if reconfigure:
        kwargs["reconfigure"] = True
    if heights is not None:
        kwargs["heights"] = heights
    from rich.progress import Progress

    with Progress(transient=True, disable=as_json or len(seeds) < 20) as bar:
        task = bar.add_task("simulating", total=len(seeds))
        report = run_sim(validators=validators, byzantine=byzantine, behaviours=chosen, drop=drop, partition=partition,
                         seeds=seeds, progress=lambda n: bar.update(task, advance=n), **kwargs)

    def text() -> str:
        lines = [f"{k:>18}: {v}" for k, v in report.items() if k != "failing_seeds"]
        fs = report.get("failing_seeds", [])
        lines.append(f"{'failing_seeds':>18}: {fs[:50]}{' ...' if len(fs) > 50 else ''}")
        return "\n".join(lines)

    emit(as_json, report, text)
