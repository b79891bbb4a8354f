"""Signed API requests (medledger-request-v2): the message, each refusal code, the shared replay
guard and its bounds, and who may read what according to the ledger's state."""

from __future__ import annotations

import hashlib

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.api import auth
from node.api.auth import AuthError, SignedRequest, remember_nonce, sign_headers, verify_headers
from node.core.crypto import Identity
from node.core.replay import ReplayGuard, ReplayRefused

from tests.unit.app.harness import DAY, Ledger, ident

CHAIN = "test-chain"
NODE = "11" * 32  # the node the requests are sent to
OTHER_NODE = "22" * 32
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ME = Identity.from_seed(bytes(range(32)))
PATH = "/v1/patients/" + "ab" * 32 + "/audit?limit=50"


def headers(identity: Identity = ME, *, method: str = "GET", path: str = PATH, body: bytes = b"", ts: int = NOW,
            nonce: bytes = b"\x01" * 16, chain: str = CHAIN, node: str = NODE) -> dict[str, str]:
    return sign_headers(identity, chain_id=chain, node_id=node, method=method, path_qs=path, body=body, timestamp_ms=ts,
                        nonce=nonce)


def check(h: dict[str, str], *, method: str = "GET", path: str = PATH, body: bytes = b"", now: int = NOW,
          node: str = NODE) -> SignedRequest:
    return verify_headers(h, chain_id=CHAIN, node_id=node, method=method, path_qs=path, body=body, now_ms=now)


def refused(h: dict[str, str], **kw) -> tuple[int, str]:
    with pytest.raises(AuthError) as err:
        check(h, **kw)
    return err.value.status, err.value.code


def test_the_signed_message_is_the_eight_lines_of_the_contract():
    h = headers(body=b"{}")
    expected = "\n".join(["medledger-request-v2", CHAIN, NODE, "GET", PATH, str(NOW), "01" * 16,
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


VECTOR_SIGNATURE = ("92380fe6c913109d99cbbe89639b3461ad44073c9ef6ae74fa3b3c50d85b86e3"
                    "76fe309e0287c116104139093a53cf4e35038e1d3131926d5c82756a6fea4102")


def test_a_request_signed_for_one_node_is_a_bad_signature_at_another():
    assert check(headers()).signer == ME.public_key
    assert refused(headers(), node=OTHER_NODE) == (401, "bad_signature")
    assert refused(headers(node=OTHER_NODE)) == (401, "bad_signature")


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


def test_freshness_window_is_120_seconds_back_and_5_seconds_ahead():
    assert check(headers(ts=NOW - 120_000)).timestamp_ms == NOW - 120_000
    assert check(headers(ts=NOW + 5_000)).timestamp_ms == NOW + 5_000
    assert refused(headers(ts=NOW - 120_001)) == (401, "stale_request")
    assert refused(headers(ts=NOW + 5_001)) == (401, "future_request")
    assert refused(headers(ts=NOW + 120_000)) == (401, "future_request")


def req(nonce: int, signer: Identity = ME, ts: int = NOW) -> SignedRequest:
    return SignedRequest(signer=signer.public_key, timestamp_ms=ts, nonce=nonce.to_bytes(16, "big"))


def remembered(guard: ReplayGuard, r: SignedRequest, now: int) -> tuple[int, str] | None:
    try:
        remember_nonce(guard, r, now)
    except AuthError as exc:
        return exc.status, exc.code
    return None


def test_a_nonce_is_accepted_once_per_signer_within_the_window():
    guard = ReplayGuard()
    assert remembered(guard, req(1), NOW) is None
    assert remembered(guard, req(1), NOW + 60_000) == (401, "replayed_request")
    assert remembered(guard, req(1, Identity.from_seed(b"\x02" * 32)), NOW) is None  # another signer's nonce space
    assert remembered(guard, req(2), NOW) is None
    assert len(guard) == 3


def test_a_signer_at_its_bound_is_rate_limited_until_old_nonces_expire():
    guard = ReplayGuard(window_ms=1_000, future_ms=0, max_per_requester=3, max_total=100)
    for n in range(3):
        assert remembered(guard, req(n), NOW) is None
    assert remembered(guard, req(9), NOW + 500) == (429, "rate_limited")
    assert remembered(guard, req(0), NOW + 500) == (401, "replayed_request")  # a replay is still a replay
    assert remembered(guard, req(9), NOW + 1_001) is None  # the first three left the window
    assert len(guard) == 1 and guard.held_by(ME.public_key) == 1


def test_the_total_bound_holds_and_expired_entries_leave():
    guard = ReplayGuard(window_ms=1_000, future_ms=0, max_per_requester=2, max_total=4)
    signers = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 6)]
    for s in signers[:4]:
        assert remembered(guard, req(1, s), NOW) is None
    assert remembered(guard, req(1, signers[4]), NOW + 10) == (429, "rate_limited") and len(guard) == 4
    assert remembered(guard, req(1, signers[4]), NOW + 2_000) is None
    assert len(guard) == 1


