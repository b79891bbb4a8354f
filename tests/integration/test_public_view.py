"""The public view of the chain (issue 15, finding 3): an unsigned caller of the explorer learns
headers, hashes, results and Merkle proofs, never a patient's story; a signed caller sees the
transactions it is a party to, whole."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app.types.identity import attest
from node.api.auth import sign_headers
from node.home.config import build_config
from node.core.crypto import Identity
from node.core.merkle import verify_inclusion, verify_inclusion_of_hash
from node.runtime.runtime import Node
from node.chain.tx import Transaction

from tests.helpers import CHAIN, NODE_ID, make_node

MSGPACK = {"Content-Type": "application/msgpack"}
PATIENT = Identity.from_seed(b"\x21" * 32)
GUARDIAN = Identity.from_seed(b"\x22" * 32)
STRANGER = Identity.from_seed(b"\x23" * 32)
DOCTOR = Identity.from_seed(b"\x24" * 32)
NURSE = Identity.from_seed(b"\x25" * 32)
RECORD = hashlib.sha256(b"record of the patient").digest()


def signed(who: Identity, path: str) -> dict[str, str]:
    return sign_headers(who, chain_id=CHAIN, node_id=NODE_ID, method="GET", path_qs=path, timestamp_ms=time.time_ns() // 1_000_000)


async def commit(client: TestClient, who: Identity, nonce: int, type_: str, body: dict) -> dict:
    tx = Transaction.create(who, chain_id=CHAIN, type=type_, nonce=nonce, body=body)
    resp = await client.post("/v1/txs?wait=20", data=tx.encoded, headers=MSGPACK)
    got = await resp.json()
    assert resp.status == 200 and got["status"] == "committed" and got["result"] == "ok", got
    return got


async def get(client: TestClient, path: str, who: Identity | None = None) -> tuple[int, dict]:
    resp = await client.get(path, headers=signed(who, path) if who else {})
    return resp.status, await resp.json()


@pytest.fixture
async def story(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Node, dict[str, str]]]:
    """A patient with a guardian, a break-glass opt-out, a consent, a record and an access to it."""
    cfg = build_config({"consensus": {"empty_block_interval_ms": 50}}, env={})
    node = make_node(tmp_path / "db", config=cfg)
    client = TestClient(TestServer(make_app(node)))
    await client.start_server()
    node.start()
    inst = node.identity
    txs: dict[str, str] = {}
    try:
        await commit(client, PATIENT, 1, "identity.register", {"role": "patient"})
        await commit(client, GUARDIAN, 1, "identity.register", {"role": "patient"})
        await commit(client, STRANGER, 1, "identity.register", {"role": "patient"})
        for who in (DOCTOR, NURSE):
            await commit(client, who, 1, "identity.register", {
                "role": "practitioner", "institution": inst.public_key,
                "attestation": attest(inst, chain_id=CHAIN, registrant=who.public_key, role="practitioner")})
        txs["guardian"] = (await commit(client, PATIENT, 2, "patient.set_guardian", {"guardian": GUARDIAN.public_key}))["hash"]
        txs["optout"] = (await commit(client, PATIENT, 3, "consent.breakglass", {"opt_out": True}))["hash"]
        txs["consent"] = (await commit(client, PATIENT, 4, "consent.grant", {
            "grantee_kind": "institution", "grantee": inst.public_key, "purposes": ["treatment"],
            "resource_types": ["Observation"], "valid_until": 4_102_444_800_000}))["hash"]
        txs["record"] = (await commit(client, DOCTOR, 2, "record.add", {
            "record": RECORD, "patient": PATIENT.public_key, "resource_type": "Observation",
            "hash": hashlib.sha256(b"ciphertext").digest(), "custodian": inst.public_key}))["hash"]
        txs["access"] = (await commit(client, NURSE, 2, "access.request", {"record": RECORD, "purpose": "treatment"}))["hash"]
        yield client, node, txs
    finally:
        node.stop()
        await client.close()
        node.store.close()


async def public_answers(client: TestClient, node: Node, txs: dict[str, str]) -> str:
    """Everything an unsigned caller can read about the chain and the patient, as one text."""
    out = []
    for height in range(1, node.store.height + 1):
        status, block = await get(client, f"/v1/blocks/{height}")
        assert status == 200
        out.append(json.dumps(block))
        for tx in block["txs"]:
            status, proof = await get(client, f"/v1/txs/{tx['hash']}/proof")
            assert status == 200
            out.append(json.dumps(proof))
    for ident in (PATIENT, GUARDIAN, DOCTOR, NURSE):
        out.append(json.dumps((await get(client, f"/v1/identities/{ident.id}"))[1]))
        out.append(json.dumps((await get(client, f"/v1/accounts/{ident.id}"))[1]))
    status, commits = await get(client, "/v1/commits?since=1&results=1")
    out.append(json.dumps(commits))
    return "\n".join(out)


async def test_unsigned_explorer_does_not_reveal_a_patients_trail(story):
    client, node, txs = story
    text = await public_answers(client, node, txs)
    # the patient's key appears only as the id asked for in its own identity and account answers
    assert text.count(PATIENT.id) == 2, "the patient's key is linkable from public answers"
    for secret, what in ((GUARDIAN.id, "guardian"), (RECORD.hex(), "record id"), ("Observation", "resource type"),
                         ("treatment", "purpose"), ("opt_out", "break-glass choice"), ("breakglass_opt_out", "opt-out flag"),
                         ("consent.grant", "a patient's transaction type")):
        # the guardian's key is asked for once (its own identity) and once (its own account)
        limit = 2 if secret == GUARDIAN.id else 0
        assert text.count(secret) <= limit, f"the {what} is readable without a key"
    # the encoded transactions (the leaves) are not given, their hashes are
    status, proof = await get(client, f"/v1/txs/{txs['access']}/proof")
    assert "leaf" not in proof and proof["leaf_withheld"]


async def test_public_proof_still_verifies_from_the_leaf_hash(story):
    client, node, txs = story
    for tx_hash in txs.values():
        _, proof = await get(client, f"/v1/txs/{tx_hash}/proof")
        _, block = await get(client, f"/v1/blocks/{proof['height']}")
        assert block["txs"][proof["index"]]["hash"] == tx_hash
        assert verify_inclusion_of_hash(bytes.fromhex(proof["leaf_hash"]), proof["index"], proof["size"],
                                        [bytes.fromhex(p) for p in proof["path"]], bytes.fromhex(block["header"]["tx_root"]))


async def test_identity_does_not_reveal_guardian_or_breakglass_choice_to_anyone(story):
    client, node, _ = story
    status, public = await get(client, f"/v1/identities/{PATIENT.id}")
    assert status == 200 and public == {"id": PATIENT.id, "role": "patient", "label": ""}
    status, ward = await get(client, f"/v1/identities/{GUARDIAN.id}")
    assert "guardian_of" not in ward
    status, stranger = await get(client, f"/v1/identities/{PATIENT.id}", STRANGER)
    assert "guardian" not in stranger and "breakglass_opt_out" not in stranger
    for who in (PATIENT, GUARDIAN, node.identity):
        status, full = await get(client, f"/v1/identities/{PATIENT.id}", who)
        assert status == 200 and full["guardian"] == GUARDIAN.id and full["breakglass_opt_out"] is True, who.id
    status, own = await get(client, f"/v1/identities/{GUARDIAN.id}", GUARDIAN)
    assert own["guardian_of"] == [PATIENT.id]


async def test_parties_read_whole_transactions_with_a_signed_request(story):
    client, node, txs = story
    _, record = await get(client, "/v1/txs/" + txs["record"])
    height = record["height"]
    path = f"/v1/blocks/{height}"

    def body_of(block: dict) -> dict | None:
        tx = next(t for t in block["txs"] if t["hash"] == txs["record"])
        return tx.get("body")

    for who in (PATIENT, GUARDIAN, DOCTOR, node.identity):
        status, block = await get(client, path, who)
        assert status == 200 and body_of(block)["patient"] == PATIENT.id, who.id
    for who in (STRANGER, NURSE, None):
        status, block = await get(client, path, who)
        assert status == 200 and body_of(block) is None, who.id if who else "unsigned"
    proof_path = f"/v1/txs/{txs['access']}/proof"
    _, proof = await get(client, proof_path, PATIENT)
    leaf = bytes.fromhex(proof["leaf"])
    assert hashlib.sha256(leaf).hexdigest() == txs["access"]
    assert verify_inclusion(leaf, proof["index"], proof["size"], [bytes.fromhex(p) for p in proof["path"]],
                            bytes.fromhex(proof["tx_root"]))
    _, proof = await get(client, proof_path, STRANGER)
    assert "leaf" not in proof


async def test_a_bad_signature_on_a_public_read_is_refused(story):
    client, _, _ = story
    headers = signed(STRANGER, "/v1/blocks/1")
    headers["X-MedLedger-Signature"] = "00" * 64
    resp = await client.get("/v1/blocks/1", headers=headers)
    assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"


async def test_public_types_stay_readable(story):
    client, node, _ = story
    # the staff registrations (no patient) keep their type, sender and body
    seen = [t for h in range(1, node.store.height + 1) for t in (await get(client, f"/v1/blocks/{h}"))[1]["txs"]]
    staff = [t for t in seen if t["type"] == "identity.register"]
    assert {t["sender"] for t in staff} == {DOCTOR.id, NURSE.id}
    assert all(t["body"]["role"] == "practitioner" for t in staff)


async def test_a_patients_last_nonce_is_not_public(story):
    """Clients take nonces from the clock: a patient's last nonce would date their last action."""
    client, node, _ = story
    status, public = await get(client, f"/v1/accounts/{PATIENT.id}")
    assert status == 200 and public["nonce"] is None and "attested_by" not in (public["identity"] or {})
    for who in (PATIENT, GUARDIAN, node.identity):
        status, own = await get(client, f"/v1/accounts/{PATIENT.id}", who)
        assert status == 200 and own["nonce"] == 4, who.id
    status, staff = await get(client, f"/v1/accounts/{DOCTOR.id}")
    assert staff["nonce"] == 2  # staff nonces stay public


