"""The services the transport needs, and the callbacks it makes, as Protocols.

The transport knows nothing of transactions, blocks or consensus, and nothing
of a particular crypto library: the node injects a ``Signer`` and a
``Verifier`` (backed by PyNaCl in production) and a ``FrameHandler`` that
receives what peers send, and may give a ``FrameFilter`` that decides whose
traffic passes (tests cut links with one; production gives none). All of them are structural: any object with the
right attributes will do, which is what lets tests swap in fakes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Signer", "Verifier", "FrameHandler", "FrameFilter"]


@runtime_checkable
class Signer(Protocol):
    """Signs with this node's Ed25519 key; ``public_key`` is the node id."""

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key, which is also our node id."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached signature of ``message``."""
        ...


@runtime_checkable
class Verifier(Protocol):
    """Checks Ed25519 signatures made by other nodes."""

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is ``public_key``'s signature of ``message``.

        Must return False (not raise) for a bad signature or a bad key.
        """
        ...


class FrameHandler(Protocol):
    """What the node does with traffic from peers.

    All callbacks run on the event loop. An exception raised by one of them is
    a bug in the node: the transport logs it with its traceback and carries on
    with the link.
    """

    def on_frame(self, peer_id: bytes, kind: int, payload: bytes) -> None:
        """A frame arrived from an authenticated peer. Must return quickly."""
        ...

    async def on_request(self, peer_id: bytes, kind: int, payload: bytes) -> bytes:
        """Answer a peer's request; raise ``RequestRejected`` to refuse it."""
        ...

    def on_peer_connected(self, peer_id: bytes) -> None:
        """The peer now has an authenticated link (it had none before)."""
        ...

    def on_peer_disconnected(self, peer_id: bytes, reason: str) -> None:
        """The peer's last link closed; ``reason`` says why, for the log."""
        ...


class FrameFilter(Protocol):
    """Which peers' traffic passes, asked for every frame sent and every message received.

    A frame that does not pass is dropped silently, as a real network would lose it, and counted
    in the peer's ``partition_dropped``; links and heartbeats stay up, below the filter.
    """

    def passes(self, peer_id: bytes) -> bool:
        """True if frames to and from ``peer_id`` may go through now. Must return quickly."""
        ...
