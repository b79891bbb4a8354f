"""Messages: built checked, encoded canonically, decoded with one error for any malformation."""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.certificate import CommitCertificate, PreparedCertificate
from consensus.evidence import Evidence
from consensus.messages import (Commit, Decision, Message, MessageDecodeError, NewView, Prepare, PrePrepare, ViewChange,
                                decode_message, sign_message)
from consensus.simulation.fake_crypto import FakeKeyring, FakeVerifier

KEYRING = FakeKeyring()
SIGNERS = [KEYRING.new_signer(bytes([i])) for i in range(4)]
A = SIGNERS[0].public_key
PAYLOAD = b"a block"
DIGEST = hashlib.sha256(PAYLOAD).digest()
VOTES = tuple(sorted((s.public_key, b"s" * 64) for s in SIGNERS[:3]))


def samples() -> list[Message]:
    common = dict(chain_id="c", height=5, view=2, sender=A)
    prepared = PreparedCertificate(height=5, view=1, digest=DIGEST, votes=VOTES)
    pp = PrePrepare(**common, digest=DIGEST, payload=PAYLOAD, signature=b"p" * 64)
    vc = ViewChange(**common, prepared=prepared, signature=b"v" * 64)
    return [
        pp,
        Prepare(**common, digest=DIGEST, signature=b"x" * 64),
        Commit(**common, digest=DIGEST, signature=b"y" * 64),
        ViewChange(**common, prepared=None, signature=b"z" * 64),
        ViewChange(**common, prepared=prepared, payload=PAYLOAD, signature=b"z" * 64),
        NewView(**common, view_changes=(vc,), pre_prepare=pp, signature=b"n" * 64),
        Decision(**common, digest=DIGEST, payload=PAYLOAD,
                 certificate=CommitCertificate(height=5, view=2, digest=DIGEST, votes=VOTES), signature=b"d" * 64),
    ]


