"""A node run from its home (the daemon's `serve`, as `medledger node run` runs it) serves the
SMART discovery document and issues a token to its own institution key; with `[fhir] enabled =
false` it serves neither."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from node.daemon import open_node, serve
from node.devtools.cluster import free_ports
from node.fhir.client_assertion import make_assertion, token_form
from node.fhir.smart import TOKEN_PATH
from node.home.config import NodeHome
from node.home.keys import load_key_file
from node.home.layout import init_network
from node.runtime.runtime import Node

Check = Callable[[aiohttp.ClientSession, str, Node], Awaitable[None]]


def _home(tmp_path: Path) -> Path:
    api_port, p2p_port = free_ports(2)
    home = tmp_path / "home"
    init_network([home], chain_id="fhir-test", names=["v0"], api_ports=[api_port], p2p_ports=[p2p_port])
    return home


async def _running(home: Path, body: Check) -> None:
    node = open_node(home)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(node, ready=ready, stop=stop))
    try:
        url = await asyncio.wait_for(ready, 60)
        async with aiohttp.ClientSession() as session:
            await body(session, url, node)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_the_daemon_serves_discovery_and_issues_a_token(tmp_path):
    home = _home(tmp_path)
    institution = load_key_file(home / "institution.key")

    async def check(session: aiohttp.ClientSession, url: str, node: Node) -> None:
        resp = await session.get(url + "/fhir/R4/.well-known/smart-configuration")
        conf = await resp.json()
        assert resp.status == 200 and conf["token_endpoint"] == url + TOKEN_PATH
        form = token_form(make_assertion(institution, conf["token_endpoint"], node.clock_ms()), "system/*.read", "HOPERAT")
        resp = await session.post(conf["token_endpoint"], data=form)
        answer = await resp.json()
        assert resp.status == 200 and answer["scope"] == "system/*.read", answer

    await _running(home, check)


async def test_fhir_disabled_mounts_nothing(tmp_path):
    home = _home(tmp_path)
    config = NodeHome(home).config_path
    config.write_text(config.read_text().replace("[fhir]\nenabled = true", "[fhir]\nenabled = false"))
    assert "enabled = false" in config.read_text()

    async def check(session: aiohttp.ClientSession, url: str, node: Node) -> None:
        assert (await session.get(url + "/.well-known/smart-configuration")).status == 404
        assert (await session.post(url + TOKEN_PATH, data={"grant_type": "client_credentials"})).status == 404
        assert (await session.get(url + "/v1/status")).status == 200

    await _running(home, check)
