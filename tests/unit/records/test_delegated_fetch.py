"""The custodian's delegated fetch (an institution for one of its practitioners), in-process:
served only when signed by the practitioner's own institution, fresh, not replayed, with a
committed grant for the practitioner and the record not erased; the key is wrapped for the
institution. The old Fetch keeps working beside it."""

from __future__ import annotations

import json
import os
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app.types.identity import attest
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.core.crypto import Identity, sha256
from node.core.encoding import canonical, decode
from node.core.errors import CodedError
from node.home.config import build_config
from node.records.custodian import Custodian
from node.records.envelope import decrypt, seal_record, unwrap_key
from node.records.protocol import DelegatedFetch, Release, Upload
from node.runtime.runtime import Node
from storage.chain import ChainStore
from storage.kv import MemoryStore
from storage.offchain import OffchainStore
from tests.helpers import CHAIN, MSGPACK, TxPoster

OBS = json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"}}).encode()
HOST = Identity.from_seed(b"\x11" * 32)  # the custodian's institution (the one validator)
OTHER = Identity.from_seed(b"\x12" * 32)  # a second institution (genesis, not a validator)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class World(TxPoster):
    def __init__(self, client: TestClient, node: Node, custodian: Custodian) -> None:
        super().__init__(client)
        self.node = node
        self.custodian = custodian

    async def fetch(self, fetch: DelegatedFetch) -> tuple[int, bytes]:
        resp = await self.client.post(f"/v1/records/{fetch.record_id.hex()}/fetch-delegated", data=fetch.to_wire(),
                                      headers=MSGPACK)
        return resp.status, await resp.read()

    async def staff(self, institution: Identity) -> Identity:
        who = Identity.generate()
        body = {"role": "practitioner", "institution": institution.public_key,
                "attestation": attest(institution, chain_id=CHAIN, registrant=who.public_key, role="practitioner")}
        assert (await self.tx(who, "identity.register", body))["result"] == "ok"
        return who


@pytest.fixture
async def world():
    genesis = Genesis(chain_id=CHAIN, genesis_time_ms=1_700_000_000_000,
                      validators=(ValidatorInfo(id=HOST.public_key, name="v0", address="127.0.0.1:0"),),
                      institutions=(InstitutionInfo(id=HOST.public_key, name="v0"),
                                    InstitutionInfo(id=OTHER.public_key, name="other")))
    node = Node(config=build_config({"consensus": {"empty_block_interval_ms": 50}}, env={}), genesis=genesis,
                identity=HOST, store=ChainStore(MemoryStore()))
    custodian = Custodian(node, OffchainStore(MemoryStore()))
    node.commit_hooks.append(custodian.on_block_committed)
    client = TestClient(TestServer(make_app(node, custodian=custodian)))
    await client.start_server()
    node.start()
    try:
        yield World(client, node, custodian)
    finally:
        node.stop()
        await client.close()
        node.store.close()


async def setup(w: World):
    """A patient of HOST, its author at HOST, a reader at HOST and one at OTHER, one record."""
    patient = Identity.generate()
    registered = {"role": "patient", "institution": HOST.public_key,
                  "attestation": attest(HOST, chain_id=CHAIN, registrant=patient.public_key, role="patient")}
    assert (await w.tx(patient, "identity.register", registered))["result"] == "ok"
    author, reader, foreign = await w.staff(HOST), await w.staff(HOST), await w.staff(OTHER)
    rid = os.urandom(32)
    ct, wrapped = seal_record(OBS, {"patient": patient.public_key, "custodian": HOST.public_key})
    up = Upload.create(author, chain_id=CHAIN, record_id=rid, patient=patient.public_key, resource_type="Observation",
                       ciphertext=ct, wrapped=wrapped, timestamp_ms=now_ms())
    w.custodian.accept_upload(up)
    added = await w.tx(author, "record.add", {"record": rid, "patient": patient.public_key,
                                              "resource_type": "Observation", "hash": sha256(ct),
                                              "custodian": HOST.public_key})
    assert added["result"] == "ok", added
    return patient, reader, foreign, rid


async def consent_and_request(w: World, patient: Identity, reader: Identity, institution: Identity, rid: bytes) -> None:
    grant = await w.tx(patient, "consent.grant", {"grantee_kind": "practitioner", "grantee": reader.public_key,
                                                  "purposes": ["treatment"], "resource_types": ["Observation"],
                                                  "valid_until": now_ms() + 3_600_000})
    assert grant["result"] == "ok", grant
    asked = await w.tx(institution, "access.request", {"record": rid, "purpose": "treatment",
                                                       "on_behalf_of": reader.public_key})
    assert asked["result"] == "ok", asked


