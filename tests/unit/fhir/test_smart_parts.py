"""The parts of SMART Backend Services that need no node: the EdDSA JWT, the scope syntax and
what each role is granted, the token store's bounds, the client assertion and the [fhir] options."""

from __future__ import annotations

import json

import pytest

from node.core.crypto import Identity
from node.fhir import jwt
from node.fhir.client_assertion import make_assertion
from node.fhir.principal import Principal, Scope, TokenStore
from node.fhir.scopes import ScopeError, grant, parse_scope, parse_scopes, scope_text
from node.home.config import ConfigError, build_config

ALICE = Identity.from_seed(b"\x41" * 32)
BOB = Identity.from_seed(b"\x42" * 32)
NOW_MS = 1_800_000_000_000


def _part(value: dict[str, object]) -> str:
    return jwt.b64url_encode(json.dumps(value).encode())


# -- JWT ---------------------------------------------------------------------------------------
def test_an_eddsa_jwt_round_trips_and_verifies_only_with_its_signers_key():
    token = jwt.encode(ALICE, {"iss": ALICE.id, "n": 1}, kid="k1")
    parsed = jwt.parse(token)
    assert parsed.header == {"alg": "EdDSA", "typ": "JWT", "kid": "k1"}
    assert parsed.claims == {"iss": ALICE.id, "n": 1}
    jwt.verify_eddsa(parsed, ALICE.public_key)
    with pytest.raises(jwt.JwtError) as err:
        jwt.verify_eddsa(parsed, BOB.public_key)
    assert err.value.code == "bad_jwt_signature"


def test_a_changed_payload_no_longer_verifies():
    head, _, sig = jwt.encode(ALICE, {"iss": ALICE.id, "n": 1}).split(".")
    forged = jwt.parse(f"{head}.{_part({'iss': ALICE.id, 'n': 2})}.{sig}")
    with pytest.raises(jwt.JwtError) as err:
        jwt.verify_eddsa(forged, ALICE.public_key)
    assert err.value.code == "bad_jwt_signature"


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES256", "eddsa", None])
def test_every_alg_but_eddsa_is_refused_before_the_signature_is_looked_at(alg):
    header = {"typ": "JWT"} if alg is None else {"alg": alg, "typ": "JWT"}
    token = f"{_part(header)}.{_part({'iss': ALICE.id})}."
    with pytest.raises(jwt.JwtError) as err:
        jwt.parse(token)
    assert err.value.code == "unsupported_alg"


@pytest.mark.parametrize("token", [
    "", "a.b", "a.b.c.d", "x" * 5000, "!!!.e30.AAAA",
    f"{_part({'alg': 'EdDSA'})}.bm90IGpzb24.{jwt.b64url_encode(bytes(64))}",  # payload "not json"
    f"{_part({'alg': 'EdDSA'})}.{jwt.b64url_encode(b'[1]')}.{jwt.b64url_encode(bytes(64))}",  # not an object
    f"{_part({'alg': 'EdDSA'})}.{_part({})}.{jwt.b64url_encode(bytes(10))}",  # short signature
    jwt.b64url_encode(b'{"alg":"EdDSA","alg":"none"}') + f".{_part({})}.{jwt.b64url_encode(bytes(64))}",
    f"{_part({'alg': 'EdDSA', 'crit': ['exp']})}.{_part({})}.{jwt.b64url_encode(bytes(64))}",
])
def test_malformed_jwts_are_refused(token):
    with pytest.raises(jwt.JwtError) as err:
        jwt.parse(token)
    assert err.value.code == "malformed_jwt"


# -- scopes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "context", "type_", "perms"), [
    ("system/Observation.rs", "system", "Observation", "rs"),
    ("system/Observation.read", "system", "Observation", "rs"),
    ("patient/*.read", "patient", "*", "rs"),
    ("user/*.write", "user", "*", "cud"),
    ("user/Condition.*", "user", "Condition", "cruds"),
    ("patient/Consent.cruds", "patient", "Consent", "cruds"),
    ("system/Patient.s", "system", "Patient", "s"),
])
def test_v1_and_v2_scopes_parse_into_the_same_scope(text, context, type_, perms):
    assert parse_scope(text) == Scope(context, type_, frozenset(perms))


@pytest.mark.parametrize("text", [
    "launch", "openid", "fhirUser", "offline_access", "system/Observation", "system/Observaton.rs",
    "clinic/Observation.rs", "system/Observation.sr", "system/Observation.rr", "system/Observation.x",
    "patient/Observation.rs?category=laboratory", "system/*.", "/Observation.rs", "system/Observation.readwrite",
])
def test_unknown_scope_syntax_is_refused_naming_the_scope(text):
    with pytest.raises(ScopeError) as err:
        parse_scope(text)
    assert err.value.code == "invalid_scope" and repr(text[:80]) in err.value.message


def test_a_scope_list_is_bounded_and_not_empty():
    with pytest.raises(ScopeError):
        parse_scopes("   ")
    with pytest.raises(ScopeError):
        parse_scopes(" ".join(["system/Observation.rs"] * 33))
    assert [t for t, _ in parse_scopes("system/Observation.rs system/Observation.rs user/*.read")] == [
        "system/Observation.rs", "user/*.read"]


