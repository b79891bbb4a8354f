"""The SMART Backend Services token endpoint and the bearer check, through the HTTP API of an
in-process node: a practitioner, a patient, a researcher and an institution get tokens bound to
their ledger identity; every refusal of the assertion and of the form; a token that expired or
whose key was rotated away is refused with a 401 OperationOutcome."""

from __future__ import annotations

import logging

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app.types.identity import attest
from node.app.types.validator_rotate import rotation_message
from node.core.crypto import Identity
from node.fhir import jwt
from node.fhir.bearer import require_principal, require_scope
from node.fhir.client_assertion import make_assertion, token_form
from node.fhir.smart import TOKEN_PATH, install_smart
from node.home.config import build_config
from node.runtime.runtime import Node

from tests.helpers import CHAIN, TxPoster, make_node

SEED = b"\x07" * 32
INSTITUTION = Identity.from_seed(SEED)  # the node's own key: validator and institution
PATIENT = Identity.from_seed(b"\x51" * 32)
DOCTOR = Identity.from_seed(b"\x52" * 32)
RESEARCHER = Identity.from_seed(b"\x53" * 32)
STRANGER = Identity.from_seed(b"\x54" * 32)  # never registered
NEW_KEY = Identity.from_seed(b"\x55" * 32)  # the institution's key after rotation
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def whoami(request: web.Request) -> web.StreamResponse:
    """A stand-in FHIR route: the bearer check, then the scope check the query asks for."""
    principal = require_principal(request)
    if "type" in request.query:
        require_scope(principal, request.query["type"], request.query.get("perm", "r"))
    return web.json_response({"identity": principal.identity.hex(), "role": principal.role,
                              "purpose": principal.purpose, "reason": principal.reason,
                              "institution": principal.institution.hex() if principal.institution else None,
                              "expires_ms": principal.expires_ms})


