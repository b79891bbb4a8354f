"""Metrics of an in-process node: /metrics is Prometheus text, counters move with committed
blocks (by type and result), the API histogram is labelled by route templates, not raw URLs."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from node.core.crypto import Identity
from node.runtime.metrics import NodeMetrics
from node.chain.tx import Transaction
from tests.helpers import CHAIN

MSGPACK = {"Content-Type": "application/msgpack"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(client) -> dict:
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return samples(await resp.text())


def register(seed: int, role: str = "patient", nonce: int = 1) -> Transaction:
    ident = Identity.from_seed(seed.to_bytes(32, "big"))
    return Transaction.create(ident, chain_id=CHAIN, type="identity.register", nonce=nonce, body={"role": role})


async def test_metrics_move_with_committed_blocks(api):
    client, node = api
    before = await scrape(client)
    assert before[("medledger_height", ())] == 0
    assert before[("medledger_access_decisions_total", (("decision", "granted"),))] == 0
    for seed in range(1, 4):
        resp = await client.post("/v1/txs?wait=20", data=register(seed).encoded, headers=MSGPACK)
        assert resp.status == 200 and (await resp.json())["status"] == "committed"
    # a key registering as an institution is committed with an error result
    resp = await client.post("/v1/txs?wait=20", data=register(9, role="institution").encoded, headers=MSGPACK)
    assert (await resp.json())["status"] == "committed"
    result = (await resp.json())["result"]
    assert result != "ok"
    await client.get(f"/v1/txs/{register(1).hash.hex()}")
    await client.get("/no/such/route")
    after = await scrape(client)
    assert after[("medledger_height", ())] == node.store.height >= 2
    ok = after[("medledger_transactions_committed_total", (("result", "ok"), ("type", "identity.register")))]
    assert ok == 3
    assert after[("medledger_transactions_committed_total", (("result", result), ("type", "identity.register")))] == 1
    assert after[("medledger_blocks_committed_total", (("source", "consensus"),))] == node.store.height
    assert after[("medledger_proposal_to_commit_seconds_count", ())] == node.store.height
    routes = {dict(k[1]).get("route") for k in after if k[0] == "medledger_api_request_duration_seconds_count"}
    assert {"/v1/txs", "/v1/txs/{hash}", "/metrics", "unmatched"} <= routes
    assert not any(r and register(1).hash.hex() in r for r in routes)


def test_registries_are_per_node_and_proposals_tracked_are_bounded():
    a, b = NodeMetrics(), NodeMetrics()
    a.view_changed()
    assert b"medledger_view_changes_total 1.0" in a.exposition()
    assert b"medledger_view_changes_total 0.0" in b.exposition()
    for i in range(1000):
        a.proposal_seen(i.to_bytes(32, "big"))
    assert len(a._proposed_at) <= 64
    a.block_committed(b"x" * 32, ["access.request"] * 3, ["ok", "ok", "denied"], ["granted", "breakglass", "denied"], synced=True)
    text = a.exposition().decode()
    assert 'medledger_access_decisions_total{decision="breakglass"} 1.0' in text
    assert 'medledger_blocks_synced_total 1.0' in text
    assert a._proposed_at == {}
