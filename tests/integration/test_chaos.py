"""`medledger chaos`: a short seeded run on real processes keeps its JSON contract and loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_chaos_run_loses_nothing_and_reports_every_fault(tmp_path):
    # seed 83 draws a pause, then a kill, with short gaps: both fit in 16 s (as seed 3's kill and
    # pause did in 25 s); the second starts near 9.5 s, as far before the last 3 s as seed 3's did
    r = subprocess.run([sys.executable, "-m", "cli", "chaos", "--nodes", "4", "--duration", "16", "--seed", "83",
                        "--faults", "kill,pause,partition,lag", "--dir", str(tmp_path / "net"), "--json"],
                       capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-2000:] + r.stdout[-2000:]
    out = json.loads(r.stdout)
    for key in ("faults_injected", "acknowledged", "lost", "duplicated", "safety_violations", "max_recovery_s",
                "final_height", "faults", "submitted", "unrecovered"):
        assert key in out, key
    assert out["lost"] == 0 and out["duplicated"] == 0 and out["safety_violations"] == 0
    assert out["faults_injected"] == len(out["faults"]) >= 2
    assert out["acknowledged"] == out["submitted"] > 100
    assert out["final_height"] >= 1 and out["unrecovered"] == 0
    for f in out["faults"]:
        assert f["type"] in ("kill", "pause", "partition", "lag") and 0 <= f["target"] < 4
        assert f["healed_s"] >= f["started_s"] and f["recovery_s"] is not None and f["recovery_s"] >= 0
    assert out["max_recovery_s"] == max(f["recovery_s"] for f in out["faults"])


def test_chaos_refuses_more_than_f_byzantine_validators():
    r = subprocess.run([sys.executable, "-m", "cli", "chaos", "--nodes", "4", "--duration", "10", "--byzantine", "2"],
                       capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert r.returncode == 2 and "at most f = 1" in r.stderr


def test_the_validator_set_changing_under_load_loses_nothing(tmp_path):
    # --reconfigure: institutions join and are voted in, a validator is voted out and stopped, one
    # rotates its key and restarts with it, while the load runs (node/devtools/membership.py).
    # Seed 180 orders the four changes rotate, join, join, leave with short gaps between them: the
    # last starts near 15.5 s, 3.5 s before the last 3 s of a 22 s run (seed 3's started 0.8 s before, at 25 s)
    r = subprocess.run([sys.executable, "-m", "cli", "chaos", "--nodes", "4", "--duration", "22", "--seed", "180",
                        "--faults", "", "--reconfigure", "--rate", "40", "--dir", str(tmp_path / "net"), "--json"],
                       capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-2000:] + r.stdout[-2000:]
    out = json.loads(r.stdout)
    done = [f for f in out["faults"] if f["healed_s"] is not None]
    assert out["membership_failed"] == 0 and len(done) == len(out["faults"]) >= 2
    assert out["membership_skipped"] == 0  # every planned change (two joins, a leave, a rotation) ran
    assert {f["type"] for f in done} <= {"join", "leave", "rotate"}
    assert out["lost"] == 0 and out["duplicated"] == 0 and out["safety_violations"] == 0
    assert out["acknowledged"] == out["submitted"] > 100
    joins, leaves = (sum(1 for f in done if f["type"] == t) for t in ("join", "leave"))
    assert out["validators"] == 4 + joins - leaves and out["validators_not_compared"] == 0
    assert out["epoch"] == len(done)  # each change in force is one epoch
    assert len(set(out["final_heights"])) == 1 and len(out["final_heights"]) == 4 + joins - leaves
