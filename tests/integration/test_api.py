"""The HTTP API through aiohttp's test client, on a one-validator node with LevelDB."""

from __future__ import annotations

import time

import msgpack
import pytest

from node.core.crypto import Identity
from node.core.encoding import canonical
from node.api.auth import sign_headers
from node.core.merkle import verify_inclusion, verify_inclusion_of_hash
from node.chain.tx import Transaction

from tests.helpers import CHAIN, NODE_ID

MSGPACK = {"Content-Type": "application/msgpack"}


def reg(seed: int, nonce: int = 1, role: str = "patient", chain: str = CHAIN) -> Transaction:
    return Transaction.create(Identity.from_seed(seed.to_bytes(32, "big")), chain_id=chain, type="identity.register", nonce=nonce, body={"role": role})


def wire(tx: Transaction) -> list:
    return [tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]


async def post(client, payload: bytes):
    resp = await client.post("/v1/txs", data=payload, headers=MSGPACK)
    return resp.status, await resp.json()


async def test_status_fields(api):
    client, node = api
    resp = await client.get("/v1/status")
    assert resp.status == 200
    s = await resp.json()
    for field in ("chain_id", "node_id", "height", "last_block_hash", "state_root", "validators", "mempool_size"):
        assert field in s
    assert s["chain_id"] == CHAIN and s["node_id"] == node.identity.id
    assert s["view_changes"] == 0
    assert 0 < s["rss_anon_mb"] <= s["peak_rss_anon_mb"] <= s["peak_rss_mb"]


