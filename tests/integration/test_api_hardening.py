"""Issue 15, tried from outside against in-process nodes: replay guards that an unknown key
cannot fill, signed reads bound to the node they are sent to, refusals that do not tell a
stranger what exists, and proxied fetches limited by their signer (findings 7, 8, 9, 12c)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.api.common import NONCES_KEY
from node.app.types.identity import attest
from node.api.auth import sign_headers
from node.home.config import build_config
from node.core.crypto import Identity, sha256
from node.records.custodian import Custodian
from node.records.envelope import seal_record
from node.records.protocol import Fetch, Upload
from node.core.replay import ReplayGuard
from node.runtime.runtime import Node
from node.chain.tx import Transaction
from storage.kv import MemoryStore
from storage.offchain import OffchainStore

from tests.helpers import CHAIN, MSGPACK, TxPoster, make_node

OBS = json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"}}).encode()
SEED_A, SEED_B = b"\x07" * 32, b"\x08" * 32


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def treated(patient: Identity, inst: Identity) -> dict:
    """A patient's registration attested by the institution that treats it (its practitioners may add records)."""
    return {"role": "patient", "institution": inst.public_key,
            "attestation": attest(inst, chain_id=CHAIN, registrant=patient.public_key, role="patient")}


class World(TxPoster):
    """One in-process validator with a custodian, a patient, a practitioner who wrote one record,
    a reader holding a grant on it and a key that never registered."""

    def __init__(self, client: TestClient, node: Node, custodian: Custodian) -> None:
        super().__init__(client)
        self.node, self.custodian = node, custodian
        self.patient, self.doctor, self.reader = Identity.generate(), Identity.generate(), Identity.generate()
        self.stranger = Identity.generate()  # never registered
        self.record = b""
        self.grant_tx = ""

    def signed(self, who: Identity, path: str, *, node_id: str | None = None, ts: int | None = None) -> dict[str, str]:
        return sign_headers(who, chain_id=CHAIN, node_id=node_id or self.node.identity.id, method="GET", path_qs=path,
                            timestamp_ms=now_ms() if ts is None else ts)

    async def get(self, who: Identity, path: str, **kw) -> tuple[int, dict]:
        resp = await self.client.get(path, headers=self.signed(who, path, **kw))
        return resp.status, await resp.json()

    async def fetch(self, fetch: Fetch) -> tuple[int, dict | bytes]:
        resp = await self.client.post(f"/v1/records/{fetch.record_id.hex()}/fetch", data=fetch.to_wire(), headers=MSGPACK)
        raw = await resp.read()
        return resp.status, (json.loads(raw) if resp.content_type == "application/json" else raw)

    async def setup(self) -> None:
        inst = self.node.identity
        assert (await self.tx(self.patient, "identity.register", treated(self.patient, inst)))["result"] == "ok"
        for ident in (self.doctor, self.reader):
            body = {"role": "practitioner", "institution": inst.public_key,
                    "attestation": attest(inst, chain_id=CHAIN, registrant=ident.public_key, role="practitioner")}
            assert (await self.tx(ident, "identity.register", body))["result"] == "ok"
        self.record = os.urandom(32)
        ct, wrapped = seal_record(OBS, {"patient": self.patient.public_key, "custodian": inst.public_key})
        up = Upload.create(self.doctor, chain_id=CHAIN, record_id=self.record, patient=self.patient.public_key,
                           resource_type="Observation", ciphertext=ct, wrapped=wrapped, timestamp_ms=now_ms())
        resp = await self.client.post("/v1/records", data=up.to_wire(), headers=MSGPACK)
        assert resp.status == 201, await resp.text()
        added = await self.tx(self.doctor, "record.add", {"record": self.record, "patient": self.patient.public_key,
                                                          "resource_type": "Observation", "hash": sha256(ct),
                                                          "custodian": inst.public_key})
        assert added["result"] == "ok", added
        grant = await self.tx(self.patient, "consent.grant", {
            "grantee_kind": "practitioner", "grantee": self.reader.public_key, "purposes": ["treatment"],
            "resource_types": ["Observation"], "valid_until": now_ms() + 3_600_000})
        assert grant["result"] == "ok", grant
        access = await self.tx(self.reader, "access.request", {"record": self.record, "purpose": "treatment"})
        assert access["result"] == "ok", access
        self.grant_tx = access["hash"]


