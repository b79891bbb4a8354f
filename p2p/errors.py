"""Errors of the peer-to-peer transport, named by whose fault they are.

Three families, so a caller can tell at a glance what to do:

* ``LocalUsageError``: our own code used the transport wrongly (a frame too
  large to ever send, a test switch in production, a handshake driven out of
  order). These are bugs; they propagate.
* ``RemoteProtocolError``: a peer sent something that breaks the protocol.
  The transport never lets these escape to the node: they become a discard
  verdict and a penalty against that peer.
* ``PeerUnavailable``, ``RequestTimeout``, ``RequestRejected``: ordinary
  outcomes of talking over a network. Nobody's bug; the node handles them
  (ask another peer, retry later).
"""

from __future__ import annotations

__all__ = [
    "P2PError",
    "LocalUsageError",
    "FrameTooLarge",
    "HandshakeStateError",
    "RemoteProtocolError",
    "MalformedFrame",
    "PeerUnavailable",
    "RequestTimeout",
    "RequestRejected",
]


class P2PError(Exception):
    """Base class of every error raised by the ``p2p`` package."""


class LocalUsageError(P2PError):
    """Our own code misused the transport: a bug on this side."""


class FrameTooLarge(LocalUsageError, ValueError):
    """A frame we were asked to send would exceed the maximum frame size."""


class HandshakeStateError(LocalUsageError):
    """The handshake state machine was driven after it had finished."""


class RemoteProtocolError(P2PError):
    """A peer broke the protocol: its fault, never ours."""


class MalformedFrame(RemoteProtocolError):
    """Bytes from a peer that do not decode to a valid frame."""


class PeerUnavailable(P2PError):
    """The peer is not connected, or the link dropped before it answered."""


class RequestTimeout(P2PError, TimeoutError):
    """The peer did not answer a request within its timeout."""


class RequestRejected(P2PError):
    """The peer answered a request with an error instead of a result.

    A ``FrameHandler.on_request`` may also raise it to refuse a request with a
    reason that is sent back to the requester (no traceback is logged).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
