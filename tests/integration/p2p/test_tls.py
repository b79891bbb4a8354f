"""Peer links over TLS: the transport takes SSL contexts for both ends."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture
def tls(tmp_path):
    """A throwaway self-signed certificate for 127.0.0.1: (server context, client context)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-nodes",
            "-subj", "/CN=medledger-test", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    return server, client


async def test_nodes_link_and_talk_over_tls(make_cluster, tls, pulse):
    server, client = tls
    (a, _), (b, rec_b) = await make_cluster(2, ssl_server=server, ssl_client=client)
    assert a.send(b.node_id, 1, b"over tls")
    await pulse.until(lambda: rec_b.frames, "a frame over TLS")
    assert await b.request(a.node_id, 1, b"q", timeout=2) == b"echo:q"


async def test_a_plaintext_dialer_cannot_reach_a_tls_node(make_net, keys, tls, pulse, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="p2p")
    server, client = tls
    secure, _ = await make_net(keys(1), ssl_server=server, ssl_client=client)
    plain, _ = await make_net(keys(0), peers={secure.node_id: f"127.0.0.1:{secure.port}"})
    await pulse.until(
        lambda: any("cannot reach peer" in r.getMessage() for r in caplog.records), "the plaintext dial to fail"
    )
    assert plain.connected_peers() == [] and secure.connected_peers() == []