async def start_world(tmp_path: Path, seed: bytes = SEED_A, api: dict | None = None) -> World:
    cfg = build_config({"consensus": {"empty_block_interval_ms": 50}, **({"api": api} if api else {})}, env={})
    node = make_node(tmp_path / f"db-{seed.hex()[:4]}", config=cfg, seed=seed)
    custodian = Custodian(node, OffchainStore(MemoryStore()))
    node.commit_hooks.append(custodian.on_block_committed)
    client = TestClient(TestServer(make_app(node, custodian=custodian)))
    await client.start_server()
    node.start()
    world = World(client, node, custodian)
    await world.setup()
    return world


async def stop_world(w: World) -> None:
    w.node.stop()
    await w.client.close()
    w.node.store.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await start_world(tmp_path)
    try:
        yield w
    finally:
        await stop_world(w)


def nonces(w: World) -> ReplayGuard:
    return w.client.server.app[NONCES_KEY]


# -- finding 7: replay guards authorise before they remember, refuse the future, expire in O(1) --
async def test_signed_reads_refused_to_an_unregistered_key_leave_nothing_in_the_replay_guard(world):
    audit = f"/v1/patients/{world.patient.id}/audit"
    for _ in range(50):
        status, body = await world.get(world.stranger, audit)
        assert (status, body["error"]) == (403, "forbidden")
    assert len(nonces(world)) == 0
    status, _ = await world.get(world.patient, audit)
    assert status == 200 and len(nonces(world)) == 1


async def test_a_signed_read_dated_ahead_of_the_node_clock_is_refused(world):
    audit = f"/v1/patients/{world.patient.id}/audit"
    status, body = await world.get(world.patient, audit, ts=now_ms() + 60_000)
    assert (status, body["error"]) == (401, "future_request")
    assert len(nonces(world)) == 0


async def test_fetches_without_a_grant_leave_nothing_in_the_custodian_replay_guard(world):
    for _ in range(50):
        status, body = await world.fetch(Fetch.create(world.stranger, chain_id=CHAIN, record_id=world.record,
                                                      timestamp_ms=now_ms()))
        assert (status, body["error"]) == (403, "no_grant")
    assert len(world.custodian.guard) == 0
    status, _ = await world.fetch(Fetch.create(world.reader, chain_id=CHAIN, record_id=world.record, timestamp_ms=now_ms()))
    assert status == 200 and len(world.custodian.guard) == 1


async def test_a_fetch_dated_ahead_of_the_custodian_clock_is_refused(world):
    status, body = await world.fetch(Fetch.create(world.reader, chain_id=CHAIN, record_id=world.record,
                                                  timestamp_ms=now_ms() + 60_000))
    assert (status, body["error"]) == (401, "future_request")


async def test_an_extract_request_for_a_study_the_researcher_is_not_on_leaves_nothing_in_the_coordinator_guard(world):
    from node.records.custodian import CustodianRefusal
    from node.research.service import ExtractRequest, ResearchService

    service = ResearchService(world.node, world.custodian.store, b"\x01" * 32)
    assert isinstance(service.guard.replay, ReplayGuard)  # the node's one guard, in the research protocol's errors
    me = world.node.identity.public_key
    for _ in range(20):
        req = ExtractRequest.create(world.stranger, chain_id=CHAIN, study="no-such-study", types=["Patient"], k=5,
                                    coordinator=me, timestamp_ms=now_ms())
        with pytest.raises(CustodianRefusal) as err:
            await service.coordinate(req)
        assert err.value.code == "unknown_study"
    assert len(service.guard) == 0
    # (a request dated ahead, for a study it may use, is refused too: test_research_steps.py)