class World(TxPoster):
    """The node, its API, and the identities registered on its ledger."""

    def __init__(self, client: TestClient, node: Node) -> None:
        super().__init__(client)
        self.node = node
        self.url = str(client.make_url(TOKEN_PATH))

    async def register(self) -> None:
        for who, role in ((PATIENT, "patient"), (DOCTOR, "practitioner"), (RESEARCHER, "researcher")):
            body = {"role": role, "institution": INSTITUTION.public_key,
                    "attestation": attest(INSTITUTION, chain_id=CHAIN, registrant=who.public_key, role=role)}
            got = await self.tx(who, "identity.register", body)
            assert got["result"] == "ok", got

    def assertion(self, who: Identity, **kw: Any) -> str:
        return make_assertion(who, self.url, self.node.clock_ms(), **kw)

    async def token(self, form: dict[str, str] | str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
        resp = await self.client.post(TOKEN_PATH, data=form, headers=headers or FORM)
        return resp.status, await resp.json(), resp.headers

    async def ask(self, who: Identity, scope: str, purpose: str | None = None, reason: str | None = None,
                  **kw: Any) -> tuple[int, dict[str, Any]]:
        status, body, _ = await self.token(token_form(self.assertion(who, **kw), scope, purpose, reason))
        return status, body

    async def whoami(self, token: str, query: str = "") -> tuple[int, dict[str, Any], Any]:
        resp = await self.client.get(f"/fhir/R4/whoami{query}", headers={"Authorization": f"Bearer {token}"})
        return resp.status, json.loads(await resp.text()), resp.headers


@asynccontextmanager
async def running(tmp_path: Path, fhir: dict[str, Any] | None = None) -> AsyncIterator[World]:
    cfg = build_config({"consensus": {"empty_block_interval_ms": 50}, "fhir": fhir or {}}, env={})
    node = make_node(tmp_path / "db", config=cfg, seed=SEED)
    app = make_app(node, extra_routes=[web.get("/fhir/R4/whoami", whoami)], mounts=[install_smart])
    client = TestClient(TestServer(app))
    await client.start_server()
    node.start()
    try:
        world = World(client, node)
        await world.register()
        yield world
    finally:
        node.stop()
        await client.close()
        node.store.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with running(tmp_path) as w:
        yield w


def refused(status: int, body: dict[str, Any], want_status: int, error: str, code: str) -> bool:
    assert (status, body.get("error"), body.get("medledger_code")) == (want_status, error, code), body
    assert body["error_description"]
    return True


# -- tokens issued -----------------------------------------------------------------------------
async def test_a_practitioner_gets_a_token_bound_to_its_identity_and_purpose(world):
    status, body = await world.ask(DOCTOR, "user/Observation.rs system/*.read", "TREAT")
    assert status == 200, body
    assert body["token_type"] == "bearer" and body["expires_in"] == 300 and body["purpose_of_use"] == "TREAT"
    assert body["scope"] == "user/Observation.rs system/*.read" and "patient" not in body
    status, who, _ = await world.whoami(body["access_token"])
    assert status == 200
    assert (who["identity"], who["role"], who["purpose"], who["institution"]) == (
        DOCTOR.id, "practitioner", "treatment", INSTITUTION.id)


async def test_a_patient_gets_a_token_naming_itself_as_the_patient(world):
    status, body = await world.ask(PATIENT, "patient/*.read")
    assert status == 200, body
    assert body["patient"] == PATIENT.id and body["purpose_of_use"] == "TREAT" and body["scope"] == "patient/*.read"
    status, who, _ = await world.whoami(body["access_token"])
    assert (status, who["role"], who["institution"], who["purpose"]) == (200, "patient", None, "treatment")
    status, body = await world.ask(PATIENT, "patient/*.read", "HRESCH")
    assert refused(status, body, 400, "invalid_request", "purpose_not_allowed")


async def test_the_log_says_a_token_was_issued_but_not_to_which_patient(world, caplog):
    with caplog.at_level(logging.INFO, logger="medledger"):
        status, body = await world.ask(PATIENT, "patient/*.read")
        assert status == 200, body
        status, body = await world.ask(DOCTOR, "user/Observation.rs", "TREAT")
        assert status == 200, body
    issued = [r.getMessage() for r in caplog.records if "issued FHIR access token" in r.getMessage()]
    assert len(issued) == 2
    assert all(PATIENT.id[:16] not in line for line in caplog.messages) and "a patient (patient)" in issued[0]
    assert DOCTOR.id[:16] in issued[1] and all(body["access_token"] not in line for line in caplog.messages)


async def test_the_granted_scopes_are_the_requested_ones_the_role_may_hold(world):
    status, body = await world.ask(DOCTOR, "patient/*.read user/Observation.cruds", "TREAT")
    assert (status, body["scope"]) == (200, "user/Observation.crus")
    status, body = await world.ask(PATIENT, "patient/*.cruds system/*.read")
    assert (status, body["scope"]) == (200, "patient/*.rs patient/Consent.cruds")
    token = body["access_token"]
    assert (await world.whoami(token, "?type=Consent&perm=c"))[0] == 200
    status, outcome, headers = await world.whoami(token, "?type=Observation&perm=c")
    assert status == 403 and outcome["issue"][0]["details"]["coding"][0]["code"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    status, body = await world.ask(RESEARCHER, "system/*.cruds user/*.read", "HRESCH")
    assert (status, body["scope"]) == (200, "system/*.rs")
    status, body = await world.ask(RESEARCHER, "user/*.read", "HRESCH")
    assert refused(status, body, 400, "invalid_scope", "scope_not_granted")
    status, body = await world.ask(RESEARCHER, "system/*.read", "TREAT")
    assert refused(status, body, 400, "invalid_request", "purpose_not_allowed")


async def test_break_glass_needs_a_coded_reason_and_carries_it(world):
    status, body = await world.ask(DOCTOR, "user/*.read", "ETREAT")
    assert refused(status, body, 400, "invalid_request", "breakglass_reason_required")
    status, body = await world.ask(DOCTOR, "user/*.read", "ETREAT", "he looked unwell")
    assert refused(status, body, 400, "invalid_request", "reason_not_coded")
    status, body = await world.ask(DOCTOR, "user/*.read", "TREAT", "unconscious")
    assert refused(status, body, 400, "invalid_request", "reason_without_breakglass")
    status, body = await world.ask(DOCTOR, "user/*.read", "ETREAT", "unconscious")
    assert status == 200 and body["reason"] == "unconscious"
    _, who, _ = await world.whoami(body["access_token"])
    assert (who["purpose"], who["reason"]) == ("emergency", "unconscious")


async def test_a_purpose_is_required_and_must_be_a_known_code(world):
    status, body = await world.ask(DOCTOR, "user/*.read")
    assert refused(status, body, 400, "invalid_request", "purpose_required")
    status, body = await world.ask(DOCTOR, "user/*.read", "treatment")
    assert refused(status, body, 400, "invalid_request", "unknown_purpose")
    status, body = await world.ask(DOCTOR, "user/*.read", "http://terminology.hl7.org/CodeSystem/v3-ActReason|HPAYMT")
    assert (status, body.get("purpose_of_use")) == (200, "HPAYMT")


async def test_unknown_scope_syntax_is_refused(world):
    for scope in ("launch openid", "user/Observaton.rs", "user/Observation.rs?category=laboratory", ""):
        status, body = await world.ask(DOCTOR, scope, "TREAT")
        assert refused(status, body, 400, "invalid_scope", "invalid_scope")


# -- the assertion refused ---------------------------------------------------------------------
def _signed(who: Identity, header: dict[str, Any], claims: dict[str, Any]) -> str:
    head = jwt.b64url_encode(json.dumps(header).encode())
    body = jwt.b64url_encode(json.dumps(claims).encode())
    return f"{head}.{body}.{jwt.b64url_encode(who.sign(f'{head}.{body}'.encode()))}"


def _claims(world: World, who: Identity, **changes: Any) -> dict[str, Any]:
    now_s = world.node.clock_ms() // 1000
    claims = {"iss": who.id, "sub": who.id, "aud": world.url, "exp": now_s + 60, "jti": f"jti-{now_s}-{who.id[:8]}"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def _send(world: World, assertion: str) -> tuple[int, dict[str, Any]]:
    status, body, headers = await world.token(token_form(assertion, "user/*.read", "TREAT"))
    assert headers["Cache-Control"] == "no-store"
    return status, body


async def test_each_bad_assertion_is_refused_as_invalid_client(world):
    now_s = world.node.clock_ms() // 1000
    eddsa = {"alg": "EdDSA", "typ": "JWT"}
    payload = jwt.b64url_encode(json.dumps(_claims(world, DOCTOR)).encode())
    hmac_like = jwt.b64url_encode(b'{"alg":"HS256"}') + f".{payload}.c2ln"
    unsigned = jwt.b64url_encode(b'{"alg":"none"}') + f".{payload}."
    cases: list[tuple[str, str]] = [
        (hmac_like, "unsupported_alg"),
        (unsigned, "unsupported_alg"),
        (_signed(DOCTOR, {"alg": "ES256"}, _claims(world, DOCTOR)), "unsupported_alg"),
        (_signed(STRANGER, eddsa, _claims(world, DOCTOR)), "bad_jwt_signature"),  # iss DOCTOR, signed by another key
        (_signed(STRANGER, eddsa, _claims(world, STRANGER)), "unknown_identity"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, sub=PATIENT.id)), "issuer_subject_mismatch"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, iss="doctor", sub="doctor")), "bad_issuer"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, aud="https://other.example/fhir/R4/auth/token")), "wrong_audience"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, aud=None)), "wrong_audience"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, exp=now_s - 1)), "assertion_expired"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, exp=now_s + 3600)), "assertion_exp_too_far"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, exp=None)), "assertion_time_invalid"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, exp=str(now_s + 60))), "assertion_time_invalid"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, nbf=now_s + 120)), "assertion_not_yet_valid"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, jti=None)), "jti_required"),
        (_signed(DOCTOR, eddsa, _claims(world, DOCTOR, jti="has space")), "jti_required"),
        ("not-a-jwt", "malformed_jwt"),
    ]
    for assertion, code in cases:
        status, body = await _send(world, assertion)
        assert refused(status, body, 401, "invalid_client", code), code
    # the audience may be a list naming this endpoint; the kid is optional and not relied on
    status, body = await _send(world, _signed(DOCTOR, {**eddsa, "kid": "any"},
                                              _claims(world, DOCTOR, aud=["https://x.example", world.url])))
    assert status == 200, body


