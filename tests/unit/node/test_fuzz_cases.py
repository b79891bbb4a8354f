"""The fuzzer's own parts: endpoints come from the API's routes, and cases are reproducible."""

from __future__ import annotations

import pytest

from node.devtools.fuzz import FRAMES_ENDPOINT, PEER_ENDPOINT, RAW_ENDPOINT, FuzzError, all_endpoints, api_endpoints, select_endpoints
from node.devtools.fuzz_cases import HttpCase, Pools, Target, frames_case, http_case, peer_case, raw_case

TARGET = Target(url="http://127.0.0.1:1", chain_id="medledger-test", node_id="11" * 32,
                validator_ids=("11" * 32, "22" * 32), p2p_address="127.0.0.1:2")
POOLS = Pools(values=(None, 1, "x", b"y", [1, {"a": b"b"}], {b"k": 1.5}), texts=("", "é", "a/b", "\u0000"))


def test_every_public_route_is_an_endpoint() -> None:
    names = {e.name for e in api_endpoints()}
    for expected in ("POST /v1/txs", "GET /v1/txs/{hash}", "GET /v1/blocks/{height}", "GET /v1/commits",
                     "POST /v1/records", "POST /v1/records/{rid}/fetch", "POST /v1/research/extract",
                     "POST /v1/research/{step}", "GET /v1/studies/{study}", "GET /v1/patients/{id}/audit"):
        assert expected in names
    assert not any(n.startswith("HEAD ") or "/v1/test/" in n for n in names)
    step = next(e for e in api_endpoints() if e.name == "POST /v1/research/{step}")
    assert step.params == (("step", ("prepare", "record")),)
    assert {RAW_ENDPOINT, PEER_ENDPOINT} <= {e.name for e in all_endpoints()}


def test_selecting_endpoints_by_name() -> None:
    assert [e.name for e in select_endpoints(["POST /v1/txs"])] == ["POST /v1/txs"]
    assert [e.name for e in select_endpoints(["GET /v1/txs/{hash}"])] == ["GET /v1/txs/{hash}"]  # exact name wins
    assert len(select_endpoints(["/v1/txs/"])) == 2
    assert PEER_ENDPOINT in [e.name for e in select_endpoints(["p2p"])]
    with pytest.raises(FuzzError):
        select_endpoints(["no-such-endpoint"])


@pytest.mark.parametrize("name", ["POST /v1/txs", "GET /v1/commits", "POST /v1/research/{step}", "GET /v1/blocks/{height}"])
def test_a_case_is_a_function_of_seed_endpoint_and_index(name: str) -> None:
    ep = next(e for e in api_endpoints() if e.name == name)
    first = [http_case(ep, 7, i, TARGET, POOLS) for i in range(200)]
    again = [http_case(ep, 7, i, TARGET, POOLS) for i in range(200)]
    other = [http_case(ep, 8, i, TARGET, POOLS) for i in range(200)]
    assert [c.payload for c in first] == [c.payload for c in again]
    assert [c.payload for c in first] != [c.payload for c in other]
    placeholders = ["{" + n + "}" for n, _ in ep.params]
    assert all(isinstance(c, HttpCase) and not any(p in c.path for p in placeholders) for c in first)


def test_post_cases_cover_the_hostile_families() -> None:
    ep = next(e for e in api_endpoints() if e.name == "POST /v1/txs")
    families = {http_case(ep, 1, i, TARGET, POOLS).family for i in range(2000)}
    assert {"random-bytes", "hypothesis-value", "structured", "truncated", "deep-nesting", "huge-length", "many-items",
            "odd-scalars", "wrong-content-type"} <= families


def test_raw_and_peer_cases_are_reproducible() -> None:
    raw = next(e for e in all_endpoints() if e.name == RAW_ENDPOINT)
    peer = next(e for e in all_endpoints() if e.name == PEER_ENDPOINT)
    routes = api_endpoints()
    assert [raw_case(raw, 3, i, routes, POOLS).data for i in range(100)] == [raw_case(raw, 3, i, routes, POOLS).data for i in range(100)]
    one = [peer_case(peer, 3, i, TARGET, POOLS) for i in range(300)]
    two = [peer_case(peer, 3, i, TARGET, POOLS) for i in range(300)]
    assert [c.messages(None) for c in one] == [c.messages(None) for c in two]
    assert {"unsigned-auth", "truncated", "deep-nesting", "huge-length", "wrong-fields", "oversized-message"} <= {c.family for c in one}


def test_frames_cases_are_reproducible_and_varied() -> None:
    ep = next(e for e in all_endpoints() if e.name == FRAMES_ENDPOINT)
    one = [frames_case(ep, 5, i, TARGET, POOLS) for i in range(300)]
    two = [frames_case(ep, 5, i, TARGET, POOLS) for i in range(300)]
    assert [c.messages(None) for c in one] == [c.messages(None) for c in two]
    assert {"data", "request", "stray-response", "handshake-again", "many-frames", "truncated", "garbage"} <= {c.family for c in one}


async def test_health_checks_ride_out_rate_limits() -> None:
    """A node answering 429 to the fuzzer's status check is throttling, not down."""
    import time

    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from node.devtools.fuzz import _status

    answers = [429, 429, 200]

    async def status(request: web.Request) -> web.Response:
        code = answers.pop(0) if answers else 200
        return web.json_response({"height": 1} if code == 200 else {"error": "rate_limited"}, status=code,
                                 headers={"Retry-After": "0"})

    app = web.Application()
    app.router.add_get("/v1/status", status)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        start = time.monotonic()
        assert await _status(session, str(server.make_url("")).rstrip("/")) == {"height": 1}
        assert answers == [] and time.monotonic() - start < 10


def test_get_cases_carry_hostile_signature_headers() -> None:
    ep = next(e for e in api_endpoints() if e.name == "GET /v1/patients/{id}/audit")
    cases = [http_case(ep, 2, i, TARGET, POOLS, now_ms=1_800_000_000_000) for i in range(300)]
    signed = [c for c in cases if c.family == "signed-params"]
    assert 60 < len(signed) < 180
    names = {name for c in signed for name, _ in c.headers}
    assert names == {"X-MedLedger-Signer", "X-MedLedger-Timestamp", "X-MedLedger-Nonce", "X-MedLedger-Signature"}
    assert all(all(v.isprintable() or v == "\t" for _, v in c.headers) for c in signed)  # sendable by an HTTP client
    static = next(e for e in api_endpoints() if e.name == "GET /ui/{filename}")
    assert static.params == (("filename", ()),)