async def test_submit_commit_and_look_up(api):
    client, node = api
    tx = reg(1)
    status, body = await post(client, tx.encoded)
    assert status == 202 and body == {"hash": tx.hash_hex, "status": "pending"}
    resp = await client.get(f"/v1/txs/{tx.hash_hex}?wait=10")
    got = await resp.json()
    assert got["status"] == "committed" and got["result"] == "ok" and got["height"] >= 1
    resp = await client.get(f"/v1/blocks/{got['height']}")
    blk = await resp.json()
    assert blk["hash"] == node.store.last_hash.hex() or blk["height"] < node.store.height
    assert set(blk["header"]) >= {"chain_id", "height", "prev_hash", "timestamp_ms", "proposer", "tx_root", "state_root", "prev_certificate"}
    assert blk["txs"][got["index"]]["hash"] == tx.hash_hex
    resp = await client.get(f"/v1/txs/{tx.hash_hex}/proof")
    proof = await resp.json()  # a patient's registration: the public proof gives the leaf's hash only
    assert "leaf" not in proof
    assert verify_inclusion_of_hash(bytes.fromhex(proof["leaf_hash"]), proof["index"], proof["size"],
                                    [bytes.fromhex(p) for p in proof["path"]], bytes.fromhex(blk["header"]["tx_root"]))
    path = f"/v1/txs/{tx.hash_hex}/proof"
    resp = await client.get(path, headers=sign_headers(Identity.from_seed((1).to_bytes(32, "big")), chain_id=CHAIN, node_id=NODE_ID,
                                                       method="GET", path_qs=path, timestamp_ms=time.time_ns() // 1_000_000))
    proof = await resp.json()  # the sender signs: the leaf too
    assert verify_inclusion(bytes.fromhex(proof["leaf"]), proof["index"], proof["size"],
                            [bytes.fromhex(p) for p in proof["path"]], bytes.fromhex(blk["header"]["tx_root"]))
    resp = await client.get(f"/v1/accounts/{tx.sender.hex()}")
    acct = await resp.json()  # a patient's nonce is the patient's to read
    assert acct["nonce"] is None and acct["identity"] == {"role": "patient", "label": ""}
    path = f"/v1/accounts/{tx.sender.hex()}"
    resp = await client.get(path, headers=sign_headers(Identity.from_seed((1).to_bytes(32, "big")), chain_id=CHAIN, node_id=NODE_ID,
                                                       method="GET", path_qs=path, timestamp_ms=time.time_ns() // 1_000_000))
    acct = await resp.json()
    assert acct["nonce"] == 1 and acct["identity"]["role"] == "patient"


async def test_failed_execution_is_recorded(api):
    client, node = api
    first, again = reg(2), reg(2, nonce=2, role="researcher")
    await post(client, first.encoded)
    assert await node.wait_committed(first.hash, 10)
    # registering again is refused at admission now that the first is committed
    resp = await client.post("/v1/txs", data=again.encoded, headers=MSGPACK)
    assert resp.status == 409 and (await resp.json())["error"] == "already_registered"
    # a registration the ledger refuses (no key registers itself as an institution) is recorded
    refused = reg(3, role="institution")
    resp = await client.post("/v1/txs?wait=10", data=refused.encoded, headers=MSGPACK)
    got = await (await client.get(f"/v1/txs/{refused.hash_hex}?wait=10")).json()
    assert resp.status == 200 and got["status"] == "committed" and got["result"] == "role_not_allowed"


async def test_batch_submission(api):
    client, node = api
    txs = [reg(100 + i) for i in range(50)]
    bad = reg(999, chain="other")
    status, body = await post(client, canonical([wire(t) for t in txs] + [wire(bad)]))
    assert status == 202 and body["accepted"] == 50 and body["rejected"] == 1
    assert body["results"][-1]["error"] == "wrong_chain"
    assert [r["hash"] for r in body["results"][:50]] == [t.hash_hex for t in txs]
    for t in txs:
        got = await (await client.get(f"/v1/txs/{t.hash_hex}?wait=10")).json()
        assert got["status"] == "committed"


@pytest.mark.parametrize(
    "payload, status, code",
    [
        (b"\xc1\xff\x00", 400, "malformed_msgpack"),
        (msgpack.packb({"a": 1}), 400, "malformed_tx"),
        (msgpack.packb([]), 400, "malformed_tx"),
        (msgpack.packb([1, 2, 3]), 400, "malformed_tx"),
        (msgpack.packb(["test-chain", "identity.register", b"x" * 32, "one", {}, b"s" * 64]), 400, "malformed_tx"),
        (msgpack.packb([[1.5]]), 400, "malformed_msgpack"),
    ],
)
async def test_malformed_bodies(api, payload, status, code):
    client, node = api
    got_status, body = await post(client, payload)
    assert (got_status, body["error"]) == (status, code)
    assert body["message"]


async def test_each_bad_transaction_gets_its_4xx_and_the_node_goes_on(api):
    client, node = api
    good = reg(3)
    forged = canonical([good.chain_id, good.type, good.sender, good.nonce, {"role": "institution"}, good.signature])
    cases = [
        (forged, 400, "bad_signature"),
        (reg(4, chain="elsewhere").encoded, 400, "wrong_chain"),
        (Transaction.create(Identity.from_seed(b"\x05" * 32), chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "x" * 70_000}).encoded, 400, "tx_too_large"),
        (Transaction.create(Identity.from_seed(b"\x05" * 32), chain_id=CHAIN, type="no.such", nonce=1, body={}).encoded, 400, "unknown_type"),
    ]
    for payload, status, code in cases:
        got_status, body = await post(client, payload)
        assert (got_status, body["error"]) == (status, code), body
    # replayed nonce: commit, then resubmit another tx with the same nonce, and the same tx again
    await post(client, good.encoded)
    await client.get(f"/v1/txs/{good.hash_hex}?wait=10")
    status, body = await post(client, good.encoded)
    assert (status, body["error"]) == (409, "already_committed")
    replay = Transaction.create(Identity.from_seed((3).to_bytes(32, "big")), chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "researcher"})
    status, body = await post(client, replay.encoded)
    assert (status, body["error"]) == (409, "nonce_replayed")
    # the node still commits
    after = reg(6)
    status, _ = await post(client, after.encoded)
    got = await (await client.get(f"/v1/txs/{after.hash_hex}?wait=10")).json()
    assert status == 202 and got["status"] == "committed"


async def test_body_too_large_and_wrong_media_type(api):
    client, node = api
    resp = await client.post("/v1/txs", data=b"\x00" * (node.config.api.max_body_bytes + 1), headers=MSGPACK)
    assert resp.status == 413 and (await resp.json())["error"] == "body_too_large"
    resp = await client.post("/v1/txs", data=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status == 415


async def test_lookups_of_unknown_things(api):
    client, node = api
    for path, status, code in [
        ("/v1/txs/" + "ab" * 32, 404, "unknown_tx"),
        ("/v1/txs/nothex", 400, "bad_hash"),
        ("/v1/blocks/999999", 404, "unknown_block"),
        ("/v1/blocks/abc", 400, "bad_height"),
        ("/v1/accounts/12", 400, "bad_id"),
        ("/v1/nothing", 404, "not_found"),
    ]:
        resp = await client.get(path)
        assert resp.status == status, path
        assert (await resp.json())["error"] == code