# -- finding 8: a signed read names the node it is sent to ------------------------------------------
async def test_a_signed_read_accepted_by_one_node_is_refused_by_another(tmp_path):
    a = await start_world(tmp_path, SEED_A)
    b = await start_world(tmp_path, SEED_B)
    try:
        # the same patient registered on both (two one-validator chains with one chain id)
        patient = a.patient
        assert (await b.tx(patient, "identity.register", {"role": "patient"}))["result"] == "ok"
        audit = f"/v1/patients/{patient.id}/audit"
        headers = a.signed(patient, audit)
        resp = await a.client.get(audit, headers=headers)
        assert resp.status == 200
        resp = await b.client.get(audit, headers=headers)  # the very request, replayed at node B
        assert resp.status == 401 and (await resp.json())["error"] == "bad_signature"
        status, _ = await b.get(patient, audit)  # signed for B, B answers
        assert status == 200
    finally:
        await stop_world(a)
        await stop_world(b)


# -- finding 9: the same refusal whether the thing exists or not -----------------------------------
async def test_an_unregistered_key_cannot_tell_an_existing_record_from_an_unknown_one(world):
    known = await world.get(world.stranger, f"/v1/records/{world.record.hex()}")
    unknown = await world.get(world.stranger, f"/v1/records/{os.urandom(32).hex()}")
    assert known[0] == unknown[0] == 403 and known[1] == unknown[1]


async def test_an_unregistered_key_cannot_tell_an_existing_access_request_from_an_unknown_one(world):
    known = await world.get(world.stranger, f"/v1/access/{world.grant_tx}")
    unknown = await world.get(world.stranger, f"/v1/access/{os.urandom(32).hex()}")
    assert known[0] == unknown[0] == 403 and known[1] == unknown[1]
    status, doc = await world.get(world.reader, f"/v1/access/{world.grant_tx}")  # its requester still reads it
    assert status == 200 and doc["requester"] == world.reader.id


async def test_an_unregistered_key_cannot_tell_by_fetching_whether_a_record_exists(world):
    known = await world.fetch(Fetch.create(world.stranger, chain_id=CHAIN, record_id=world.record, timestamp_ms=now_ms()))
    unknown = await world.fetch(Fetch.create(world.stranger, chain_id=CHAIN, record_id=os.urandom(32), timestamp_ms=now_ms()))
    assert known[0] == unknown[0] == 403 and known[1] == unknown[1]


# -- finding 12c: fetches are limited by their signer, not by the address they come through --------
async def drain_address(w: World) -> None:
    """Spend the address's bucket (a proxy node's address, say) until it answers 429."""
    for _ in range(200):
        if (await w.client.get("/v1/status")).status == 429:
            return
    raise AssertionError("the address was never rate-limited")


async def test_fetches_relayed_through_a_busy_address_are_limited_per_signer_not_per_address(tmp_path):
    w = await start_world(tmp_path, api={"rate_per_ip": 1, "burst_per_ip": 60, "rate_per_signer": 1, "burst_per_signer": 5})
    try:
        other = Identity.generate()  # a second reader behind the same address
        body = {"role": "practitioner", "institution": w.node.identity.public_key,
                "attestation": attest(w.node.identity, chain_id=CHAIN, registrant=other.public_key, role="practitioner")}
        tx = Transaction.create(other, chain_id=CHAIN, type="identity.register", nonce=1, body=body)
        assert (await w.client.post("/v1/txs?wait=10", data=tx.encoded, headers=MSGPACK)).status == 200
        await drain_address(w)
        statuses = []
        for _ in range(7):
            fetch = Fetch.create(w.reader, chain_id=CHAIN, record_id=w.record, timestamp_ms=now_ms())
            statuses.append((await w.fetch(fetch))[0])
        assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 2  # the reader's own bucket, not the address's
        status, got = await w.fetch(Fetch.create(other, chain_id=CHAIN, record_id=w.record, timestamp_ms=now_ms()))
        assert (status, got["error"]) == (403, "no_grant")  # judged on its merits, not rate-limited
        await drain_address(w)  # an unregistered key costs nothing to make: it counts against the address
        status, got = await w.fetch(Fetch.create(w.stranger, chain_id=CHAIN, record_id=w.record, timestamp_ms=now_ms()))
        assert (status, got["error"]) == (429, "rate_limited")
    finally:
        await stop_world(w)


