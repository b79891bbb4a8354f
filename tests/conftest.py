"""Shared fixtures: a one-validator node in-process, served through aiohttp's test client; and
the root logger as each test found it (a CLI command run in-process installs the node's
redacting handler, which would otherwise stay for the tests after it)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.runtime.runtime import Node
from tests.helpers import make_node


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
