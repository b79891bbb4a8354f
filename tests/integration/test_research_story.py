"""Research sharing on a 4-node network: 40 synthetic patients at 3 institutions, 30 consenting.

The extract holds only consenting patients, nothing identifying from the source, every group
reaches k, the report adds up, each release is in the included patients' audit trails; a
revoked consent, a researcher not on the study, too few patients and an ended study are refused.
"""

from __future__ import annotations

import json
import time
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from node.client import HealthClient
from node.core.crypto import Identity
from node.home.keys import load_key_file, write_key_file
from node.research.pseudonyms import KeyedPseudonyms, derive_study_key
from node.research.release import linked_patient
from node.research.synthetic import generate
from tests.helpers import started_network

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STUDY = "DIAB-2027"
TYPES = "Patient,Observation,Condition"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=300, cwd=str(ROOT))


def identifying_strings(resource: dict) -> set[str]:
    out: set[str] = set()
    for name in resource.get("name", []):
        out.update(name.get("given", []))
        if name.get("family"):
            out.add(name["family"])
    for addr in resource.get("address", []):
        out.update(addr.get("line", []))
        if addr.get("postalCode"):
            out.add(addr["postalCode"])
    for tel in resource.get("telecom", []):
        out.add(tel.get("value", ""))
    for ident in resource.get("identifier", []):
        out.add(ident.get("value", ""))
    return {s for s in out if len(s) >= 4}


