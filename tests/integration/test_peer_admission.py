"""Who may link to a node: validators of its genesis and configured observers only. A node with
a key outside that set, or with another genesis, is refused, whatever it claims; the same holds
over TLS peer links, and a TLS peer that does not trust the CA cannot link either."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from node.devtools.cluster import free_ports
from node.home.config import build_config
from node.core.crypto import Identity
from node.daemon import allowed_peers, peer_map
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.net.gossip import NetworkService
from node.runtime.runtime import Node
from node.home.tls import client_context, issue_certificate, make_local_ca, server_context
from p2p.handshake import REASON_UNKNOWN_NODE, REASON_WRONG_GENESIS
from p2p.limits import P2PLimits
from storage.chain import ChainStore
from storage.kv import MemoryStore

FAST = P2PLimits(reconnect_base=0.05, reconnect_cap=0.3, handshake_timeout=2.0, connect_timeout=2.0, close_timeout=0.5)
A, B, OUTSIDER, OBSERVER = (Identity.from_seed(bytes([i]) * 32) for i in (21, 22, 23, 24))


async def until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)  # polling a condition, with a deadline


def genesis(ports: dict[bytes, int], *, time_ms: int = 1_700_000_000_000) -> Genesis:
    return Genesis(
        chain_id="admission-test", genesis_time_ms=time_ms,
        validators=tuple(ValidatorInfo(id=i.public_key, name=f"v{n}", address=f"127.0.0.1:{ports[i.public_key]}")
                         for n, i in enumerate((A, B))),
        institutions=tuple(InstitutionInfo(id=i.public_key, name=f"v{n}") for n, i in enumerate((A, B))),
    )


def service(identity: Identity, gen: Genesis, port: int, *, peers: str = "", observers: str = "",
            ssl: tuple | None = None) -> NetworkService:
    cfg = build_config({"p2p": {"port": port, "peers": peers, "observers": observers},
                        "node": {"observer": identity.public_key not in {v.id for v in gen.validators}}}, env={})
    node = Node(config=cfg, genesis=gen, identity=identity, store=ChainStore(MemoryStore()))
    server, client = ssl or (None, None)
    return NetworkService(node, host="127.0.0.1", port=port, peers=peer_map(node),
                          allowed=allowed_peers(node).__contains__, limits=FAST, ssl_server=server, ssl_client=client)


def logged(caplog: pytest.LogCaptureFixture, *fragments: str) -> bool:
    return any(all(f in r.getMessage() for f in fragments) for r in caplog.records)


@pytest.fixture
async def running():
    started: list[NetworkService] = []

    async def start(svc: NetworkService) -> NetworkService:
        await svc.start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        await svc.stop()


async def test_only_validators_and_configured_observers_link(running, caplog):
    caplog.set_level(logging.INFO, logger="p2p")
    pa, pb, po, pobs = free_ports(4)
    gen = genesis({A.public_key: pa, B.public_key: pb})
    a = await running(service(A, gen, pa, observers=OBSERVER.id))
    b = await running(service(B, gen, pb, observers=OBSERVER.id))
    # the right genesis, a key nobody configured: it dials both validators and is refused
    outsider = await running(service(OUTSIDER, gen, po))
    observer = await running(service(OBSERVER, gen, pobs))
    await until(lambda: set(a.connected_peers()) == {B.public_key, OBSERVER.public_key}, "a's links")
    await until(lambda: set(b.connected_peers()) == {A.public_key, OBSERVER.public_key}, "b's links")
    await until(lambda: logged(caplog, "refused inbound", OUTSIDER.id[:16], REASON_UNKNOWN_NODE), "the refusal")
    await until(lambda: set(observer.connected_peers()) == {A.public_key, B.public_key}, "the observer's links")
    assert outsider.connected_peers() == []


async def test_a_validator_key_with_another_genesis_cannot_join(running, caplog):
    caplog.set_level(logging.INFO, logger="p2p")
    pa, pb = free_ports(2)
    ports = {A.public_key: pa, B.public_key: pb}
    a = await running(service(A, genesis(ports), pa))
    # B's own key, but a genesis that differs (another start time): another network
    impostor = await running(service(B, genesis(ports, time_ms=1_700_000_000_001), pb))
    await until(lambda: logged(caplog, "refused", B.id[:16], REASON_WRONG_GENESIS), "a's refusal")
    await until(lambda: logged(caplog, "refused", A.id[:16], REASON_WRONG_GENESIS), "the impostor's refusal")
    assert a.connected_peers() == [] and impostor.connected_peers() == []


@pytest.fixture(scope="module")
def devnet_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, tuple]]:
    """A local CA and a certificate per node: (CA file, node id -> (server ctx, client ctx))."""
    root = tmp_path_factory.mktemp("tls")
    ca = make_local_ca()
    (root / "ca.pem").write_bytes(ca.pem)
    out = {}
    for who in (A, B, OUTSIDER):
        cert, key = issue_certificate(ca, who.id[:16], ["127.0.0.1"])
        (root / f"{who.id}.crt").write_bytes(cert)
        (root / f"{who.id}.key").write_bytes(key)
        out[who.public_key] = (server_context(root / f"{who.id}.crt", root / f"{who.id}.key"), client_context(root / "ca.pem"))
    return root, out


async def test_tls_links_admit_validators_only_and_need_the_ca(running, devnet_tls, caplog):
    caplog.set_level(logging.INFO, logger="p2p")
    _, ctx = devnet_tls
    pa, pb, po = free_ports(3)
    gen = genesis({A.public_key: pa, B.public_key: pb})
    a = await running(service(A, gen, pa, ssl=ctx[A.public_key]))
    b = await running(service(B, gen, pb, ssl=ctx[B.public_key]))
    await until(lambda: a.connected_peers() == [B.public_key] and b.connected_peers() == [A.public_key], "a TLS link")
    # a certificate from the CA does not make a member: the handshake still refuses the key
    outsider = await running(service(OUTSIDER, gen, po, ssl=ctx[OUTSIDER.public_key]))
    await until(lambda: logged(caplog, "refused inbound", OUTSIDER.id[:16], REASON_UNKNOWN_NODE), "the refusal")
    assert outsider.connected_peers() == []


async def test_a_tls_dialer_that_does_not_trust_the_ca_cannot_link(running, devnet_tls, caplog):
    caplog.set_level(logging.INFO, logger="p2p")
    _, ctx = devnet_tls
    pa, pb = free_ports(2)
    gen = genesis({A.public_key: pa, B.public_key: pb})
    other_ca = make_local_ca()
    root = devnet_tls[0]
    (root / "other-ca.pem").write_bytes(other_ca.pem)
    distrustful = (ctx[B.public_key][0], client_context(root / "other-ca.pem"))
    a = await running(service(A, gen, pa, ssl=ctx[A.public_key]))
    b = await running(service(B, gen, pb, ssl=distrustful))
    # b's dials fail certificate verification (a may still dial b: it trusts the CA of b's certificate)
    await until(lambda: logged(caplog, "cannot reach peer", A.id[:16], "CERTIFICATE_VERIFY_FAILED"), "b's failed dial")
