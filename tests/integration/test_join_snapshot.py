"""`medledger node init --join` against a real devnet of four validator processes: the
validators take snapshots every 5 blocks, the new institution is admitted by vote, its home
is made from the newest verified snapshot, and its node (an observer the validators accept)
follows the chain from there with the same state root. Every wait is on a condition with a
deadline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.chain.tx import Transaction
from node.client import Client
from node.core.crypto import Identity
from node.devtools.cluster import Cluster, ClusterNode, free_ports, http_json
from node.home.keys import write_key_file
from tests.helpers import cli, submit_txs, wait_until

pytestmark = pytest.mark.slow
INTERVAL = 5


def submit_patients(url: str, chain_id: str, count: int, seed: int) -> None:
    txs = [Transaction.create(Identity.from_seed((seed * 100_000 + i).to_bytes(32, "big")), chain_id=chain_id,
                              type="identity.register", nonce=1, body={"role": "patient"}) for i in range(count)]
    submit_txs(url, txs)


def test_a_new_institution_joins_a_devnet_from_a_snapshot(tmp_path: Path):
    joiner_home = tmp_path / "joiner"
    joiner_home.mkdir(mode=0o700)
    joiner = Identity.generate()
    write_key_file(joiner_home / "institution.key", joiner)  # kept by --join: the validators list it up front
    env = {"MEDLEDGER_STORAGE_SNAPSHOT_INTERVAL": str(INTERVAL), "MEDLEDGER_P2P_OBSERVERS": joiner.id}
    c = Cluster.create(tmp_path / "devnet", 4, extra_env=env)
    urls = [n.api_url for n in c.nodes]
    try:
        c.start()
        c.wait_ready(60)
        chain_id = http_json(urls[0] + "/v1/status")["chain_id"]
        for i in range(3):
            r = cli("institution", "admit", "--key", str(c.nodes[i].home / "institution.key"), "--institution",
                    joiner.id, "--name", "St Mary", "--node", urls[i], "--json")
            assert r.returncode == 0, r.stderr
        for batch in range(4):
            submit_patients(urls[batch % 4], chain_id, 50, batch)
        start = http_json(urls[0] + "/v1/status")["height"]
        target = (start // INTERVAL + 2) * INTERVAL
        while http_json(urls[0] + "/v1/status")["height"] < target:
            submit_patients(urls[0], chain_id, 5, 1000 + http_json(urls[0] + "/v1/status")["height"])
            c.wait_for_height(http_json(urls[0] + "/v1/status")["height"] + 1, 30)

        def snapshot_everywhere() -> int | None:
            tops = [(Client(u).snapshots(joiner)["snapshots"] or [{}])[0].get("height") for u in urls]
            return tops[0] if tops[0] is not None and len(set(tops)) == 1 else None

        height = wait_until(snapshot_everywhere, 60, "a snapshot of one height on every validator")
        api_port, p2p_port = free_ports(2)
        r = cli("node", "init", "--home", str(joiner_home), "--join", urls[0], "--api-port", str(api_port),
                "--p2p-port", str(p2p_port), "--name", "St Mary", "--json")
        assert r.returncode == 0, r.stderr
        joined = json.loads(r.stdout)
        assert joined["node_id"] == joiner.id and joined["height"] >= height and joined["attestations"] >= 2

        c.nodes.append(ClusterNode(4, joiner_home, joined["api_url"], joiner.id))
        c.start(4)
        c.wait_ready(60, i=4)
        submit_patients(urls[1], chain_id, 20, 9999)
        head = http_json(urls[0] + "/v1/status")["height"]
        c.wait_for_height(head + 1, 60, nodes=[0, 4])
        status = http_json(joined["api_url"] + "/v1/status")
        assert status["validator"] is False
        h = status["height"]
        mine = http_json(f"{joined['api_url']}/v1/blocks/{h}")
        theirs = http_json(f"{urls[0]}/v1/blocks/{h}")
        assert (mine["hash"], mine["header"]["state_root"]) == (theirs["hash"], theirs["header"]["state_root"])
    finally:
        c.stop_all()
