"""The handshake state machine (p2p.handshake), driven in memory with real keys."""

from __future__ import annotations

import pytest

from p2p import wire
from p2p.errors import HandshakeStateError
from p2p.handshake import (
    REASON_BAD_SIGNATURE,
    REASON_BANNED,
    REASON_MALFORMED,
    REASON_SELF,
    REASON_UNEXPECTED_NODE,
    REASON_UNKNOWN_NODE,
    REASON_VERSION,
    REASON_WRONG_CHAIN,
    REASON_WRONG_GENESIS,
    Authenticated,
    Handshake,
    HandshakeEvent,
    HandshakeState,
    Outgoing,
    Refused,
    Role,
    transcript,
)

CHAIN = "medledger-test"
GENESIS = b"\x11" * 32


def admit_all(peer_id: bytes) -> str | None:
    return None


def make(signer, verifier, *, role, expected=None, nonce=b"\x01" * 32, chain=CHAIN, genesis=GENESIS, admit=admit_all):
    return Handshake(
        role=role,
        signer=signer,
        verifier=verifier,
        chain_id=chain,
        genesis_hash=genesis,
        nonce=nonce,
        admit=admit,
        expected_peer=expected,
    )


def outgoing(events) -> bytes:
    (out,) = [e for e in events if isinstance(e, Outgoing)]
    return out.data


def run(dialer: Handshake, acceptor: Handshake):
    """Exchange messages the way two ends of one websocket would; return final events."""
    to_acceptor = [dialer.hello]
    to_dialer = [acceptor.hello]
    results: dict[str, tuple[HandshakeEvent, ...]] = {"dialer": (), "acceptor": ()}
    while to_acceptor or to_dialer:
        for inbox, machine, outbox, name in (
            (to_acceptor, acceptor, to_dialer, "acceptor"),
            (to_dialer, dialer, to_acceptor, "dialer"),
        ):
            while inbox:
                if machine.state in (HandshakeState.AUTHENTICATED, HandshakeState.REFUSED):
                    inbox.clear()  # a real link would be past the handshake, or closed
                    break
                events = machine.receive(inbox.pop(0))
                results[name] += events
                outbox.extend(e.data for e in events if isinstance(e, Outgoing))
    return results


def final(events):
    return [e for e in events if not isinstance(e, Outgoing)]


def test_two_honest_nodes_authenticate_each_other(make_signer, verifier):
    alice, bob = make_signer(0), make_signer(1)
    dialer = make(alice, verifier, role=Role.DIALER, expected=bob.public_key, nonce=b"\x0a" * 32)
    acceptor = make(bob, verifier, role=Role.ACCEPTOR, nonce=b"\x0b" * 32)
    results = run(dialer, acceptor)
    assert final(results["dialer"]) == [Authenticated(peer_id=bob.public_key)]
    assert final(results["acceptor"]) == [Authenticated(peer_id=alice.public_key)]
    assert dialer.state is acceptor.state is HandshakeState.AUTHENTICATED


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"chain": "another-chain"}, REASON_WRONG_CHAIN),
        ({"genesis": b"\x22" * 32}, REASON_WRONG_GENESIS),
    ],
)
def test_a_node_of_another_network_is_refused_by_both_sides(make_signer, verifier, change, reason):
    alice, bob = make_signer(0), make_signer(1)
    dialer = make(alice, verifier, role=Role.DIALER, expected=bob.public_key, **change)
    acceptor = make(bob, verifier, role=Role.ACCEPTOR)
    results = run(dialer, acceptor)
    (refused,) = final(results["acceptor"])
    assert refused.reason == reason and not refused.by_peer
    assert refused.peer_id == alice.public_key
    assert "theirs" in refused.detail and "ours" in refused.detail
    # both refuse at HELLO, each for the same reason; neither gets to AUTH
    (other,) = final(results["dialer"])
    assert other.reason == reason
    assert dialer.state is acceptor.state is HandshakeState.REFUSED


def test_an_unknown_node_is_refused_and_told_why(make_signer, verifier):
    alice, bob = make_signer(0), make_signer(1)
    dialer = make(alice, verifier, role=Role.DIALER, expected=bob.public_key)
    acceptor = make(bob, verifier, role=Role.ACCEPTOR, admit=lambda peer: REASON_UNKNOWN_NODE)
    results = run(dialer, acceptor)
    assert final(results["acceptor"])[0].reason == REASON_UNKNOWN_NODE
    (told,) = final(results["dialer"])
    assert told == Refused(reason=REASON_UNKNOWN_NODE, detail="refused by peer", by_peer=True, peer_id=bob.public_key)


