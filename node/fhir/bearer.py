"""The bearer check of the FHIR routes: which Principal a request acts for (RFC 6750).

`require_principal(request)` reads `Authorization: Bearer <token>`, looks the token up in the
node's TokenStore (issued by node/fhir/smart.py) and checks that its identity still stands on
the ledger (registered, its key not rotated away); it leaves the Principal on the request under
PRINCIPAL_KEY and returns it. `require_scope(principal, type, perm)` then checks the token's
scopes for one interaction. A refusal is an OperationOutcome (application/fhir+json) with a
`WWW-Authenticate: Bearer` header:

| status | code (OperationOutcome `details`) | WWW-Authenticate error | when                               |
| ------ | --------------------------------- | ---------------------- | ---------------------------------- |
| 401    | token_required                    | (none)                 | no Authorization: Bearer header    |
| 401    | invalid_token                     | invalid_token          | malformed, unknown or expired token, or its identity no longer stands |
| 403    | insufficient_scope                | insufficient_scope     | the token's scopes do not cover the interaction |

The refusal is raised as an aiohttp HTTPException carrying that body, so it passes the API's
errors middleware unchanged. Nothing is remembered of a refused token.
"""

from __future__ import annotations

import json
import re

from aiohttp import web

from node.api.common import NODE_KEY
from node.app import validator_sets
from node.app.roles import identity_of
from node.app.state import StateReader
from node.fhir.outcome import operation_outcome
from node.fhir.principal import Principal, TokenStore

TOKENS_KEY = web.AppKey("fhir_tokens", TokenStore)
REALM = "medledger-fhir"
FHIR_JSON = "application/fhir+json"
MAX_TOKEN_CHARS = 512
_B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750, section 2.1

# Where the bearer check leaves the request's Principal (a typed request key: aiohttp >= 3.14).
PRINCIPAL_KEY = web.RequestKey("medledger.fhir.principal", Principal)


def standing(state: StateReader, identity: bytes) -> tuple[str, str] | None:
    """Why `identity` may not hold a token now, as (code, sentence), or None when it may: it is
    registered on the ledger and its key is its current one (a validator's rotated key, or an
    identity record marked `rotated_to`, is not)."""
    found = identity_of(state, identity)
    if found is None:
        return "unknown_identity", "no identity with this id is registered on the ledger"
    validator = validator_sets.record(state, identity) or {}
    if found.get("rotated_to") is not None or validator.get("rotated_to") is not None:
        return "key_rotated", "this key was rotated: sign with the identity's current key"
    return None


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


class BearerRefusal(web.HTTPException):
    """A refused bearer check: an OperationOutcome with its WWW-Authenticate challenge (RFC 6750,
    section 3). `code` is the ledger's code, `error` the RFC 6750 one (None: no token was sent)."""

    def __init__(self, status: int, code: str, message: str, *, error: str | None = None,
                 scope: str | None = None) -> None:
        self.status_code = status
        self.code = code
        challenge = f'Bearer realm="{REALM}"'
        if error is not None:
            challenge += f', error="{error}", error_description="{_quoted(message)}"'
        if scope is not None:
            challenge += f', scope="{_quoted(scope)}"'
        issue = "forbidden" if status == 403 else "login"
        body = json.dumps(operation_outcome(code, message, issue=issue), separators=(",", ":"))
        super().__init__(text=body, content_type=FHIR_JSON, headers={"WWW-Authenticate": challenge})


def bearer_token(request: web.Request) -> str | None:
    """The token of the request's `Authorization: Bearer` header (None without one); a malformed
    header is refused (401 invalid_token)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_CHARS or not _B64TOKEN.fullmatch(token):
        raise BearerRefusal(401, "invalid_token", "the Authorization header must be 'Bearer <access token>'",
                            error="invalid_token")
    return token


def require_principal(request: web.Request) -> Principal:
    """The Principal of the request's bearer token (see the module's docstring), 401 otherwise."""
    cached = request.get(PRINCIPAL_KEY)
    if isinstance(cached, Principal):
        return cached
    token = bearer_token(request)
    if token is None:
        raise BearerRefusal(401, "token_required",
                            "this FHIR endpoint needs an access token: get one from the token endpoint (SMART Backend "
                            "Services, see /.well-known/smart-configuration) and send 'Authorization: Bearer <token>'")
    node = request.app[NODE_KEY]
    store = request.app[TOKENS_KEY]
    principal = store.lookup(token, node.clock_ms())
    if principal is None:
        raise BearerRefusal(401, "invalid_token", "the access token is unknown or expired (tokens are short-lived "
                                                  "and end when the node restarts); ask the token endpoint for a new one",
                            error="invalid_token")
    refused = standing(node.state_reader(), principal.identity)
    if refused is not None:
        store.revoke_identity(principal.identity)
        raise BearerRefusal(401, "invalid_token", f"the token's identity no longer holds it: {refused[1]}",
                            error="invalid_token")
    request[PRINCIPAL_KEY] = principal
    return principal


def require_scope(principal: Principal, resource_type: str, perm: str) -> None:
    """Refuse (403 insufficient_scope) unless a scope of the token allows `perm` on the type."""
    if not principal.may(resource_type, perm):
        names = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
        wanted = f"{principal.scopes[0].context if principal.scopes else 'system'}/{resource_type}.{perm}"
        raise BearerRefusal(403, "insufficient_scope",
                            f"the access token's scopes do not allow {names.get(perm, perm)} on {resource_type}; ask "
                            f"for a token with a scope covering it (e.g. {wanted})",
                            error="insufficient_scope", scope=wanted)
