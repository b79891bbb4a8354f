"""SMART Backend Services for the FHIR server: discovery and the token endpoint (docs/fhir.md).

    GET  /.well-known/smart-configuration          what a client needs to ask for a token
    GET  /fhir/R4/.well-known/smart-configuration   the same, under the FHIR base
    POST /fhir/R4/auth/token                        client_credentials with a signed JWT assertion

A client (a practitioner's system, an institution, a researcher's pipeline, a patient's page)
authenticates as its ledger identity: the `client_assertion` is a JWT whose `iss` and `sub` are
its identity id, signed with that identity's Ed25519 key (EdDSA, node/fhir/jwt.py). The form
also names the SMART scopes wanted (node/fhir/scopes.py) and the purpose of use (HL7 v3 code;
ETREAT, break-glass, with a coded `reason`). The answer is a short-lived opaque access token
bound to that identity (node/fhir/principal.py, TokenStore); the FHIR routes read it with
node/fhir/bearer.py and decide every access on the ledger for that identity and purpose.

Checks, in this order (nothing is remembered of a refused request; the assertion's `jti` only
once everything holds): the address's token rate; the form (its size, type, fields, each at most
once); the grant and assertion types; the scopes' syntax; the purpose's and reason's codes; the
JWT's form and `alg`; `iss` == `sub` == an identity id; the signature by that key; `aud`, `exp`
(in the future, at most 5 minutes ahead), `nbf`/`iat`, `jti`; the identity on the ledger (registered,
its key not rotated); the purpose for its role; the scopes its role may hold; then the `jti`
(never twice within its lifetime). Refusals are RFC 6749 JSON: `error` (invalid_request,
invalid_client, invalid_scope, unsupported_grant_type...), `error_description`, and
`medledger_code` (a stable code with advice in node/core/advice.py).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from node.api.common import NODE_KEY, json_response
from node.api.ratelimit import RateLimit, RateLimiter, retry_after_header
from node.app.access import BREAKGLASS_REASONS
from node.app.roles import INSTITUTION, PATIENT, PRACTITIONER, RESEARCHER, identity_of
from node.core import replay
from node.core.errors import CodedError
from node.fhir import jwt
from node.fhir.bearer import TOKENS_KEY, standing
from node.fhir.client_assertion import JWT_BEARER
from node.fhir.principal import PURPOSES, Principal, TokenStore
from node.fhir.scopes import ROLE_POLICY, ScopeError, grant, parse_scopes
from node.home.config import NodeConfig
from node.runtime.runtime import Node

log = logging.getLogger("medledger.fhir")

FHIR_BASE = "/fhir/R4"
TOKEN_PATH = f"{FHIR_BASE}/auth/token"
CONFIG_PATHS = ("/.well-known/smart-configuration", f"{FHIR_BASE}/.well-known/smart-configuration")
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
MAX_FORM_BYTES = 8192
MAX_FORM_FIELDS = 16
MAX_FIELD_CHARS: dict[str, int] = {"client_assertion": jwt.MAX_JWT_CHARS, "scope": 2048}
DEFAULT_FIELD_CHARS = 256
MAX_ASSERTION_LIFETIME_MS = 300_000  # an assertion's exp is at most this far ahead of the node's clock
CLOCK_SKEW_MS = replay.FUTURE_MS  # allowance for a client's clock running ahead
MAX_JTI_CHARS = 128
MAX_AUDIENCES = 8
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# the purposes of use each role may ask for; a patient reads its own file (purpose TREAT, the default)
ROLE_PURPOSES: dict[str, tuple[str, ...]] = {
    PATIENT: ("TREAT",),
    PRACTITIONER: ("TREAT", "ETREAT", "HPAYMT", "HOPERAT"),
    INSTITUTION: ("TREAT", "HPAYMT", "HOPERAT"),
    RESEARCHER: ("HRESCH",),
}
DEFAULT_PURPOSE: dict[str, str] = {PATIENT: "TREAT"}

JTIS_KEY = web.AppKey("fhir_assertion_jtis", replay.ReplayGuard)
TOKEN_LIMIT_KEY = web.AppKey("fhir_token_limiter", RateLimiter)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_JTI = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


class TokenError(CodedError):
    """A refused token request: `code` (ours, stable), `message`, the RFC 6749 `error` it is
    reported under, and the HTTP status (401 for invalid_client, else 400, unless given)."""

    def __init__(self, code: str, message: str, *, error: str = "invalid_request", status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code, message, status if status is not None else 401 if error == "invalid_client" else 400)
        self.error = error
        self.headers = headers or {}


def token_error_response(exc: TokenError) -> web.Response:
    """The RFC 6749 (section 5.2) JSON answer of a refusal."""
    body = {"error": exc.error, "error_description": exc.message, "medledger_code": exc.code}
    return json_response_with(body, exc.status, {**NO_STORE, **exc.headers})


def json_response_with(data: Any, status: int, headers: dict[str, str]) -> web.Response:
    response = json_response(data, status=status)
    response.headers.update(headers)
    return response


# -- the form ---------------------------------------------------------------------------------
async def read_form(request: web.Request) -> dict[str, str]:
    """The token request's form fields: a bounded application/x-www-form-urlencoded body, each
    field at most once and of bounded length (unknown fields are ignored, RFC 6749 section 3.2)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise TokenError("form_required", "send the token request as application/x-www-form-urlencoded "
                                          "(RFC 6749, section 4.4)", status=415)
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise TokenError("body_too_large", f"a token request is at most {MAX_FORM_BYTES} bytes", status=413)
    body = bytearray()
    while True:
        chunk = await request.content.read(MAX_FORM_BYTES + 1 - len(body))
        if not chunk:
            break
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise TokenError("body_too_large", f"a token request is at most {MAX_FORM_BYTES} bytes", status=413)
    try:
        pairs = parse_qsl(bytes(body).decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
                          max_num_fields=MAX_FORM_FIELDS, encoding="utf-8", errors="strict")
    except ValueError:  # includes UnicodeDecodeError and too many fields
        raise TokenError("malformed_form", f"the body is not a form of at most {MAX_FORM_FIELDS} fields "
                                           "(name=value pairs joined by '&', percent-encoded UTF-8)") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise TokenError("malformed_form", f"the field {name[:32]!r} is given twice (RFC 6749, section 3.2)")
        limit = MAX_FIELD_CHARS.get(name, DEFAULT_FIELD_CHARS)
        if len(value) > limit:
            raise TokenError("malformed_form", f"the field {name[:32]!r} is longer than {limit} characters")
        form[name] = value
    return form


