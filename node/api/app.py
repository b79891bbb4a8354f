"""The HTTP API (aiohttp), documented in docs/api.md: the application and its route table.

Every answer is JSON. A client's mistake gets a 4xx with ``{"error": code, "message": ...}``;
the node never lets a bad request raise past this layer (node/api/middleware.py). Request bodies
are bounded by `api.max_body_bytes` and by `api.max_txs_per_request` transactions. Every client IP
has a request rate (429 `rate_limited` with `Retry-After` beyond it); reads of health data are
signed by the caller (node/api/auth.py, node/api/signed.py) and each signer has its own rate too.
The handlers live in the `routes_*` modules by area; this module only wires them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from node.api import routes_chain, routes_identity, routes_ledger, routes_records, routes_research, routes_txs
from node.api import routes_agreements, routes_institutions, routes_snapshots, routes_upgrades
from node.api.common import (
    CLIENT_SSL_KEY,
    CUSTODIAN_KEY,
    DELEGATED_FETCH_ROUTE,
    FETCH_ROUTE,
    IP_LIMIT_KEY,
    NODE_KEY,
    NONCES_KEY,
    RESEARCH_KEY,
    SIGNER_LIMIT_KEY,
)
from node.api.middleware import errors_middleware, ratelimit_middleware, use_expect_handler
from node.api.ratelimit import RateLimit, RateLimiter
from node.api.routes_ui import UI_DIR, get_ui_root
from node.api import routes_validators
from node.core.replay import ReplayGuard
from node.records.custodian import Custodian
from node.research.service import ResearchService
from node.runtime.runtime import Node

SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False}
"""Options of the aiohttp server running the API. Bodies are not decompressed: no client of ours
compresses, and a body that fails to decompress made aiohttp drop the connection (a gzip bomb
would make it inflate); a request with a Content-Encoding is refused with 415 instead."""


def make_app(node: Node, *, custodian: Custodian | None = None, research: ResearchService | None = None,
             client_ssl: Any = None, extra_routes: Iterable[web.AbstractRouteDef] = (),
             mounts: Iterable[Callable[[web.Application], None]] = ()) -> web.Application:
    """The aiohttp application serving `node`. The custodian's and research routes come with
    `custodian` and `research`; `extra_routes` are a test hook's (node run --unsafe-test-switches);
    each of `mounts` adds its routes and state to the app (the daemon's FHIR server, node/fhir/)."""
    api = node.config.api
    app = web.Application(client_max_size=api.max_body_bytes,
                          middlewares=[node.metrics.middleware(), errors_middleware, ratelimit_middleware])
    app[NODE_KEY] = node
    app[IP_LIMIT_KEY] = RateLimiter(RateLimit(api.rate_per_ip, api.burst_per_ip), max_keys=api.rate_table_size)
    app[SIGNER_LIMIT_KEY] = RateLimiter(RateLimit(api.rate_per_signer, api.burst_per_signer), max_keys=api.rate_table_size)
    app[NONCES_KEY] = ReplayGuard()
    if client_ssl is not None:
        app[CLIENT_SSL_KEY] = client_ssl  # an ssl.SSLContext for calls to other nodes' https APIs
    router = app.router
    if custodian is not None:
        app[CUSTODIAN_KEY] = custodian
        router.add_post("/v1/records", routes_records.post_record)
        router.add_post("/v1/records/{rid}/fetch", routes_records.post_record_fetch, name=FETCH_ROUTE)
        router.add_post("/v1/records/{rid}/fetch-delegated", routes_records.post_record_fetch_delegated,
                        name=DELEGATED_FETCH_ROUTE)
        router.add_delete("/v1/records/{rid}/upload", routes_records.delete_record_upload)
    if research is not None:
        app[RESEARCH_KEY] = research
        router.add_post("/v1/research/extract", routes_research.post_research_extract)
        router.add_post("/v1/research/{step:prepare|record}", routes_research.post_research_step)
    router.add_routes(extra_routes)
    for mount in mounts:
        mount(app)
    router.add_get("/v1/status", routes_chain.get_status)
    router.add_get("/v1/validators", routes_validators.get_validators)
    router.add_get("/v1/validators/proposals/{kind}/{id}", routes_validators.get_proposal)
    router.add_get("/metrics", routes_chain.get_metrics)
    router.add_get("/v1/health", routes_chain.get_health)
    router.add_get("/v1/upgrades", routes_upgrades.get_upgrades)
    router.add_post("/v1/txs", routes_txs.post_txs)
    router.add_get("/v1/txs/{hash}", routes_txs.get_tx)
    router.add_get("/v1/txs/{hash}/proof", routes_txs.get_tx_proof)
    router.add_get("/v1/blocks/{height}", routes_chain.get_block)
    router.add_get("/v1/accounts/{id}", routes_identity.get_account)
    router.add_get("/v1/commits", routes_chain.get_commits)
    router.add_get("/v1/identities/{id}", routes_identity.get_identity)
    router.add_get("/v1/records/{rid}", routes_ledger.get_record_meta)
    router.add_get("/v1/patients/{id}/records", routes_ledger.get_patient_records)
    router.add_get("/v1/patients/{id}/consents", routes_ledger.get_patient_consents)
    router.add_get("/v1/patients/{id}/audit", routes_ledger.get_patient_audit)
    router.add_get("/v1/institutions/{id}/disclosures", routes_ledger.get_disclosures)
    router.add_get("/v1/institutions/{id}/breakglass", routes_ledger.get_breakglass)
    router.add_get("/v1/institutions/{id}/inbox", routes_ledger.get_inbox)
    router.add_get("/v1/patients/{id}/standing", routes_ledger.get_standing)
    router.add_get("/v1/access/{hash}", routes_ledger.get_access)
    router.add_get("/v1/institutions", routes_institutions.get_institutions)
    router.add_get("/v1/agreements", routes_agreements.get_agreements)
    router.add_get("/v1/agreements/{id}", routes_agreements.get_agreement)
    router.add_get("/v1/institutions/{id}/agreements", routes_agreements.get_institution_agreements)
    router.add_get("/v1/studies/{study}", routes_research.get_study)
    router.add_get("/v1/genesis", routes_snapshots.get_genesis)
    router.add_get("/v1/snapshots", routes_snapshots.get_snapshots)
    router.add_get("/v1/snapshots/{height}/chunks/{index}", routes_snapshots.get_snapshot_chunk)
    router.add_get("/ui", get_ui_root)
    router.add_get("/ui/", get_ui_root)
    router.add_static("/ui/", UI_DIR)  # the dashboard (docs/dashboard.md): static files, no build step
    use_expect_handler(app)
    return app
