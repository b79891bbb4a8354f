"""Helpers shared by the tests: a one-validator genesis, an in-process node and its API's
transaction submitter, and the command line run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from node.chain.tx import Transaction
from node.devtools.cluster import Cluster
from node.home.config import NodeConfig, build_config
from node.core.crypto import Identity
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.runtime.runtime import Node
from storage.chain import ChainStore
from storage.kv import LevelDBStore, MemoryStore

ROOT = Path(__file__).resolve().parent.parent
CHAIN = "test-chain"
MSGPACK = {"Content-Type": "application/msgpack"}
NODE_ID = Identity.from_seed(b"\x07" * 32).id  # the id of the node `make_node` builds by default


def one_validator_genesis(ident: Identity) -> Genesis:
    return Genesis(
        chain_id=CHAIN, genesis_time_ms=1_700_000_000_000,
        validators=(ValidatorInfo(id=ident.public_key, name="v0", address="127.0.0.1:0"),),
        institutions=(InstitutionInfo(id=ident.public_key, name="v0"),),
    )


def make_node(store_path: Path | None = None, *, config: NodeConfig | None = None, seed: bytes = b"\x07" * 32) -> Node:
    ident = Identity.from_seed(seed)
    kv = LevelDBStore(store_path) if store_path else MemoryStore()
    cfg = config or build_config({"consensus": {"empty_block_interval_ms": 50}}, env={})
    return Node(config=cfg, genesis=one_validator_genesis(ident), identity=ident, store=ChainStore(kv))


class TxPoster:
    """Signs transactions with each signer's next nonce and posts them to a node's API (`client`)."""

    def __init__(self, client: TestClient, *, wait_s: int = 10) -> None:
        self.client = client
        self.wait_s = wait_s
        self.nonces: dict[bytes, int] = {}

    async def submit(self, who: Identity, tx_type: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], Transaction]:
        """POST /v1/txs and wait up to `wait_s` for the commit: (HTTP status, answer, the transaction)."""
        nonce = self.nonces.get(who.public_key, 0) + 1
        self.nonces[who.public_key] = nonce
        tx = Transaction.create(who, chain_id=CHAIN, type=tx_type, nonce=nonce, body=body)
        resp = await self.client.post(f"/v1/txs?wait={self.wait_s}", data=tx.encoded, headers=MSGPACK)
        return resp.status, await resp.json(), tx

    async def tx(self, who: Identity, tx_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """`submit`'s answer, with the transaction's "hash" added."""
        _, doc, tx = await self.submit(who, tx_type, body)
        doc["hash"] = tx.hash_hex
        return doc


def deadline(seconds: float) -> float:
    return time.monotonic() + seconds


@contextmanager
def started_network(root: Path, nodes: int, *, ready_s: float = 30) -> Iterator[Cluster]:
    """A local network of `nodes` validator processes under `root`, answering; stopped at the end."""
    with Cluster.create(root, nodes) as c:
        c.start()
        c.wait_ready(ready_s)
        yield c


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`medledger ARGS` in a fresh process (`python -m cli`), run from the project root."""
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(ROOT))


def cli_json(*args: str) -> Any:
    """The JSON answer of `medledger ARGS --json`, which must succeed."""
    r = cli(*args, "--json")
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return json.loads(r.stdout)


def cli_here(*args: str) -> tuple[int, Any]:
    """`medledger ARGS --json` in this process (click's runner): its exit code and its JSON
    answer, or its output when that is not JSON."""
    from click.testing import CliRunner

    from cli import main

    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    try:
        return result.exit_code, json.loads(result.stdout)
    except ValueError:
        return result.exit_code, result.output


def cli_here_ok(*args: str) -> Any:
    """The JSON answer of `cli_here`, which must succeed."""
    code, doc = cli_here(*args)
    assert code == 0, (args, doc)
    return doc


def wait_until(cond: Any, timeout: float, what: str) -> Any:
    """Poll `cond` until it returns something true (returned), failing after `timeout` seconds."""
    end = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling interval of the condition
    return value


def api_height(url: str) -> int:
    """The height a node's API reports, or -1 while it does not answer."""
    from node.devtools.cluster import http_json

    try:
        return int(http_json(url + "/v1/status", timeout=1.0)["height"])
    except (OSError, ValueError):
        return -1


def submit_txs(url: str, txs: Any) -> None:
    """POST signed transactions to a node's /v1/txs (msgpack), which must accept them."""
    import urllib.request

    from node.core.encoding import canonical

    body = canonical([[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in txs])
    req = urllib.request.Request(url + "/v1/txs", data=body, method="POST", headers=MSGPACK)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