async def test_cli_checks_public_proofs_and_shows_a_party_its_transaction(story, tmp_path):
    """`tx show --proof` verifies from the leaf hash; with --key of a party it also ties the leaf
    to the tx hash, and `block show --key` shows the party its transaction whole."""
    import asyncio
    import sys

    from node.home.keys import write_key_file

    client, node, txs = story
    url = str(client.make_url("")).rstrip("/")
    key = tmp_path / "patient.key"
    write_key_file(key, PATIENT)

    async def cli(*args: str) -> dict:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli", *args, "--node", url, "--json",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    cwd=str(Path(__file__).resolve().parents[2]))
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        return json.loads(out)

    public = await cli("tx", "show", txs["consent"], "--proof")
    assert public["proof"]["verified"] is True and "leaf" not in public["proof"]
    assert public["proof"]["checks"] == {"merkle_proof": True}
    party = await cli("tx", "show", txs["consent"], "--proof", "--key", str(key))
    assert party["proof"]["checks"] == {"merkle_proof": True, "leaf_is_tx": True}
    block = await cli("block", "show", str(party["height"]), "--key", str(key))
    tx = next(t for t in block["txs"] if t["hash"] == txs["consent"])
    assert tx["type"] == "consent.grant" and tx["body"]["purposes"] == ["treatment"]
    block = await cli("block", "show", str(party["height"]))
    assert next(t for t in block["txs"] if t["hash"] == txs["consent"])["type"] is None


async def test_a_public_read_signed_by_an_unregistered_key_gets_the_public_view_and_leaves_no_nonce(story):
    from node.api.common import NONCES_KEY

    client, node, txs = story
    nobody = Identity.from_seed(b"\x2f" * 32)  # a valid signature, but no identity on the ledger
    guard = client.server.app[NONCES_KEY]
    held = len(guard)
    height = (await get(client, f"/v1/txs/{txs['access']}"))[1]["height"]
    public = (await get(client, f"/v1/blocks/{height}"))[1]
    for _ in range(20):  # each with a fresh nonce: none may stay in the replay guard
        status, signed_view = await get(client, f"/v1/blocks/{height}", nobody)
        assert status == 200 and signed_view["txs"] == public["txs"]
    assert len(guard) == held