async def test_an_assertion_is_good_for_one_token_and_a_refused_one_is_not_remembered(world):
    assertion = world.assertion(DOCTOR, jti="once")
    status, body, _ = await world.token(token_form(assertion, "patient/*.read", "TREAT"))
    assert refused(status, body, 400, "invalid_scope", "scope_not_granted")  # refused: its jti is not kept
    status, body, _ = await world.token(token_form(assertion, "user/*.read", "TREAT"))
    assert status == 200, body
    status, body, _ = await world.token(token_form(assertion, "user/*.read", "TREAT"))
    assert refused(status, body, 401, "invalid_client", "replayed_assertion")
    # the same jti from another identity is another assertion
    assert (await world.ask(PATIENT, "patient/*.read", jti="once"))[0] == 200


async def test_the_form_is_checked(world):
    good = token_form(world.assertion(DOCTOR), "user/*.read", "TREAT")
    status, body, _ = await world.token({**good, "grant_type": "authorization_code"})
    assert refused(status, body, 400, "unsupported_grant_type", "unsupported_grant_type")
    status, body, _ = await world.token({**good, "client_assertion_type": "urn:x"})
    assert refused(status, body, 401, "invalid_client", "unsupported_assertion_type")
    status, body, _ = await world.token({k: v for k, v in good.items() if k != "client_assertion"})
    assert refused(status, body, 401, "invalid_client", "assertion_required")
    status, body, _ = await world.token({**good, "client_id": PATIENT.id})
    assert refused(status, body, 401, "invalid_client", "client_id_mismatch")
    status, body, _ = await world.token("grant_type=client_credentials&grant_type=client_credentials")
    assert refused(status, body, 400, "invalid_request", "malformed_form")
    status, body, _ = await world.token("a=" + "x" * 9000)
    assert refused(status, body, 413, "invalid_request", "body_too_large")
    status, body, _ = await world.token(json.dumps(good), headers={"Content-Type": "application/json"})
    assert refused(status, body, 415, "invalid_request", "form_required")
    status, body, _ = await world.token({**good, "reason": "r" * 300})
    assert refused(status, body, 400, "invalid_request", "malformed_form")
    status, body, _ = await world.token("&".join(f"f{i}=1" for i in range(20)))
    assert refused(status, body, 400, "invalid_request", "malformed_form")