def test_a_banned_node_is_refused(make_signer, verifier):
    alice, bob = make_signer(0), make_signer(1)
    acceptor = make(bob, verifier, role=Role.ACCEPTOR, admit=lambda p: REASON_BANNED if p == alice.public_key else None)
    results = run(make(alice, verifier, role=Role.DIALER, expected=bob.public_key), acceptor)
    assert final(results["acceptor"])[0].reason == REASON_BANNED


def test_the_dialer_refuses_a_node_that_is_not_the_one_it_dialed(make_signer, verifier):
    alice, bob, carol = make_signer(0), make_signer(1), make_signer(2)
    dialer = make(alice, verifier, role=Role.DIALER, expected=carol.public_key)
    results = run(dialer, make(bob, verifier, role=Role.ACCEPTOR))
    assert final(results["dialer"])[0].reason == REASON_UNEXPECTED_NODE


def test_a_node_refuses_a_connection_to_itself(make_signer, verifier):
    alice = make_signer(0)
    acceptor = make(alice, verifier, role=Role.ACCEPTOR)
    results = run(make(alice, verifier, role=Role.DIALER, expected=alice.public_key), acceptor)
    assert final(results["acceptor"])[0].reason == REASON_SELF


def test_another_protocol_version_is_refused(make_signer, verifier):
    alice, bob = make_signer(0), make_signer(1)
    acceptor = make(bob, verifier, role=Role.ACCEPTOR)
    hello = wire.Hello(version=99, chain_id=CHAIN, genesis_hash=GENESIS, node_id=alice.public_key, nonce=b"\x00" * 32)
    events = acceptor.receive(wire.encode(hello))
    assert final(events)[0].reason == REASON_VERSION


def test_claiming_someone_elses_id_fails_the_signature_check(make_signer, verifier):
    """Mallory says she is Alice but can only sign with her own key."""
    alice, bob, mallory = make_signer(0), make_signer(1), make_signer(2)

    class Impostor:
        public_key = alice.public_key

        def sign(self, message: bytes) -> bytes:
            return mallory.sign(message)

    dialer = make(Impostor(), verifier, role=Role.DIALER, expected=bob.public_key)
    acceptor = make(bob, verifier, role=Role.ACCEPTOR)
    results = run(dialer, acceptor)
    refused = final(results["acceptor"])[0]
    assert refused.reason == REASON_BAD_SIGNATURE
    assert refused.peer_id == alice.public_key
    assert acceptor.state is HandshakeState.REFUSED


def test_a_replayed_auth_from_an_earlier_session_fails(make_signer, verifier):
    """An eavesdropper records Alice's HELLO and AUTH and replays them to Bob later."""
    alice, bob = make_signer(0), make_signer(1)
    recorded_dialer = make(alice, verifier, role=Role.DIALER, expected=bob.public_key, nonce=b"\x0a" * 32)
    first = make(bob, verifier, role=Role.ACCEPTOR, nonce=b"\x01" * 32)
    recorded_hello = recorded_dialer.hello
    first.receive(recorded_hello)
    recorded_auth = outgoing(recorded_dialer.receive(first.hello))
    assert final(first.receive(recorded_auth)) == [Authenticated(peer_id=alice.public_key)]

    later = make(bob, verifier, role=Role.ACCEPTOR, nonce=b"\x02" * 32)  # a fresh challenge
    later.receive(recorded_hello)
    refused = final(later.receive(recorded_auth))[0]
    assert refused.reason == REASON_BAD_SIGNATURE


def test_a_relayed_auth_from_the_other_role_fails(make_signer, verifier):
    """Mallory connects to Alice claiming Bob, and gets Bob to sign Alice's challenge.

    Mallory dials Bob claiming to be Alice and puts Alice's nonce in her HELLO,
    so Bob (acceptor) signs exactly Alice's challenge. She then presents Bob's
    nonce and signature to Alice, to whom she is the dialer. Only the role in
    the transcript tells the two apart.
    """
    alice, bob = make_signer(0), make_signer(1)
    at_alice = make(alice, verifier, role=Role.ACCEPTOR, nonce=b"\xaa" * 32)
    alice_hello = wire.decode_one(at_alice.hello, max_frame_bytes=4096)

    at_bob = make(bob, verifier, role=Role.ACCEPTOR, nonce=b"\xbb" * 32)
    mallory_as_alice = wire.Hello(
        version=wire.PROTOCOL_VERSION, chain_id=CHAIN, genesis_hash=GENESIS, node_id=alice.public_key, nonce=alice_hello.nonce
    )
    bob_auth = outgoing(at_bob.receive(wire.encode(mallory_as_alice)))
    bob_signature = wire.decode_one(bob_auth, max_frame_bytes=4096).signature

    # Bob's signature is genuine for the acceptor-role transcript...
    assert verifier.verify(
        bob.public_key,
        transcript(
            signer_role=Role.ACCEPTOR,
            chain_id=CHAIN,
            genesis_hash=GENESIS,
            signer_id=bob.public_key,
            verifier_id=alice.public_key,
            verifier_nonce=b"\xaa" * 32,
            signer_nonce=b"\xbb" * 32,
        ),
        bob_signature,
    )
    # ...but Alice expects her dialer to have signed as a dialer.
    mallory_as_bob = wire.Hello(
        version=wire.PROTOCOL_VERSION, chain_id=CHAIN, genesis_hash=GENESIS, node_id=bob.public_key, nonce=b"\xbb" * 32
    )
    at_alice.receive(wire.encode(mallory_as_bob))
    refused = final(at_alice.receive(bob_auth))[0]
    assert refused.reason == REASON_BAD_SIGNATURE