def purpose_code(text: str | None) -> str | None:
    """The HL7 v3 purpose-of-use code of the `purpose_of_use` field (a bare code or
    `system|code` in the ActReason system), None when absent."""
    if not text:
        return None
    system, sep, code = text.rpartition("|")
    if (sep and system != PURPOSE_SYSTEM) or code not in PURPOSES:
        raise TokenError("unknown_purpose", f"purpose_of_use must be one of {', '.join(PURPOSES)} (HL7 v3 "
                                            f"PurposeOfUse, system {PURPOSE_SYSTEM})")
    return code


def reason_code(purpose: str | None, reason: str | None) -> str | None:
    """The break-glass reason: required with ETREAT and one of the ledger's codes; refused otherwise."""
    if purpose != "ETREAT":
        if reason:
            raise TokenError("reason_without_breakglass", "a reason goes with purpose_of_use=ETREAT (break-glass) only")
        return None
    if not reason:
        raise TokenError("breakglass_reason_required", "purpose_of_use=ETREAT (break-glass) needs the field reason, "
                                                       "one of " + ", ".join(BREAKGLASS_REASONS))
    if reason not in BREAKGLASS_REASONS:
        raise TokenError("reason_not_coded", "the reason must be one of " + ", ".join(BREAKGLASS_REASONS)
                         + " (a code: free text never goes on the ledger)")
    return reason


