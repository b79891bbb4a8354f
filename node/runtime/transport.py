"""How the runtime reaches its peers: the `Transport` protocol, the frame kinds it sends, and
`NullTransport` for a node with nobody to talk to.

The peer network (node/net/gossip.py) implements Transport over p2p/; the test harness
(tests/harness) implements it over an in-memory queue. Either is handed to the node once, at
construction or through `Node.attach_transport`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

FRAME_CONSENSUS = 1  # one consensus message (consensus.messages encoding)
FRAME_TXS = 2  # a batch of transactions (msgpack array of their canonical encodings)


class Transport(Protocol):
    """What the runtime needs from the network: fire-and-forget frames to validators."""

    def send(self, peer_id: bytes, kind: int, payload: bytes) -> bool: ...

    def broadcast(self, kind: int, payload: bytes, exclude: Sequence[bytes] = ()) -> int: ...


class NullTransport:
    """The transport of a one-validator network: nobody to talk to."""

    def send(self, peer_id: bytes, kind: int, payload: bytes) -> bool:
        return False

    def broadcast(self, kind: int, payload: bytes, exclude: Sequence[bytes] = ()) -> int:
        return 0
