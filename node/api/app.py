"""The HTTP API (aiohttp), documented in docs/api.md.

Every answer is JSON. A client's mistake gets a 4xx with ``{"error": code, "message": ...}``;
the node never lets a bad request raise past this layer. Request bodies are bounded by
`api.max_body_bytes` and by `api.max_txs_per_request` transactions. Every client IP has a
request rate (429 `rate_limited` with `Retry-After` beyond it); reads of health data are signed
by the caller (node/api/auth.py) and each signer has its own rate too.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from node.api import auth
from node.chain.block import decode_block
from node.core.errors import CodedError
from node.core.crypto import sha256
from node.core.encoding import DecodeError, decode
from node.core.merkle import inclusion_proof, leaf_hash, verify_inclusion
from node.api import explorer
from node.app.executor import read_nonce
from node.app.fields import check_study_id
from node.app.types.identity import identity_key
from node.app import queries
from node.app.roles import guardian_of
from node.records.custodian import Custodian
from node.records.protocol import Fetch, ProtocolError, Upload
from node.api.ratelimit import RateLimit, RateLimiter, retry_after_header
from node.core.replay import ReplayGuard
from node.research.service import ExtractRequest, ResearchService
from node.runtime.metrics import get_metrics as metrics_response
from node.runtime.runtime import Node
from node.chain.tx import decode_tx, jsonable

log = logging.getLogger("medledger.api")

NODE_KEY = web.AppKey("node", Node)
CUSTODIAN_KEY = web.AppKey("custodian", Custodian)
RESEARCH_KEY = web.AppKey("research", ResearchService)
IP_LIMIT_KEY = web.AppKey("ip_limiter", RateLimiter)
SIGNER_LIMIT_KEY = web.AppKey("signer_limiter", RateLimiter)
NONCES_KEY = web.AppKey("nonces", ReplayGuard)
CLIENT_SSL_KEY = web.AppKey("client_ssl", object)
MAX_RECORD_UPLOAD = 3 * 1024 * 1024
FETCH_ROUTE = "record_fetch"
ADMISSION_STATUS = {"mempool_full": 503, "already_committed": 409, "nonce_replayed": 409, "already_registered": 409,
                    "not_registered": 403, "sender_limit": 429}
"""HTTP status of a refused single transaction by its code (others are 400)."""
MAX_WAIT_S = 30.0
ADMIT_CHUNK = 100  # submitted transactions verified between two turns of the event loop
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False}
"""Options of the aiohttp server running the API. Bodies are not decompressed: no client of ours
compresses, and a body that fails to decompress made aiohttp drop the connection (a gzip bomb
would make it inflate); a request with a Content-Encoding is refused with 415 instead."""


class ApiError(web.HTTPException):
    """A client error rendered as JSON."""

    def __init__(self, http_status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        self.status_code = http_status
        body = {"error": code, "message": message, **extra}
        super().__init__(text=json.dumps(body), content_type="application/json", headers=headers)


def rate_limited(wait_s: float, who: str) -> ApiError:
    """A 429 saying how long to wait (also as the Retry-After header)."""
    after = retry_after_header(wait_s)
    return ApiError(429, "rate_limited", f"too many requests from this {who}; retry in {after} s",
                    headers={"Retry-After": after})


class QuietClientErrors(logging.Filter):
    """For aiohttp's server logger: a request that does not even parse as HTTP is the client's
    fault, yet aiohttp logs each one at ERROR with a traceback (a flood of them fills the disk).
    Such records become one INFO line; every other record passes untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (HttpProcessingError, RequestPayloadError)):
            detail = " ".join(str(exc).split())[:120]
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "refused a malformed HTTP request: %s", (detail,)
            record.exc_info, record.exc_text = None, None
        return True


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":")))


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise ApiError(415, "unsupported_content_encoding", "send request bodies uncompressed (no Content-Encoding)")
    try:
        return await handler(request)
    except ApiError:
        raise
    except CodedError as exc:  # every refusal, whatever raised it, answers with its code and status
        raise ApiError(exc.status, exc.code, exc.message) from None
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[NODE_KEY].config.api.max_body_bytes
        raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes") from None
    except web.HTTPNotFound:
        raise ApiError(404, "not_found", f"no route {request.method} {request.path}") from None
    except web.HTTPMethodNotAllowed as exc:
        raise ApiError(405, "method_not_allowed", f"{request.method} not allowed; use {', '.join(sorted(exc.allowed_methods))}") from None
    except web.HTTPException:
        raise
    except RequestPayloadError as exc:  # a body that cannot be read: bad Content-Encoding, broken chunks
        raise ApiError(400, "unreadable_body", f"the request body cannot be read: {exc}") from None
    except ConnectionResetError:  # the client left before its body arrived: nobody to answer, nothing to log
        raise ApiError(400, "incomplete_body", "the connection closed before the request body was read") from None
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            log.exception("internal error on %s %s", request.method, request.path)
            raise ApiError(500, "internal_error", "the node failed to handle this request; see its log") from None
        # a static file name longer than the file system allows names no file we serve
        raise ApiError(404, "not_found", "no such file") from None
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        raise ApiError(500, "internal_error", "the node failed to handle this request; see its log") from None


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Each client IP gets `api.rate_per_ip` requests a second (burst `api.burst_per_ip`); a
    record fetch is counted by its route instead (by signer, see post_record_fetch)."""
    if request.match_info.route.name != FETCH_ROUTE:
        _take_address_token(request)
    return await handler(request)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FORBIDDEN_MESSAGE = ("there is nothing here this signer may read (it does not exist, or the ledger does not let this "
                     "signer read it); sign with the key of the patient, its guardian or a grant holder")


async def _signed_read(request: web.Request, authorize: Callable[[web.Request, bytes], bool],
                       refuse: bool) -> bytes | None:
    """Check a signed request (node/api/auth.py) within its signer's rate; if `authorize(request,
    signer)` holds, remember its nonce and return the signer. An unauthorised one is refused
    (403, `refuse`) or answered as unsigned (None). Authorise before remembering: a refused request
    leaves nothing in the replay guard, and a signer that may not read a thing is not told whether
    it exists."""
    node = request.app[NODE_KEY]
    body = await request.read()
    now_ms = node.clock_ms()
    # an AuthError (a CodedError) answers with its own status and code (errors_middleware)
    req = auth.verify_headers(request.headers, chain_id=node.chain_id, node_id=node.identity.id,
                              method=request.method, path_qs=request.raw_path, body=body, now_ms=now_ms)
    wait = request.app[SIGNER_LIMIT_KEY].check(req.signer, time.monotonic())
    if wait > 0:
        raise rate_limited(wait, "signer")
    if not authorize(request, req.signer):
        if refuse:
            raise ApiError(403, "forbidden", FORBIDDEN_MESSAGE)
        return None
    auth.remember_nonce(request.app[NONCES_KEY], req, now_ms)
    return req.signer


def signed(authorize: Callable[[web.Request, bytes], bool]) -> Callable[[Handler], Handler]:
    """A route that reads health data: the caller signs it (node/api/auth.py), within its signer's
    rate, with a fresh nonce, and `authorize(request, signer)` must say it may read this."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            await _signed_read(request, authorize, refuse=True)
            return await handler(request)

        return checked

    return wrap


def _known_signer(request: web.Request, signer: bytes) -> bool:
    """A key with an identity on the ledger, or this node's own."""
    node = request.app[NODE_KEY]
    return signer == node.identity.public_key or queries.identity(node.state_reader(), signer) is not None


async def optional_signer(request: web.Request) -> bytes | None:
    """The verified signer of a public read that may be signed (None when it is not): the
    explorer answers an unsigned caller with the public view, a signed one with what that signer
    is entitled to (node/api/explorer.py). A signature that is there but does not hold is a 401, as
    on the signed routes, and it counts against the signer's rate and nonces the same way. A key
    with no identity on the ledger is entitled to the public view only, and leaves nothing in the
    replay guard."""
    if not any(request.headers.get(h) for h in auth.HEADERS):
        return None
    return await _signed_read(request, _known_signer, refuse=False)


def _may_read_patient(request: web.Request, signer: bytes) -> bool:
    node = request.app[NODE_KEY]
    return auth.may_read_patient(node.state_reader(), signer, _id_param(request), node.now_ms())


# What a scoped reader may see of a patient's file, computed once by the authorizer for the handler.
_SCOPED_KEY: web.RequestKey[list[dict[str, Any]]] = web.RequestKey("scoped", list)


def _may_see_records(request: web.Request, signer: bytes) -> bool:
    node = request.app[NODE_KEY]
    found = auth.readable_records(node.state_reader(), signer, _id_param(request), node.now_ms())
    request[_SCOPED_KEY] = found
    return bool(found) or auth.may_read_patient(node.state_reader(), signer, _id_param(request), node.now_ms())


def _may_see_consents(request: web.Request, signer: bytes) -> bool:
    node = request.app[NODE_KEY]
    found = auth.readable_consents(node.state_reader(), signer, _id_param(request), node.now_ms())
    request[_SCOPED_KEY] = found
    return bool(found) or auth.may_read_patient(node.state_reader(), signer, _id_param(request), node.now_ms())


def _may_read_record(request: web.Request, signer: bytes) -> bool:
    node = request.app[NODE_KEY]
    return auth.may_read_record(node.state_reader(), signer, _id_param(request, "rid"), node.now_ms())


def _may_read_access(request: web.Request, signer: bytes) -> bool:
    return auth.may_read_access(request.app[NODE_KEY].state_reader(), signer, _hash_param(request))


def _is_institution(request: web.Request, signer: bytes) -> bool:
    return auth.may_read_institution(signer, _id_param(request))


def _hash_param(request: web.Request, name: str = "hash") -> bytes:
    text = request.match_info[name]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ApiError(400, "bad_hash", f"{name} must be 64 hex characters")
    return raw


def _wait_param(text: str) -> float:
    """The `wait` query parameter in seconds, capped at MAX_WAIT_S (a huge integer must not overflow a float)."""
    return float(min(_int_param(text, "wait"), int(MAX_WAIT_S)))


def _int_param(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"bad_{name}", f"{name} must be an integer") from None
    if value < 0:
        raise ApiError(400, f"bad_{name}", f"{name} must not be negative")
    return value


async def get_status(request: web.Request) -> web.Response:
    response = _json(request.app[NODE_KEY].status())
    response.headers["Access-Control-Allow-Origin"] = "*"  # public; the dashboard reads every validator's
    return response


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text format (unsigned, like /v1/status: it holds no health data)."""
    return await metrics_response(request, request.app[NODE_KEY].metrics)


async def post_txs(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if request.content_type not in ("application/msgpack", "application/x-msgpack", "application/octet-stream"):
        raise ApiError(415, "unsupported_media_type", "send transactions as msgpack (Content-Type: application/msgpack)")
    limit = node.config.api.max_body_bytes
    data = await request.read()
    try:
        value = decode(data, max_bytes=limit, max_items=max(node.config.api.max_txs_per_request, 16))
    except DecodeError as exc:
        raise ApiError(400, "malformed_msgpack", str(exc)) from None
    if not isinstance(value, list) or not value:
        raise ApiError(400, "malformed_tx", "body must be one transaction (an array of 6 fields) or a non-empty array of them")
    single = not isinstance(value[0], list)
    items = [value] if single else value
    if len(items) > node.config.api.max_txs_per_request:
        raise ApiError(413, "too_many_txs", f"at most {node.config.api.max_txs_per_request} transactions per request")
    results = []
    for i in range(0, len(items), ADMIT_CHUNK):  # votes and proposals get the loop between chunks
        if i:
            await asyncio.sleep(0)
        results.extend(node.admit(items[i : i + ADMIT_CHUNK]))
    rendered = [
        {"hash": r.hash.hex(), "status": "pending"} if r.error is None
        else {"error": r.error, "message": r.message, **({"hash": r.hash.hex()} if r.hash else {})}
        for r in results
    ]
    if single:
        r = results[0]
        if r.error is not None:
            status = ADMISSION_STATUS.get(r.error, 400)
            headers = {"Retry-After": "1"} if status == 429 else None
            raise ApiError(status, r.error, r.message, headers=headers, **({"hash": r.hash.hex()} if r.hash else {}))
        wait = request.query.get("wait")
        if wait is not None and r.hash is not None:
            await node.wait_committed(r.hash, _wait_param(wait))
            return _json(node.tx_status(r.hash), status=200)
        return _json(rendered[0], status=202)
    accepted = sum(1 for r in results if r.error is None)
    return _json({"accepted": accepted, "rejected": len(results) - accepted, "results": rendered}, status=202 if accepted else 400)


async def get_tx(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    tx_hash = _hash_param(request)
    wait = request.query.get("wait")
    if wait is not None:
        await node.wait_committed(tx_hash, _wait_param(wait))
    status = node.tx_status(tx_hash)
    if status["status"] == "unknown":
        raise ApiError(404, "unknown_tx", "no such transaction in the chain or the mempool", hash=tx_hash.hex(), status="unknown")
    return _json(status)


def _block_or_404(node: Node, height: int) -> bytes:
    raw = node.store.block_bytes(height) if 1 <= height <= node.store.height else None
    if raw is None:
        raise ApiError(404, "unknown_block", f"no block at height {height} (current height {node.store.height})")
    return raw


async def get_block(request: web.Request) -> web.Response:
    """A block: header, certificate and its transactions, each whole only where the caller is
    entitled to it (node/api/explorer.py); to anyone else hash, index and result."""
    node = request.app[NODE_KEY]
    text = request.match_info["height"]
    height = node.store.height if text == "latest" else _int_param(text, "height")
    signer = await optional_signer(request)
    raw = _block_or_404(node, height)
    block = decode_block(raw, stored=True)
    state = node.state_reader()
    txs = []
    for index, encoded in enumerate(block.txs):
        tx = decode_tx(encoded, chain_id=node.chain_id)
        loc = node.store.tx_location(tx.hash)
        whole = explorer.entitled(state, signer, tx, node.identity.public_key)
        txs.append(explorer.tx_view(tx, index=index, result=loc.result if loc else None, whole=whole))
    cert = node.store.certificate(height)
    return _json({"height": height, "hash": block.hash.hex(), "header": block.header.to_json(),
                  "certificate": cert.hex() if cert else None, "txs": txs})


async def get_tx_proof(request: web.Request) -> web.Response:
    """A committed transaction's Merkle inclusion proof. Everyone gets the leaf's hash, which is
    all the proof needs; the leaf itself (the encoded transaction, whose SHA-256 is the tx hash)
    only a caller entitled to the transaction (node/api/explorer.py)."""
    node = request.app[NODE_KEY]
    tx_hash = _hash_param(request)
    signer = await optional_signer(request)
    loc = node.store.tx_location(tx_hash)
    if loc is None:
        raise ApiError(404, "unknown_tx", "transaction is not committed", hash=tx_hash.hex())
    block = decode_block(_block_or_404(node, loc.height), stored=True)
    path = inclusion_proof(block.txs, loc.index)
    leaf = block.txs[loc.index]
    assert verify_inclusion(leaf, loc.index, len(block.txs), path, block.header.tx_root)
    tx = decode_tx(leaf, chain_id=node.chain_id)
    whole = explorer.entitled(node.state_reader(), signer, tx, node.identity.public_key)
    return _json({
        "hash": tx_hash.hex(), "height": loc.height, "index": loc.index, "size": len(block.txs),
        **({"leaf": leaf.hex()} if whole else {"leaf_withheld": explorer.WITHHELD}),
        "leaf_hash": leaf_hash(leaf).hex(), "path": [p.hex() for p in path], "tx_root": block.header.tx_root.hex(),
        "block_hash": block.hash.hex(), "header": block.header.to_json(),
        "leaf_hash_is": "sha256(0x00 || leaf); nodes sha256(0x01 || left || right) (RFC 6962)",
    })


async def get_account(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    text = request.match_info["id"]
    try:
        pk = bytes.fromhex(text)
    except ValueError:
        pk = b""
    if len(pk) != 32:
        raise ApiError(400, "bad_id", "identity id must be 64 hex characters")
    signer = await optional_signer(request)
    state = node.state_reader()
    raw = state.get(identity_key(pk))
    identity = jsonable(decode(raw)) if raw else None
    nonce: int | None = read_nonce(state, pk)
    if signer is None or signer not in (pk, node.identity.public_key, guardian_of(state, pk)):
        identity = explorer.account_identity_view(identity)
        if explorer.nonce_is_private(identity):
            nonce = None  # clients set nonces to the clock: a patient's last one says when they last acted
    return _json({"id": pk.hex(), "nonce": nonce, "identity": identity})


async def get_commits(request: web.Request) -> web.Response:
    """Blocks from `since` on, with their transaction hashes (and, with `results=1`, each one's
    result); long-polls up to `wait` seconds."""
    node = request.app[NODE_KEY]
    since = _int_param(request.query.get("since", "1"), "since")
    limit = min(_int_param(request.query.get("limit", "100"), "limit"), 1000)
    wait = request.query.get("wait")
    with_results = request.query.get("results") in ("1", "true")
    if wait is not None and node.store.height < since:
        await node.wait_height(since, _wait_param(wait))
    blocks = []
    for height in range(max(since, 1), min(node.store.height, since + limit - 1) + 1):
        raw = node.store.block_bytes(height)
        if raw is None:
            break
        block = decode_block(raw, stored=True)
        hashes = [sha256(t) for t in block.txs]
        entry = {"height": height, "hash": block.hash.hex(), "timestamp_ms": block.header.timestamp_ms,
                 "txs": [h.hex() for h in hashes]}
        if with_results:
            entry["results"] = [loc.result if (loc := node.store.tx_location(h)) else None for h in hashes]
        blocks.append(entry)
    return _json({"height": node.store.height, "blocks": blocks})


# -- healthcare ledger reads and the custodian --------------------------------------------------
def _id_param(request: web.Request, name: str = "id") -> bytes:
    text = request.match_info[name]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ApiError(400, f"bad_{name}", f"{name} must be 64 hex characters")
    return raw


def _ms_param(request: web.Request, name: str, default: int | None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    return _int_param(text, name)


async def get_identity(request: web.Request) -> web.Response:
    """An identity: role and label for anyone; a patient's guardian, break-glass choice and
    attestation, and a practitioner's wards, only to those entitled (node/api/explorer.py)."""
    node = request.app[NODE_KEY]
    ident = _id_param(request)
    signer = await optional_signer(request)
    found = explorer.identity_view(node.state_reader(), ident, signer, node.identity.public_key)
    if found is None:
        raise ApiError(404, "unknown_identity", "no such identity on the ledger")
    return _json(found)


@signed(_may_read_record)
async def get_record_meta(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    found = queries.record(node.state_reader(), _id_param(request, "rid"))
    if found is None:
        raise ApiError(404, "unknown_record", "no such record on the ledger")
    return _json(found)


@signed(_may_see_records)
async def get_patient_records(request: web.Request) -> web.Response:
    # the patient and its guardian see every record; anyone else only those it may read
    return _json({"patient": request.match_info["id"], "records": request[_SCOPED_KEY]})


@signed(_may_see_consents)
async def get_patient_consents(request: web.Request) -> web.Response:
    consents = request[_SCOPED_KEY]  # all for the patient and its guardian; else those naming the signer
    if request.query.get("format") == "fhir":
        from node.app import fhir_export

        return _json(fhir_export.bundle([fhir_export.consent_resource(c) for c in consents]))
    return _json({"patient": request.match_info["id"], "consents": consents})


@signed(_may_read_patient)
async def get_patient_audit(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    entries = queries.patient_audit(node.state_reader(), _id_param(request), since_ms=_ms_param(request, "since_ms", 0) or 0,
                                    until_ms=_ms_param(request, "until_ms", None))
    if request.query.get("format") == "fhir":
        from node.app import fhir_export

        return _json(fhir_export.bundle([fhir_export.audit_event(e, chain_id=node.chain_id) for e in entries]))
    return _json({"patient": request.match_info["id"], "entries": entries})


@signed(_is_institution)
async def get_disclosures(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    since = _ms_param(request, "since_ms", 0) or 0
    until = _ms_param(request, "until_ms", None)
    if until is None:
        until = node.now_ms()
    entries = queries.disclosures(node.state_reader(), _id_param(request), since, until)
    if request.query.get("format") == "fhir":
        from node.app import fhir_export

        return _json(fhir_export.bundle([fhir_export.audit_event(e, chain_id=node.chain_id) for e in entries]))
    return _json({"institution": request.match_info["id"], "since_ms": since, "until_ms": until, "disclosures": entries})


@signed(_is_institution)
async def get_breakglass(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    return _json({"institution": request.match_info["id"], "pending": queries.breakglass_pending(node.state_reader(), _id_param(request))})


@signed(_may_read_access)
async def get_access(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    found = queries.access_grant(node.state_reader(), _hash_param(request))
    if found is None:
        raise ApiError(404, "unknown_access_request", "no committed access request with that transaction hash")
    return _json(found)


async def get_study(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    study_id = request.match_info["study"]
    check_study_id(study_id)  # a TxRejected answers 400 with its code (errors_middleware)
    found = queries.study(node.state_reader(), study_id, node.now_ms())
    if found is None:
        raise ApiError(404, "unknown_study", "no such study")
    return _json(found)


async def _msgpack_body(request: web.Request, limit: int) -> Any:
    if request.content_type not in ("application/msgpack", "application/x-msgpack", "application/octet-stream"):
        raise ApiError(415, "unsupported_media_type", "send msgpack (Content-Type: application/msgpack)")
    try:
        return decode(await request.read(), max_bytes=limit, max_items=64)
    except DecodeError as exc:
        raise ApiError(400, "malformed_msgpack", str(exc)) from None


async def post_record(request: web.Request) -> web.Response:
    """A practitioner's client stores a record's ciphertext and wrapped keys at its custodian."""
    node = request.app[NODE_KEY]
    custodian = request.app[CUSTODIAN_KEY]
    doc = await _msgpack_body(request, MAX_RECORD_UPLOAD)
    upload = Upload.from_wire(doc, node.chain_id)
    custodian.accept_upload(upload)
    return _json({"record_id": upload.record_id.hex(), "custodian": node.identity.id, "status": "stored"}, status=201)


def _may_discard_upload(request: web.Request, signer: bytes) -> bool:
    return request.app[CUSTODIAN_KEY].may_discard(signer, _id_param(request, "rid"))


@signed(_may_discard_upload)
async def delete_record_upload(request: web.Request) -> web.Response:
    """The patient (or guardian, or the author) discards an upload no record.add announced."""
    rid = _id_param(request, "rid")
    request.app[CUSTODIAN_KEY].discard_upload(rid)
    return _json({"record_id": rid.hex(), "status": "erased"})


async def post_record_fetch(request: web.Request) -> web.StreamResponse:
    """A reader's signed request for a record it holds a committed grant for.

    Its rate is the signer's, not the address's (the route is left out of the per-address
    middleware): a fetch proxied by another node arrives from that node's address, and every
    reader behind it would otherwise share one bucket. Only a fetch whose signature holds and
    whose requester is registered is counted against its signer; anything else (malformed,
    forged, an unregistered key, which costs nothing to make) against the address."""
    node = request.app[NODE_KEY]
    custodian = request.app[CUSTODIAN_KEY]
    rid = _id_param(request, "rid")
    raw = await request.read()
    try:
        doc = decode(raw, max_bytes=4096, max_items=16)
        fetch = Fetch.from_wire(doc, node.chain_id)
    except DecodeError as exc:
        _take_address_token(request)
        raise ApiError(400, "malformed_msgpack", str(exc)) from None
    except ProtocolError:
        _take_address_token(request)
        raise
    state = node.state_reader()
    if queries.identity(state, fetch.requester) is None:
        _take_address_token(request)
    else:
        wait = request.app[SIGNER_LIMIT_KEY].check(fetch.requester, time.monotonic())
        if wait > 0:
            raise rate_limited(wait, "signer")
    if fetch.record_id != rid:
        raise ApiError(400, "malformed_request", "the signed record id differs from the URL's")
    meta = queries.record(state, rid)
    if meta is not None and meta["custodian"] != node.identity.id:
        return await _proxy_fetch(request, node, meta["custodian"], raw)
    release = custodian.serve(fetch, node.clock_ms())  # an unknown record: the same 403 as no grant
    return web.Response(body=release.to_wire(), content_type="application/msgpack")


def _take_address_token(request: web.Request) -> None:
    """Count one request against the client's address (429 beyond its rate)."""
    wait = request.app[IP_LIMIT_KEY].check(request.remote or "?", time.monotonic())
    if wait > 0:
        raise rate_limited(wait, "address")


async def _proxy_fetch(request: web.Request, node: Node, custodian_hex: str, raw: bytes) -> web.StreamResponse:
    """Forward a signed fetch to the custodian's node (the answer is signed by the custodian)."""
    api = next((v.api for v in node.genesis.validators if v.id.hex() == custodian_hex and v.api), None)
    if api is None:
        raise ApiError(502, "custodian_unknown", "the record's custodian publishes no API address in the genesis")
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            async with session.post(f"{api}/v1/records/{request.match_info['rid']}/fetch", data=raw,
                                    ssl=request.app.get(CLIENT_SSL_KEY) or True,
                                    headers={"Content-Type": "application/msgpack"}) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, content_type=resp.content_type)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(502, "custodian_unreachable", f"the record's custodian did not answer: {exc}") from None


# -- research extracts ------------------------------------------------------------------------------
async def post_research_extract(request: web.Request) -> web.Response:
    """A researcher's signed extract request; this node coordinates the custodians."""
    node = request.app[NODE_KEY]
    service = request.app[RESEARCH_KEY]
    doc = await _msgpack_body(request, 64 * 1024)
    req = ExtractRequest.from_dict(doc, node.chain_id)
    return _json(await service.coordinate(req))


async def post_research_step(request: web.Request) -> web.Response:
    """A coordinator's countersigned step at this custodian: prepare or record."""
    node = request.app[NODE_KEY]
    service = request.app[RESEARCH_KEY]
    step = request.match_info["step"]
    envelope = await _msgpack_body(request, 2 * 1024 * 1024)
    payload, coordinator = service.check_coordinator(envelope)
    req = ExtractRequest.from_dict(payload.get("request"), node.chain_id)
    if step == "prepare":
        return _json(service.prepare(req, coordinator))
    included, resources, release_hash = payload.get("included"), payload.get("resources"), payload.get("release_hash")
    if not (isinstance(included, list) and len(included) <= 100_000 and all(isinstance(x, str) for x in included)
            and isinstance(resources, int) and isinstance(release_hash, bytes) and len(release_hash) == 32):
        raise ApiError(400, "malformed_request", "included, resources and release_hash are required")
    return _json({"tx": await service.record(req, coordinator, included, release_hash)})


async def get_health(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def post_test_partition(request: web.Request) -> web.Response:
    """Test-only (node run --unsafe-test-switches): cut links to peers outside our group."""
    network = request.app[NETWORK_KEY]
    doc = await request.json()
    groups = [[bytes.fromhex(x) for x in g] for g in doc.get("groups", [])]
    if groups:
        network.net.set_partition(groups)
    else:
        network.net.heal()
    return _json({"ok": True, "groups": doc.get("groups", [])})


NETWORK_KEY = web.AppKey("network", object)
UI_DIR = Path(__file__).resolve().parent.parent / "ui"


async def get_ui_root(request: web.Request) -> web.StreamResponse:
    if request.path == "/ui":
        raise web.HTTPFound("/ui/")
    return web.FileResponse(UI_DIR / "index.html")


async def expect_continue(request: web.Request) -> None:
    """The `Expect` header's handler on every route (aiohttp calls it before any middleware).
    aiohttp's default answers an unknown expectation with a text built from the header, which
    fails to encode when the header holds bytes that are not UTF-8: a 500. This one answers 417."""
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise ApiError(417, "expectation_failed", "the only expectation supported is 100-continue")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the interim answer is not part of the response


def _use_expect_handler(app: web.Application) -> None:
    for route in app.router.routes():
        route._expect_handler = expect_continue  # aiohttp takes it only per route, at creation


def make_app(node: Node, *, network: Any = None, custodian: Custodian | None = None,
             research: ResearchService | None = None, client_ssl: Any = None) -> web.Application:
    """The aiohttp application serving `node` (test routes only when `network` is given)."""
    api = node.config.api
    app = web.Application(client_max_size=api.max_body_bytes,
                          middlewares=[node.metrics.middleware(), errors_middleware, ratelimit_middleware])
    app[NODE_KEY] = node
    app[IP_LIMIT_KEY] = RateLimiter(RateLimit(api.rate_per_ip, api.burst_per_ip), max_keys=api.rate_table_size)
    app[SIGNER_LIMIT_KEY] = RateLimiter(RateLimit(api.rate_per_signer, api.burst_per_signer), max_keys=api.rate_table_size)
    app[NONCES_KEY] = ReplayGuard()
    if client_ssl is not None:
        app[CLIENT_SSL_KEY] = client_ssl  # an ssl.SSLContext for calls to other nodes' https APIs
    if custodian is not None:
        app[CUSTODIAN_KEY] = custodian
        app.router.add_post("/v1/records", post_record)
        app.router.add_post("/v1/records/{rid}/fetch", post_record_fetch, name=FETCH_ROUTE)
        app.router.add_delete("/v1/records/{rid}/upload", delete_record_upload)
    if research is not None:
        app[RESEARCH_KEY] = research
        app.router.add_post("/v1/research/extract", post_research_extract)
        app.router.add_post("/v1/research/{step:prepare|record}", post_research_step)
    if network is not None:
        app[NETWORK_KEY] = network
        app.router.add_post("/v1/test/partition", post_test_partition)
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/v1/health", get_health)
    app.router.add_post("/v1/txs", post_txs)
    app.router.add_get("/v1/txs/{hash}", get_tx)
    app.router.add_get("/v1/txs/{hash}/proof", get_tx_proof)
    app.router.add_get("/v1/blocks/{height}", get_block)
    app.router.add_get("/v1/accounts/{id}", get_account)
    app.router.add_get("/v1/commits", get_commits)
    app.router.add_get("/v1/identities/{id}", get_identity)
    app.router.add_get("/v1/records/{rid}", get_record_meta)
    app.router.add_get("/v1/patients/{id}/records", get_patient_records)
    app.router.add_get("/v1/patients/{id}/consents", get_patient_consents)
    app.router.add_get("/v1/patients/{id}/audit", get_patient_audit)
    app.router.add_get("/v1/institutions/{id}/disclosures", get_disclosures)
    app.router.add_get("/v1/institutions/{id}/breakglass", get_breakglass)
    app.router.add_get("/v1/access/{hash}", get_access)
    app.router.add_get("/v1/studies/{study}", get_study)
    app.router.add_get("/ui", get_ui_root)
    app.router.add_get("/ui/", get_ui_root)
    app.router.add_static("/ui/", UI_DIR)  # the dashboard (docs/dashboard.md): static files, no build step
    _use_expect_handler(app)
    return app