# -- the assertion -----------------------------------------------------------------------------
def audiences(request: web.Request, config: NodeConfig) -> tuple[str, ...]:
    """The token endpoint URLs an assertion's `aud` may name. With `[fhir] base_url` set, only
    that public URL: an assertion a client sent to another node cannot be replayed here by
    giving this node the other's Host header. Without it, the URL as the client reached it and
    the one the `[api]` host and port make."""
    if config.fhir.base_url:
        return (config.fhir.base_url + TOKEN_PATH,)
    scheme = "https" if config.api.tls_cert else "http"
    reached = f"{request.scheme}://{request.host}{TOKEN_PATH}"
    return tuple(dict.fromkeys((reached, f"{scheme}://{config.api.host}:{config.api.port}{TOKEN_PATH}")))


def _numeric_date(claims: dict[str, Any], name: str, required: bool) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 40:
        raise TokenError("assertion_time_invalid", f"the assertion's {name} must be a whole number of seconds since "
                                                      "the Unix epoch", error="invalid_client")
    return value


def check_assertion(token: str, accepted: tuple[str, ...], now_ms: int) -> tuple[bytes, str]:
    """The identity that signed `token` and its `jti`, after every check of the assertion that
    needs no ledger (see the module's docstring); TokenError invalid_client otherwise."""
    try:
        jws = jwt.parse(token)
    except jwt.JwtError as exc:
        raise TokenError(exc.code, exc.message, error="invalid_client") from None
    claims = jws.claims
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not _HEX64.fullmatch(iss):
        raise TokenError("bad_issuer", "the assertion's iss must be the client's ledger identity id (64 hex "
                                       "characters, its Ed25519 public key)", error="invalid_client")
    if sub != iss:
        raise TokenError("issuer_subject_mismatch", "the assertion's sub must equal its iss (the identity id)",
                         error="invalid_client")
    identity = bytes.fromhex(iss)
    try:
        jwt.verify_eddsa(jws, identity)
    except jwt.JwtError as exc:
        raise TokenError(exc.code, exc.message, error="invalid_client") from None
    aud = claims.get("aud")
    named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) and len(aud) <= MAX_AUDIENCES else []
    if not any(isinstance(a, str) and a in accepted for a in named):
        raise TokenError("wrong_audience", f"the assertion's aud must be this node's token endpoint, {accepted[0]}",
                         error="invalid_client")
    exp_ms = (_numeric_date(claims, "exp", True) or 0) * 1000
    if exp_ms <= now_ms:
        raise TokenError("assertion_expired", "the assertion's exp has passed (by the node's clock); sign a new one",
                         error="invalid_client")
    if exp_ms > now_ms + MAX_ASSERTION_LIFETIME_MS + CLOCK_SKEW_MS:
        raise TokenError("assertion_exp_too_far", f"the assertion's exp is more than {MAX_ASSERTION_LIFETIME_MS // 1000}"
                                                  " s ahead of the node's clock; sign one that expires sooner",
                         error="invalid_client")
    for name in ("nbf", "iat"):
        at = _numeric_date(claims, name, False)
        if at is not None and at * 1000 > now_ms + CLOCK_SKEW_MS:
            raise TokenError("assertion_not_yet_valid", f"the assertion's {name} is ahead of the node's clock; check "
                                                        "this machine's clock", error="invalid_client")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS or not _JTI.fullmatch(jti):
        raise TokenError("jti_required", f"the assertion needs a jti: a fresh random string (printable, at most "
                                         f"{MAX_JTI_CHARS} characters) for every token request", error="invalid_client")
    return identity, jti


