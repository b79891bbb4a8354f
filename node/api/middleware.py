"""What runs around every route of the API: errors, body limits, rates and expectations.

`errors_middleware` makes sure a bad request never raises past the API: a refusal (any
`CodedError`) answers with its code and status, an over-long body with 413 `body_too_large`, a
compressed one with 415, an unknown route with 404 JSON, and anything unexpected with a logged 500.
`ratelimit_middleware` gives each client IP its request rate; `expect_continue` answers the
`Expect` header; `QuietClientErrors` keeps aiohttp from logging unparseable requests as errors.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from node.api.common import DELEGATED_FETCH_ROUTE, FETCH_ROUTE, IP_LIMIT_KEY, NODE_KEY, ApiError, rate_limited
from node.core.errors import CodedError

log = logging.getLogger("medledger.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _internal_error(request: web.Request) -> ApiError:
    log.exception("internal error on %s %s", request.method, request.path)
    return ApiError(500, "internal_error", "the node failed to handle this request; see its log")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure of a route as a JSON answer (see the module's docstring)."""
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
            raise _internal_error(request) from None
        # a static file name longer than the file system allows names no file we serve
        raise ApiError(404, "not_found", "no such file") from None
    except Exception:
        raise _internal_error(request) from None


def take_address_token(request: web.Request) -> None:
    """Count one request against the client's address (429 beyond its rate)."""
    wait = request.app[IP_LIMIT_KEY].check(request.remote or "?", time.monotonic())
    if wait > 0:
        raise rate_limited(wait, "address")


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Each client IP gets `api.rate_per_ip` requests a second (burst `api.burst_per_ip`); a
    record fetch is counted by its route instead (by signer, see post_record_fetch)."""
    if request.match_info.route.name not in (FETCH_ROUTE, DELEGATED_FETCH_ROUTE):
        take_address_token(request)
    return await handler(request)


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


def use_expect_handler(app: web.Application) -> None:
    """Put `expect_continue` on every route of `app` (call it once all routes are added)."""
    for route in app.router.routes():
        route._expect_handler = expect_continue  # aiohttp takes it only per route, at creation
