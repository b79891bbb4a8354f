"""Signed API requests (medledger-request-v1): the message, each refusal code, the replay cache
and its bounds, and who may read what according to the ledger's state."""

from __future__ import annotations

import hashlib

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import auth
from node.auth import AuthError, NonceCache, SignedRequest, sign_headers, verify_headers
from node.core.crypto import Identity

from tests.unit.app.harness import DAY, Ledger, ident

CHAIN = "test-chain"
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ME = Identity.from_seed(bytes(range(32)))
PATH = "/v1/patients/" + "ab" * 32 + "/audit?limit=50"


def headers(identity: Identity = ME, *, method: str = "GET", path: str = PATH, body: bytes = b"", ts: int = NOW,
            nonce: bytes = b"\x01" * 16, chain: str = CHAIN) -> dict[str, str]:
    return sign_headers(identity, chain_id=chain, method=method, path_qs=path, body=body, timestamp_ms=ts, nonce=nonce)


def check(h: dict[str, str], *, method: str = "GET", path: str = PATH, body: bytes = b"", now: int = NOW) -> SignedRequest:
    return verify_headers(h, chain_id=CHAIN, method=method, path_qs=path, body=body, now_ms=now)


def refused(h: dict[str, str], **kw) -> tuple[int, str]:
    with pytest.raises(AuthError) as err:
        check(h, **kw)
    return err.value.status, err.value.code


def test_the_signed_message_is_the_seven_lines_of_the_contract():
    h = headers(body=b"{}")
    expected = "\n".join(["medledger-request-v1", CHAIN, "GET", PATH, str(NOW), "01" * 16,
                          hashlib.sha256(b"{}").hexdigest()]).encode()
    # verified by PyNaCl directly, not by our own code
    nacl.signing.VerifyKey(ME.public_key).verify(expected, bytes.fromhex(h["X-MedLedger-Signature"]))
    assert h["X-MedLedger-Signer"] == ME.id and h["X-MedLedger-Timestamp"] == str(NOW)
    assert h["X-MedLedger-Nonce"] == "01" * 16 and len(h["X-MedLedger-Signature"]) == 128


def test_a_fixed_vector_for_other_implementations():
    """The vector docs/api.md gives to the web UI and other clients (Ed25519 is deterministic)."""
    h = headers(path="/v1/patients/" + ME.id + "/audit", nonce=bytes(range(16)))
    assert ME.id == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert h["X-MedLedger-Signature"] == VECTOR_SIGNATURE


VECTOR_SIGNATURE = ("98dcdfeeb7c99bcf8d0d74edb894b7cd29d1143b998619c013e4626ef4fc1eb7"
                    "b748011abbcd4958ad570ba582c7f9ed2f00a4b38673905208069a316657270b")


def test_a_good_request_verifies_and_says_who_signed():
    got = check(headers())
    assert got == SignedRequest(signer=ME.public_key, timestamp_ms=NOW, nonce=b"\x01" * 16)
    # the empty body hashes as the empty string, whatever the method
    assert check(headers(method="POST", body=b""), method="POST").signer == ME.public_key


@pytest.mark.parametrize("missing", auth.HEADERS)
def test_each_missing_header_is_signature_required(missing):
    h = headers()
    del h[missing]
    assert refused(h) == (401, "signature_required")
    h[missing] = ""
    assert refused(h) == (401, "signature_required")
    assert refused({}) == (401, "signature_required")


@pytest.mark.parametrize(("header", "value"), [
    ("X-MedLedger-Signer", "xyz"),
    ("X-MedLedger-Signer", "ab" * 31),
    ("X-MedLedger-Timestamp", "-5"),
    ("X-MedLedger-Timestamp", "12.5"),
    ("X-MedLedger-Timestamp", "9" * 40),
    ("X-MedLedger-Nonce", "00" * 15),
    ("X-MedLedger-Nonce", "zz" * 16),
    ("X-MedLedger-Signature", "00" * 63),
    ("X-MedLedger-Signature", "00" * 64),
])
def test_malformed_headers_are_bad_signature(header, value):
    h = headers()
    h[header] = value
    assert refused(h) == (401, "bad_signature")