def remember_jti(guard: replay.ReplayGuard, identity: bytes, jti: str, now_ms: int) -> None:
    """Refuse an assertion whose `jti` this identity used within its lifetime (`replayed_assertion`)."""
    try:
        guard.remember(identity, hashlib.sha256(jti.encode("ascii")).digest(), now_ms)
    except replay.ReplayRefused as exc:
        if exc.code == "busy":
            raise TokenError("rate_limited", exc.message, error="temporarily_unavailable", status=429,
                             headers={"Retry-After": "5"}) from None
        raise TokenError("replayed_assertion", "this assertion (its jti) was used already; sign a new one with a fresh "
                                               "jti", error="invalid_client") from None


# -- the decision --------------------------------------------------------------------------------
def _purpose_for(role: str, code: str | None) -> str:
    allowed = ROLE_PURPOSES.get(role, ())
    code = code or DEFAULT_PURPOSE.get(role)
    if code is None:
        raise TokenError("purpose_required", "give the field purpose_of_use: one of " + ", ".join(allowed))
    if code not in allowed:
        raise TokenError("purpose_not_allowed", f"a {role} may ask for purpose_of_use " + ", ".join(allowed))
    return code


async def post_token(request: web.Request) -> web.StreamResponse:
    """POST /fhir/R4/auth/token: an access token for a client_credentials grant (see the module's docstring)."""
    node = request.app[NODE_KEY]
    try:
        wait = request.app[TOKEN_LIMIT_KEY].check(request.remote or "?", time.monotonic())
        if wait > 0:
            after = retry_after_header(wait)
            raise TokenError("rate_limited", f"too many token requests from this address; retry in {after} s",
                             error="temporarily_unavailable", status=429, headers={"Retry-After": after})
        form = await read_form(request)
        answer = issue_token(request, node, form)
    except TokenError as exc:
        return token_error_response(exc)
    return json_response_with(answer, 200, NO_STORE)


def issue_token(request: web.Request, node: Node, form: dict[str, str]) -> dict[str, Any]:
    """Check a token request's form (see the module's docstring) and issue its token: the
    RFC 6749 (section 5.1) answer, with `patient` for a patient's token."""
    grant_type = form.get("grant_type")
    if grant_type != "client_credentials":
        raise TokenError("unsupported_grant_type", "grant_type must be client_credentials (SMART Backend Services)",
                         error="unsupported_grant_type")
    if form.get("client_assertion_type") != JWT_BEARER:
        raise TokenError("unsupported_assertion_type", f"client_assertion_type must be {JWT_BEARER}",
                         error="invalid_client")
    assertion = form.get("client_assertion")
    if not assertion:
        raise TokenError("assertion_required", "send client_assertion: a JWT signed with your identity's key "
                                               "(iss and sub: your identity id)", error="invalid_client")
    try:
        requested = parse_scopes(form.get("scope", ""))
    except ScopeError as exc:
        raise TokenError(exc.code, exc.message, error="invalid_scope") from None
    code = purpose_code(form.get("purpose_of_use"))
    reason = reason_code(code, form.get("reason"))
    now_ms = node.clock_ms()
    identity, jti = check_assertion(assertion, audiences(request, node.config), now_ms)
    client_id = form.get("client_id")
    if client_id is not None and client_id.lower() != identity.hex():
        raise TokenError("client_id_mismatch", "client_id, when given, must be the assertion's iss", error="invalid_client")
    state = node.state_reader()
    refused = standing(state, identity)
    if refused is not None:
        raise TokenError(refused[0], refused[1], error="invalid_client")
    found = identity_of(state, identity) or {}
    role = str(found.get("role"))
    if role not in ROLE_POLICY:
        raise TokenError("role_not_allowed", f"a {role} identity is not given access tokens", error="unauthorized_client")
    code = _purpose_for(role, code)
    granted = grant(role, requested)
    if not granted:
        raise TokenError("scope_not_granted", f"none of the requested scopes may be granted to a {role} (see "
                                              "/.well-known/smart-configuration)", error="invalid_scope")
    remember_jti(request.app[JTIS_KEY], identity, jti, now_ms)
    ttl_s = node.config.fhir.token_ttl_s
    institution = identity if role == INSTITUTION else found.get("institution") if role != PATIENT else None
    principal = Principal(identity=identity, role=role, institution=institution if isinstance(institution, bytes) else None,
                          scopes=tuple(s for _, s in granted), purpose=PURPOSES[code], reason=reason,
                          expires_ms=now_ms + ttl_s * 1000, token_id=secrets.token_hex(8))
    token = request.app[TOKENS_KEY].issue(principal, now_ms)
    scope = " ".join(text for text, _ in granted)
    # a patient's id stays out of the log: when a patient signs in is theirs (the ledger audits what is read)
    log.info("issued FHIR access token %s to %s (%s), purpose %s, scope %s", principal.token_id,
             "a patient" if role == PATIENT else identity.hex()[:16], role, code, scope)
    answer: dict[str, Any] = {"access_token": token, "token_type": "bearer", "expires_in": ttl_s, "scope": scope,
                              "purpose_of_use": code}
    if reason is not None:
        answer["reason"] = reason
    if role == PATIENT:
        answer["patient"] = identity.hex()
    return answer