def test_research_extract(tmp_path):
    data = generate(40, 11, institutions=3)
    with started_network(tmp_path / "net", 4) as c:
        url = [n.api_url for n in c.nodes]
        inst = [load_key_file(n.home / "institution.key") for n in c.nodes]
        clients = [HealthClient(u) for u in url]
        doctors = [Identity.generate() for _ in range(3)]
        for i, d in enumerate(doctors):
            assert clients[i].register(d, "practitioner", institution=inst[i])["status"] == "committed"
        researcher, outsider = Identity.generate(), Identity.generate()
        write_key_file(tmp_path / "ana.key", researcher)
        write_key_file(tmp_path / "out.key", outsider)
        for r in (researcher, outsider):
            assert clients[0].register(r, "researcher", institution=inst[0])["status"] == "committed"
        key0 = str(c.nodes[0].home / "institution.key")
        assert cli("study", "register", "--key", key0, "--id", STUDY, "--title", "Type 2 diabetes outcomes",
                   "--approval", "IRB-2026-114", "--until", "2099-12-31", "--node", url[0]).returncode == 0
        assert cli("study", "add-researcher", "--key", key0, "--study", STUDY, "--researcher", researcher.id,
                   "--node", url[0]).returncode == 0

        persons = sorted(data.persons)
        patients = {p: Identity.generate() for p in persons}
        with ThreadPoolExecutor(8) as pool:
            assert all(r["status"] == "committed" for r in pool.map(lambda p: clients[0].register(patients[p], "patient"), persons))

        def relate(p: str) -> list[str]:  # the patient lets the institutions holding its records treat it
            return [clients[0].transact(patients[p], "consent.grant", {
                "grantee_kind": "institution", "grantee": inst[j].public_key, "purposes": ["treatment"],
                "resource_types": ["*"], "valid_until": 4_102_444_800_000})["status"] for j in sorted(data.persons[p])]

        with ThreadPoolExecutor(8) as pool:
            assert all(st == "committed" for sts in pool.map(relate, persons) for st in sts)
        # each institution writes, for each of its patients, the Patient, two Observations and a Condition
        jobs, source = [], []
        for i, resources in data.institutions.items():
            kept: dict[str, dict[str, int]] = {}
            local_to_person = {local: p for p, places in data.persons.items() for j, local in places.items() if j == i}
            for res in resources:
                owner = linked_patient(res)
                quota = {"Patient": 1, "Observation": 2, "Condition": 1}.get(res["resourceType"], 0)
                seen = kept.setdefault(owner, {})
                if owner not in local_to_person or seen.get(res["resourceType"], 0) >= quota:
                    continue
                seen[res["resourceType"]] = seen.get(res["resourceType"], 0) + 1
                # the hospital's own Patient id is this patient: said with the subject alias
                jobs.append((i, patients[local_to_person[owner]].id, json.dumps(res).encode(), f"Patient/{owner}"))
                source.append(res)
        def write_all(i: int) -> list[dict]:  # one writer per institution, in order (nonces increase)
            return [clients[i].put_record(doctors[i], pid, raw, subject=alias) for j, pid, raw, alias in jobs if j == i]

        with ThreadPoolExecutor(3) as pool:
            results = [r for part in pool.map(write_all, range(3)) for r in part]
        assert all(r["status"] == "committed" for r in results), [r for r in results if r["status"] != "committed"][:3]

        consenting, others = persons[:30], persons[30:]
        consent_ids = {}
        for p in consenting:
            out = clients[0].transact(patients[p], "consent.grant", {
                "grantee_kind": "study", "grantee": STUDY, "purposes": ["research"],
                "resource_types": ["Patient", "Observation", "Condition"], "valid_until": 4_102_444_800_000})
            assert out["status"] == "committed", out
            consent_ids[p] = out["tx_hash"]

        secret = bytes.fromhex((c.nodes[0].home / "research.secret").read_text().strip())
        pseudo = KeyedPseudonyms(derive_study_key(secret, STUDY))
        pseudonym_of = {p: pseudo.person(patients[p].id) for p in persons}

        def extract(name: str, key: str, k: int = 3, node: int = 0) -> subprocess.CompletedProcess[str]:
            return cli("research", "extract", "--key", key, "--study", STUDY, "--types", TYPES, "--k", str(k),
                       "--out", str(tmp_path / name), "--node", url[node], "--json")

        # node 3 is neither the study's institution nor a custodian of its patients: it may not coordinate
        elsewhere = extract("x0", str(tmp_path / "ana.key"), node=3)
        assert elsewhere.returncode == 1 and "study's institution" in elsewhere.stderr, elsewhere.stderr

        first = extract("x1", str(tmp_path / "ana.key"))
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout)
        out_dir = tmp_path / "x1"
        blob = b"".join(p.read_bytes() for p in sorted(out_dir.iterdir()))
        released = {json.loads(line)["id"] for line in (out_dir / "Patient.ndjson").read_text().splitlines()}
        assert released and released <= {pseudonym_of[p] for p in consenting}
        for p in others:
            assert pseudonym_of[p].encode() not in blob
        for res in source:
            for s in identifying_strings(res):
                # as a whole token: a ZIP's five digits may well occur inside a hex pseudonym or hash
                assert not re.search(rb"(?<![0-9A-Za-z])" + re.escape(s.encode()) + rb"(?![0-9A-Za-z])", blob), s
        for name in out_dir.glob("*.ndjson"):
            assert not re.search(rb"\d{4}-\d{2}-\d{2}", name.read_bytes()), name
        # the researcher asked for 3: the study's minimum (the network floor, 5) applies
        assert report["k_requested"] == 3 and report["k_applied"] == 5 and report["k_reached"] >= 5
        assert all(g["patients"] >= 5 for g in report["groups"])
        assert report["patients_included"] + report["patients_suppressed_count"] == report["patients_eligible"] == 30
        assert report["patients_included"] == len(released)
        assert sum(report["resources_per_type"].values()) == report["resources_released"]
        assert report["ledger_transactions"]
        included = [p for p in consenting if pseudonym_of[p] in released]
        reader = patients[included[0]]  # the audit trail is read with the patient's own signature
        audit = clients[1].audit(reader, reader.id)["entries"]
        assert any(e["event"] == "research.released" for e in audit)

        # a plain access request by the researcher opens no raw record, consent or not (issue 15, 1)
        in_order = [job for i in range(3) for job in jobs if job[0] == i]  # the order of `results`
        consenting_ids = {patients[p].id for p in included}
        raw_rid = next(r["record_id"] for job, r in zip(in_order, results, strict=True) if job[1] in consenting_ids)
        raw = cli("record", "get", "--key", str(tmp_path / "ana.key"), "--record", raw_rid, "--purpose", "research",
                  "--out", str(tmp_path / "raw.json"), "--node", url[0])
        assert raw.returncode == 1 and "medledger research extract" in raw.stderr, raw.stderr
        assert not (tmp_path / "raw.json").exists()

        # a revoked consent is honoured by the next extract
        gone = included[0]
        assert clients[0].transact(patients[gone], "consent.revoke", {"consent": bytes.fromhex(consent_ids[gone])})["status"] == "committed"
        second = extract("x2", str(tmp_path / "ana.key"))
        assert second.returncode == 0, second.stderr
        assert pseudonym_of[gone].encode() not in b"".join(p.read_bytes() for p in (tmp_path / "x2").iterdir())

        # refusals, each with its reason
        not_on_study = extract("x3", str(tmp_path / "out.key"))
        assert not_on_study.returncode == 1 and "not on this study" in not_on_study.stderr
        too_few = extract("x4", str(tmp_path / "ana.key"), k=40)
        assert too_few.returncode == 1 and "fewer than k" in too_few.stderr
        # a study that has ended releases nothing more
        import datetime as dt

        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3)
        assert cli("study", "register", "--key", key0, "--id", "SHORT-1", "--title", "Short", "--approval", "IRB-1",
                   "--until", until.isoformat(), "--node", url[0]).returncode == 0
        assert cli("study", "add-researcher", "--key", key0, "--study", "SHORT-1", "--researcher", researcher.id,
                   "--node", url[0]).returncode == 0
        give_up = time.monotonic() + 60
        while clients[0].block("latest")["header"]["timestamp_ms"] <= until.timestamp() * 1000:
            assert time.monotonic() < give_up, "no block after the grant's end"
            clients[0].register(Identity.generate(), "patient")  # an idle network makes no blocks: make one
        ended = cli("research", "extract", "--key", str(tmp_path / "ana.key"), "--study", "SHORT-1", "--types", TYPES,
                    "--k", "1", "--out", str(tmp_path / "x5"), "--node", url[0])
        assert ended.returncode == 1 and "ended" in ended.stderr
