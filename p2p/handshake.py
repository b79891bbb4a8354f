"""The authenticated handshake of a peer link, as a state machine without IO.

Theory of operation
-------------------
Both ends of a fresh websocket run the same machine; only their role
(``DIALER`` or ``ACCEPTOR``) differs. Each end:

1. sends HELLO at once: protocol version, chain id, genesis hash, the node id
   it claims (its Ed25519 public key) and a fresh random 32-byte nonce;
2. on the peer's HELLO, checks version, chain, genesis, that the id is not its
   own, that it is the id it meant to dial (dialer only) and that the id is
   admitted (allowed and not banned); then sends AUTH, a signature over the
   transcript below;
3. on the peer's AUTH, verifies it with the claimed id as the public key.
   Success means the peer holds the key of the id it claims *now*.

The signed transcript is the msgpack array::

    [DOMAIN, signer_role, chain_id, genesis_hash,
     signer_id, verifier_id, verifier_nonce, signer_nonce]

* the verifier's nonce is fresh, so an AUTH recorded from an earlier session
  (a replay) does not verify;
* the domain tag keeps these signatures from ever being valid as anything else
  the node key signs (transactions, votes);
* chain id and genesis hash bind the proof to one network;
* both ids and the signer's role stop a relay: a man in the middle cannot hand
  one peer's AUTH to another, nor reflect a node's own signature back to it.

Any failure sends REFUSE with a short reason (one of the ``REASON_*``
constants) and ends in ``REFUSED``; the reason and a detail for the log are in
the ``Refused`` event. A REFUSE from the peer ends in ``REFUSED`` as well.

Legal transitions (anything else raises ``HandshakeStateError``, state unchanged)::

    state         input                      next           events
    AWAIT_HELLO   HELLO accepted             AWAIT_AUTH     Outgoing(AUTH)
    AWAIT_HELLO   HELLO refused / garbage    REFUSED        Outgoing(REFUSE), Refused
    AWAIT_AUTH    AUTH verifies              AUTHENTICATED  Authenticated
    AWAIT_AUTH    AUTH fails / garbage       REFUSED        Outgoing(REFUSE), Refused
    AWAIT_*       REFUSE                     REFUSED        Refused(by_peer=True)
    AUTHENTICATED any                        (raises)
    REFUSED       any                        (raises)

The peer always sends its HELLO before its AUTH, and AUTH only after it has
our HELLO, so on one ordered connection there is no legal interleaving other
than the one above.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from p2p import wire
from p2p.errors import HandshakeStateError, MalformedFrame
from p2p.interfaces import Signer, Verifier

__all__ = [
    "DOMAIN",
    "Role",
    "HandshakeState",
    "Outgoing",
    "Authenticated",
    "Refused",
    "HandshakeEvent",
    "Handshake",
    "transcript",
    "REASON_VERSION",
    "REASON_WRONG_CHAIN",
    "REASON_WRONG_GENESIS",
    "REASON_UNKNOWN_NODE",
    "REASON_UNEXPECTED_NODE",
    "REASON_SELF",
    "REASON_BANNED",
    "REASON_BAD_SIGNATURE",
    "REASON_MALFORMED",
]

DOMAIN = "medledger/p2p/handshake/v1"

REASON_VERSION = "unsupported protocol version"
REASON_WRONG_CHAIN = "wrong chain"
REASON_WRONG_GENESIS = "wrong genesis"
REASON_UNKNOWN_NODE = "unknown node id"
REASON_UNEXPECTED_NODE = "unexpected node id"
REASON_SELF = "connection to self"
REASON_BANNED = "banned"
REASON_BAD_SIGNATURE = "bad signature"
REASON_MALFORMED = "malformed handshake"


class Role(enum.Enum):
    """Which end of the connection we are."""

    DIALER = "dialer"
    ACCEPTOR = "acceptor"

    @property
    def other(self) -> Role:
        """The role of the peer."""
        return Role.ACCEPTOR if self is Role.DIALER else Role.DIALER


class HandshakeState(enum.Enum):
    """Where the handshake stands."""

    AWAIT_HELLO = "await hello"
    AWAIT_AUTH = "await auth"
    AUTHENTICATED = "authenticated"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """Bytes to send to the peer as one websocket message."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """The peer proved it holds the key of ``peer_id``."""

    peer_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """The handshake failed; ``by_peer`` says which side refused.

    ``reason`` is what went on the wire; ``detail`` is for our log only;
    ``peer_id`` is the id the peer claimed, if it got that far.
    """

    reason: str
    detail: str
    by_peer: bool
    peer_id: bytes | None


HandshakeEvent = Outgoing | Authenticated | Refused


def transcript(
    *,
    signer_role: Role,
    chain_id: str,
    genesis_hash: bytes,
    signer_id: bytes,
    verifier_id: bytes,
    verifier_nonce: bytes,
    signer_nonce: bytes,
) -> bytes:
    """The exact bytes an AUTH signature covers (see the module docstring)."""
    packed: bytes = msgpack.packb(
        [
            DOMAIN,
            signer_role.value,
            chain_id,
            genesis_hash,
            signer_id,
            verifier_id,
            verifier_nonce,
            signer_nonce,
        ],
        use_bin_type=True,
    )
    return packed


class Handshake:
    """One end of one handshake. Feed it the peer's messages, send what it says."""

    def __init__(
        self,
        *,
        role: Role,
        signer: Signer,
        verifier: Verifier,
        chain_id: str,
        genesis_hash: bytes,
        nonce: bytes,
        admit: Callable[[bytes], str | None],
        expected_peer: bytes | None = None,
        max_frame_bytes: int = 4096,
    ) -> None:
        """Prepare our HELLO.

        ``admit(peer_id)`` returns a refusal reason, or None to admit. A
        dialer passes ``expected_peer``, the id it meant to reach.
        """
        if role is Role.DIALER and expected_peer is None:
            raise ValueError("a dialer must say which node id it expects")
        self._role = role
        self._signer = signer
        self._verifier = verifier
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._admit = admit
        self._expected_peer = expected_peer
        self._max_frame_bytes = max_frame_bytes
        self._node_id = signer.public_key
        self._hello = wire.our_hello(chain_id=chain_id, genesis_hash=genesis_hash, node_id=self._node_id, nonce=nonce)
        self._peer_hello: wire.Hello | None = None
        self.state = HandshakeState.AWAIT_HELLO

    @property
    def hello(self) -> bytes:
        """Our HELLO, to be sent as soon as the connection is open."""
        return wire.encode(self._hello)

    @property
    def peer_id(self) -> bytes | None:
        """The id the peer claims (authenticated only once AUTHENTICATED)."""
        return self._peer_hello.node_id if self._peer_hello is not None else None

    def receive(self, data: bytes) -> tuple[HandshakeEvent, ...]:
        """Process one websocket message from the peer."""
        if self.state in (HandshakeState.AUTHENTICATED, HandshakeState.REFUSED):
            raise HandshakeStateError(f"handshake already {self.state.value}")
        try:
            frame = wire.decode_one(data, max_frame_bytes=self._max_frame_bytes)
        except MalformedFrame as exc:
            return self._refuse(REASON_MALFORMED, str(exc))
        if isinstance(frame, wire.Refuse):
            self.state = HandshakeState.REFUSED
            return (Refused(reason=frame.reason, detail="refused by peer", by_peer=True, peer_id=self.peer_id),)
        if self.state is HandshakeState.AWAIT_HELLO:
            if not isinstance(frame, wire.Hello):
                return self._refuse(REASON_MALFORMED, f"expected HELLO, got {type(frame).__name__}")
            return self._on_hello(frame)
        if not isinstance(frame, wire.Auth):
            return self._refuse(REASON_MALFORMED, f"expected AUTH, got {type(frame).__name__}")
        return self._on_auth(frame)

    def _on_hello(self, hello: wire.Hello) -> tuple[HandshakeEvent, ...]:
        self._peer_hello = hello
        if hello.version != wire.PROTOCOL_VERSION:
            return self._refuse(REASON_VERSION, f"theirs {hello.version}, ours {wire.PROTOCOL_VERSION}")
        if hello.chain_id != self._chain_id:
            return self._refuse(REASON_WRONG_CHAIN, f"theirs {hello.chain_id!r}, ours {self._chain_id!r}")
        if hello.genesis_hash != self._genesis_hash:
            return self._refuse(
                REASON_WRONG_GENESIS,
                f"theirs {hello.genesis_hash.hex()}, ours {self._genesis_hash.hex()}",
            )
        if hello.node_id == self._node_id:
            return self._refuse(REASON_SELF, "the peer claims our own node id")
        if self._expected_peer is not None and hello.node_id != self._expected_peer:
            return self._refuse(
                REASON_UNEXPECTED_NODE,
                f"dialed {self._expected_peer.hex()[:16]}, it claims {hello.node_id.hex()[:16]}",
            )
        verdict = self._admit(hello.node_id)
        if verdict is not None:
            return self._refuse(verdict, f"node {hello.node_id.hex()[:16]} not admitted")
        signature = self._signer.sign(
            transcript(
                signer_role=self._role,
                chain_id=self._chain_id,
                genesis_hash=self._genesis_hash,
                signer_id=self._node_id,
                verifier_id=hello.node_id,
                verifier_nonce=hello.nonce,
                signer_nonce=self._hello.nonce,
            )
        )
        self.state = HandshakeState.AWAIT_AUTH
        return (Outgoing(data=wire.encode(wire.Auth(signature=signature))),)

    def _on_auth(self, auth: wire.Auth) -> tuple[HandshakeEvent, ...]:
        peer = self._peer_hello
        assert peer is not None  # AWAIT_AUTH is only reached through a HELLO
        expected = transcript(
            signer_role=self._role.other,
            chain_id=self._chain_id,
            genesis_hash=self._genesis_hash,
            signer_id=peer.node_id,
            verifier_id=self._node_id,
            verifier_nonce=self._hello.nonce,
            signer_nonce=peer.nonce,
        )
        try:
            valid = self._verifier.verify(peer.node_id, expected, auth.signature)
        except Exception as exc:  # a verifier must not raise, but a bad key must not kill us
            return self._refuse(REASON_BAD_SIGNATURE, f"verifier raised {type(exc).__name__}: {exc}")
        if valid is not True:
            return self._refuse(REASON_BAD_SIGNATURE, f"node {peer.node_id.hex()[:16]} did not prove its key")
        self.state = HandshakeState.AUTHENTICATED
        return (Authenticated(peer_id=peer.node_id),)

    def _refuse(self, reason: str, detail: str) -> tuple[HandshakeEvent, ...]:
        self.state = HandshakeState.REFUSED
        return (
            Outgoing(data=wire.encode(wire.Refuse(reason=wire.short_text(reason)))),
            Refused(reason=reason, detail=detail, by_peer=False, peer_id=self.peer_id),
        )