@pytest.mark.parametrize("change", [
    {"method": "POST"},
    {"path": PATH.replace("limit=50", "limit=51")},
    {"path": "/v1/patients/" + "cd" * 32 + "/audit?limit=50"},
    {"body": b"x"},
])
def test_a_request_that_differs_from_what_was_signed_is_bad_signature(change):
    assert refused(headers(), **change) == (401, "bad_signature")


def test_a_forged_signer_a_wrong_chain_and_a_moved_timestamp_are_bad_signature():
    h = headers()
    h["X-MedLedger-Signer"] = Identity.from_seed(b"\x09" * 32).id  # claims another identity
    assert refused(h) == (401, "bad_signature")
    assert refused(headers(chain="other-chain")) == (401, "bad_signature")
    h = headers()
    h["X-MedLedger-Timestamp"] = str(NOW + 1)
    assert refused(h) == (401, "bad_signature")


def test_freshness_window_is_120_seconds_either_way():
    assert check(headers(ts=NOW - 120_000)).timestamp_ms == NOW - 120_000
    assert check(headers(ts=NOW + 120_000)).timestamp_ms == NOW + 120_000
    assert refused(headers(ts=NOW - 120_001)) == (401, "stale_request")
    assert refused(headers(ts=NOW + 120_001)) == (401, "stale_request")


def req(nonce: int, signer: Identity = ME, ts: int = NOW) -> SignedRequest:
    return SignedRequest(signer=signer.public_key, timestamp_ms=ts, nonce=nonce.to_bytes(16, "big"))


def test_a_nonce_is_accepted_once_per_signer_within_the_window():
    cache = NonceCache()
    cache.check(req(1), NOW)
    with pytest.raises(AuthError) as err:
        cache.check(req(1), NOW + 60_000)
    assert (err.value.status, err.value.code) == (401, "replayed_request")
    cache.check(req(1, Identity.from_seed(b"\x02" * 32)), NOW)  # another signer's nonce space
    cache.check(req(2), NOW)
    assert len(cache) == 3


def test_a_signer_at_its_bound_is_rate_limited_until_old_nonces_expire():
    cache = NonceCache(window_ms=1_000, max_per_signer=3, max_total=100)
    for n in range(3):
        cache.check(req(n), NOW)
    with pytest.raises(AuthError) as err:
        cache.check(req(9), NOW + 500)
    assert (err.value.status, err.value.code) == (429, "rate_limited")
    with pytest.raises(AuthError) as err:
        cache.check(req(0), NOW + 500)  # a replay is still a replay
    assert err.value.code == "replayed_request"
    cache.check(req(9), NOW + 1_001)  # the first three left the window
    assert len(cache) == 1


def test_the_total_bound_holds_and_expired_entries_are_swept():
    cache = NonceCache(window_ms=1_000, max_per_signer=2, max_total=4)
    signers = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 6)]
    for s in signers[:4]:
        cache.check(req(1, s), NOW)
    with pytest.raises(AuthError) as err:
        cache.check(req(1, signers[4]), NOW + 10)
    assert err.value.code == "rate_limited" and len(cache) == 4
    cache.check(req(1, signers[4]), NOW + 2_000)
    assert len(cache) == 1


# -- who may read what ---------------------------------------------------------------------------
@pytest.fixture
def world():
    ledger = Ledger()
    pat, parent, other = ledger.patient("pat"), ledger.patient("parent"), ledger.patient("other")
    assert ledger.send(pat, "patient.set_guardian", {"guardian": parent.public_key}) == "ok"
    doc_a, doc_b, doc_c = ledger.staff("doc-a", "A"), ledger.staff("doc-b", "B"), ledger.staff("doc-c", "C")
    obs = ledger.add_record(doc_a, pat, "obs-1", custodian="A")
    return ledger, pat, parent, other, doc_a, doc_b, doc_c, obs


