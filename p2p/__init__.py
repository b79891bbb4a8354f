"""Peer-to-peer transport of MedLedger: authenticated websocket links between nodes.

The transport moves ``(kind: int, payload: bytes)`` frames between peers whose
node ids (Ed25519 public keys) it has authenticated; it knows nothing of
transactions or consensus. See ``docs/p2p.md`` for the wire format, the
handshake, the limits and what is logged.
"""

from p2p.errors import (
    FrameTooLarge,
    HandshakeStateError,
    LocalUsageError,
    MalformedFrame,
    P2PError,
    PeerUnavailable,
    RemoteProtocolError,
    RequestRejected,
    RequestTimeout,
)
from p2p.interfaces import FrameFilter, FrameHandler, Signer, Verifier
from p2p.limits import P2PLimits
from p2p.network import PeerNetwork

# The error names again rather than `__all__ += errors.__all__`: mypy reads only a
# literal list, and would otherwise take the errors for private imports.
__all__ = [
    "PeerNetwork",
    "P2PLimits",
    "FrameHandler",
    "FrameFilter",
    "Signer",
    "Verifier",
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