def _granted(role: str, text: str) -> list[str]:
    return [t for t, _ in grant(role, parse_scopes(text))]


def test_the_granted_scopes_are_the_requested_ones_intersected_with_the_role():
    # a practitioner: user/ and system/, no delete, no patient/ context
    assert _granted("practitioner", "patient/*.read user/Observation.cruds system/*.read") == [
        "user/Observation.crus", "system/*.read"]
    # a patient: patient/ only, read and search, and its consents in full
    assert _granted("patient", "patient/*.cruds system/*.read") == ["patient/*.rs", "patient/Consent.cruds"]
    assert _granted("patient", "patient/*.read") == ["patient/*.read"]
    assert _granted("patient", "patient/Observation.write") == []
    # a researcher and an institution: system/ read and search only
    assert _granted("researcher", "system/*.cruds user/*.read") == ["system/*.rs"]
    assert _granted("institution", "system/Observation.write") == []
    assert _granted("validator", "system/*.read") == []


def test_a_granted_scope_allows_exactly_its_types_and_permissions():
    granted = [s for _, s in grant("patient", parse_scopes("patient/*.cruds"))]
    principal = Principal(identity=ALICE.public_key, role="patient", institution=None, scopes=tuple(granted),
                          purpose="treatment", reason=None, expires_ms=NOW_MS, token_id="t")
    assert principal.may("Observation", "r") and principal.may("Consent", "c") and principal.may("Consent", "d")
    assert not principal.may("Observation", "c") and not principal.may("Observation", "d")
    assert [scope_text(s) for s in granted] == ["patient/*.rs", "patient/Consent.cruds"]


# -- the token store ---------------------------------------------------------------------------
def _principal(who: Identity, expires_ms: int) -> Principal:
    return Principal(identity=who.public_key, role="practitioner", institution=None, scopes=(), purpose="treatment",
                     reason=None, expires_ms=expires_ms, token_id="t")


def test_the_token_store_ends_tokens_at_expiry_and_bounds_each_identity():
    store = TokenStore(max_tokens=100, max_per_identity=3)
    tokens = [store.issue(_principal(ALICE, NOW_MS + 1000 + i), NOW_MS) for i in range(5)]
    other = store.issue(_principal(BOB, NOW_MS + 1000), NOW_MS)
    assert store.held_by(ALICE.public_key) == 3 and len(store) == 4
    assert store.lookup(tokens[0], NOW_MS) is None and store.lookup(tokens[4], NOW_MS) is not None
    assert store.lookup(other, NOW_MS + 999) is not None
    assert store.lookup(other, NOW_MS + 1000) is None  # expired at expires_ms
    assert store.revoke_identity(ALICE.public_key) == 3 and len(store) == 0


def test_the_token_store_drops_expired_tokens_as_it_issues_and_holds_at_most_max_tokens():
    store = TokenStore(max_tokens=2, max_per_identity=16)
    store.issue(_principal(ALICE, NOW_MS + 10), NOW_MS)
    store.issue(_principal(ALICE, NOW_MS + 20), NOW_MS)
    store.issue(_principal(BOB, NOW_MS + 100), NOW_MS + 15)  # the first expired: dropped, not counted
    assert len(store) == 2 and store.held_by(ALICE.public_key) == 1
    store.issue(_principal(BOB, NOW_MS + 100), NOW_MS + 15)
    assert len(store) == 2 and store.held_by(ALICE.public_key) == 0


# -- the client side and the options -------------------------------------------------------------
def test_make_assertion_names_the_identity_the_endpoint_and_a_short_lifetime():
    token = make_assertion(ALICE, "https://node.example/fhir/R4/auth/token", NOW_MS)
    parsed = jwt.parse(token)
    jwt.verify_eddsa(parsed, ALICE.public_key)
    claims = parsed.claims
    assert claims["iss"] == claims["sub"] == ALICE.id and claims["aud"] == "https://node.example/fhir/R4/auth/token"
    assert claims["exp"] - NOW_MS // 1000 == 60 and claims["iat"] == NOW_MS // 1000
    assert make_assertion(ALICE, "u", NOW_MS) != make_assertion(ALICE, "u", NOW_MS)  # a fresh jti each time


def test_fhir_options_are_checked():
    cfg = build_config({}, env={})
    assert cfg.fhir.enabled and cfg.fhir.token_ttl_s == 300 and cfg.fhir.base_url == ""
    assert not build_config({"fhir": {"enabled": False}}, env={}).fhir.enabled
    assert build_config({}, env={"MEDLEDGER_FHIR_BASE_URL": "https://fhir.example.org"}).fhir.base_url
    with pytest.raises(ConfigError, match="fhir.base_url"):
        build_config({"fhir": {"base_url": "https://fhir.example.org/"}}, env={})
    with pytest.raises(ConfigError, match="fhir.base_url"):
        build_config({"fhir": {"base_url": "fhir.example.org"}}, env={})
    with pytest.raises(ConfigError, match="fhir.token_ttl_s"):
        build_config({"fhir": {"token_ttl_s": 5}}, env={})
