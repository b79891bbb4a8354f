"""The healthcare ledger's story on a 4-node network, driven through the CLI as a user would.

A practitioner at institution A writes an Observation; B is denied; the patient grants B; B
reads exactly the original JSON; the patient revokes; B is denied; an expired grant is denied;
C uses break-glass; the audit trail shows it all in order (also as FHIR AuditEvent); the patient
erases the record; reads fail with "erased"; no plaintext or ciphertext remains on any node.
"""

from __future__ import annotations

import json
import time
import subprocess
from pathlib import Path

import pytest

from node.client import HealthClient
from node.devtools.cluster import Cluster
from node.core.crypto import Identity
from node.home.keys import load_key_file
from tests.helpers import cli, cli_json

pytestmark = pytest.mark.slow
MARKER = "PLAINTEXT-MARKER-7f3c2a9d"
NOTE = "found unresponsive in the emergency room, NOTE-MARKER-51c0"  # a break-glass note: never on any node


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_consent_story(tmp_path):
    with Cluster.create(tmp_path / "net", 4) as c:
        c.start()
        c.wait_ready(30)
        story = consent_story(c, tmp_path)
        c.stop_all()
        for needle in (MARKER.encode(), story["ciphertext"], NOTE.encode()):
            assert files_containing(tmp_path / "net", needle) == []


