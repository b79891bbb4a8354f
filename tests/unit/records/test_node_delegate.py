"""NodeDelegate on a real in-process node (one validator, its custodian): storing for a
practitioner encrypts, keeps and announces each record in one batch; reading asks the ledger for
the reader in one batch and opens only what it granted; predicting writes nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from node.app import queries
from node.app.types.identity import attest
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.chain.tx import Transaction
from node.core.crypto import Identity
from node.core.errors import CodedError
from node.home.config import build_config
from node.records.custodian import Custodian, load_entry
from node.records.delegate import NewRecord, RecordAccess, StoredRecord
from node.records.node_delegate import NodeDelegate
from node.runtime.runtime import Node
from storage.chain import ChainStore
from storage.kv import MemoryStore
from storage.offchain import OffchainStore

CHAIN = "delegate-chain"
HOST = Identity.from_seed(b"\x21" * 32)
OTHER = Identity.from_seed(b"\x22" * 32)


def obs(value: int) -> bytes:
    return json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
                       "valueQuantity": {"value": value, "unit": "beats/min"}}).encode()


class World:
    def __init__(self, node: Node, custodian: Custodian, delegate: NodeDelegate) -> None:
        self.node, self.custodian, self.delegate = node, custodian, delegate
        self.nonces: dict[bytes, int] = {}

    async def send(self, who: Identity, tx_type: str, body: dict[str, Any]) -> str:
        nonce = self.nonces.get(who.public_key, 0) + 1
        self.nonces[who.public_key] = nonce
        tx = Transaction.create(who, chain_id=CHAIN, type=tx_type, nonce=nonce, body=body)
        [verdict] = self.node.admit([[tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]])
        assert verdict.error is None, verdict
        assert await self.node.wait_committed(tx.hash, 10)
        return str(self.node.tx_status(tx.hash)["result"])

    async def register(self, role: str, institution: Identity | None = HOST) -> Identity:
        who = Identity.generate()
        body: dict[str, Any] = {"role": role}
        if institution is not None:
            body.update(institution=institution.public_key,
                        attestation=attest(institution, chain_id=CHAIN, registrant=who.public_key, role=role))
        assert await self.send(who, "identity.register", body) == "ok"
        return who

    async def consent(self, patient: Identity, grantee: Identity) -> str:
        return await self.send(patient, "consent.grant", {
            "grantee_kind": "practitioner", "grantee": grantee.public_key, "purposes": ["treatment"],
            "resource_types": ["Observation"], "valid_until": time.time_ns() // 1_000_000 + 3_600_000})


@pytest.fixture
async def world():
    genesis = Genesis(chain_id=CHAIN, genesis_time_ms=1_700_000_000_000,
                      validators=(ValidatorInfo(id=HOST.public_key, name="v0", address="127.0.0.1:0"),),
                      institutions=(InstitutionInfo(id=HOST.public_key, name="v0"),
                                    InstitutionInfo(id=OTHER.public_key, name="other")))
    # a small per-sender bound, so a batch of a few records goes out in several chunks
    config = build_config({"consensus": {"empty_block_interval_ms": 50}, "mempool": {"max_per_sender": 4}}, env={})
    node = Node(config=config, genesis=genesis, identity=HOST, store=ChainStore(MemoryStore()))
    custodian = Custodian(node, OffchainStore(MemoryStore()))
    node.commit_hooks.append(custodian.on_block_committed)
    node.start()
    try:
        yield World(node, custodian, NodeDelegate(node, custodian, commit_timeout_s=20))
    finally:
        node.stop()
        node.store.close()


async def test_store_for_then_read_for_a_practitioner(world):
    delegate: RecordAccess = world.delegate
    patient = await world.register("patient")  # at HOST: its staff treat the patient
    author, reader = await world.register("practitioner"), await world.register("practitioner")
    items = [NewRecord(patient=patient.public_key, resource_type="Observation", resource_json=obs(60 + i))
             for i in range(5)]
    stored = await delegate.store_for(author.public_key, items)
    assert all(isinstance(s, StoredRecord) for s in stored), stored
    ids = [s.record_id for s in stored if isinstance(s, StoredRecord)]
    assert len(set(ids)) == 5
    state = world.node.state_reader()
    for s in stored:
        assert isinstance(s, StoredRecord)
        meta = queries.record(state, s.record_id)
        assert meta["author"] == author.public_key.hex() and meta["via"] == HOST.public_key.hex()
        assert world.node.tx_status(s.tx_hash)["height"] == s.height
        entry = load_entry(world.custodian.store, s.record_id)
        assert entry is not None and obs(60) not in entry["ciphertext"]  # kept encrypted
        assert world.custodian.pending_upload(s.record_id) is None  # announced
    # the author reads its own records (rule "author"); a colleague without consent is refused
    assert await delegate.read_for(author.public_key, ids[:2], "treatment") == [obs(60), obs(61)]
    assert delegate.predict(reader.public_key, ids[0], "treatment") == "no_consent"
    before = queries.patient_audit(world.node.state_reader(), patient.public_key)
    assert delegate.predict(reader.public_key, ids[0], "treatment") == "no_consent"
    assert queries.patient_audit(world.node.state_reader(), patient.public_key) == before  # predict wrote nothing
    [refused] = await delegate.read_for(reader.public_key, ids[:1], "treatment")
    assert isinstance(refused, CodedError) and (refused.code, refused.status) == ("no_consent", 403)
    assert await world.consent(patient, reader) == "ok"
    assert delegate.predict(reader.public_key, ids[0], "treatment") is None
    assert await delegate.read_for(reader.public_key, ids, "treatment") == [obs(60 + i) for i in range(5)]
    trail = queries.patient_audit(world.node.state_reader(), patient.public_key)
    granted = [e for e in trail if e["event"] == "access.granted" and e["actor"] == reader.public_key.hex()]
    assert len(granted) == 5 and all(e["via"] == HOST.public_key.hex() for e in granted)
    # a second read needs no new request: the grants hold
    assert await delegate.read_for(reader.public_key, ids[:1], "treatment") == [obs(60)]
    again = queries.patient_audit(world.node.state_reader(), patient.public_key)
    assert len(again) == len(trail)


async def test_refusals_per_item(world):
    delegate = world.delegate
    patient, stranger = await world.register("patient"), await world.register("patient", institution=None)
    author = await world.register("practitioner")
    foreign = await world.register("practitioner", institution=OTHER)
    item = NewRecord(patient=patient.public_key, resource_type="Observation", resource_json=obs(70))
    # another institution's practitioner: nothing stored
    [refused] = await delegate.store_for(foreign.public_key, [item])
    assert isinstance(refused, CodedError) and (refused.code, refused.status) == ("not_our_practitioner", 403)
    assert world.custodian.pending_count() == 0
    unknown = NewRecord(patient=author.public_key, resource_type="Observation", resource_json=obs(1))
    no_relation = NewRecord(patient=stranger.public_key, resource_type="Observation", resource_json=obs(2))
    good, bad_patient, not_treated = await delegate.store_for(author.public_key, [item, unknown, no_relation])
    assert isinstance(good, StoredRecord)
    assert isinstance(bad_patient, CodedError) and (bad_patient.code, bad_patient.status) == ("unknown_patient", 404)
    assert isinstance(not_treated, CodedError) and not_treated.code == "no_treatment_relationship"
    assert not_treated.status == 403
    assert world.custodian.pending_count() == 0  # the refused one's upload is gone again
    # versions: supersede the latest; superseding the old one again is refused
    v2 = NewRecord(patient=patient.public_key, resource_type="Observation", resource_json=obs(71),
                   supersedes=good.record_id)
    [second] = await delegate.store_for(author.public_key, [v2])
    assert isinstance(second, StoredRecord)
    meta = queries.record(world.node.state_reader(), second.record_id)
    assert (meta["version_of"], meta["version"]) == (good.record_id.hex(), 2)
    [stale] = await delegate.store_for(author.public_key, [v2])
    assert isinstance(stale, CodedError) and (stale.code, stale.status) == ("not_latest_version", 409)
    # reading: unknown, erased, someone else's practitioner, a bad purpose
    assert await world.send(patient, "record.erase", {"record": good.record_id}) == "ok"
    missing, erased, latest = await delegate.read_for(author.public_key, [b"\x01" * 32, good.record_id,
                                                                          second.record_id], "treatment")
    assert isinstance(missing, CodedError) and (missing.code, missing.status) == ("unknown_record", 404)
    assert isinstance(erased, CodedError) and (erased.code, erased.status) == ("erased", 410)
    assert latest == obs(71)
    [theirs] = await delegate.read_for(foreign.public_key, [second.record_id], "treatment")
    assert isinstance(theirs, CodedError) and theirs.code == "not_our_practitioner"
    [bad] = await delegate.read_for(author.public_key, [second.record_id], "fun")
    assert isinstance(bad, CodedError) and (bad.code, bad.status) == ("invalid_purpose", 400)
    assert delegate.predict(author.public_key, b"\x01" * 32, "treatment") == "unknown_record"
    assert delegate.predict(foreign.public_key, second.record_id, "treatment") == "not_our_practitioner"
    assert delegate.predict(author.public_key, second.record_id, "emergency") == "reason_required"


async def test_the_delegate_shares_the_nodes_nonces(world):
    assert world.delegate.nonces is world.node.own_nonces  # the research coordinator signs with them too
