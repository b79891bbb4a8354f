"""`medledger fuzz` in CI: a bounded sample of every endpoint against real node processes.

Three hundred seeded cases per endpoint (every API route, the raw HTTP socket, the peer
handshake) against a four-validator cluster; every case must be answered as a client mistake,
and afterwards every node must be up, agree on its blocks and have committed new transactions.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from node.devtools.cluster import Cluster
from node.devtools.fuzz import FuzzConfig, all_endpoints, passed, run_fuzz
from node.home.keys import load_key_file

pytestmark = pytest.mark.slow

CASES = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Four validators that admit one observer, whose process is not started: the fuzzer uses its key."""
    with Cluster.create(tmp_path_factory.mktemp("fuzz") / "net", 4, observers=1) as c:
        for i in range(4):
            c.start(i)
        for i in range(4):
            c.wait_ready(60, i)
        yield c


def validators(cluster: Cluster) -> list:
    return cluster.nodes[:4]


def test_a_sample_of_every_endpoint_leaves_the_nodes_up_and_committing(cluster):
    urls = tuple(n.api_url for n in validators(cluster))
    heights = cluster.heights()[:4]
    observer_key = load_key_file(cluster.nodes[4].home / "institution.key")
    result = asyncio.run(run_fuzz(FuzzConfig(targets=urls, cases=CASES, seed=11, batch=CASES, peer_key=observer_key)))
    assert result["failures"] == [], json.dumps(result["failures"][:5], indent=1)
    assert passed(result)
    assert set(result["endpoints"]) == {e.name for e in all_endpoints()}
    for name, report in result["endpoints"].items():
        assert report["cases"] == CASES, name
        assert not any(label.startswith("5") for label in report["outcomes"]), (name, report["outcomes"])
        assert report["rss_mb_after"] > 0 and sum(sum(f.values()) for f in report["families"].values()) == CASES
    peer = result["endpoints"]["p2p handshake"]["outcomes"]
    assert peer.get("refused", 0) > CASES // 2  # most hostile handshakes get a REFUSE, the rest a close
    frames = result["endpoints"]["p2p frames"]["outcomes"]
    assert frames.get("discarded", 0) > 0  # garbage discarded while the link keeps serving...
    assert frames.get("refused", 0) > 0  # ...until the penalties ban the peer
    assert result["node_up"] and result["committed_after"] and result["nodes_agree"]
    assert result["probes_committed"] == result["probes"] == len(result["endpoints"])
    assert all(node["rss_mb_after"] is not None for node in result["nodes"])
    assert all(h_after > h_before for h_before, h_after in zip(heights, cluster.heights()[:4], strict=True))
    cluster.check_consistency()


def test_the_cli_reports_json_and_exit_status(cluster):
    from cli import main

    urls = ",".join(n.api_url for n in validators(cluster)[:2])
    out = CliRunner().invoke(main, ["fuzz", "--target", urls, "--cases", "30", "--seed", "3", "--endpoints", "POST /v1/txs,p2p",
                                    "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert set(doc["endpoints"]) == {"POST /v1/txs", "p2p handshake", "p2p frames"}
    assert "--peer-key" in doc["endpoints"]["p2p frames"]["skipped"] and doc["endpoints"]["p2p frames"]["cases"] == 0
    for field in ("cases_per_endpoint", "failures", "node_up", "committed_after", "rss_mb_before", "rss_mb_after"):
        assert field in doc
    assert doc["cases_per_endpoint"] == 30 and doc["node_up"] and doc["committed_after"]
