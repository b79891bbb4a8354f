"""Logs and metrics of a real 4-node network that ran the whole consent story with JSON logs.

Every line of every node's log parses as JSON; no log holds the story's plaintext marker, the
record's ciphertext, or any form of a key used (seeds and signing keys of patients,
practitioners and institutions, the research secret: raw, hex, base64); no log holds a run of
64 hex digits (a full signed request, signature or key). `/metrics` scraped before and after the
load shows the height, the committed transactions by type and result, and the access decisions
moving, with the API latency histogram labelled by route.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.client import HealthClient
from node.devtools.cluster import Cluster
from node.core.crypto import Identity
from node.home.keys import load_key_file
from tests.integration.test_consent_story import MARKER, consent_story

pytestmark = pytest.mark.slow
LOAD_TXS = 400


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def forms(secret: bytes) -> list[bytes]:
    out = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        out += [enc(secret), enc(secret).rstrip(b"=")]
    return out


def test_json_logs_hold_no_secrets_and_metrics_move(tmp_path: Path) -> None:
    env = {"MEDLEDGER_NODE_LOG_FORMAT": "json", "MEDLEDGER_NODE_LOG_LEVEL": "debug"}
    with Cluster.create(tmp_path / "net", 4, extra_env=env) as c:
        c.start()
        c.wait_ready(60)
        urls = [n.api_url for n in c.nodes]
        before = [scrape(u) for u in urls]

        story = consent_story(c, tmp_path)
        # load: a batch of registrations, committed by all
        client = HealthClient(urls[0])
        txs = [client.make_tx(Identity.from_seed(i.to_bytes(32, "big")), "identity.register", {"role": "patient"})
               for i in range(1000, 1000 + LOAD_TXS)]
        assert client.submit_many(txs)["accepted"] == LOAD_TXS
        assert client.wait(txs[-1].hash_hex, 60)["status"] == "committed"
        height = client.status()["height"]
        c.wait_for_height(height, 60)
        after = [scrape(u) for u in urls]

        for b, a in zip(before, after, strict=True):
            assert total(a, "medledger_height") >= height > total(b, "medledger_height")
            committed = "medledger_transactions_committed_total"
            assert total(a, committed) - total(b, committed) >= LOAD_TXS + 10
            assert total(a, committed, type="identity.register", result="ok") - total(b, committed) >= LOAD_TXS
            assert total(a, committed, type="consent.grant", result="ok") >= 2
            decisions = "medledger_access_decisions_total"
            assert total(a, decisions, decision="granted") >= 1
            assert total(a, decisions, decision="denied") >= 3
            assert total(a, decisions, decision="breakglass") >= 1
            assert total(a, "medledger_peers_connected") == 3
            assert total(a, "medledger_blocks_committed_total") >= height
            assert ("medledger_mempool_size", frozenset()) in a and ("medledger_view", frozenset()) in a
            assert ("medledger_syncing", frozenset()) in a
        assert total(after[0], "medledger_proposal_to_commit_seconds_count") > 0
        routes = {dict(lab).get("route") for (n, lab) in after[0] if n == "medledger_api_request_duration_seconds_count"}
        assert {"/v1/txs", "/v1/txs/{hash}", "/v1/status", "/metrics"} <= routes, routes

        secrets: list[bytes] = [bytes.fromhex((c.nodes[0].home / "research.secret").read_text().strip())]
        for key_file in story["keys"]:
            ident = load_key_file(key_file)
            secrets += [ident.seed, ident.seed + ident.public_key]
        c.stop_all()

    needles = [MARKER.encode(), story["ciphertext"], *(f for s in secrets for f in forms(s))]
    long_hex = re.compile(rb"[0-9a-fA-F]{64,}")
    lines_seen = 0
    for node in c.nodes:
        log = (node.home / "node.log").read_bytes()
        for needle in needles:
            assert needle not in log, f"node{node.index}'s log holds a secret or health data"
        for line in log.splitlines():
            doc = json.loads(line)  # every line is one JSON event
            assert {"ts", "level", "logger", "msg"} <= set(doc), line
            assert not long_hex.search(line), line
            lines_seen += 1
    assert lines_seen > 20
