"""Delegation on a small real network: two validator institutions A and B, each run by the
daemon's `serve` (peer links, API, custodian) in this process, each with its NodeDelegate.

A practitioner of A stores a record through A's delegate (encrypted at A, announced on behalf
of the practitioner); a practitioner of B is refused (`no_consent`) through B's delegate, then,
after the patient's consent to that practitioner, reads the plaintext through B's delegate (B
fetches it from A with a delegated fetch and decrypts it at B). The patient's audit trail names
both practitioner and institution at every step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from node.app import queries
from node.app.types.identity import attest
from node.chain.tx import Transaction
from node.core.crypto import Identity
from node.core.errors import CodedError
from node.daemon import open_node, serve
from node.devtools.cluster import free_ports
from node.home.keys import load_key_file
from node.home.layout import init_network
from node.records.custodian import Custodian
from node.records.delegate import NewRecord, StoredRecord
from node.records.node_delegate import NodeDelegate
from node.runtime.runtime import Node

CHAIN = "delegation-test"
OBS = json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "Blood pressure"},
                  "valueQuantity": {"value": 128, "unit": "mmHg"}}).encode()


def custodian_of(node: Node) -> Custodian:
    """The custodian `serve` built for `node` (it hooks itself to the node's commits)."""
    [found] = [getattr(h, "__self__") for h in node.commit_hooks if isinstance(getattr(h, "__self__", None), Custodian)]
    return found


class Network:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.nonces: dict[bytes, int] = {}
        self.last_hash = b""

    async def send(self, who: Identity, tx_type: str, body: dict[str, Any]) -> str:
        """Submit to node A; wait until every node committed it; the result."""
        nonce = self.nonces.get(who.public_key, 0) + 1
        self.nonces[who.public_key] = nonce
        tx = Transaction.create(who, chain_id=CHAIN, type=tx_type, nonce=nonce, body=body)
        [verdict] = self.nodes[0].admit([[tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]])
        assert verdict.error is None, verdict
        for node in self.nodes:
            assert await node.wait_committed(tx.hash, 30), f"{tx_type} not committed"
        self.last_hash = tx.hash
        return str(self.nodes[0].tx_status(tx.hash)["result"])

    async def register(self, role: str, institution: Identity) -> Identity:
        who = Identity.generate()
        body = {"role": role, "institution": institution.public_key,
                "attestation": attest(institution, chain_id=CHAIN, registrant=who.public_key, role=role)}
        assert await self.send(who, "identity.register", body) == "ok"
        return who


@pytest.fixture
async def network(tmp_path: Path):
    ports = free_ports(4)
    homes = [tmp_path / "a", tmp_path / "b"]
    init_network(homes, chain_id=CHAIN, names=["inst-a", "inst-b"], api_ports=ports[:2], p2p_ports=ports[2:])
    nodes = [open_node(home) for home in homes]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    ready = [loop.create_future() for _ in nodes]
    tasks = [asyncio.create_task(serve(node, ready=r, stop=stop)) for node, r in zip(nodes, ready)]
    try:
        await asyncio.wait_for(asyncio.gather(*ready), 60)
        yield Network(nodes)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)


async def test_store_at_a_refused_then_read_at_b_after_consent(network: Network, tmp_path: Path):
    node_a, node_b = network.nodes
    inst_a, inst_b = (load_key_file(tmp_path / n / "institution.key") for n in ("a", "b"))
    assert (node_a.identity.public_key, node_b.identity.public_key) == (inst_a.public_key, inst_b.public_key)
    delegate_a = NodeDelegate(node_a, custodian_of(node_a))
    delegate_b = NodeDelegate(node_b, custodian_of(node_b))

    patient = Identity.generate()
    assert await network.send(patient, "identity.register", {
        "role": "patient", "institution": inst_a.public_key,
        "attestation": attest(inst_a, chain_id=CHAIN, registrant=patient.public_key, role="patient")}) == "ok"
    doc_a, doc_b = await network.register("practitioner", inst_a), await network.register("practitioner", inst_b)

    # A's practitioner stores through A
    [stored] = await delegate_a.store_for(doc_a.public_key, [NewRecord(patient=patient.public_key,
                                                                        resource_type="Observation", resource_json=OBS)])
    assert isinstance(stored, StoredRecord), stored
    rid = stored.record_id
    assert await node_b.wait_height(stored.height, 30)
    meta = queries.record(node_b.state_reader(), rid)
    assert meta["author"] == doc_a.public_key.hex() and meta["via"] == inst_a.public_key.hex()
    assert meta["custodian"] == inst_a.public_key.hex()

    # B's practitioner: predicted and then refused, without consent
    assert delegate_b.predict(doc_b.public_key, rid, "treatment") == "no_consent"
    [refused] = await delegate_b.read_for(doc_b.public_key, [rid], "treatment")
    assert isinstance(refused, CodedError) and (refused.code, refused.status) == ("no_consent", 403)
    # A cannot read for B's practitioner, nor B for A's
    [not_ours] = await delegate_a.read_for(doc_b.public_key, [rid], "treatment")
    assert isinstance(not_ours, CodedError) and not_ours.code == "not_our_practitioner"

    # the patient consents to B's practitioner; B reads the plaintext (fetched from A, opened at B)
    assert await network.send(patient, "consent.grant", {
        "grantee_kind": "practitioner", "grantee": doc_b.public_key, "purposes": ["treatment"],
        "resource_types": ["Observation"], "valid_until": node_a.clock_ms() + 3_600_000}) == "ok"
    consent_id = network.last_hash
    assert delegate_b.predict(doc_b.public_key, rid, "treatment") is None
    assert await delegate_b.read_for(doc_b.public_key, [rid], "treatment") == [OBS]

    # the audit trail names practitioner and institution
    assert await node_a.wait_height(node_b.store.height, 30)
    trail = [(e["event"], e["actor"], e.get("via")) for e in queries.patient_audit(node_a.state_reader(), patient.public_key)
             if e["event"] in ("record.added", "access.denied", "access.granted")]
    assert trail == [
        ("record.added", doc_a.public_key.hex(), inst_a.public_key.hex()),
        ("access.denied", doc_b.public_key.hex(), inst_b.public_key.hex()),
        ("access.granted", doc_b.public_key.hex(), inst_b.public_key.hex()),
    ]
    [disclosed] = queries.disclosures(node_a.state_reader(), inst_a.public_key, 0, node_a.now_ms() + 60_000)
    assert disclosed["actor"] == doc_b.public_key.hex() and disclosed["via"] == inst_b.public_key.hex()

    # the patient revokes: the standing grant falls with its consent, a new request is denied;
    # once erased, the record is gone for everyone
    assert await network.send(patient, "consent.revoke", {"consent": consent_id}) == "ok"
    assert delegate_b.predict(doc_b.public_key, rid, "treatment") == "consent_revoked"
    [revoked] = await delegate_b.read_for(doc_b.public_key, [rid], "treatment")
    assert isinstance(revoked, CodedError) and (revoked.code, revoked.status) == ("consent_revoked", 403)
    assert await network.send(patient, "record.erase", {"record": rid}) == "ok"
    [erased] = await delegate_b.read_for(doc_b.public_key, [rid], "treatment")
    assert isinstance(erased, CodedError) and (erased.code, erased.status) == ("erased", 410)
    assert delegate_b.predict(doc_b.public_key, rid, "treatment") == "erased"
