"""FHIR Bulk Data export of a study on a 4-node network: 40 synthetic patients at 3 institutions,
34 consenting to the study.

A researcher of the study's institution gets a SMART token (HRESCH) from that institution's
node, kicks off `Group/<study>/$export`, polls the status URL until the manifest comes, and
fetches the NDJSON files: every line validates with fhir.resources, only consenting patients
are in it, nothing identifying from the source, every Patient group reaches the k asked for
(above the study's minimum), and each custodian's part of the release is on the chain, in an
included patient's audit trail, naming the researcher and the institution that asked (`via`).
Another researcher of the institution who is not on the study is refused; the files are served
to nobody else; DELETE removes them.

Until the daemon mounts node/fhir/bulk.py itself (`api_mounts` in node/daemon.py), each node
process gets it from a `sitecustomize` on its PYTHONPATH that adds `install_bulk` to the
daemon's mounts; once the daemon has it, that shim adds nothing.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from node.client import HealthClient
from node.core.crypto import Identity
from node.devtools.cluster import Cluster
from node.fhir.client_assertion import make_assertion, token_form
from node.fhir.smart import TOKEN_PATH
from node.home.keys import load_key_file
from node.research.pseudonyms import KeyedPseudonyms, derive_study_key
from node.research.release import linked_patient
from node.research.synthetic import generate
from tests.helpers import cli, wait_until
from tests.integration.test_research_story import identifying_strings
from tests.unit.research.support import assert_valid_r4

pytestmark = pytest.mark.slow
STUDY = "BULK-2027"
K = 6  # above the study's minimum (the network floor, 5)

SHIM = '''\
"""Test shim (tests/integration/test_bulk_export.py): mount the FHIR bulk export in the daemon."""
import node.daemon as _daemon
from node.fhir.bulk import install_bulk as _install_bulk

_plain = _daemon.api_mounts


def _api_mounts(config):
    mounts = _plain(config)
    return mounts if not mounts or _install_bulk in mounts else [*mounts, _install_bulk]


_daemon.api_mounts = _api_mounts
'''


def http(method: str, url: str, *, token: str | None = None, headers: dict[str, str] | None = None,
         data: bytes | None = None) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, method=method, data=data, headers={
        **(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def token(api: str, who: Identity) -> str:
    form = token_form(make_assertion(who, api + TOKEN_PATH, time.time_ns() // 1_000_000), "system/*.read", "HRESCH")
    status, body, _ = http("POST", api + TOKEN_PATH, data=urllib.parse.urlencode(form).encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    return str(json.loads(body)["access_token"])


def outcome_code(body: bytes) -> str:
    return str(json.loads(body)["issue"][0]["details"]["coding"][0]["code"])


def test_bulk_export_of_a_study(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    data = generate(40, 18, institutions=3)  # seed: at least 14 patients released at k=6 for any year 2026-2031
    with Cluster.create(tmp_path / "net", 4) as c:
        c.extra_env = {"PYTHONPATH": str(shim)}
        c.start()
        c.wait_ready(60)
        url = [n.api_url for n in c.nodes]
        inst = [load_key_file(n.home / "institution.key") for n in c.nodes]
        clients = [HealthClient(u) for u in url]
        doctors = [Identity.generate() for _ in range(3)]
        for i, d in enumerate(doctors):
            assert clients[i].register(d, "practitioner", institution=inst[i])["status"] == "committed"
        researcher, outsider = Identity.generate(), Identity.generate()
        for r in (researcher, outsider):
            assert clients[0].register(r, "researcher", institution=inst[0])["status"] == "committed"
        key0 = str(c.nodes[0].home / "institution.key")
        assert cli("study", "register", "--key", key0, "--id", STUDY, "--title", "Bulk export", "--approval", "IRB-7",
                   "--until", "2099-12-31", "--node", url[0]).returncode == 0
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
        jobs, source = [], []
        for i, resources in data.institutions.items():
            kept: dict[str, dict[str, int]] = {}
            local_to_person = {local: p for p, places in data.persons.items() for j, local in places.items() if j == i}
            for res in resources:
                owner = linked_patient(res)
                quota = {"Patient": 1, "Observation": 2, "Condition": 1}.get(res["resourceType"], 0)
                seen = kept.setdefault(str(owner), {})
                if owner not in local_to_person or seen.get(res["resourceType"], 0) >= quota:
                    continue
                seen[res["resourceType"]] = seen.get(res["resourceType"], 0) + 1
                jobs.append((i, patients[local_to_person[owner]].id, json.dumps(res).encode(), f"Patient/{owner}"))
                source.append(res)

        def write_all(i: int) -> list[dict[str, Any]]:  # one writer per institution, in order (nonces increase)
            return [clients[i].put_record(doctors[i], pid, raw, subject=alias) for j, pid, raw, alias in jobs if j == i]

        with ThreadPoolExecutor(3) as pool:
            results = [r for part in pool.map(write_all, range(3)) for r in part]
        assert all(r["status"] == "committed" for r in results)

        consenting, others = persons[:34], persons[34:]
        for p in consenting:
            out = clients[0].transact(patients[p], "consent.grant", {
                "grantee_kind": "study", "grantee": STUDY, "purposes": ["research"],
                "resource_types": ["Patient", "Observation", "Condition"], "valid_until": 4_102_444_800_000})
            assert out["status"] == "committed", out
        secret = bytes.fromhex((c.nodes[0].home / "research.secret").read_text().strip())
        pseudo = KeyedPseudonyms(derive_study_key(secret, STUDY))
        pseudonym_of = {p: pseudo.person(patients[p].id) for p in persons}

        # kick-off at the study institution's node, with the researcher's token
        fhir = url[0] + "/fhir/R4"
        mine = token(url[0], researcher)
        kickoff = f"{fhir}/Group/{STUDY}/$export?_type=Patient,Observation,Condition&k={K}"
        prefer = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
        status, body, headers = http("GET", kickoff, token=mine, headers=prefer)
        assert status == 202, body
        status_url = headers["Content-Location"]
        assert status_url.startswith(fhir + "/$export-status/")

        # another researcher of the institution, not on the study: refused, and sees nothing of this job
        theirs = token(url[0], outsider)
        status, body, _ = http("GET", kickoff, token=theirs, headers=prefer)
        assert status == 403 and outcome_code(body) == "researcher_not_on_study", body
        status, body, _ = http("GET", status_url, token=theirs)
        assert status == 404 and outcome_code(body) == "unknown_export"

        progress: list[str] = []

        def done() -> bytes | None:
            got, answer, head = http("GET", status_url, token=mine)
            if got == 202:
                progress.append(head["X-Progress"])
                return None
            assert got == 200, answer
            return answer

        manifest = json.loads(wait_until(done, 180, "the export to finish"))
        assert manifest["requiresAccessToken"] is True and manifest["error"] == [] and manifest["request"] == kickoff
        ours = manifest["extension"]["medledger"]
        assert ours["k_requested"] == K and ours["k_applied"] == K and ours["k_reached"] >= K
        assert ours["ledger_transactions"]

        files: dict[str, list[dict[str, Any]]] = {}
        for output in manifest["output"]:
            status, raw, headers = http("GET", output["url"], token=mine)
            assert status == 200 and headers["Content-Type"].startswith("application/fhir+ndjson")
            lines = [json.loads(line) for line in raw.decode().splitlines()]
            assert len(lines) == output["count"]
            for resource in lines:
                assert resource["resourceType"] == output["type"]
                assert_valid_r4(resource)
            files[output["type"]] = lines
            status, body, _ = http("GET", output["url"], token=theirs)
            assert status == 404, body
        assert set(files) == {"Patient", "Observation", "Condition"}
        groups = Counter(json.dumps({n: v for n, v in p.items() if n != "id"}, sort_keys=True) for p in files["Patient"])
        assert min(groups.values()) >= K, groups
        released = {p["id"] for p in files["Patient"]}
        assert released and released <= {pseudonym_of[p] for p in consenting}
        blob = json.dumps(files).encode()
        for p in others:
            assert pseudonym_of[p].encode() not in blob
        for res in source:
            for s in identifying_strings(res):
                assert not re.search(rb"(?<![0-9A-Za-z])" + re.escape(s.encode()) + rb"(?![0-9A-Za-z])", blob), s

        # the release is on the chain, in an included patient's trail: the researcher, and via the institution
        included = [p for p in consenting if pseudonym_of[p] in released]
        reader = patients[included[0]]
        entries = [e for e in clients[1].audit(reader, reader.id)["entries"] if e["event"] == "research.released"]
        assert entries and all(e["study"] == STUDY for e in entries)
        assert {(e["researcher"], e["via"]) for e in entries} == {(researcher.id, inst[0].id)}
        assert {e["tx"] for e in entries} <= set(ours["ledger_transactions"])

        # DELETE removes the job and its files
        file_url = manifest["output"][0]["url"]
        assert http("DELETE", status_url, token=mine)[0] == 202
        assert http("GET", file_url, token=mine)[0] == 404
        assert http("GET", status_url, token=mine)[0] == 404