def consent_story(c: Cluster, tmp_path: Path) -> dict:
    """The story on a started 4-node cluster; returns the key files used and the ciphertext."""
    url = [n.api_url for n in c.nodes]
    inst = [str(n.home / "institution.key") for n in c.nodes]
    keys = {}
    for name in ("patient", "drA", "drB", "drC"):
        keys[name] = str(tmp_path / f"{name}.key")
        cli_json("keys", "new", "--out", keys[name])
    pid = cli_json("keys", "show", keys["patient"])["id"]
    # the patient registers at A (its attestation): the treatment relationship A's staff need to write its records
    cli_json("identity", "register", "--key", keys["patient"], "--role", "patient", "--institution-key", inst[0], "--node", url[0])
    for name, i in (("drA", 0), ("drB", 1), ("drC", 2)):
        cli_json("identity", "register", "--key", keys[name], "--role", "practitioner", "--institution-key", inst[i], "--node", url[i])
    # a practitioner without an attestation is refused (wrong role rules)
    stray = str(tmp_path / "stray.key")
    cli_json("keys", "new", "--out", stray)
    r = cli("identity", "register", "--key", stray, "--role", "practitioner", "--node", url[0], "--json")
    assert r.returncode == 1

    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
           "subject": {"reference": f"Patient/{pid}"}, "valueQuantity": {"value": 72, "unit": "beats/min"},
           "note": [{"text": MARKER}]}
    source = tmp_path / "obs.json"
    source.write_text(json.dumps(obs, indent=1))
    rid = cli_json("record", "put", "--key", keys["drA"], "--patient", pid, "--file", str(source), "--node", url[0])["record_id"]

    def get(who: str, node: int, purpose: str = "treatment", reason: str = "", *extra: str) -> subprocess.CompletedProcess[str]:
        out = tmp_path / f"out-{who}.json"
        args = ["record", "get", "--key", keys[who], "--record", rid, "--purpose", purpose, "--out", str(out), "--node", url[node]]
        return cli(*args, *(["--reason", reason] if reason else []), *extra)

    denied = get("drB", 1)
    assert denied.returncode == 1 and "denied" in denied.stderr
    node1_id = cli_json("keys", "show", inst[1])["id"]
    cid = cli_json("consent", "grant", "--key", keys["patient"], "--to", node1_id, "--types", "Observation",
             "--purpose", "treatment", "--until", "2099-12-31", "--node", url[0])["consent_id"]
    granted = get("drB", 1)
    assert granted.returncode == 0, granted.stderr
    assert (tmp_path / "out-drB.json").read_bytes() == source.read_bytes()  # exactly the original JSON
    cli_json("consent", "revoke", "--key", keys["patient"], "--consent", cid, "--node", url[0])
    assert get("drB", 1).returncode == 1
    # a grant that runs out: valid for a few seconds of block time, then asked for after it ended
    import datetime as dt

    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)
    cli_json("consent", "grant", "--key", keys["patient"], "--to", node1_id, "--types", "Observation",
       "--purpose", "treatment", "--until", until.isoformat(), "--node", url[0])
    client0 = HealthClient(url[0])
    start_height = client0.status()["height"]
    give_up = time.monotonic() + 60
    while True:  # wait on the ledger's clock, not ours: a block stamped after `until`
        block = client0.block("latest")
        if block["header"]["timestamp_ms"] > until.timestamp() * 1000 and block["height"] > start_height:
            break
        assert time.monotonic() < give_up, "no block after the grant's end"
        client0.register(Identity.generate(), "patient")  # an idle network makes no blocks: make one
    expired = get("drB", 1)
    assert expired.returncode == 1
    no_reason = get("drC", 2, purpose="emergency")
    assert no_reason.returncode == 1
    free_text = get("drC", 2, "emergency", "unconscious in the emergency room")
    assert free_text.returncode == 2 and "unconscious" in free_text.stderr  # a code, not free text
    glass = get("drC", 2, "emergency", "unconscious", "--note", NOTE)
    assert glass.returncode == 0, glass.stderr
    assert "salt" in glass.stdout  # the note stays off the chain; its salt is the practitioner's to keep

    # the custodian's ciphertext, captured through a legitimate grant, to look for it on disk later
    release = HealthClient(url[2]).fetch_release(load_key_file(keys["drC"]), rid)
    ciphertext = release.ciphertext

    entries = cli_json("audit", "--key", keys["patient"], "--patient", pid, "--node", url[3])["entries"]
    events = [e["event"] for e in entries]
    expected = ["record.added", "access.denied", "consent.granted", "access.granted", "consent.revoked",
                "access.denied", "consent.granted", "access.denied", "access.breakglass"]
    assert [e for e in events if e in set(expected)] == expected, events
    # reads of the audit trail are signed: without a key, or with a stranger's, they are refused
    unsigned = cli("audit", "--patient", pid, "--node", url[0])
    assert unsigned.returncode == 2 and "--key" in unsigned.stderr
    stranger = cli("audit", "--key", stray, "--patient", pid, "--node", url[0])
    assert stranger.returncode == 1 and "forbidden" in stranger.stderr
    fhir = json.loads(cli("audit", "--key", keys["patient"], "--patient", pid, "--fhir", "--node", url[0]).stdout)
    from fhir.resources.R4B.auditevent import AuditEvent

    resources = fhir["entry"] if isinstance(fhir, dict) and "entry" in fhir else fhir
    resources = [r.get("resource", r) for r in resources]
    assert len(resources) >= len(expected)
    for res in resources:
        AuditEvent.model_validate(res)
    disclosures = cli_json("audit", "disclosures", "--key", inst[0], "--since", "2020-01-01", "--node", url[2])["disclosures"]
    assert [d["event"] for d in disclosures] == ["access.granted", "access.breakglass"]
    fhir_disclosures = json.loads(cli("audit", "disclosures", "--key", inst[0], "--since", "2020-01-01", "--fhir", "--node", url[2]).stdout)
    for entry in fhir_disclosures["entry"]:
        AuditEvent.model_validate(entry["resource"])
    # the leaf of a patient's transaction is given to its parties only: unsigned, the tx hash is not tied to it
    unsigned = cli("audit", "verify", "--tx", entries[-1]["tx"], "--node", url[1], "--json")
    assert unsigned.returncode == 1 and json.loads(unsigned.stdout)["checks"]["merkle_proof"] is True
    verified = cli_json("audit", "verify", "--tx", entries[-1]["tx"], "--key", keys["patient"], "--node", url[1])
    assert verified["verified"] is True

    cli_json("record", "contest", "--key", keys["patient"], "--record", rid, "--reason", "inaccurate", "--node", url[1])
    listed = cli_json("record", "list", "--key", keys["patient"], "--node", url[0])["records"]
    assert [(r["id"], r["contested"], r["contest_reason"]) for r in listed] == [(rid, True, "inaccurate")]
    cli_json("record", "erase", "--key", keys["patient"], "--record", rid, "--node", url[0])
    after = get("drA", 0)
    assert after.returncode == 1 and "erased" in (after.stderr + after.stdout)
    height = HealthClient(url[0]).status()["height"]
    c.wait_for_height(height, 30)
    return {"keys": [*keys.values(), stray, *inst], "ciphertext": ciphertext}
