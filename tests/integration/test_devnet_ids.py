"""`medledger devnet ids` against a running one-node devnet: the ledger's view joins the files'.
An institution admitted since the genesis (a home beside the devnet's, voted in as a lab, not
started) shows as admitted with the kind the validators approved, and not as a validator; a
practitioner registered with `identity register --profession` shows it in GET /v1/identities/{id}."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main
from node.client import HealthClient as Client
from node.home.keys import load_key_file
from node.home.layout import add_node_home, join_identity
from node.chain.genesis import Genesis
from tests.helpers import started_network


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_devnet_ids_asks_the_running_node(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    with started_network(root, 1) as c:
        url = c.nodes[0].api_url
        validator = load_key_file(root / "node0" / "institution.key")
        client = Client(url)
        lab = join_identity(root / "node1")
        done = client.transact(validator, "governance.admit_institution",
                               {"institution": lab.public_key, "name": "city-lab", "kind": "lab"})
        assert done["status"] == "committed", done
        add_node_home(root / "node1", genesis=Genesis.load(root / "node0" / "genesis.json"), name="city-lab",
                      api_port=1, p2p_port=2, peers="")  # a home that is never started
        r = run("devnet", "ids", "--dir", str(root), "--json")
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output)
        assert doc["source"] == "ledger" and doc["asked"] == url
        rows = {i["node"]: i for i in doc["institutions"]}
        assert rows["node0"] == {"node": "node0", "name": "hospital", "kind": "hospital", "api": url,
                                 "id": validator.id, "validator": True, "admitted": True}
        assert rows["node1"]["id"] == lab.id and rows["node1"]["kind"] == "lab" and rows["node1"]["admitted"] is True
        assert rows["node1"]["validator"] is False and rows["node1"]["name"] == "city-lab"
        text = run("devnet", "ids", "--dir", str(root))
        assert f"checked against the ledger at {url}" in text.output
        files = json.loads(run("devnet", "ids", "--dir", str(root), "--json", "--files-only").output)
        assert files["source"] == "files"
        assert [(i["kind"], i["admitted"]) for i in files["institutions"]] == [("hospital", True), ("unspecified", False)]
        # a practitioner attested as a pharmacist by the hospital
        dr = tmp_path / "dr.key"
        assert run("keys", "new", "--out", str(dr)).exit_code == 0
        r = run("identity", "register", "--key", str(dr), "--role", "practitioner", "--profession", "pharmacist",
                "--institution-key", str(root / "node0" / "institution.key"), "--node", url, "--json")
        assert r.exit_code == 0, r.output
        shown = client.get(f"/v1/identities/{load_key_file(dr).id}")
        assert shown["profession"] == "pharmacist" and shown["institution"] == validator.id
