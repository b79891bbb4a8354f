"""The agreements' read routes in-process: GET /v1/agreements/{id} (latest or ?version=N),
GET /v1/institutions/{id}/agreements, and the network page's listings GET /v1/institutions
(name, kind, validator, agreements in force) and GET /v1/agreements?in_force=1 (summaries with
parties by name and kind), public, paged, answering 400/404 with codes on bad input; and the
queries behind the listings on a ledger in memory: expiry, revocation, supersession, page caps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app import queries
from node.app.agreements import MAX_IN_FORCE, check_stored_policy
from node.app.policies.check import canonical_form
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.core.crypto import Identity
from node.home.config import build_config
from node.runtime.runtime import Node
from storage.chain import ChainStore
from storage.kv import MemoryStore
from tests.helpers import CHAIN, TxPoster
from tests.unit.app.harness import DAY, Ledger, ident

HOST = Identity.from_seed(b"\x21" * 32)  # the one validator, an institution
OTHER = Identity.from_seed(b"\x22" * 32)  # a second institution of the genesis
THIRD = Identity.from_seed(b"\x23" * 32)  # a third, recorded without a kind
A, B, C = (ident(n) for n in "ABC")  # validators of the in-memory ledger (tests.unit.app.harness)
POLICY = canonical_form((Path(__file__).resolve().parents[3] / "docs/examples/policies/pharmacy-nomination.cedar").read_text())


@pytest.fixture
async def poster() -> AsyncIterator[TxPoster]:
    genesis = Genesis(chain_id=CHAIN, genesis_time_ms=1_700_000_000_000,
                      validators=(ValidatorInfo(id=HOST.public_key, name="v0", address="127.0.0.1:0"),),
                      institutions=(InstitutionInfo(id=HOST.public_key, name="v0", kind="hospital"),
                                    InstitutionInfo(id=OTHER.public_key, name="other", kind="pharmacy"),
                                    InstitutionInfo(id=THIRD.public_key, name="third")))
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


def pair(a: Identity, b: Identity) -> list[bytes]:
    return sorted([a.public_key, b.public_key])


async def in_force(poster: TxPoster, agreement: str, proposer: Identity, signer: Identity, *, version: int = 1,
                   purposes: tuple[str, ...] = ("treatment",)) -> None:
    body = {"agreement": agreement, "version": version, "parties": pair(proposer, signer), "purposes": list(purposes),
            "policy": POLICY}
    assert (await poster.tx(proposer, "agreement.propose", body))["result"] == "ok"
    sign = {"agreement": agreement, "version": version, "digest": check_stored_policy(POLICY)}
    assert (await poster.tx(signer, "agreement.sign", sign))["result"] == "ok"


async def get_json(poster: TxPoster, path: str, status: int = 200) -> Any:
    resp = await poster.client.get(path)
    assert resp.status == status, (path, await resp.text())
    return await resp.json()


async def test_institutions_are_listed_with_kind_validator_and_agreements_in_force(poster: TxPoster) -> None:
    doc = await get_json(poster, "/v1/institutions")
    by_id = {i["id"]: i for i in doc["institutions"]}
    assert doc["next"] is None and [i["id"] for i in doc["institutions"]] == sorted(by_id)
    assert by_id[HOST.public_key.hex()] == {"id": HOST.public_key.hex(), "name": "v0", "kind": "hospital",
                                            "validator": True, "agreements_in_force": 0}
    assert by_id[OTHER.public_key.hex()]["kind"] == "pharmacy" and not by_id[OTHER.public_key.hex()]["validator"]
    assert by_id[THIRD.public_key.hex()]["kind"] == "unspecified"
    await in_force(poster, "pharm-1", HOST, OTHER)
    counts = {i["id"]: i["agreements_in_force"] for i in (await get_json(poster, "/v1/institutions"))["institutions"]}
    assert counts == {HOST.public_key.hex(): 1, OTHER.public_key.hex(): 1, THIRD.public_key.hex(): 0}
    # paging: one at a time, `next` chaining to the end
    seen, after = [], ""
    while True:
        page = await get_json(poster, f"/v1/institutions?limit=1{after}")
        assert len(page["institutions"]) == 1
        seen.append(page["institutions"][0]["id"])
        if page["next"] is None:
            break
        assert page["next"] == seen[-1]
        after = f"&after={page['next']}"
    assert seen == sorted(by_id)
    assert (await get_json(poster, f"/v1/institutions?after={seen[-1]}"))["institutions"] == []
    for path, code in (("/v1/institutions?limit=0", "bad_limit"), ("/v1/institutions?limit=101", "bad_limit"),
                       ("/v1/institutions?limit=x", "bad_limit"), ("/v1/institutions?after=zz", "bad_after")):
        assert (await get_json(poster, path, 400))["error"] == code, path


async def test_agreements_in_force_are_listed_with_their_parties_by_name_and_kind(poster: TxPoster) -> None:
    empty = await get_json(poster, "/v1/agreements?in_force=1")
    assert empty["agreements"] == [] and empty["next"] is None and isinstance(empty["height"], int)
    body = {"agreement": "claims", "version": 1, "parties": pair(HOST, THIRD), "purposes": ["payment"], "policy": POLICY}
    assert (await poster.tx(HOST, "agreement.propose", body))["result"] == "ok"
    assert (await get_json(poster, "/v1/agreements"))["agreements"] == []  # proposed: not in force
    await in_force(poster, "pharm-1", HOST, OTHER, purposes=("treatment", "payment"))
    doc = await get_json(poster, "/v1/agreements?in_force=1")
    (found,) = doc["agreements"]
    full = await get_json(poster, "/v1/agreements/pharm-1")
    assert found == {
        "id": "pharm-1", "version": 1, "policy_id": "pharm-1@1", "status": "in_force",
        "parties": [{"id": p.hex(), "name": {HOST.public_key: "v0", OTHER.public_key: "other"}[p],
                     "kind": {HOST.public_key: "hospital", OTHER.public_key: "pharmacy"}[p]} for p in pair(HOST, OTHER)],
        "proposer": HOST.public_key.hex(), "purposes": ["treatment", "payment"],
        "signatures": [p.hex() for p in pair(HOST, OTHER)], "digest": check_stored_policy(POLICY).hex(),
        "policy_bytes": len(POLICY.encode()), "height": full["height"], "time_ms": full["time_ms"],
        "in_force_height": full["in_force_height"], "in_force_ms": full["in_force_ms"], "valid_until_ms": None,
    }
    assert "policy" not in found and full["digest"] == found["digest"] and found["in_force_height"] >= found["height"]
    # a second one, then paging one at a time; a new version in force replaces the old in the listing
    await in_force(poster, "ab", OTHER, THIRD)
    first = await get_json(poster, "/v1/agreements?limit=1")
    assert [a["id"] for a in first["agreements"]] == ["ab"] and first["next"] == "ab"  # shorter ids first
    second = await get_json(poster, "/v1/agreements?in_force=true&limit=1&after=ab")
    assert [a["id"] for a in second["agreements"]] == ["pharm-1"] and second["next"] is None
    await in_force(poster, "pharm-1", OTHER, HOST, version=2)
    listed = (await get_json(poster, "/v1/agreements"))["agreements"]
    assert [(a["id"], a["version"], a["proposer"]) for a in listed] == [("ab", 1, OTHER.public_key.hex()),
                                                                       ("pharm-1", 2, OTHER.public_key.hex())]
    assert (await poster.tx(THIRD, "agreement.revoke", {"agreement": "ab", "version": 1}))["result"] == "ok"
    assert [a["id"] for a in (await get_json(poster, "/v1/agreements"))["agreements"]] == ["pharm-1"]
    counts = {i["id"]: i["agreements_in_force"] for i in (await get_json(poster, "/v1/institutions"))["institutions"]}
    assert counts == {HOST.public_key.hex(): 1, OTHER.public_key.hex(): 1, THIRD.public_key.hex(): 0}
    for path, code in (("/v1/agreements?in_force=0", "bad_in_force"), ("/v1/agreements?in_force=all", "bad_in_force"),
                       ("/v1/agreements?after=-bad", "invalid_agreement_id"), ("/v1/agreements?limit=0", "bad_limit"),
                       ("/v1/agreements?limit=101", "bad_limit")):
        assert (await get_json(poster, path, 400))["error"] == code, path


# -- the queries behind the listings, on a ledger in memory --------------------------------------

def admit_many(ledger: Ledger, count: int) -> list[Identity]:
    """`count` institutions admitted by three of the four validators' votes (the quorum), as clinics."""
    admitted = [ident(f"inst-{i:03d}") for i in range(count)]
    txs = [ledger.tx(v, "governance.admit_institution",
                     {"institution": who.public_key, "name": f"clinic {i}", "kind": "clinic"})
           for i, who in enumerate(admitted) for v in (A, B, C)]
    assert set(ledger.block(*txs)) == {"ok"}
    return admitted


