"""FHIR errors: every refusal under /fhir/R4 is an OperationOutcome with its HTTP status.

`FhirError` is a CodedError (node/core/errors.py) that also carries the FHIR issue type
(http://hl7.org/fhir/ValueSet/issue-type). The ledger's own code (`no_consent`,
`consent_revoked`, `erased`...) goes into the issue's `details.coding` under CODE_SYSTEM, so a
client can act on it; `diagnostics` holds the sentence for people.
"""

from __future__ import annotations

from typing import Any

from node.core.errors import CodedError

CODE_SYSTEM = "urn:medledger:error"

# the FHIR issue type of each HTTP status we answer with, where the caller gives none
ISSUE_TYPE: dict[int, str] = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
    409: "conflict", 410: "deleted", 412: "conflict", 413: "too-costly", 415: "not-supported",
    422: "processing", 429: "throttled", 500: "exception", 502: "transient", 503: "transient",
}


class FhirError(CodedError):
    """A refusal of a FHIR request: status, the ledger's stable code, a sentence, the FHIR issue type."""

    def __init__(self, status: int, code: str, message: str, issue: str | None = None) -> None:
        super().__init__(code, message, status)
        self.issue = issue or ISSUE_TYPE.get(status, "processing")


def operation_outcome(code: str, message: str, *, issue: str = "processing", severity: str = "error") -> dict[str, Any]:
    """The OperationOutcome resource of one issue."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": severity,
            "code": issue,
            "details": {"coding": [{"system": CODE_SYSTEM, "code": code}], "text": code},
            "diagnostics": message,
        }],
    }


def outcome_of(err: CodedError) -> dict[str, Any]:
    """The OperationOutcome of any refusal (a FhirError keeps its issue type)."""
    issue = err.issue if isinstance(err, FhirError) else ISSUE_TYPE.get(err.status, "processing")
    return operation_outcome(err.code, err.message, issue=issue)
