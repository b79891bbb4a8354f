"""`medledger devnet ids` on an initialised devnet that is not running (the files only), the
devnet's institutions named by kind, and `identity register --profession` refusing bad input
before it talks to a node."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main
from node.chain.genesis import Genesis
from node.devtools.cluster import Cluster


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_devnet_ids_reads_the_homes_and_the_genesis(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    r = run("devnet", "init", "--nodes", "5", "--dir", str(root), "--base-port", "23700", "--json")
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)["nodes"]
    ids = {n["node"]: n["node_id"] for n in made}
    assert [(n["name"], n["kind"]) for n in made][:2] == [("hospital", "hospital"), ("clinic", "clinic")]
    r = run("devnet", "ids", "--dir", str(root), "--json", "--files-only")  # whatever listens on those ports
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["source"] == "files" and doc["asked"] is None
    rows = doc["institutions"]
    assert [(i["name"], i["kind"]) for i in rows] == [("hospital", "hospital"), ("clinic", "clinic"), ("pharmacy", "pharmacy"),
                                                      ("insurer", "insurer"), ("research", "research")]
    assert [i["id"] for i in rows] == [ids[f"node{k}"] for k in range(5)]
    assert [i["api"] for i in rows] == [f"http://127.0.0.1:{23700 + k}" for k in range(5)]
    assert all(i["validator"] and i["admitted"] for i in rows)
    genesis = Genesis.load(root / "node0" / "genesis.json")
    assert {(i.id.hex(), i.kind) for i in genesis.institutions} == {(i["id"], i["kind"]) for i in rows}
    r = run("devnet", "ids", "--dir", str(root), "--files-only")
    assert r.exit_code == 0
    lines = r.output.strip().splitlines()
    assert lines[0].split()[:3] == ["node0", "hospital", "hospital"] and ids["node0"] in lines[0] and "validator" in lines[0]
    assert "the homes and the genesis only" in lines[-1] and "--files-only" in lines[-1]


def test_devnet_ids_without_a_nodes_answer_says_it_read_the_files(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    Cluster.create(root, 4)  # on ports free just now: nobody answers
    r = run("devnet", "ids", "--dir", str(root))
    assert r.exit_code == 0
    assert [line.split()[1] for line in r.output.splitlines()[:4]] == ["hospital", "clinic", "pharmacy", "insurer"]
    assert "no node answered" in r.output.splitlines()[-1]


def test_devnet_ids_of_a_directory_without_a_devnet_is_a_usage_error(tmp_path: Path) -> None:
    r = run("devnet", "ids", "--dir", str(tmp_path / "nothing"))
    assert r.exit_code == 2 and "no node homes" in r.output and "devnet init" in r.output


def test_devnet_ids_help_has_an_example() -> None:
    r = run("devnet", "ids", "--help")
    assert r.exit_code == 0 and "medledger devnet ids --dir ./devnet" in r.output


def test_identity_register_refuses_a_bad_profession_before_any_request(tmp_path: Path) -> None:
    key, inst = tmp_path / "dr.key", tmp_path / "inst.key"
    for k in (key, inst):
        assert run("keys", "new", "--out", str(k)).exit_code == 0
    unreachable = "http://127.0.0.1:9"  # nothing may be asked: each refusal comes first
    r = run("identity", "register", "--key", str(key), "--role", "practitioner", "--profession", "surgeon",
            "--institution-key", str(inst), "--node", unreachable)
    assert r.exit_code == 2 and "surgeon" in r.output and "physician" in r.output and "claims-officer" in r.output
    r = run("identity", "register", "--key", str(key), "--role", "patient", "--profession", "nurse", "--node", unreachable)
    assert r.exit_code == 2 and "practitioners only" in r.output
    r = run("identity", "register", "--key", str(key), "--role", "practitioner", "--profession", "nurse", "--node", unreachable)
    assert r.exit_code == 2 and "--institution-key" in r.output


def test_node_init_writes_the_kind_it_is_given(tmp_path: Path) -> None:
    r = run("node", "init", "--home", str(tmp_path / "h"), "--name", "st-marys", "--kind", "hospital", "--json")
    assert r.exit_code == 0, r.output
    [inst] = Genesis.load(tmp_path / "h" / "genesis.json").institutions
    assert (inst.name, inst.kind) == ("st-marys", "hospital")
    r = run("node", "init", "--home", str(tmp_path / "h2"), "--kind", "spa")
    assert r.exit_code == 2 and "hospital" in r.output and not (tmp_path / "h2").exists()