# -- finding 10: admission refuses unregistered senders and bounds each sender ----------------------
def breakglass_tx(ident: Identity, nonce: int = 1) -> Transaction:
    return Transaction.create(ident, chain_id=CHAIN, type="consent.breakglass", nonce=nonce, body={"opt_out": True})


def wire(tx: Transaction) -> list:
    return [tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]


async def test_transactions_from_never_registered_keys_are_refused_and_never_reach_the_chain(world):
    from node.core.encoding import canonical

    junk = [breakglass_tx(Identity.from_seed(sha256(b"junk" + i.to_bytes(4, "big")))) for i in range(200)]
    resp = await world.client.post("/v1/txs", data=canonical([wire(t) for t in junk]), headers=MSGPACK)
    doc = await resp.json()
    assert resp.status == 400 and doc["accepted"] == 0
    assert {r["error"] for r in doc["results"]} == {"not_registered"}
    resp = await world.client.post("/v1/txs", data=breakglass_tx(world.stranger).encoded, headers=MSGPACK)
    assert resp.status == 403 and (await resp.json())["error"] == "not_registered"
    # a registered patient's transaction goes through and is committed after them
    resp = await world.client.post("/v1/txs?wait=10", data=breakglass_tx(world.patient, 99).encoded, headers=MSGPACK)
    assert resp.status == 200 and (await resp.json())["result"] == "ok"
    assert not any(world.node.store.has_tx(t.hash) for t in junk) and len(world.node.mempool) == 0
    for t in junk[:5]:  # and no nonce of theirs in the state
        assert (await (await world.client.get(f"/v1/accounts/{t.sender.hex()}")).json())["nonce"] == 0


async def test_gossiped_transactions_from_unregistered_senders_are_not_admitted(world):
    junk = [breakglass_tx(Identity.generate()) for _ in range(20)]
    world.node.admit_transactions(junk, gossip=False)
    assert not any(world.node.knows_tx(t.hash) for t in junk)  # neither waiting nor committed


async def test_a_key_registers_and_acts_in_one_batch_but_not_after_a_failed_registration(world):
    from node.core.encoding import canonical

    newcomer, impostor = Identity.generate(), Identity.generate()
    batch = [Transaction.create(newcomer, chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "patient"}),
             breakglass_tx(newcomer, 2),
             # registering as an institution fails at execution: what it queued behind it never lands
             Transaction.create(impostor, chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "institution"}),
             breakglass_tx(impostor, 2)]
    resp = await world.client.post("/v1/txs", data=canonical([wire(t) for t in batch]), headers=MSGPACK)
    assert (await resp.json())["accepted"] == 4
    for t in batch[:3]:
        assert await world.node.wait_committed(t.hash, 10)
    assert [world.node.tx_status(t.hash).get("result") for t in batch[:3]] == ["ok", "ok", "role_not_allowed"]
    assert not world.node.store.has_tx(batch[3].hash) and batch[3].hash not in world.node.mempool


