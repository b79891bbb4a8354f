"""The agreements' read routes in-process: GET /v1/agreements/{id} (latest or ?version=N) and
GET /v1/institutions/{id}/agreements, public, answering 400/404 with codes on bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app.agreements import check_stored_policy
from node.app.policies.check import canonical_form
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.core.crypto import Identity
from node.home.config import build_config
from node.runtime.runtime import Node
from storage.chain import ChainStore
from storage.kv import MemoryStore
from tests.helpers import CHAIN, TxPoster

HOST = Identity.from_seed(b"\x21" * 32)  # the one validator, an institution
OTHER = Identity.from_seed(b"\x22" * 32)  # a second institution of the genesis
POLICY = canonical_form((Path(__file__).resolve().parents[3] / "docs/examples/policies/pharmacy-nomination.cedar").read_text())


@pytest.fixture
async def poster() -> AsyncIterator[TxPoster]:
    genesis = Genesis(chain_id=CHAIN, genesis_time_ms=1_700_000_000_000,
                      validators=(ValidatorInfo(id=HOST.public_key, name="v0", address="127.0.0.1:0"),),
                      institutions=(InstitutionInfo(id=HOST.public_key, name="v0"),
                                    InstitutionInfo(id=OTHER.public_key, name="other")))
    node = Node(config=build_config({"consensus": {"empty_block_interval_ms": 50}}, env={}), genesis=genesis,
                identity=HOST, store=ChainStore(MemoryStore()))
    client = TestClient(TestServer(make_app(node)))
    await client.start_server()
    node.start()
    try:
        yield TxPoster(client)
    finally:
        node.stop()
        await client.close()
        node.store.close()


async def test_an_agreement_is_read_by_id_version_and_institution(poster: TxPoster) -> None:
    client = poster.client
    body = {"agreement": "pharm-1", "version": 1, "parties": sorted([HOST.public_key, OTHER.public_key]),
            "purposes": ["treatment"], "policy": POLICY}
    assert (await poster.tx(HOST, "agreement.propose", body))["result"] == "ok"
    resp = await client.get("/v1/agreements/pharm-1")
    found = await resp.json()
    assert resp.status == 200 and found["status"] == "proposed" and found["policy"] == POLICY
    assert (await (await client.get(f"/v1/institutions/{OTHER.public_key.hex()}/agreements")).json())["agreements"] == []
    sign = {"agreement": "pharm-1", "version": 1, "digest": check_stored_policy(POLICY)}
    assert (await poster.tx(OTHER, "agreement.sign", sign))["result"] == "ok"
    found = await (await client.get("/v1/agreements/pharm-1?version=1")).json()
    assert found["status"] == "in_force" and found["signatures"] == sorted([HOST.public_key.hex(), OTHER.public_key.hex()])
    listed = await (await client.get(f"/v1/institutions/{HOST.public_key.hex()}/agreements")).json()
    assert [a["policy_id"] for a in listed["agreements"]] == ["pharm-1@1"]
    for path, status, code in (("/v1/agreements/pharm-1?version=2", 404, "unknown_agreement"),
                               ("/v1/agreements/nothing", 404, "unknown_agreement"),
                               ("/v1/agreements/pharm-1?version=0", 400, "invalid_version"),
                               ("/v1/agreements/pharm-1?version=x", 400, "bad_version"),
                               ("/v1/agreements/-bad", 400, "invalid_agreement_id"),
                               ("/v1/institutions/zz/agreements", 400, None)):
        resp = await client.get(path)
        assert resp.status == status, path
        if code:
            assert (await resp.json())["error"] == code
