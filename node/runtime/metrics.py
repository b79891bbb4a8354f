"""Prometheus metrics of one node process (served at ``GET /metrics``, text format).

Every node has its own `CollectorRegistry` (never the process-global one), so tests may run
several nodes in one process. Updates are cheap and happen at batch level: counters of committed
transactions are added once per block and per (type, result), gauges that mirror live values
(height, mempool size, peers, sync) are read at scrape time, and the API histogram is observed
once per request by a middleware labelled with the route's canonical path (``/v1/txs/{hash}``,
never the raw URL, so the number of series stays bounded).

Metric names (all prefixed ``medledger_``) are listed in docs/operations.md.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MAX_PROPOSALS_TRACKED = 64
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ACCESS_DECISIONS = ("granted", "denied", "breakglass")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


class NodeMetrics:
    """The metrics of one node and the few hooks the runtime, network and API call."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.height = Gauge("medledger_height", "Height of the last block this node applied", registry=r)
        self.view = Gauge("medledger_view", "Consensus view this node is in at its current height", registry=r)
        self.view_changes = Counter("medledger_view_changes", "View changes this node went through", registry=r)
        self.txs_committed = Counter(
            "medledger_transactions_committed", "Transactions in committed blocks, by type and result",
            ["type", "result"], registry=r,
        )
        self.blocks_committed = Counter(
            "medledger_blocks_committed", "Blocks applied, by how they arrived (consensus or sync)", ["source"], registry=r,
        )
        self.mempool_size = Gauge("medledger_mempool_size", "Transactions admitted and waiting for a block", registry=r)
        self.mempool_bytes = Gauge("medledger_mempool_bytes", "Bytes of transactions waiting for a block", registry=r)
        self.peers = Gauge("medledger_peers_connected", "Peers with an authenticated link to this node", registry=r)
        self.proposal_to_commit = Histogram(
            "medledger_proposal_to_commit_seconds",
            "Time from this node seeing a block proposal (or proposing it) to committing it",
            buckets=COMMIT_BUCKETS, registry=r,
        )
        self.api_latency = Histogram(
            "medledger_api_request_duration_seconds", "HTTP API request latency by route, method and status",
            ["route", "method", "status"], buckets=API_BUCKETS, registry=r,
        )
        self.syncing = Gauge("medledger_syncing", "1 while the node fetches blocks it missed from peers", registry=r)
        self.sync_target = Gauge("medledger_sync_target_height", "Highest height a peer reported during the last sync", registry=r)
        self.blocks_synced = Counter("medledger_blocks_synced", "Blocks fetched from peers and applied", registry=r)
        self.access_decisions = Counter(
            "medledger_access_decisions", "Committed access decisions: granted, denied or breakglass",
            ["decision"], registry=r,
        )
        for decision in ACCESS_DECISIONS:
            self.access_decisions.labels(decision)  # present at 0 before the first decision
        for source in ("consensus", "sync"):
            self.blocks_committed.labels(source)
        self._proposed_at: dict[bytes, float] = {}

    # -- live values read at scrape time ------------------------------------------------------
    def bind(self, *, height: Callable[[], int], view: Callable[[], int], mempool_size: Callable[[], int],
             mempool_bytes: Callable[[], int], peers: Callable[[], int], syncing: Callable[[], bool]) -> None:
        self.height.set_function(height)
        self.view.set_function(view)
        self.mempool_size.set_function(mempool_size)
        self.mempool_bytes.set_function(mempool_bytes)
        self.peers.set_function(peers)
        self.syncing.set_function(lambda: 1.0 if syncing() else 0.0)

    # -- hooks ----------------------------------------------------------------------------------
    def proposal_seen(self, digest: bytes) -> None:
        """A proposal for the next height arrived (or we made one): start its commit clock."""
        if digest in self._proposed_at:
            return
        if len(self._proposed_at) >= MAX_PROPOSALS_TRACKED:
            self._proposed_at.pop(next(iter(self._proposed_at)))
        self._proposed_at[digest] = time.monotonic()

    def block_committed(self, digest: bytes, types: Sequence[str], results: Sequence[str],
                        access: Sequence[str], *, synced: bool) -> None:
        """One committed block: count its transactions once per (type, result) and its access decisions."""
        seen = self._proposed_at.pop(digest, None)
        self._proposed_at.clear()  # proposals for this height that lost are no longer interesting
        if seen is not None and not synced:
            self.proposal_to_commit.observe(time.monotonic() - seen)
        self.blocks_committed.labels("sync" if synced else "consensus").inc()
        if synced:
            self.blocks_synced.inc()
        for (tx_type, result), count in Tally(zip(types, results, strict=True)).items():
            self.txs_committed.labels(tx_type, result).inc(count)
        for decision, count in Tally(access).items():
            self.access_decisions.labels(decision).inc(count)

    def view_changed(self) -> None:
        self.view_changes.inc()

    # -- HTTP -----------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self) -> Any:
        """aiohttp middleware observing each request's latency under its route's canonical path."""
        histogram = self.api_latency

        @web.middleware
        async def observe(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            start = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                method = request.method if request.method in HTTP_METHODS else "other"
                histogram.labels(route, method, str(status)).observe(time.perf_counter() - start)

        return observe


async def get_metrics(request: web.Request, metrics: NodeMetrics) -> web.Response:
    body = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
