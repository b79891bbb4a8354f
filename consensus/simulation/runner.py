"""The entry point of `medledger sim`: run many seeds, aggregate, and report as JSON-ready data.

`run_sim` returns exactly the dictionary the CLI prints. Each seed is independent and
deterministic, so a failing seed listed in `failing_seeds` is reproduced by running that seed
alone with the same options (`run_sim(..., seeds=[seed])` or `run_seed(config, seed)`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from consensus.simulation.byzantine import BEHAVIOURS
from consensus.simulation.cluster import CryptoFactory, SeedResult, SimConfig, run_seed

__all__ = ["BEHAVIOURS", "SeedResult", "SimConfig", "parse_seeds", "run_seed", "run_sim", "sim_config"]

MAX_REPORTED_FAILURES = 20


def parse_seeds(text: str) -> list[int]:
    """Parse "0-999", "7", "1,5,9-12" into a sorted list of distinct seeds; ValueError if malformed."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty item in seed list {text!r}")
        low, sep, high = part.partition("-")
        try:
            a = int(low)
            b = int(high) if sep else a
        except ValueError:
            raise ValueError(f"not a seed or seed range: {part!r}") from None
        if a < 0 or b < a:
            raise ValueError(f"bad seed range {part!r}")
        if b - a > 10_000_000:
            raise ValueError(f"seed range {part!r} is too large")
        seeds.update(range(a, b + 1))
    return sorted(seeds)


def sim_config(*, validators: int, byzantine: int, behaviours: Sequence[str], drop: float, partition: bool,
               heights: int = 6, **more: Any) -> SimConfig:
    """Build (and check) the configuration `run_sim` would use; ValueError names a bad option."""
    fields = set(SimConfig.__dataclass_fields__)
    unknown = set(more) - fields
    if unknown:
        raise ValueError(f"unknown simulator options: {', '.join(sorted(unknown))}")
    return SimConfig(validators=validators, byzantine=byzantine, behaviours=tuple(behaviours), drop=drop,
                     partition=partition, heights=heights, **more)


def run_sim(*, validators: int, byzantine: int, behaviours: Sequence[str], drop: float, partition: bool,
            seeds: Sequence[int], heights: int = 6, progress: Callable[[int], None] | None = None,
            crypto: CryptoFactory | None = None, **more: Any) -> dict[str, Any]:
    """Simulate every seed and return the report (a dict of JSON types) the CLI prints.

    `progress`, if given, is called with 1 after each seed (click's `bar.update` fits).
    Extra keyword options are `SimConfig` fields (e.g. `amnesia=True`, `reconfigure=True`,
    `base_timeout_ms=...`). Raises ValueError for a bad option (the caller's mistake).
    """
    config = sim_config(validators=validators, byzantine=byzantine, behaviours=behaviours, drop=drop,
                        partition=partition, heights=heights, **more)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds to run")
    if any(type(s) is not int or s < 0 for s in seeds):
        raise ValueError("seeds must be non-negative ints")
    results: list[SeedResult] = []
    for seed in seeds:
        results.append(run_seed(config, seed, crypto))
        if progress is not None:
            progress(1)
    return summarize(config, results)


def summarize(config: SimConfig, results: Sequence[SeedResult]) -> dict[str, Any]:
    failing = [r for r in results if not r.ok]
    recoveries = [r.recovery_ms for r in results if r.recovery_ms is not None]
    report: dict[str, Any] = {
        "validators": config.validators,
        "f": config.f,
        "byzantine": config.byzantine,
        "behaviours": list(config.behaviours),
        "drop": config.drop,
        "partition": config.partition,
        "heights": config.heights,
        "seeds": len(results),
        "safety_violations": sum(1 for r in results if r.safety_violations),
        "liveness_failures": sum(1 for r in results if r.liveness_failures),
        "errors": sum(1 for r in results if r.errors),
        "min_height": min(r.min_height for r in results),
        "max_height": max(r.max_height for r in results),
        "view_changes": sum(r.view_changes for r in results),
        "max_view": max(r.max_view for r in results),
        "evidence_reports": sum(r.evidence for r in results),
        "messages_delivered": sum(r.messages for r in results),
        "max_recovery_ms": max(recoveries) if recoveries else None,
        "failing_seeds": [r.seed for r in failing],
        "failures": [_failure(config, r) for r in failing[:MAX_REPORTED_FAILURES]],
    }
    if config.reconfigure:
        # Liveness failures the schedule explains (it took more than f of a set down): not the protocol's.
        report["liveness_explained"] = sum(1 for r in results if r.liveness_failures and r.liveness_explained)
    return report


def _failure(config: SimConfig, r: SeedResult) -> dict[str, Any]:
    failure: dict[str, Any] = {
        "seed": r.seed, "safety": list(r.safety_violations[:3]), "liveness": list(r.liveness_failures[:3]),
        "errors": list(r.errors[:3]), "byzantine": list(r.byzantine), "behaviours": [list(b) for b in r.behaviours]}
    if config.reconfigure:
        failure["reconfiguration"] = list(r.reconfiguration)
        failure["explained"] = r.liveness_explained
    return failure
