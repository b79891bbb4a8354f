"""Guardians, break-glass opt-out and review, and admitting an institution by a validators' vote,
through the CLI on a 4-node network."""

from __future__ import annotations

import json

import pytest

from node.client import HealthClient
from node.core.crypto import Identity
from node.home.keys import load_key_file, write_key_file
from tests.helpers import cli, started_network

pytestmark = pytest.mark.slow
OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "Glucose"}, "valueQuantity": {"value": 5, "unit": "mmol/L"}}


def test_guardian_breakglass_and_admission(tmp_path):
    with started_network(tmp_path / "net", 4) as c:
        url = [n.api_url for n in c.nodes]
        keyfile = [str(n.home / "institution.key") for n in c.nodes]
        inst = [load_key_file(k) for k in keyfile]
        client = HealthClient(url[0])
        minor, parent, doctor, er_doc = (Identity.generate() for _ in range(4))
        for ident, name in ((minor, "minor"), (parent, "parent")):
            write_key_file(tmp_path / f"{name}.key", ident)
            # registered at institution 0, whose doctor writes the minor's record (a treatment relationship)
            assert client.register(ident, "patient", institution=inst[0])["status"] == "committed"
        assert client.register(doctor, "practitioner", institution=inst[0])["status"] == "committed"
        assert HealthClient(url[1]).register(er_doc, "practitioner", institution=inst[1])["status"] == "committed"
        rid = client.put_record(doctor, minor.id, json.dumps(OBS).encode())["record_id"]

        # the parent becomes guardian and grants on the minor's behalf
        r = cli("patient", "guardian", "--key", str(tmp_path / "minor.key"), "--guardian", parent.id, "--node", url[0])
        assert r.returncode == 0, r.stderr
        r = cli("consent", "grant", "--key", str(tmp_path / "parent.key"), "--for", minor.id, "--to", er_doc.id,
                "--types", "Observation", "--purpose", "treatment", "--until", "2099-01-01", "--node", url[0], "--json")
        assert r.returncode == 0, r.stderr
        assert HealthClient(url[1]).request_access(er_doc, rid, "treatment")["status"] == "committed"
        # a stranger cannot act for the minor
        stranger = Identity.generate()
        write_key_file(tmp_path / "stranger.key", stranger)
        assert client.register(stranger, "patient")["status"] == "committed"
        r = cli("consent", "grant", "--key", str(tmp_path / "stranger.key"), "--for", minor.id, "--to", er_doc.id,
                "--types", "*", "--purpose", "treatment", "--until", "2099-01-01", "--node", url[0])
        assert r.returncode == 1

        # break-glass works, appears for review at the custodian, and is reviewed
        glass = HealthClient(url[1]).request_access(er_doc, rid, "emergency", "unconscious")
        assert glass["status"] == "committed" and glass["decision"]["rule"] == "breakglass"
        pending = json.loads(cli("audit", "breakglass", "--key", keyfile[0], "--node", url[0], "--json").stdout)["pending"]
        assert len(pending) == 1
        r = cli("audit", "review", "--key", keyfile[0], "--access", glass["tx_hash"], "--outcome", "justified", "--node", url[0])
        assert r.returncode == 0, r.stderr
        assert json.loads(cli("audit", "breakglass", "--key", keyfile[0], "--node", url[0], "--json").stdout)["pending"] == []
        # after opting out, break-glass is denied
        r = cli("patient", "breakglass", "--key", str(tmp_path / "minor.key"), "--opt-out", "--node", url[0])
        assert r.returncode == 0, r.stderr
        again = HealthClient(url[1]).request_access(er_doc, rid, "emergency", "life_threatening")
        assert again["status"] == "denied" and again["decision"]["rule"] == "breakglass_opted_out"

        # a new institution is admitted once a quorum (3 of 4) of validators approved
        newcomer = Identity.generate()
        for i in range(3):
            r = cli("institution", "admit", "--key", keyfile[i], "--institution", newcomer.id, "--name", "St Mary",
                    "--node", url[i], "--json")
            assert r.returncode == 0, r.stderr
            role = (client.get(f"/v1/identities/{newcomer.id}") if i == 2 else None)
        assert role and role["role"] == "institution"
