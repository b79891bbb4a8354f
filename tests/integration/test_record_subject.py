"""Issue 15, finding 19, through the CLI on a one-node network: `record put --patient P` refuses a
Bundle that holds another patient's record, and nothing reaches P's chart."""

from __future__ import annotations

import json

import pytest

from node.devtools.cluster import Cluster
from tests.helpers import cli, cli_json

pytestmark = pytest.mark.slow


def observation(patient_id: str, text: str) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": text},
            "subject": {"reference": f"Patient/{patient_id}"}}


def test_record_put_refuses_a_bundle_holding_another_patients_record(tmp_path):
    with Cluster.create(tmp_path / "net", 1) as c:
        c.start()
        c.wait_ready(30)
        url, inst = c.nodes[0].api_url, str(c.nodes[0].home / "institution.key")
        keys = {name: str(tmp_path / f"{name}.key") for name in ("alice", "bob", "dr")}
        for path in keys.values():
            cli_json("keys", "new", "--out", path)
        ids = {name: cli_json("keys", "show", path)["id"] for name, path in keys.items()}
        for name in ("alice", "bob"):
            cli_json("identity", "register", "--key", keys[name], "--role", "patient", "--institution-key", inst, "--node", url)
        cli_json("identity", "register", "--key", keys["dr"], "--role", "practitioner", "--institution-key", inst, "--node", url)
        # Bob's whole record as a Bundle, put into Alice's chart
        bobs = {"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": observation(ids["bob"], "Heart rate")},
            {"fullUrl": "urn:uuid:2", "resource": observation(ids["bob"], "Glucose")}]}
        source = tmp_path / "bob.json"
        source.write_text(json.dumps(bobs))
        refused = cli("record", "put", "--key", keys["dr"], "--patient", ids["alice"], "--file", str(source), "--node", url)
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert "another patient's record" in refused.stderr and "Traceback" not in refused.stderr
        assert cli_json("record", "list", "--key", keys["alice"], "--node", url)["records"] == []
        # the same Bundle in Bob's chart is accepted
        rid = cli_json("record", "put", "--key", keys["dr"], "--patient", ids["bob"], "--file", str(source), "--node", url)["record_id"]
        assert [r["id"] for r in cli_json("record", "list", "--key", keys["bob"], "--node", url)["records"]] == [rid]
