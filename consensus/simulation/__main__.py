"""`python -m consensus.simulation`: the simulator from a shell, without the node's CLI.

It takes the same options as `medledger sim` and prints the same JSON (from `run_sim`), so a
sweep can be run and a failing seed reproduced where only the consensus package is installed.
"""

from __future__ import annotations

import argparse
import json
import sys

from consensus.simulation.runner import BEHAVIOURS, parse_seeds, run_sim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consensus.simulation", description=__doc__)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--byzantine", type=int, default=0)
    parser.add_argument("--behaviour", default="", help=f"comma-separated, or 'all': {','.join(BEHAVIOURS)}")
    parser.add_argument("--drop", type=float, default=0.0)
    parser.add_argument("--partition", action="store_true")
    parser.add_argument("--amnesia", action="store_true", help="restarts may lose the disk (counted as faults)")
    parser.add_argument("--reconfigure", action="store_true", help="a random schedule of validator-set changes per seed (add, remove, rotate)")
    parser.add_argument("--seeds", default="0-99")
    parser.add_argument("--heights", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    args = parser.parse_args(argv)
    behaviours = [b.strip() for b in args.behaviour.split(",") if b.strip()]
    if "all" in behaviours:
        behaviours = list(BEHAVIOURS)
    try:
        seeds = parse_seeds(args.seeds)
        done = 0

        def progress(step: int) -> None:
            nonlocal done
            done += step
            if done % 50 == 0 or done == len(seeds):
                print(f"\r{done}/{len(seeds)} seeds", end="", file=sys.stderr, flush=True)

        report = run_sim(validators=args.validators, byzantine=args.byzantine, behaviours=behaviours,
                         drop=args.drop, partition=args.partition, seeds=seeds, heights=args.heights,
                         progress=progress, amnesia=args.amnesia, reconfigure=args.reconfigure)
    except ValueError as exc:
        parser.error(str(exc))
    print(file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        keys = ("seeds", "safety_violations", "liveness_failures", "errors", "min_height", "max_height",
                "view_changes", "max_recovery_ms", "failing_seeds")
        print(" ".join(f"{k}={report[k]}" for k in keys))
    return 1 if report["failing_seeds"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
