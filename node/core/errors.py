"""One refusal type: a stable code (docs/api.md), a sentence that says what happened, an HTTP status.

Every refusal of a client's or a peer's input derives from `CodedError`: a transaction's
stateless check (`TxRejected`), the ledger refusing it (`ExecFailed`), a signed request
(`AuthError`), a signed message of the record and research protocol (`ProtocolError`), the
replay guard (`ReplayRefused`), the custodian (`CustodianRefusal`). The API maps any of them to
its JSON answer in one place (node/api/middleware.py, `errors_middleware`); the CLI prints the
code with the advice of node/core/advice.py. Our own bugs are not CodedErrors: they are logged
and answer 500.
"""

from __future__ import annotations


class CodedError(Exception):
    """A refusal: `code` (stable, for programs), `message` (for people), `status` (its HTTP answer)."""

    status: int = 400

    def __init__(self, code: str, message: str = "", status: int | None = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code
        if status is not None:
            self.status = status