def test_a_patients_file_is_read_by_the_patient_and_its_guardian_and_others_see_their_part(world):
    ledger, pat, parent, other, doc_a, doc_b, doc_c, obs = world
    state, now = ledger.state, ledger.now

    def may(who: Identity) -> bool:
        return auth.may_read_patient(state, who.public_key, pat.public_key, now)

    assert may(pat) and may(parent)
    assert not any(may(x) for x in (other, doc_a, doc_b, ident("A"), ident("B"), doc_c))
    second = ledger.add_record(doc_a, pat, "obs-2", custodian="A")
    # the custodian and the author see the records they hold or wrote, never the whole file
    assert [r["id"] for r in auth.readable_records(state, ident("A").public_key, pat.public_key, now)] == [obs.hex(), second.hex()]
    assert auth.readable_records(state, doc_b.public_key, pat.public_key, now) == []
    # doc-b gets a committed grant on one record through a consent: that record, until it expires
    code, _ = ledger.grant(pat, ident("B").public_key, kind="institution", records=[obs], types=())
    assert code == "ok"
    code, request_tx = ledger.request(doc_b, obs)
    assert code == "ok"
    now = ledger.now
    assert [r["id"] for r in auth.readable_records(state, doc_b.public_key, pat.public_key, now)] == [obs.hex()]
    assert auth.readable_records(state, doc_b.public_key, pat.public_key, now + 400 * DAY) == []
    assert not auth.may_read_patient(state, doc_b.public_key, pat.public_key, now)
    # consents: the patient sees all, doc-b and B the one naming B, doc-c none
    assert len(auth.readable_consents(state, pat.public_key, pat.public_key, now)) == 1
    assert len(auth.readable_consents(state, doc_b.public_key, pat.public_key, now)) == 1
    assert len(auth.readable_consents(state, ident("B").public_key, pat.public_key, now)) == 1
    assert auth.readable_consents(state, doc_c.public_key, pat.public_key, now) == []
    # a patient reads its own data, not another's
    assert not auth.may_read_patient(state, pat.public_key, other.public_key, now)


def test_record_metadata_and_access_decisions(world):
    ledger, pat, parent, other, doc_a, doc_b, doc_c, obs = world
    state, now = ledger.state, ledger.now
    for who in (pat, parent, doc_a, ident("A")):
        assert auth.may_read_record(state, who.public_key, obs, now)
    for who in (other, doc_b, ident("B")):
        assert not auth.may_read_record(state, who.public_key, obs, now)
    assert auth.may_read_record(state, other.public_key, b"\x00" * 32, now)  # unknown: the route's 404

    code, request_tx = ledger.request(doc_b, obs)  # denied without consent, but recorded
    assert code == "denied"
    for who in (doc_b, ident("B"), pat, parent, ident("A")):
        assert auth.may_read_access(state, who.public_key, request_tx), who.id
    for who in (other, doc_c, ident("C"), doc_a):
        assert not auth.may_read_access(state, who.public_key, request_tx), who.id
    assert auth.may_read_access(state, other.public_key, b"\x00" * 32)


def test_an_institutions_reports_are_its_own():
    a, b = ident("A").public_key, ident("B").public_key
    assert auth.may_read_institution(a, a) and not auth.may_read_institution(b, a)


def test_the_client_signs_the_path_the_server_sees(monkeypatch):
    """Behind a reverse proxy under a prefix, the signed path includes the prefix."""
    import io
    import time as _time
    import urllib.request

    from node.client import Client

    seen = []

    def fake_urlopen(req, timeout, context):
        seen.append(req)
        return io.BytesIO(b'{"ok": true}')

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    client = Client("http://node.example/medledger/")
    client._chain_id = CHAIN
    assert client.get(PATH, signer=ME) == {"ok": True}
    req = seen[0]
    assert req.full_url == "http://node.example/medledger" + PATH
    from multidict import CIMultiDict  # header names are case-insensitive, as in aiohttp

    got = verify_headers(CIMultiDict(req.header_items()), chain_id=CHAIN,
                         method="GET", path_qs="/medledger" + PATH, body=b"", now_ms=_time.time_ns() // 1_000_000)
    assert got.signer == ME.public_key
    client.get("/v1/status")
    assert not any(h.lower().startswith("x-medledger") for h, _ in seen[1].header_items())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from([*auth.HEADERS, "X-Other"]), st.text(max_size=140), max_size=5),
       st.text(max_size=60), st.binary(max_size=64))
def test_any_headers_give_a_verdict_never_a_crash(h, path, body):
    try:
        got = check(h, path=path, body=body)
    except AuthError as exc:
        assert exc.status == 401 and exc.code in ("signature_required", "bad_signature", "stale_request")
    else:  # only a real signature gets through, and random text is not one
        pytest.fail(f"accepted {got}")