async def test_a_sender_beyond_its_waiting_limit_gets_429_sender_limit(tmp_path):
    cfg = build_config({"mempool": {"max_per_sender": 3}}, env={})
    node = make_node(tmp_path / "db", config=cfg)  # not started: nothing is committed, the pool only fills
    client = TestClient(TestServer(make_app(node)))
    await client.start_server()
    try:
        inst = node.identity  # registered in the genesis
        statuses = []
        for n in range(1, 5):
            tx = Transaction.create(inst, chain_id=CHAIN, type="study.register", nonce=n,
                                    body={"study": f"S{n}", "title": "t", "ethics_ref": "e", "until_ms": now_ms() + 10**8})
            resp = await client.post("/v1/txs", data=tx.encoded, headers=MSGPACK)
            statuses.append((resp.status, (await resp.json()).get("error"), resp.headers.get("Retry-After")))
        assert statuses[:3] == [(202, None, None)] * 3
        assert statuses[3] == (429, "sender_limit", "1")
        # a key whose registration waits may queue only a few transactions behind it
        newcomer = Identity.generate()
        reg = Transaction.create(newcomer, chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "patient"})
        assert (await client.post("/v1/txs", data=reg.encoded, headers=MSGPACK)).status == 202
        again = Transaction.create(newcomer, chain_id=CHAIN, type="identity.register", nonce=2, body={"role": "patient"})
        resp = await client.post("/v1/txs", data=again.encoded, headers=MSGPACK)
        assert (resp.status, (await resp.json())["error"]) == (429, "sender_limit")
    finally:
        await client.close()
        node.store.close()


# -- finding 11: uploads are bounded, expire unless announced, and the patient can discard them ----
def upload_for(w: World, patient: Identity, *, resource_type: str = "Observation", record: bytes | None = None) -> Upload:
    inst = w.node.identity
    ct, wrapped = seal_record(OBS, {"patient": patient.public_key, "custodian": inst.public_key})
    return Upload.create(w.doctor, chain_id=CHAIN, record_id=record or os.urandom(32), patient=patient.public_key,
                         resource_type=resource_type, ciphertext=ct, wrapped=wrapped, timestamp_ms=now_ms())


async def post_upload(w: World, up: Upload) -> tuple[int, dict]:
    resp = await w.client.post("/v1/records", data=up.to_wire(), headers=MSGPACK)
    return resp.status, await resp.json()


async def test_an_upload_no_record_add_announces_is_deleted_when_its_time_is_up(tmp_path):
    w = await start_world(tmp_path, api={"upload_ttl_ms": 60_000})
    try:
        up = upload_for(w, w.patient)
        assert (await post_upload(w, up))[0] == 201 and w.custodian.store.has(up.record_id)
        real = w.node.clock_ms
        w.node.clock_ms = lambda: real() + 61_000  # a minute later the next block comes
        resp = await w.client.post("/v1/txs?wait=10", data=breakglass_tx(w.patient, 50).encoded, headers=MSGPACK)
        assert resp.status == 200 and (await resp.json())["result"] == "ok"
        assert not w.custodian.store.has(up.record_id) and w.custodian.pending_count() == 0
        assert w.custodian.store.has(w.record)  # an announced record stays
    finally:
        await stop_world(w)


async def test_the_patient_discards_an_upload_that_was_never_announced(world):
    up = upload_for(world, world.patient)
    assert (await post_upload(world, up))[0] == 201
    path = f"/v1/records/{up.record_id.hex()}/upload"

    async def delete(who: Identity) -> tuple[int, dict]:
        headers = sign_headers(who, chain_id=CHAIN, node_id=world.node.identity.id, method="DELETE", path_qs=path,
                               timestamp_ms=now_ms())
        resp = await world.client.delete(path, headers=headers)
        return resp.status, await resp.json()

    assert (await delete(world.stranger))[0] == 403 and (await delete(world.reader))[0] == 403
    status, doc = await delete(world.patient)
    assert (status, doc["status"]) == (200, "erased") and not world.custodian.store.has(up.record_id)
    # an announced record is not discarded this way (the ledger's record.erase does it)
    resp = await world.client.delete(f"/v1/records/{world.record.hex()}/upload",
                                     headers=sign_headers(world.patient, chain_id=CHAIN, node_id=world.node.identity.id,
                                                          method="DELETE", path_qs=f"/v1/records/{world.record.hex()}/upload",
                                                          timestamp_ms=now_ms()))
    assert resp.status == 403 and world.custodian.store.has(world.record)


