"""What every route module of the API shares.

The application keys (where `make_app` puts the node, the custodian, the limiters...), `ApiError`
(a client's mistake rendered as `{"error": code, "message": ...}`), the compact JSON answer, and the
parsing of path and query parameters and of msgpack bodies, each refusing bad input with a 4xx.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from aiohttp import web

from node.api.ratelimit import RateLimiter, retry_after_header
from node.core.encoding import DecodeError, decode
from node.core.replay import ReplayGuard
from node.records.custodian import Custodian
from node.research.service import ResearchService
from node.runtime.runtime import Node

NODE_KEY = web.AppKey("node", Node)
CUSTODIAN_KEY = web.AppKey("custodian", Custodian)
RESEARCH_KEY = web.AppKey("research", ResearchService)
IP_LIMIT_KEY = web.AppKey("ip_limiter", RateLimiter)
SIGNER_LIMIT_KEY = web.AppKey("signer_limiter", RateLimiter)
NONCES_KEY = web.AppKey("nonces", ReplayGuard)
CLIENT_SSL_KEY = web.AppKey("client_ssl", ssl.SSLContext)
FETCH_ROUTE = "record_fetch"
"""The name of the record fetch route, which the per-address rate limit leaves to its handler."""
DELEGATED_FETCH_ROUTE = "record_fetch_delegated"
"""The delegated fetch's route (an institution for its practitioners), limited the same way."""
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/octet-stream")
MAX_WAIT_S = 30.0


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


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer without spaces between items."""
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":")))


def parse_hex32(text: str) -> bytes | None:
    """The 32 bytes that 64 hex characters spell (None for anything else)."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def hex32_param(request: web.Request, name: str) -> bytes:
    """A 32-byte id or hash from the URL path (400 `bad_<name>` unless 64 hex characters)."""
    raw = parse_hex32(request.match_info[name])
    if raw is None:
        raise ApiError(400, f"bad_{name}", f"{name} must be 64 hex characters")
    return raw


def id_param(request: web.Request, name: str = "id") -> bytes:
    """An identity or record id from the URL path."""
    return hex32_param(request, name)


def hash_param(request: web.Request) -> bytes:
    """A transaction hash from the URL path."""
    return hex32_param(request, "hash")


def int_param(text: str, name: str) -> int:
    """A non-negative integer (400 `bad_<name>` otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"bad_{name}", f"{name} must be an integer") from None
    if value < 0:
        raise ApiError(400, f"bad_{name}", f"{name} must not be negative")
    return value


def wait_param(text: str) -> float:
    """The `wait` query parameter in seconds, capped at MAX_WAIT_S (a huge integer must not overflow a float)."""
    return float(min(int_param(text, "wait"), int(MAX_WAIT_S)))


def ms_param(request: web.Request, name: str, default: int | None) -> int | None:
    """A time in milliseconds from the query string, `default` when absent."""
    text = request.query.get(name)
    if text is None:
        return default
    return int_param(text, name)


async def msgpack_body(request: web.Request, limit: int) -> Any:
    """The request's msgpack body, at most `limit` bytes (415 or 400 otherwise)."""
    if request.content_type not in MSGPACK_TYPES:
        raise ApiError(415, "unsupported_media_type", "send msgpack (Content-Type: application/msgpack)")
    try:
        return decode(await request.read(), max_bytes=limit, max_items=64)
    except DecodeError as exc:
        raise ApiError(400, "malformed_msgpack", str(exc)) from None