def test_garbage_and_out_of_order_messages_are_refused_as_malformed(make_signer, verifier):
    bob = make_signer(1)
    acceptor = make(bob, verifier, role=Role.ACCEPTOR)
    events = acceptor.receive(b"\xc1garbage")
    assert isinstance(events[0], Outgoing)
    assert wire.decode_one(events[0].data, max_frame_bytes=4096) == wire.Refuse(reason=REASON_MALFORMED)
    assert final(events)[0].reason == REASON_MALFORMED

    early = make(bob, verifier, role=Role.ACCEPTOR)
    events = early.receive(wire.encode(wire.Auth(signature=b"s" * 64)))  # AUTH before HELLO
    assert final(events)[0].reason == REASON_MALFORMED
    assert "expected HELLO" in final(events)[0].detail

    data_first = make(bob, verifier, role=Role.ACCEPTOR)
    events = data_first.receive(wire.encode(wire.Data(kind=1, payload=b"x")))
    assert final(events)[0].reason == REASON_MALFORMED


def test_an_oversized_handshake_message_is_malformed(make_signer, verifier):
    acceptor = make(make_signer(1), verifier, role=Role.ACCEPTOR)
    events = acceptor.receive(wire.encode(wire.Data(kind=1, payload=b"x" * 10_000)))
    assert final(events)[0].reason == REASON_MALFORMED


def test_a_verifier_that_raises_counts_as_a_bad_signature(make_signer):
    alice, bob = make_signer(0), make_signer(1)

    class Exploding:
        def verify(self, public_key, message, signature):
            raise RuntimeError("boom")

    class Fine:
        def verify(self, public_key, message, signature):
            return True

    acceptor = make(bob, Exploding(), role=Role.ACCEPTOR)
    results = run(make(alice, Fine(), role=Role.DIALER, expected=bob.public_key), acceptor)
    assert final(results["acceptor"])[0].reason == REASON_BAD_SIGNATURE


def test_a_finished_handshake_refuses_more_input(make_signer, verifier):
    alice, bob = make_signer(0), make_signer(1)
    dialer = make(alice, verifier, role=Role.DIALER, expected=bob.public_key)
    acceptor = make(bob, verifier, role=Role.ACCEPTOR)
    run(dialer, acceptor)
    with pytest.raises(HandshakeStateError):
        acceptor.receive(dialer.hello)
    assert acceptor.state is HandshakeState.AUTHENTICATED


def test_a_dialer_must_name_the_node_it_dials(make_signer, verifier):
    with pytest.raises(ValueError):
        make(make_signer(0), verifier, role=Role.DIALER)


def test_the_transcript_binds_every_field():
    base = dict(
        signer_role=Role.DIALER,
        chain_id=CHAIN,
        genesis_hash=GENESIS,
        signer_id=b"\x01" * 32,
        verifier_id=b"\x02" * 32,
        verifier_nonce=b"\x03" * 32,
        signer_nonce=b"\x04" * 32,
    )
    variants = [
        {"signer_role": Role.ACCEPTOR},
        {"chain_id": "x"},
        {"genesis_hash": b"\x00"},
        {"signer_id": b"\x09" * 32},
        {"verifier_id": b"\x09" * 32},
        {"verifier_nonce": b"\x09" * 32},
        {"signer_nonce": b"\x09" * 32},
    ]
    seen = {transcript(**base)}
    for change in variants:
        seen.add(transcript(**(base | change)))
    assert len(seen) == len(variants) + 1
    assert transcript(**base).startswith(b"\x98\xbamedledger/p2p/handshake/v1")