async def test_an_author_with_too_many_uploads_waiting_is_refused_until_it_announces_them(tmp_path):
    w = await start_world(tmp_path, api={"max_pending_uploads": 2})
    try:
        ups = [upload_for(w, w.patient) for _ in range(3)]
        assert (await post_upload(w, ups[0]))[0] == 201 and (await post_upload(w, ups[1]))[0] == 201
        status, doc = await post_upload(w, ups[2])
        assert (status, doc["error"]) == (429, "too_many_uploads")
        added = await w.tx(w.doctor, "record.add", {"record": ups[0].record_id, "patient": w.patient.public_key,
                                                    "resource_type": "Observation", "hash": sha256(ups[0].ciphertext),
                                                    "custodian": w.node.identity.public_key})
        assert added["result"] == "ok"
        assert (await post_upload(w, ups[2]))[0] == 201  # one announced: room for another
    finally:
        await stop_world(w)


async def test_an_old_signed_upload_cannot_be_sent_again(world):
    up = upload_for(world, world.patient)
    stale = Upload.create(world.doctor, chain_id=CHAIN, record_id=up.record_id, patient=up.patient,
                          resource_type=up.resource_type, ciphertext=up.ciphertext, wrapped=up.wrapped,
                          timestamp_ms=now_ms() - 600_000)
    status, doc = await post_upload(world, stale)
    assert (status, doc["error"]) == (401, "stale_request")


# -- finding 12a: the upload must be what the ledger's record.add announces ------------------------
@pytest.mark.parametrize("lie", ["patient", "resource_type", "author"])
async def test_a_record_add_that_differs_from_its_upload_is_never_served(world, lie):
    other = Identity.generate()
    assert (await world.tx(other, "identity.register", treated(other, world.node.identity)))["result"] == "ok"
    up = upload_for(world, world.patient)
    assert (await post_upload(world, up))[0] == 201
    author = world.doctor
    body = {"record": up.record_id, "patient": world.patient.public_key, "resource_type": "Observation",
            "hash": sha256(up.ciphertext), "custodian": world.node.identity.public_key}
    if lie == "patient":  # the chart of another patient, whose consent then decides who reads these bytes
        body["patient"] = other.public_key
    elif lie == "resource_type":
        body["resource_type"] = "Condition"
    else:  # another practitioner of the institution announces the upload as its own
        author = world.reader
    added = await world.tx(author, "record.add", body)
    assert added["result"] == "ok", added
    assert not world.custodian.store.has(up.record_id)  # deleted when the record.add was committed
    # whoever the ledger lets read it gets no bytes
    owner = other if lie == "patient" else world.patient
    grant = await world.tx(owner, "consent.grant", {
        "grantee_kind": "practitioner", "grantee": world.reader.public_key, "purposes": ["treatment"],
        "resource_types": ["*"], "valid_until": now_ms() + 3_600_000})
    assert grant["result"] == "ok", grant
    assert (await world.tx(world.reader, "access.request", {"record": up.record_id, "purpose": "treatment"}))["result"] in ("ok",)
    status, _ = await world.fetch(Fetch.create(world.reader, chain_id=CHAIN, record_id=up.record_id, timestamp_ms=now_ms()))
    assert status in (409, 410)


async def test_a_restarted_custodian_still_counts_and_expires_the_uploads_waiting(world):
    up = upload_for(world, world.patient)
    assert (await post_upload(world, up))[0] == 201
    again = Custodian(world.node, world.custodian.store)  # what a restart builds from the same store
    again.reconcile()
    assert again.pending_count() == 1 and again.pending_upload(up.record_id).author == world.doctor.public_key
    assert again.pending_upload(world.record) is None  # announced: not waiting
    assert again.expire_uploads(now_ms() + again.limits.ttl_ms + 1) == 1
    assert not world.custodian.store.has(up.record_id) and world.custodian.store.has(world.record)