def test_a_nonce_is_kept_for_the_whole_window_of_a_request_dated_ahead():
    """A request dated at the edge of the future allowance stays acceptable for window + allowance
    after it arrives: its nonce must be kept that long, or it could be replayed."""
    guard = ReplayGuard(window_ms=1_000, future_ms=100)
    guard.check(ME.public_key, b"n" * 16, NOW + 100, NOW)
    replay_at = NOW + 1_100  # still fresh: NOW + 100 is exactly window old
    guard.check_time(NOW + 100, replay_at)
    with pytest.raises(ReplayRefused) as err:
        guard.remember(ME.public_key, b"n" * 16, replay_at)
    assert err.value.code == "replayed_request"


def test_expiry_walks_only_what_expired():
    """O(1) expiry: remembering one nonce after many expired pops them, and a table at its bound
    never rebuilds itself on each request (the flood of issue 15 finding 7)."""
    guard = ReplayGuard(window_ms=1_000, future_ms=0, max_per_requester=10, max_total=20_000)
    for i in range(20_000):
        guard.remember(i.to_bytes(32, "big"), b"x" * 16, NOW)
    with pytest.raises(ReplayRefused) as err:  # full: refused at once, nothing rebuilt, nothing forgotten
        guard.remember(b"\xff" * 32, b"x" * 16, NOW + 1)
    assert err.value.code == "busy" and len(guard) == 20_000
    guard.remember(b"\xff" * 32, b"x" * 16, NOW + 1_001)
    assert len(guard) == 1


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
    assert not auth.may_read_record(state, other.public_key, b"\x00" * 32, now)  # unknown: the same refusal

    code, request_tx = ledger.request(doc_b, obs)  # denied without consent, but recorded
    assert code == "denied"
    for who in (doc_b, ident("B"), pat, parent, ident("A")):
        assert auth.may_read_access(state, who.public_key, request_tx), who.id
    for who in (other, doc_c, ident("C"), doc_a):
        assert not auth.may_read_access(state, who.public_key, request_tx), who.id
    assert not auth.may_read_access(state, other.public_key, b"\x00" * 32)


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
    client._learned = (CHAIN, NODE)
    assert client.get(PATH, signer=ME) == {"ok": True}
    req = seen[0]
    assert req.full_url == "http://node.example/medledger" + PATH
    from multidict import CIMultiDict  # header names are case-insensitive, as in aiohttp

    got = verify_headers(CIMultiDict(req.header_items()), chain_id=CHAIN, node_id=NODE,
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
        assert exc.status == 401 and exc.code in ("signature_required", "bad_signature", "stale_request", "future_request")
    else:  # only a real signature gets through, and random text is not one
        pytest.fail(f"accepted {got}")