# -- discovery -----------------------------------------------------------------------------------
def public_base(request: web.Request, config: NodeConfig) -> str:
    """The API's base URL as clients should use it: `[fhir] base_url`, else as this client reached it."""
    return config.fhir.base_url or f"{request.scheme}://{request.host}"


async def get_smart_configuration(request: web.Request) -> web.StreamResponse:
    """GET /.well-known/smart-configuration (SMART App Launch 2.x, Backend Services)."""
    config = request.app[NODE_KEY].config
    base = public_base(request, config)
    roles = {role: {"contexts": sorted(policy.contexts), "purposes_of_use": list(ROLE_PURPOSES[role])}
             for role, policy in ROLE_POLICY.items()}
    return json_response({
        "token_endpoint": base + TOKEN_PATH,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": [jwt.ALG],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.rs", "system/*.read", "user/*.crus", "user/*.read", "patient/*.rs",
                             "patient/*.read", "patient/Consent.cruds"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        "medledger": {
            "fhir_base": base + FHIR_BASE,
            "access_token_lifetime_s": config.fhir.token_ttl_s,
            "assertion_max_lifetime_s": MAX_ASSERTION_LIFETIME_MS // 1000,
            "purpose_of_use_system": PURPOSE_SYSTEM,
            "purposes_of_use": dict(PURPOSES),
            "breakglass_reasons": list(BREAKGLASS_REASONS),
            "roles": roles,
        },
    })


# -- mounting ------------------------------------------------------------------------------------
def smart_routes() -> list[web.RouteDef]:
    """The discovery and token routes."""
    return [*(web.get(path, get_smart_configuration) for path in CONFIG_PATHS), web.post(TOKEN_PATH, post_token)]


def install_smart(app: web.Application) -> None:
    """Put the token store, the assertion replay guard, the token rate limiter and the routes on
    the API's `app` (it holds the node under NODE_KEY); `make_app(..., mounts=[install_smart])`."""
    node = app[NODE_KEY]
    fhir = node.config.fhir
    if TOKENS_KEY not in app:
        app[TOKENS_KEY] = TokenStore(max_tokens=fhir.max_tokens)
    app[JTIS_KEY] = replay.ReplayGuard(window_ms=MAX_ASSERTION_LIFETIME_MS, future_ms=CLOCK_SKEW_MS,
                                       max_per_requester=1_000, max_total=100_000)
    app[TOKEN_LIMIT_KEY] = RateLimiter(RateLimit(fhir.token_rate_per_ip, fhir.token_burst_per_ip),
                                       max_keys=node.config.api.rate_table_size)
    app.router.add_routes(smart_routes())
