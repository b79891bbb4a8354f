"""`medledger demo --json --exit` on real processes: a fresh five-institution devnet, every step of
the story ok and in order, one JSON object on stdout, the network stopped afterwards, and a second
demo on the same directory refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from node.commands.demo import busy_ports
from node.devtools.cluster import running_pid
from tests.helpers import cli

pytestmark = pytest.mark.slow

EXPECTED = ["network_started", "patients_registered", "practitioners_registered", "records_written", "access_refused",
            "access_allowed", "pharmacy_nominated", "prescription_dispensed", "agreement_signed", "claim_paid", "referral_accepted", "breakglass_read", "breakglass_reviewed", "research_extract", "record_erased"]


def free_base_port() -> int:
    """A base port whose five API ports and five peer ports (base+100 ...) are all free now."""
    start = 20000 + (os.getpid() * 37) % 30000  # differs between parallel test processes, no randomness
    for base in range(start, 60000, 211):
        if not busy_ports([base + i for i in range(5)] + [base + 100 + i for i in range(5)]):
            return base
    raise AssertionError("no free block of ports")


def test_demo_json_exit(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    r = cli("demo", "--json", "--exit", "--dir", str(root), "--base-port", str(free_base_port()), timeout=240)
    doc = json.loads(r.stdout)  # stdout is the JSON object and nothing else
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert [s["name"] for s in doc["steps"]] == EXPECTED
    assert all(s["ok"] for s in doc["steps"]), [s for s in doc["steps"] if not s["ok"]]
    assert all(isinstance(s["detail"], str) and s["detail"] for s in doc["steps"])
    assert doc["ok"] is True and doc["running"] is False and doc["dir"] == str(root)
    assert [n["kind"] for n in doc["nodes"]] == ["hospital", "clinic", "pharmacy", "insurer", "research"]
    assert all(n["api"].startswith("http://127.0.0.1:") and len(n["id"]) == 64 for n in doc["nodes"])
    assert sorted(doc["records"]) == ["Claim", "Condition", "Encounter", "MedicationDispense", "MedicationRequest",
                                      "Observation", "Procedure", "ServiceRequest"]
    assert (root / "keys" / "patient-a.key").exists() and (root / "keys" / "clinic-physician.key").exists()
    report = json.loads((root / "extract" / "report.json").read_text())
    assert report["patients_included"] >= 5
    assert any("/ui/" in line for line in doc["look"]) and any("devnet ids" in line for line in doc["look"])
    for i in range(5):  # --exit stopped every node
        assert running_pid(root / f"node{i}") is None

    again = cli("demo", "--exit", "--dir", str(root), "--base-port", str(free_base_port()))
    assert again.returncode == 2 and "previous demo" in again.stderr and "another --dir" in again.stderr, again.stderr