# -- the bearer check --------------------------------------------------------------------------
async def test_no_token_a_wrong_one_and_an_expired_one_get_a_401_outcome(world):
    resp = await world.client.get("/fhir/R4/whoami")
    outcome = await resp.json(content_type=None)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="medledger-fhir"'
    assert resp.content_type == "application/fhir+json"
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "token_required"
    for token in ("not-issued-here", "bad token!"):
        status, outcome, headers = await world.whoami(token)
        assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
        assert outcome["issue"][0]["code"] == "login"
    status, body = await world.ask(DOCTOR, "user/*.read", "TREAT")
    token = body["access_token"]
    assert (await world.whoami(token))[0] == 200
    real = world.node.clock_ms
    world.node.clock_ms = lambda: real() + 300_000  # the token's lifetime later
    status, outcome, headers = await world.whoami(token)
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "invalid_token"
    world.node.clock_ms = real
    assert (await world.whoami(token))[0] == 401  # it is gone, not only late


async def test_a_rotated_key_gets_no_token_and_loses_the_ones_it_had(world):
    status, body = await world.ask(INSTITUTION, "system/*.read", "HOPERAT")
    assert (status, body.get("scope")) == (200, "system/*.read"), body
    token = body["access_token"]
    proof = NEW_KEY.sign(rotation_message(CHAIN, INSTITUTION.public_key, NEW_KEY.public_key))
    got = await world.tx(INSTITUTION, "validator.rotate", {"new_key": NEW_KEY.public_key, "proof": proof})
    assert got["result"] == "ok", got
    status, body = await world.ask(INSTITUTION, "system/*.read", "HOPERAT")
    assert refused(status, body, 401, "invalid_client", "key_rotated")
    status, outcome, _ = await world.whoami(token)
    assert status == 401 and "rotated" in outcome["issue"][0]["diagnostics"]
    status, body = await world.ask(NEW_KEY, "system/*.read", "HOPERAT")  # the current key is the institution now
    assert status == 200, body


