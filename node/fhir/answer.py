"""How the FHIR routes answer: resources as `application/fhir+json`, every refusal an OperationOutcome.

`fhir_route(handler)` wraps a route so that any CodedError it raises (a FhirError, a
ledger or custodian refusal from the records service, a transaction refusal) answers as an
OperationOutcome with its status, the ledger's code in `details`; the API's JSON errors
middleware never sees it. `read_body(request, limit)` reads a request body of at most `limit`
bytes (413 `too_large` naming the limit); `json_body` parses it as one JSON object.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from aiohttp import web

from node.api.common import NODE_KEY
from node.core.errors import CodedError
from node.fhir.bearer import BearerRefusal
from node.fhir.catalog import BASE_PATH, FHIR_JSON
from node.fhir.outcome import FhirError, ISSUE_TYPE, operation_outcome, outcome_of
from node.fhir.smart import public_base

log = logging.getLogger("medledger.fhir")

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# the status of a records-service refusal whose code says more than its status
CODE_STATUS = {"erased": 410, "unknown_record": 404, "no_such_record": 404}


def fhir_response(resource: JSON, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A resource as the answer's body (compact JSON, application/fhir+json)."""
    body = json.dumps(resource, separators=(",", ":"), ensure_ascii=False)
    return web.Response(text=body, status=status, content_type=FHIR_JSON, headers=headers)


def refusal_response(err: CodedError) -> web.Response:
    """The OperationOutcome of a refusal, with its status (a records-service code may set it)."""
    status = CODE_STATUS.get(err.code, err.status) if not isinstance(err, FhirError) else err.status
    if not 400 <= status < 600:
        status = 400
    body = outcome_of(err)
    if not isinstance(err, FhirError):
        body = operation_outcome(err.code, err.message, issue=ISSUE_TYPE.get(status, "processing"))
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return fhir_response(body, status, headers)


def fhir_route(handler: Handler) -> Handler:
    """`handler` answering every refusal as an OperationOutcome (see the module's docstring)."""

    @wraps(handler)
    async def route(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BearerRefusal:
            raise  # already an OperationOutcome with its WWW-Authenticate challenge
        except CodedError as exc:
            return refusal_response(exc)
        except web.HTTPRequestEntityTooLarge:
            limit = request.app[NODE_KEY].config.api.max_body_bytes
            return refusal_response(FhirError(413, "too_large", f"the request body is over the limit of {limit} bytes"))

    return route


def base_url(request: web.Request) -> str:
    """The FHIR base as this client should use it (`[fhir] base_url`, else as reached)."""
    return public_base(request, request.app[NODE_KEY].config) + BASE_PATH


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused (413 too_large) when over `limit` bytes, read in bounded chunks."""
    if request.content_length is not None and request.content_length > limit:
        raise FhirError(413, "too_large", f"the request body is {request.content_length} bytes, over the limit of "
                                          f"{limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise FhirError(413, "too_large", f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(data: bytes, what: str = "resource") -> JSON:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirError(400, "malformed_json", f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise FhirError(400, "malformed_json", f"the body must be one JSON object (a FHIR {what})")
    return doc


def check_content_type(request: web.Request) -> None:
    """A resource body comes as application/fhir+json (or application/json)."""
    if request.content_type not in (FHIR_JSON, "application/json"):
        raise FhirError(415, "unsupported_media_type", "send the resource as application/fhir+json")
