"""Requests found by `medledger fuzz` that made the API answer 500; each must now be a clear 4xx."""

from __future__ import annotations

import msgpack

from node.api.common import MAX_WAIT_S, wait_param
from node.core.crypto import Identity
from node.chain.tx import Transaction

from aiohttp.test_utils import TestClient, TestServer

from node.api.app import SERVER_OPTIONS, make_app
from tests.helpers import CHAIN, make_node

MSGPACK = {"Content-Type": "application/msgpack"}


async def committed_tx(client) -> Transaction:
    tx = Transaction.create(Identity.from_seed(b"\x09" * 32), chain_id=CHAIN, type="identity.register", nonce=1,
                            body={"role": "patient"})
    resp = await client.post("/v1/txs?wait=10", data=tx.encoded, headers=MSGPACK)
    assert resp.status == 200 and (await resp.json())["status"] == "committed"
    return tx


def test_a_huge_wait_is_capped_not_overflowed() -> None:
    """Regression: float(int("9" * 400)) raised OverflowError."""
    assert wait_param("9" * 400) == MAX_WAIT_S
    assert wait_param("3") == 3.0


async def test_huge_wait_on_a_transaction_is_answered(api):
    client, _ = api
    tx = await committed_tx(client)
    resp = await client.get(f"/v1/txs/{tx.hash_hex}?wait={'9' * 400}")
    assert resp.status == 200 and (await resp.json())["status"] == "committed"
    resp = await client.get(f"/v1/txs/{tx.hash_hex}?wait={'9' * 5000}")  # beyond int()'s digit limit
    assert resp.status == 400 and (await resp.json())["error"] == "bad_wait"


async def test_a_height_beyond_64_bits_is_an_unknown_block(api):
    """Regression: the store packed the height as a u64 and raised struct.error."""
    client, _ = api
    for height in ("9" * 30, str(2**64), str(2**63)):
        resp = await client.get(f"/v1/blocks/{height}")
        assert resp.status == 404 and (await resp.json())["error"] == "unknown_block"


async def test_a_malformed_study_id_is_refused(api):
    """Regression: a study id over 255 bytes or not ASCII raised in the key builder."""
    client, _ = api
    for study in ("s" * 300, "%C3%A9tude", "a%00b", "-x"):
        resp = await client.get(f"/v1/studies/{study}")
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_study_id"
    resp = await client.get("/v1/studies/fine-study-1")
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_study"


async def test_a_transaction_with_bytes_map_keys_is_malformed(api):
    """Regression: bytes keys decoded, then canonical() raised EncodeError."""
    client, _ = api
    body = msgpack.packb([CHAIN, "identity.register", b"a" * 32, 1, {b"role": "patient"}, b"s" * 64], use_bin_type=True)
    resp = await client.post("/v1/txs", data=body, headers=MSGPACK)
    assert resp.status == 400 and (await resp.json())["error"] == "malformed_msgpack"


async def test_a_compressed_body_is_refused_and_the_connection_kept(tmp_path):
    """Regression: Content-Encoding: gzip with a body that is not gzip made aiohttp drop the
    connection (or the handler answer 500); the API server no longer decompresses, and says so."""
    node = make_node(tmp_path / "db")
    server = TestServer(make_app(node))
    await server.start_server(**SERVER_OPTIONS)  # as node.daemon runs the API
    client = TestClient(server)
    await client.start_server()
    try:
        for path in ("/v1/txs", "/v1/records/" + "00" * 32 + "/fetch"):
            resp = await client.post(path, data=b"\x06\x91B\xe1\x1el\x8ap" * 5,
                                     headers={**MSGPACK, "Content-Encoding": "gzip"}, skip_auto_headers=("Content-Encoding",))
            assert resp.status == 415 and (await resp.json())["error"] == "unsupported_content_encoding"
        resp = await client.get("/v1/health")
        assert resp.status == 200
    finally:
        await client.close()
        node.store.close()


async def test_unparseable_requests_log_one_line_not_a_traceback(tmp_path, caplog):
    """Regression: every request that did not parse as HTTP logged an ERROR with a traceback."""
    import asyncio
    import logging

    from node.api.middleware import QuietClientErrors

    node = make_node(tmp_path / "db")
    server = TestServer(make_app(node))
    await server.start_server(**SERVER_OPTIONS)
    quiet = QuietClientErrors()
    logging.getLogger("aiohttp.server").addFilter(quiet)
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.server"):
            for garbage in (b"GET /v1/status HTTP/9.9\r\n\r\n", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"):
                reader, writer = await asyncio.open_connection(server.host, server.port)
                writer.write(garbage)
                head = await reader.read(12)
                writer.close()
                assert head[:9] in (b"HTTP/1.0 ", b"HTTP/1.1 ") and head[9:12] == b"400", head
        records = [r for r in caplog.records if r.name == "aiohttp.server"]
        assert len(records) == 2
        assert all(r.levelno == logging.INFO and r.exc_info is None and "malformed HTTP request" in r.getMessage() for r in records)
        assert all(len(r.getMessage()) < 200 for r in records)
        other = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "boom", (), (RuntimeError, RuntimeError("x"), None))
        assert quiet.filter(other) and other.levelno == logging.ERROR and other.exc_info is not None
    finally:
        logging.getLogger("aiohttp.server").removeFilter(quiet)
        await server.close()
        node.store.close()


async def test_a_dashboard_file_name_too_long_for_the_file_system_is_404(api):
    """Regression: GET /ui/<300 characters> raised OSError ENAMETOOLONG in the static handler (a 500)."""
    client, _ = api
    for name in ("a" * 300, "9" * 400):
        resp = await client.get(f"/ui/{name}")
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await client.get("/ui/index.html")
    assert resp.status == 200


async def test_an_expect_header_with_bytes_that_are_not_utf8_is_a_417(tmp_path):
    """Regression: `Expect: 10\\x9f-continue` made aiohttp's default expect handler fail to encode
    its own error text (a 500, before any middleware); 100-continue still works."""
    import asyncio

    node = make_node(tmp_path / "db")
    server = TestServer(make_app(node))
    await server.start_server(**SERVER_OPTIONS)
    try:
        async def send(expect: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"GET /v1/identities/" + b"00" * 32 + b" HTTP/1.1\r\nHost: x\r\nExpect: " + expect + b"\r\n\r\n")
            head = await reader.read(200)
            writer.close()
            return head

        assert (await send(b"10\x9f-continue")).startswith(b"HTTP/1.1 417")
        assert (await send(b"something-else")).startswith(b"HTTP/1.1 417")
        assert (await send(b"100-continue")).startswith(b"HTTP/1.1 100 Continue")
    finally:
        await server.close()
        node.store.close()