# -- discovery, audience, rate -------------------------------------------------------------------
async def test_the_smart_configuration_names_the_token_endpoint(world):
    for path in ("/.well-known/smart-configuration", "/fhir/R4/.well-known/smart-configuration"):
        resp = await world.client.get(path)
        conf = await resp.json()
        assert resp.status == 200 and conf["token_endpoint"] == world.url
        assert conf["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert conf["token_endpoint_auth_signing_alg_values_supported"] == ["EdDSA"]
        assert conf["grant_types_supported"] == ["client_credentials"]
        assert "client-confidential-asymmetric" in conf["capabilities"]
        assert "ETREAT" in conf["medledger"]["purposes_of_use"] and "unconscious" in conf["medledger"]["breakglass_reasons"]


async def test_with_a_public_url_configured_only_it_is_the_audience(tmp_path):
    public = "https://fhir.example.org"
    async with running(tmp_path, {"base_url": public}) as w:
        status, body = await w.ask(DOCTOR, "user/*.read", "TREAT")  # aud: the URL as reached
        assert refused(status, body, 401, "invalid_client", "wrong_audience")
        assert public + TOKEN_PATH in body["error_description"]
        assertion = make_assertion(DOCTOR, public + TOKEN_PATH, w.node.clock_ms())
        status, body, _ = await w.token(token_form(assertion, "user/*.read", "TREAT"))
        assert status == 200, body
        conf = await (await w.client.get("/.well-known/smart-configuration")).json()
        assert conf["token_endpoint"] == public + TOKEN_PATH


async def test_token_requests_are_rate_limited_per_address(tmp_path):
    async with running(tmp_path, {"token_rate_per_ip": 1, "token_burst_per_ip": 2}) as w:
        answers = [await w.ask(DOCTOR, "user/*.read", "TREAT") for _ in range(3)]
        assert [a[0] for a in answers[:2]] == [200, 200]
        status, body, headers = await w.token(token_form(w.assertion(DOCTOR), "user/*.read", "TREAT"))
        assert refused(status, body, 429, "temporarily_unavailable", "rate_limited")
        assert int(headers["Retry-After"]) >= 1


def test_the_daemon_mounts_the_fhir_routes_unless_disabled(tmp_path):
    from node.daemon import api_mounts
    from node.records.custodian import Custodian
    from storage.kv import MemoryStore
    from storage.offchain import OffchainStore

    def routes(cfg: Any) -> set[str]:
        app = make_app(node, custodian=Custodian(node, OffchainStore(MemoryStore())), mounts=api_mounts(cfg))
        return {r.resource.canonical for r in app.router.routes() if r.resource is not None}

    node = make_node(tmp_path / "db", seed=SEED)
    try:
        assert {TOKEN_PATH, "/fhir/R4/metadata"} <= routes(build_config({}, env={}))
        assert not {r for r in routes(build_config({"fhir": {"enabled": False}}, env={})) if r.startswith("/fhir")}
    finally:
        node.store.close()


async def test_the_worked_example_of_docs_fhir_md_builds_an_assertion_the_node_accepts(world):
    text = (Path(__file__).resolve().parents[3] / "docs" / "fhir.md").read_text()
    code = text.split("### Worked example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {"__name__": "docs_fhir_example"}
    exec(compile(code, "docs/fhir.md", "exec"), namespace)  # defines the functions; its __main__ part does not run
    assertion = namespace["client_assertion"](DOCTOR.seed, world.url, world.node.clock_ms() // 1000)
    status, body, _ = await world.token(token_form(assertion, "user/Observation.rs user/Patient.rs", "TREAT"))
    assert (status, body.get("scope")) == (200, "user/Observation.rs user/Patient.rs"), body
