"""Each Byzantine mode on a real 4-validator network with one liar: the three honest validators
keep committing every transaction, agree block for block, and report equivocation as evidence."""

from __future__ import annotations

import time
import urllib.request

import pytest

from node.devtools.bench import prepare
from node.devtools.byzantine import ENV_MODE, ENV_SEED, MODES
from node.devtools.cluster import Cluster, http_json
from node.core.encoding import canonical
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

TXS = 30


def submit(url: str, txs) -> None:
    body = canonical([[t.chain_id, t.type, t.sender, t.nonce, t.body, t.signature] for t in txs])
    req = urllib.request.Request(url + "/v1/txs", data=body, method="POST", headers={"Content-Type": "application/msgpack"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202


def wait_for_evidence(cluster: Cluster, honest, liar, *, chain_id: str, timeout: float = 180.0) -> list[dict]:
    """Until every honest validator holds evidence against the liar: more heights, if need be.

    An equivocating primary lies only at the heights where it is the primary (one in four), and
    a validator that is busy, a height or two behind when the two proposals arrive, discards them
    as far-future and catches up by sync instead: it never sees the lie. Five heights gave the
    liar one or two chances, so on a loaded machine one honest node could end without evidence.
    Each extra round commits a new height (so the liar gets its turn again) until all have it."""
    deadline = time.monotonic() + timeout
    extra = 0
    while True:
        statuses = [n.status() or {} for n in honest]
        if all(liar.node_id in s.get("evidence_offenders", []) for s in statuses):
            return statuses
        assert time.monotonic() < deadline, f"evidence against the liar not seen by every honest validator: {statuses}"
        extra += 1
        height = min(s.get("height", 0) for s in statuses)
        submit(honest[extra % 3].api_url, prepare(chain_id, 3, seed=b"byzantine-test-extra-%d" % extra))
        cluster.wait_for_height(height + 1, 60, nodes=[0, 1, 2])


@pytest.mark.parametrize("mode", MODES)
def test_honest_validators_commit_and_agree_next_to_a_byzantine_one(tmp_path, mode):
    with Cluster.create(tmp_path / "net", 4, test_switches=True) as cluster:
        liar = cluster.nodes[3]
        liar.env = {ENV_MODE: mode, ENV_SEED: "7"}
        cluster.start()
        cluster.wait_ready(60)
        honest = cluster.nodes[:3]
        txs = prepare(honest[0].status()["chain_id"], TXS, seed=b"byzantine-test-0")
        # in rounds, so that several heights (and so several primaries, the liar among them) pass
        for r in range(5):
            submit(honest[r % 3].api_url, txs[r * TXS // 5 : (r + 1) * TXS // 5])
            cluster.wait_for_height(r + 1, 60, nodes=[0, 1, 2])
        deadline = time.monotonic() + 60
        while True:
            pending = [t for t in txs if http_json(f"{honest[0].api_url}/v1/txs/{t.hash.hex()}")["status"] != "committed"]
            if not pending:
                break
            assert time.monotonic() < deadline, f"{len(pending)} transactions not committed with a {mode} validator"
            time.sleep(0.2)
        height = honest[0].status()["height"]
        cluster.wait_for_height(height, 60, nodes=[0, 1, 2])
        cluster.nodes = honest  # safety among the honest; the liar's own view does not count
        try:
            assert cluster.check_consistency(up_to=height) == height
        finally:
            cluster.nodes = [*honest, liar]
        if mode in ("equivocate", "double-vote"):
            statuses = wait_for_evidence(cluster, honest, liar, chain_id=honest[0].status()["chain_id"])
            assert all(s["evidence"] >= 1 and s["evidence_offenders"] == [liar.node_id] for s in statuses)
        else:
            statuses = [n.status() for n in honest]
            assert all(liar.node_id in s["evidence_offenders"] or not s["evidence_offenders"] for s in statuses)
        assert liar.running  # the liar itself is not brought down by its own lies
        def logs() -> list[str]:
            return [(n.home / "node.log").read_text(errors="replace") for n in honest]

        if mode in ("garbage", "impersonate"):
            # its frames are refused and counted against it, at every honest validator (garbage goes
            # out on the liar's tick, so a fast run may end before every validator has had some)
            wait_until(lambda: all(f"peer {liar.node_id[:16]} penalized" in log for log in logs()), 60,
                       "every honest validator to penalize the liar")
        if mode == "invalid-block":
            assert any("rejected proposal" in log for log in logs())
