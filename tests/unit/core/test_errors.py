"""Every refusal is one CodedError (code, message, status), which the API maps in one place."""

from __future__ import annotations

import pytest

from node.app.registry import ExecFailed
from node.api.auth import AuthError
from node.core.errors import CodedError
from node.records.custodian import CustodianRefusal
from node.records.protocol import ProtocolError
from node.core.replay import ReplayRefused
from node.chain.tx import TxRejected


@pytest.mark.parametrize(("error", "status"), [
    (TxRejected("bad_nonce", "the nonce must be positive"), 400),
    (ExecFailed("role_not_allowed"), 400),
    (AuthError(401, "stale_request", "too old"), 401),
    (ProtocolError("bad_signature", "does not verify"), 401),
    (ProtocolError("malformed_request", "not a map"), 400),
    (ReplayRefused("replayed_request", "seen"), 401),
    (ReplayRefused("busy", "full"), 429),
    (CustodianRefusal(403, "no_grant", "no grant"), 403),
])
def test_every_refusal_is_a_coded_error_with_its_status(error: CodedError, status: int) -> None:
    assert isinstance(error, CodedError)
    assert (error.status, bool(error.code), bool(error.message)) == (status, True, True)


def test_value_error_refusals_stay_value_errors() -> None:
    # callers that caught ValueError for malformed input keep working
    assert isinstance(TxRejected("x", "y"), ValueError) and isinstance(ProtocolError("x", "y"), ValueError)


async def test_the_api_maps_a_coded_error_raised_anywhere_to_its_json_answer() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from node.api.middleware import errors_middleware

    async def handler(request: web.Request) -> web.Response:
        raise CustodianRefusal(409, "record_mismatch", "the upload differs from its record.add")

    app = web.Application(middlewares=[errors_middleware])
    app.router.add_get("/x", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/x")
        assert resp.status == 409
        assert await resp.json() == {"error": "record_mismatch", "message": "the upload differs from its record.add"}
    finally:
        await client.close()
