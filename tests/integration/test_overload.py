"""Admission under overload (issue 22, point 4), on a real node whose mempool holds 50
transactions: a batch it cannot all take answers 503 with Retry-After, the admitted ones listed
with their hashes; the bench client and the Python client wait as asked and send the refused
ones again, and every transaction offered is committed — nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from node.client import HealthClient
from node.core.encoding import canonical
from node.devtools.bench import BenchConfig, run_bench
from node.devtools.cluster import Cluster
from node.devtools.workload import register_workload

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("overload")
    with Cluster.create(root / "net", 1, extra_env={"MEDLEDGER_MEMPOOL_MAX_TXS": "50"}) as cluster:
        cluster.start()
        cluster.wait_ready(30)
        yield cluster.nodes[0].api_url


def test_a_full_mempool_answers_503_with_retry_after_and_lists_what_it_took(node: str) -> None:
    client = HealthClient(node)
    txs = register_workload(client.chain_id, 600, seed=b"overload-raw").measured
    body = canonical([[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in txs])
    request = urllib.request.Request(node + "/v1/txs", data=body, method="POST",
                                     headers={"Content-Type": "application/msgpack"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 503 and answer.value.headers["Retry-After"] == "1"
    import json

    doc = json.loads(answer.value.read())
    taken = [r for r in doc["results"] if "hash" in r and "error" not in r]
    assert len(taken) == doc["accepted"] and 0 < doc["accepted"] < 600
    assert {r["error"] for r in doc["results"] if "error" in r} == {"mempool_full"}
    for r in taken[-3:]:  # what was acknowledged is committed
        assert client.wait(r["hash"], 60)["status"] == "committed"


def test_the_clients_wait_as_asked_and_lose_nothing(node: str) -> None:
    client = HealthClient(node)
    txs = list(register_workload(client.chain_id, 900, seed=b"overload-client").measured)
    doc = client.submit_many(txs)
    assert doc["accepted"] == 900 and doc["rejected"] == 0
    assert client.wait(txs[-1].hash_hex, 60)["status"] == "committed"
    measured = register_workload(client.chain_id, 3000, seed=b"overload-bench").measured
    result = asyncio.run(run_bench(BenchConfig(targets=(node,), txs=len(measured), batch=500, timeout_s=120), txs=measured))
    assert result["overload_retries"] > 0  # the mempool was full, and the bench waited
    assert (result["committed"], result["refused"], result["unconfirmed"]) == (3000, 0, 0)