def error(body: bytes) -> str:
    return json.loads(body)["error"]


async def test_delegated_fetch_opens_for_the_institution_only(world):
    patient, reader, _, rid = await setup(world)
    fetch = DelegatedFetch.create(HOST, chain_id=CHAIN, record_id=rid, practitioner=reader.public_key,
                                  timestamp_ms=now_ms())
    status, body = await world.fetch(fetch)
    assert status == 403 and error(body) == "no_grant"  # no grant yet (and the nonce is not spent)
    await consent_and_request(world, patient, reader, HOST, rid)
    status, body = await world.fetch(fetch)
    assert status == 200, body
    release = Release.from_wire(decode(body), CHAIN)
    assert release.requester == HOST.public_key and release.nonce == fetch.nonce
    assert decrypt(release.ciphertext, unwrap_key(release.wrapped_key, HOST)) == OBS
    with pytest.raises(ValueError):
        unwrap_key(release.wrapped_key, reader)  # wrapped for the institution, not the practitioner
    # replayed
    status, body = await world.fetch(fetch)
    assert status == 401 and error(body) == "replayed_request"
    # stale
    stale = DelegatedFetch.create(HOST, chain_id=CHAIN, record_id=rid, practitioner=reader.public_key,
                                  timestamp_ms=now_ms() - 600_000)
    status, body = await world.fetch(stale)
    assert status == 401 and error(body) == "stale_request"
    # in-process, the same checks open the record for this institution's own practitioner
    assert world.custodian.open_for(reader.public_key, rid) == OBS


async def test_delegated_fetch_refusals(world):
    patient, reader, foreign, rid = await setup(world)
    await consent_and_request(world, patient, reader, HOST, rid)

    def signed(by: Identity, practitioner: bytes, institution: bytes | None = None) -> DelegatedFetch:
        f = DelegatedFetch.create(by, chain_id=CHAIN, record_id=rid, practitioner=practitioner, timestamp_ms=now_ms())
        if institution is not None:  # claims another institution than its signer
            doc = decode(f.to_wire())
            return DelegatedFetch(chain_id=CHAIN, record_id=rid, institution=institution, practitioner=practitioner,
                                  timestamp_ms=doc["timestamp_ms"], nonce=doc["nonce"], signature=doc["signature"])
        return f

    # wrong signer: OTHER signs a request naming HOST
    status, body = await world.fetch(signed(OTHER, reader.public_key, HOST.public_key))
    assert status == 401 and error(body) == "bad_signature"
    # a practitioner of another institution: OTHER asks for HOST's practitioner, HOST for OTHER's
    status, body = await world.fetch(signed(OTHER, reader.public_key))
    assert status == 403 and error(body) == "not_our_practitioner"
    status, body = await world.fetch(signed(HOST, foreign.public_key))
    assert status == 403 and error(body) == "not_our_practitioner"
    # the practitioner's own key cannot pose as its institution
    status, body = await world.fetch(signed(reader, reader.public_key))
    assert status == 403 and error(body) == "not_our_practitioner"
    # no grant for this practitioner (the institution's grant is not the practitioner's)
    other_reader = await world.staff(HOST)
    status, body = await world.fetch(signed(HOST, other_reader.public_key))
    assert status == 403 and error(body) == "no_grant"
    # a grant to OTHER's practitioner does not open through HOST's key either
    await consent_and_request(world, patient, foreign, OTHER, rid)
    status, body = await world.fetch(signed(HOST, foreign.public_key))
    assert status == 403 and error(body) == "not_our_practitioner"
    status, body = await world.fetch(signed(OTHER, foreign.public_key))
    assert status == 200
    # malformed
    resp = await world.client.post(f"/v1/records/{rid.hex()}/fetch-delegated", data=canonical({"x": 1}), headers=MSGPACK)
    assert resp.status == 400
    # erased
    assert (await world.tx(patient, "record.erase", {"record": rid}))["result"] == "ok"
    status, body = await world.fetch(signed(HOST, reader.public_key))
    assert status == 403 and error(body) == "no_grant"  # an erased record has no active grant any more
    with pytest.raises(CodedError) as err:
        world.custodian.open_for(reader.public_key, rid)
    assert err.value.code == "no_grant"
