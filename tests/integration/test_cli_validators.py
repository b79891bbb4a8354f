"""`medledger validators` and `medledger validator add|remove|rotate` against a node's API in
this process (the `api` fixture: a one-validator chain). The CLI runs in a thread, as a separate
client would, while the node serves on the test's loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from cli import main
from node.core.crypto import Identity
from node.home.keys import write_key_file
from node.runtime.snapshots import SetChange, verify_changes


def _keyfile(tmp_path: Path, name: str, ident: Identity) -> str:
    path = tmp_path / f"{name}.key"
    write_key_file(path, ident)
    return str(path)


async def _cli(*args: str):
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), catch_exceptions=True)


async def test_validators_and_an_approved_addition(api, tmp_path: Path):
    client, node = api
    url = str(client.make_url("")).rstrip("/")
    me = _keyfile(tmp_path, "validator", node.identity)
    shown = await _cli("validators", "--node", url, "--json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert [v["id"] for v in doc["validators"]] == [node.identity.public_key.hex()]
    assert doc["epoch"] == 0 and doc["pending"] == []
    assert doc["upgrades"] == {"protocol_version": 1, "scheduled": [], "pending": []}
    # the only validator cannot be removed: the refusal says what to do
    refused = await _cli("validator", "remove", "--key", me, "--validator", node.identity.public_key.hex(), "--node", url)
    assert refused.exit_code != 0 and "validator_set_too_small" in refused.output and "Traceback" not in refused.output
    candidate = Identity.from_seed(b"candidate".ljust(32, b"\0"))
    admitted = await _cli("institution", "admit", "--key", me, "--institution", candidate.id, "--name", "New Hospital",
                          "--node", url)
    assert admitted.exit_code == 0, admitted.output
    added = await _cli("validator", "add", "--key", me, "--candidate", candidate.id, "--address", "127.0.0.1:9704",
                       "--api", "http://127.0.0.1:8704", "--node", url, "--json")
    assert added.exit_code == 0, added.output
    result = json.loads(added.stdout)
    assert result["proposal"]["effective_height"] == result["height"] + 2 and result["proposal"]["needed"] == 1
    text = await _cli("validators", "--node", url)
    assert text.exit_code == 0 and "validators:" in text.stdout
    doc = json.loads((await _cli("validators", "--node", url, "--json")).stdout)
    in_set = [v["id"] for v in doc["validators"]] + [i for s in doc["scheduled"] for i in s["validators"]]
    assert candidate.id in in_set


async def test_a_key_rotation(api, tmp_path: Path):
    client, node = api
    url = str(client.make_url("")).rstrip("/")
    new = Identity.from_seed(b"new-key".ljust(32, b"\0"))
    rotated = await _cli("validator", "rotate", "--key", _keyfile(tmp_path, "old", node.identity),
                         "--new-key", _keyfile(tmp_path, "new", new), "--node", url, "--json")
    assert rotated.exit_code == 0, rotated.output
    result = json.loads(rotated.stdout)
    assert result["status"] == "committed" and result["effective_height"] == result["height"] + 2
    status = (await client.get("/v1/status"))
    assert (await status.json())["validators"] == 1


async def test_audit_verify_checks_a_certificate_against_the_set_of_its_height(api, tmp_path: Path):
    """After a second validator is voted in (and the one running node can no longer commit
    alone), a block certified by the first alone still verifies: against the set of its height
    (GET /v1/validators?height=H), not the current one."""
    client, node = api
    url = str(client.make_url("")).rstrip("/")
    me = _keyfile(tmp_path, "validator", node.identity)
    candidate = Identity.from_seed(b"candidate".ljust(32, b"\0"))
    assert (await _cli("institution", "admit", "--key", me, "--institution", candidate.id, "--name", "New Hospital",
                       "--node", url)).exit_code == 0
    added = await _cli("validator", "add", "--key", me, "--candidate", candidate.id, "--address", "127.0.0.1:9704",
                       "--api", "http://127.0.0.1:8704", "--node", url, "--json")
    assert added.exit_code == 0, added.output
    decided, add_tx = json.loads(added.stdout)["height"], json.loads(added.stdout)["tx_hash"]
    other = Identity.from_seed(b"other".ljust(32, b"\0"))  # one more block, the last the old set decides
    assert (await _cli("institution", "admit", "--key", me, "--institution", other.id, "--name", "Other",
                       "--node", url)).exit_code == 0
    assert node.store.height == decided + 1
    status = await (await client.get("/v1/status")).json()
    assert status["validators"] == 2 and [v["id"] for v in status["validator_set"]] == [node.identity.id, candidate.id]
    assert "validator_count" not in status
    then = await (await client.get(f"/v1/validators?height={decided}")).json()
    assert [v["id"] for v in then["validators"]] == [node.identity.id] and then["epoch"] == 0
    later = await (await client.get(f"/v1/validators?height={decided + 2}")).json()
    assert len(later["validators"]) == 2 and later["epoch"] == 1 and later["since"] == decided + 2
    too_far = await client.get(f"/v1/validators?height={decided + 4}")
    assert too_far.status == 404 and (await too_far.json())["error"] == "unknown_block"
    assert (await client.get("/v1/validators?height=0")).status == 400
    history = (await (await client.get("/v1/validators")).json())["history"]
    assert [(e["effective_height"], e["decided_height"], len(e["validators"])) for e in history] == [
        (1, None, 1), (decided + 2, decided, 2)]
    proofs = (await (await client.get("/v1/validators?proofs=1")).json())["changes"]
    assert [(c["decided_height"], c["effective_height"]) for c in proofs] == [(decided, decided + 2)]
    sets = verify_changes(node.genesis, [SetChange.from_json(c) for c in proofs])  # what a joiner checks
    assert [len(s) for _, s in sets] == [1, 2]
    verified = await _cli("audit", "verify", "--tx", add_tx, "--key", me, "--node", url, "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["checks"]["commit_certificate"] is True
    # the validator transactions concern no patient: the explorer shows their bodies to anyone
    block = await (await client.get(f"/v1/blocks/{decided}")).json()
    assert [t["type"] for t in block["txs"]] == ["validator.add"] and block["txs"][0]["body"]["candidate"] == candidate.id


async def test_status_shows_the_number_of_validators_and_lists_them(api):
    client, node = api
    url = str(client.make_url("")).rstrip("/")
    shown = await _cli("status", "--node", url)
    assert shown.exit_code == 0, shown.output
    assert "validators:  1\n" in shown.stdout and node.identity.id[:16] in shown.stdout
    doc = json.loads((await _cli("status", "--node", url, "--json")).stdout)
    assert doc["validators"] == 1 and doc["validator_set"][0]["id"] == node.identity.id and doc["epoch"] == 0


async def test_validators_shows_a_scheduled_upgrade(api, tmp_path: Path):
    client, node = api
    url = str(client.make_url("")).rstrip("/")
    at = node.store.height + 50
    scheduled = await _cli("node", "upgrade-schedule", "--key", _keyfile(tmp_path, "validator", node.identity),
                           "--version", "2", "--height", str(at), "--node", url, "--json")
    assert scheduled.exit_code == 0, scheduled.output
    doc = json.loads((await _cli("validators", "--node", url, "--json")).stdout)
    assert doc["upgrades"]["protocol_version"] == 1
    assert [(u["version"], u["height"]) for u in doc["upgrades"]["scheduled"]] == [(2, at)]
    text = (await _cli("validators", "--node", url)).stdout
    assert "protocol version: 1" in text and f"upgrade scheduled: version 2 from height {at}" in text