def test_the_institutions_query_caps_its_page_and_leaves_pending_admissions_out() -> None:
    ledger = Ledger()
    admitted = admit_many(ledger, queries.MAX_PAGE + 1)
    pending = ident("pending")
    assert ledger.send(A, "governance.admit_institution", {"institution": pending.public_key, "name": "pending"}) == "ok"
    genesis = [v.id for v in ledger.genesis.validators]
    every = queries.institution_ids(ledger.state, genesis)
    assert every == sorted([*genesis, *(a.public_key for a in admitted)]) and pending.public_key not in every
    page, nxt = queries.institutions(ledger.state, genesis, set(genesis), limit=10_000)
    assert len(page) == queries.MAX_PAGE and nxt == every[queries.MAX_PAGE - 1]
    rest, end = queries.institutions(ledger.state, genesis, set(genesis), after=nxt)
    assert [i["id"] for i in page + rest] == [i.hex() for i in every] and end is None
    kinds = {i["id"]: (i["kind"], i["validator"]) for i in page + rest}
    assert kinds[A.public_key.hex()] == ("unspecified", True) and kinds[admitted[0].public_key.hex()] == ("clinic", False)


def test_the_agreements_query_caps_its_page_and_leaves_ended_ones_out() -> None:
    ledger = Ledger()
    admitted = admit_many(ledger, queries.MAX_PAGE + 2)
    n = len(admitted)
    # a ring: agreement i between institution i and i + 1, so each is party to two
    ids = [f"ring-{i:03d}" for i in range(n)]
    proposals = [ledger.tx(admitted[i], "agreement.propose", {
        "agreement": ids[i], "version": 1, "parties": pair(admitted[i], admitted[(i + 1) % n]),
        "purposes": ["treatment"], "policy": POLICY, **({"valid_until_ms": ledger.now + 10 * DAY} if i == 0 else {})})
        for i in range(n)]
    assert set(ledger.block(*proposals)) == {"ok"}
    assert queries.agreements_in_force(ledger.state) == ([], None)
    signs = [ledger.tx(admitted[(i + 1) % n], "agreement.sign",
                       {"agreement": ids[i], "version": 1, "digest": check_stored_policy(POLICY)}) for i in range(n)]
    assert set(ledger.block(*signs)) == {"ok"}
    page, nxt = queries.agreements_in_force(ledger.state, ledger.now, limit=10_000)
    assert len(page) == queries.MAX_PAGE and nxt == ids[queries.MAX_PAGE - 1]
    rest, end = queries.agreements_in_force(ledger.state, ledger.now, after=nxt)
    assert [a["id"] for a in page + rest] == ids and end is None
    assert page[0]["parties"][0]["kind"] == "clinic" and page[0]["valid_until_ms"] is not None
    assert page[1]["valid_until_ms"] is None
    # past ring-000's end: it is no longer listed, nor counted for its parties
    later = ledger.now + 11 * DAY
    listed = [a["id"] for a in queries.agreements_in_force(ledger.state, later, limit=1000)[0]]
    listed += [a["id"] for a in queries.agreements_in_force(ledger.state, later, after=listed[-1])[0]]
    assert listed == ids[1:]
    counts = every_count(ledger, later)
    assert counts[admitted[0].public_key.hex()] == 1 and counts[admitted[1].public_key.hex()] == 1
    assert counts[admitted[2].public_key.hex()] == 2 and counts[admitted[-1].public_key.hex()] == 2
    assert every_count(ledger, ledger.now)[admitted[0].public_key.hex()] == 2


