"""Envelope encryption, FHIR validation, signed custodian messages, replay protection."""

import json

import pytest

from node.core.crypto import Identity
from node.records.envelope import EnvelopeError, decrypt, seal_record, unwrap_key, wrap_key
from node.records.fhir import FhirInvalid, parse_resource
from node.records.protocol import Fetch, ProtocolError, Release, Upload
from node.core.replay import ReplayGuard, ReplayRefused
from node.core.encoding import decode

CHAIN = "c"
OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
       "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 72, "unit": "beats/min"}}


def test_seal_and_open_for_each_reader_only():
    patient, custodian, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    ct, wrapped = seal_record(b"secret-marker", {"patient": patient.public_key, "custodian": custodian.public_key})
    assert b"secret-marker" not in ct
    for who, ident in (("patient", patient), ("custodian", custodian)):
        assert decrypt(ct, unwrap_key(wrapped[who], ident)) == b"secret-marker"
    with pytest.raises(EnvelopeError):
        unwrap_key(wrapped["patient"], stranger)
    key = unwrap_key(wrapped["custodian"], custodian)
    rewrapped = wrap_key(key, stranger.public_key)
    assert decrypt(ct, unwrap_key(rewrapped, stranger)) == b"secret-marker"
    with pytest.raises(EnvelopeError):
        decrypt(ct[:-1] + bytes([ct[-1] ^ 1]), key)


def test_fhir_validation_messages():
    assert parse_resource(json.dumps(OBS).encode())["status"] == "final"
    bad = [
        (b"{not json", "not JSON"),
        (json.dumps({"resourceType": "Nonsense"}).encode(), "unknown FHIR resource type"),
        (json.dumps({"resourceType": "Observation", "status": "final"}).encode(), "code"),
        (json.dumps({**OBS, "status": "bogus"}).encode(), "status 'bogus'"),
        (json.dumps({**OBS, "unknownField": 1}).encode(), "unknownField"),
        (json.dumps({"resourceType": "Patient", "gender": "robot"}).encode(), "gender"),
    ]
    for data, needle in bad:
        with pytest.raises(FhirInvalid, match=needle) as err:
            parse_resource(data)
        assert err.value.code == "invalid_fhir"


def test_a_resource_over_the_size_limit_is_refused_as_too_large_not_as_invalid():
    from node.records.fhir import MAX_RESOURCE_BYTES, ResourceTooLarge

    big = json.dumps({**OBS, "note": [{"text": "x" * MAX_RESOURCE_BYTES}]}).encode()
    with pytest.raises(ResourceTooLarge, match=f"over the limit of {MAX_RESOURCE_BYTES} bytes") as err:
        parse_resource(big)
    assert err.value.code == "too_large"


def test_upload_signed_by_author():
    author = Identity.generate()
    up = Upload.create(author, chain_id=CHAIN, record_id=b"r" * 32, patient=b"p" * 32, resource_type="Observation",
                       ciphertext=b"ct", wrapped={"patient": b"w1", "custodian": b"w2"}, timestamp_ms=5)
    back = Upload.from_wire(decode(up.to_wire()), CHAIN)
    assert back.ciphertext == b"ct"
    doc = decode(up.to_wire())
    doc["ciphertext"] = b"other"
    with pytest.raises(ProtocolError) as err:
        Upload.from_wire(doc, CHAIN)
    assert err.value.code == "bad_signature"
    with pytest.raises(ProtocolError):
        Upload.from_wire(decode(up.to_wire()), "another-chain")


def test_fetch_and_release_signatures():
    reader, custodian = Identity.generate(), Identity.generate()
    f = Fetch.create(reader, chain_id=CHAIN, record_id=b"r" * 32, timestamp_ms=1000)
    assert Fetch.from_wire(decode(f.to_wire()), CHAIN).requester == reader.public_key
    forged = decode(f.to_wire())
    forged["requester"] = Identity.generate().public_key
    with pytest.raises(ProtocolError, match="not signed"):
        Fetch.from_wire(forged, CHAIN)
    rel = Release(chain_id=CHAIN, record_id=b"r" * 32, requester=reader.public_key, nonce=f.nonce, ciphertext=b"ct",
                  wrapped_key=b"k", custodian=custodian.public_key)
    rel = Release(**{**{k: getattr(rel, k) for k in rel.__dataclass_fields__}, "signature": custodian.sign(rel.signing_bytes())})
    assert Release.from_wire(decode(rel.to_wire()), CHAIN).ciphertext == b"ct"
    tampered = decode(rel.to_wire())
    tampered["wrapped_key"] = b"evil"
    with pytest.raises(ProtocolError):
        Release.from_wire(tampered, CHAIN)


def test_replay_guard():
    guard = ReplayGuard(window_ms=1000, future_ms=100, max_per_requester=3, max_total=3)
    guard.check(b"r", b"a", 10_000, 10_500)
    with pytest.raises(ReplayRefused) as err:
        guard.check(b"r", b"a", 10_000, 10_600)
    assert err.value.code == "replayed_request"
    with pytest.raises(ReplayRefused) as err:
        guard.check(b"r", b"b", 1_000, 10_600)
    assert err.value.code == "stale_request"
    with pytest.raises(ReplayRefused) as err:
        guard.check(b"r", b"b", 10_701, 10_600)
    assert err.value.code == "future_request"
    guard.check(b"r", b"c", 10_600, 10_600)
    guard.check(b"s", b"d", 10_600, 10_600)
    with pytest.raises(ReplayRefused) as err:
        guard.check(b"t", b"e", 10_600, 10_600)
    assert err.value.code == "busy"
    guard.check(b"t", b"e", 20_000, 20_000)  # the entries outside the window have left
    assert len(guard) == 1
