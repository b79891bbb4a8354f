"""Property tests (hypothesis) of what a node does with frames from an authenticated peer.

The transport hands `NetworkService.on_frame` / `on_request` whatever a peer sent after the
handshake; any exception there is logged as "a bug in the node". So: garbage in any frame kind
is discarded (and penalized), never raised, and a request gets an answer or a RequestRejected.
"""

from __future__ import annotations

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.messages import MessageDecodeError, decode_message
from node.net.gossip import NetworkService
from node.net.protocol import REQ_BLOCKS, REQ_STATUS
from node.runtime.transport import FRAME_CONSENSUS, FRAME_TXS
from p2p.errors import RequestRejected
from tests.helpers import CHAIN, make_node

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PEER = b"\x09" * 32

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=16) | st.binary(max_size=40)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                      max_leaves=16)
payloads = st.binary(max_size=300) | values.map(lambda v: msgpack.packb(v, use_bin_type=True)) | st.lists(
    st.binary(max_size=80) | values.map(lambda v: msgpack.packb(v, use_bin_type=True)), max_size=5).map(
    lambda items: msgpack.packb(items, use_bin_type=True)) | st.tuples(st.just(CHAIN), st.text(max_size=4)).map(
    lambda t: msgpack.packb([1, t[0], t[1]], use_bin_type=True))


@SETTINGS
@given(st.binary(max_size=400) | values.map(lambda v: msgpack.packb(v, use_bin_type=True)))
def test_decode_message_raises_only_its_own_error(data: bytes) -> None:
    try:
        decode_message(data)
    except MessageDecodeError:
        pass


async def test_garbage_frames_and_requests_are_discarded_not_raised(tmp_path) -> None:
    node = make_node(tmp_path / "db")
    service = NetworkService(node, host="127.0.0.1", port=0, peers={})
    node.start()
    answered: list[bytes] = []
    try:
        @SETTINGS
        @given(st.sampled_from([FRAME_CONSENSUS, FRAME_TXS, 0, 3, 65535]), payloads)
        def frames(kind: int, payload: bytes) -> None:
            service.on_frame(PEER, kind, payload)

        frames()

        requests: list[tuple[int, bytes]] = []

        @SETTINGS
        @given(st.sampled_from([REQ_STATUS, REQ_BLOCKS, 0, 12]), payloads)
        def collect(kind: int, payload: bytes) -> None:
            requests.append((kind, payload))

        collect()
        for kind, payload in requests:
            try:
                answered.append(await service.on_request(PEER, kind, payload))
            except RequestRejected:
                pass
        assert answered  # status requests are always answered
    finally:
        node.stop()
        node.store.close()
