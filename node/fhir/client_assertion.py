"""The client side of SMART Backend Services: the signed JWT a ledger identity authenticates with.

`make_assertion(identity, token_url, now_ms)` is the `client_assertion` of a token request
(node/fhir/smart.py checks it): `iss` and `sub` are the identity id, `aud` the token endpoint's
URL, `exp` a little ahead (at most 5 minutes is accepted), `jti` fresh and random; signed with
the identity's Ed25519 key (EdDSA, RFC 8037). `token_form` is the whole form to POST.
"""

from __future__ import annotations

import secrets

from node.core.crypto import Identity
from node.fhir import jwt

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_LIFETIME_S = 60


def make_assertion(identity: Identity, token_url: str, now_ms: int, *, lifetime_s: int = DEFAULT_LIFETIME_S,
                   jti: str | None = None, kid: str | None = None) -> str:
    """A client assertion for `token_url`, valid from `now_ms` for `lifetime_s` seconds."""
    now_s = now_ms // 1000
    claims = {"iss": identity.id, "sub": identity.id, "aud": token_url, "iat": now_s,
              "exp": now_s + lifetime_s, "jti": jti if jti is not None else secrets.token_hex(16)}
    return jwt.encode(identity, claims, kid=kid)


def token_form(assertion: str, scope: str, purpose_of_use: str | None = None,
               reason: str | None = None) -> dict[str, str]:
    """The form fields of a token request (application/x-www-form-urlencoded)."""
    form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion, "scope": scope}
    if purpose_of_use is not None:
        form["purpose_of_use"] = purpose_of_use
    if reason is not None:
        form["reason"] = reason
    return form