def every_count(ledger: Ledger, now_ms: int) -> dict[str, int]:
    """Each institution's count of agreements in force at `now_ms`, over every page."""
    genesis = [v.id for v in ledger.genesis.validators]
    counts: dict[str, int] = {}
    after: bytes | None = None
    while True:
        page, after = queries.institutions(ledger.state, genesis, (), now_ms, after=after)
        counts.update((i["id"], i["agreements_in_force"]) for i in page)
        if after is None:
            return counts


def test_an_institution_counts_at_most_the_ledgers_sixteen_agreements_in_force() -> None:
    ledger = Ledger()
    hub, *others = admit_many(ledger, MAX_IN_FORCE + 2)
    ids = [f"hub-{i:02d}" for i in range(len(others))]
    assert set(ledger.block(*[ledger.tx(hub, "agreement.propose", {
        "agreement": ids[i], "version": 1, "parties": pair(hub, other), "purposes": ["treatment"], "policy": POLICY})
        for i, other in enumerate(others)])) == {"ok"}
    results = ledger.block(*[ledger.tx(other, "agreement.sign", {"agreement": ids[i], "version": 1,
                                                                 "digest": check_stored_policy(POLICY)})
                             for i, other in enumerate(others)])
    assert results == ["ok"] * MAX_IN_FORCE + ["too_many_agreements"]
    assert every_count(ledger, ledger.now)[hub.public_key.hex()] == MAX_IN_FORCE
    listed, nxt = queries.agreements_in_force(ledger.state, ledger.now)
    assert [a["id"] for a in listed] == ids[:MAX_IN_FORCE] and nxt is None
