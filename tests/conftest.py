"""Shared fixtures: a one-validator node in-process, served through aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.runtime.runtime import Node
from tests.helpers import make_node


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Node]]:
    node = make_node(tmp_path / "db")
    client = TestClient(TestServer(make_app(node)))
    await client.start_server()
    node.start()
    try:
        yield client, node
    finally:
        node.stop()
        await client.close()
        node.store.close()