@pytest.mark.parametrize("msg", samples(), ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    data = msg.encode()
    assert decode_message(data) == msg
    assert decode_message(data).encode() == data


def test_signing_bytes_separate_kinds_chains_and_fields() -> None:
    base = dict(chain_id="c", height=5, view=2, sender=A, digest=DIGEST)
    variants = [Prepare(**base), Commit(**base), Prepare(**{**base, "chain_id": "d"}),
                Prepare(**{**base, "height": 6}), Prepare(**{**base, "view": 3}),
                Prepare(**{**base, "digest": bytes(32)}), PrePrepare(**base, payload=b"")]
    assert len({m.signing_bytes() for m in variants}) == len(variants)


def test_signing_bytes_are_a_fixed_order_array_with_domain_tag_and_no_map() -> None:
    value = msgpack.unpackb(Prepare(chain_id="c", height=5, view=2, sender=A, digest=DIGEST).signing_bytes())
    assert value == ["medledger/consensus/v1", 2, "c", 5, 2, A, DIGEST]


def test_pre_prepare_and_decision_signatures_cover_the_payload() -> None:
    pp = PrePrepare(chain_id="c", height=1, view=0, sender=A, digest=DIGEST, payload=PAYLOAD)
    assert pp.signing_bytes() != dataclasses.replace(pp, payload=b"other").signing_bytes()
    signed = sign_message(pp, SIGNERS[0])
    swapped = dataclasses.replace(signed, payload=b"other")
    assert not FakeVerifier(KEYRING).verify(A, swapped.signing_bytes(), swapped.signature)
    decision = [m for m in samples() if isinstance(m, Decision)][0]
    assert decision.signing_bytes() != dataclasses.replace(decision, payload=b"x").signing_bytes()


def test_sign_message_produces_a_verifiable_signature_and_refuses_foreign_senders() -> None:
    msg = sign_message(Prepare(chain_id="c", height=1, view=0, sender=A, digest=DIGEST), SIGNERS[0])
    assert FakeVerifier(KEYRING).verify(A, msg.signing_bytes(), msg.signature)
    with pytest.raises(ValueError):
        sign_message(Prepare(chain_id="c", height=1, view=0, sender=A, digest=DIGEST), SIGNERS[1])


@pytest.mark.parametrize("change", [
    {"height": 0}, {"height": True}, {"view": -1}, {"sender": b"x"}, {"digest": b"d" * 31},
    {"chain_id": ""}, {"chain_id": "x" * 65}, {"signature": b"s" * 129}, {"digest": "not bytes"},
])
def test_messages_are_checked_when_built(change: dict[str, object]) -> None:
    fields = dict(chain_id="c", height=1, view=0, sender=A, digest=DIGEST, signature=b"")
    with pytest.raises(ValueError):
        Prepare(**{**fields, **change})  # type: ignore[arg-type]  # bad values on purpose


def test_messages_are_frozen_and_keyword_only() -> None:
    msg = Prepare(chain_id="c", height=1, view=0, sender=A, digest=DIGEST)
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.height = 2  # type: ignore[misc]  # frozen dataclass: the test mutates it on purpose
    with pytest.raises(TypeError):
        Prepare("c", 1, 0, A, DIGEST)  # type: ignore[call-arg]  # positional on purpose: kw_only must refuse it


def test_view_change_and_new_view_consistency_checks() -> None:
    prepared = PreparedCertificate(height=5, view=2, digest=DIGEST, votes=VOTES)
    with pytest.raises(ValueError, match="earlier view"):
        ViewChange(chain_id="c", height=5, view=2, sender=A, prepared=prepared)
    with pytest.raises(ValueError, match="payload without"):
        ViewChange(chain_id="c", height=5, view=2, sender=A, payload=b"x")
    pp = PrePrepare(chain_id="c", height=5, view=3, sender=A, digest=DIGEST, payload=PAYLOAD)
    vc = ViewChange(chain_id="c", height=5, view=3, sender=A)
    with pytest.raises(ValueError, match="distinct"):
        NewView(chain_id="c", height=5, view=3, sender=A, view_changes=(vc, vc), pre_prepare=pp)
    with pytest.raises(ValueError, match="own"):
        NewView(chain_id="c", height=5, view=3, sender=SIGNERS[1].public_key, view_changes=(vc,), pre_prepare=pp)


BAD_INPUTS = [
    b"", b"\xc1", b"\x91" * 3000 + b"\x00", msgpack.packb({"a": 1}), msgpack.packb([2, "c"]),
    msgpack.packb([2, "c", 1, 0, A, DIGEST, b""]),  # empty signature
    msgpack.packb([2, "c", 1, 0, A, DIGEST, b"s", b"extra"]),
    msgpack.packb([2, "c", 1.0, 0, A, DIGEST, b"s"]),
    msgpack.packb([2, "c", True, 0, A, DIGEST, b"s"]),
    msgpack.packb([99, "c", 1, 0, A, DIGEST, b"s"]),
    msgpack.packb([5, "c", 1, 1, A, [[5, "c", 1, 1, A, [], [], b"s"]], [1, "c", 1, 1, A, DIGEST, b"", b"s"], b"s"]),
    msgpack.packb([1, "c", 1, 0, A, DIGEST, b"p" * 101, b"s"]),  # payload over the limit below
    msgpack.packb([2, "c", 1, 0, A, DIGEST, b"s"]) + b"\x00",
    msgpack.packb([2, "c", 1, 0, A, DIGEST, b"s"])[:-1],
    b"\xdd\xff\xff\xff\xff",  # array claiming 4 billion items
]


@pytest.mark.parametrize("data", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
def test_malformed_input_raises_only_message_decode_error(data: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        decode_message(data, max_payload=100)


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(MessageDecodeError, match="too large"):
        decode_message(b"\x00" * 10_000_000, max_payload=100)


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(MessageDecodeError):
        decode_message(bytearray(b"\x90"))  # type: ignore[arg-type]  # not bytes on purpose


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_message_decode_error(data: bytes) -> None:
    try:
        decode_message(data, max_payload=1000)
    except MessageDecodeError:
        pass


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(samples()), st.data())
def test_mutated_encodings_decode_or_raise_message_decode_error(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(msg.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_message(bytes(raw), max_payload=1000)
    except MessageDecodeError:
        pass


def test_evidence_round_trip_and_checks() -> None:
    a = sign_message(Prepare(chain_id="c", height=1, view=0, sender=A, digest=DIGEST), SIGNERS[0])
    b = sign_message(Prepare(chain_id="c", height=1, view=0, sender=A, digest=bytes(32)), SIGNERS[0])
    ev = Evidence(first=a, second=b)
    assert Evidence.decode(ev.encode()) == ev
    assert ev.verify(FakeVerifier(KEYRING)) and ev.offender == A
    with pytest.raises(ValueError):
        Evidence(first=a, second=a)
    c = sign_message(Commit(chain_id="c", height=1, view=0, sender=A, digest=bytes(32)), SIGNERS[0])
    with pytest.raises(ValueError):
        Evidence(first=a, second=c)
    with pytest.raises(MessageDecodeError):
        Evidence.decode(b"\x92\x01")
