"""The node's allocator of its own nonces: rising, above the ledger's last, the last it gave and
the clock, and one per node (the services signing with the node's key share it)."""

from __future__ import annotations

import struct

from node.app.executor import nonce_key
from node.app.state import FuncReader
from node.runtime.own_nonces import OwnNonces

SENDER = b"\x05" * 32


def test_nonces_rise_above_the_ledger_the_last_given_and_the_clock():
    ledger: dict[bytes, bytes] = {}
    clock = [1_000]
    nonces = OwnNonces(SENDER, lambda: FuncReader(ledger.get, lambda prefix: iter(())), lambda: clock[0])
    with nonces.lock:
        assert nonces.take(3) == [1_001, 1_002, 1_003]  # above the clock
        assert nonces.take(1) == [1_004]  # above the last given, though the clock stood still
    ledger[nonce_key(SENDER)] = struct.pack(">Q", 5_000)  # someone used a higher nonce of this key
    with nonces.lock:
        assert nonces.take(2) == [5_001, 5_002]
    clock[0] = 9_000
    with nonces.lock:
        assert nonces.take(1) == [9_001]


def test_one_allocator_per_node(cluster):
    node = cluster.nodes[0]
    assert node.own_nonces.sender == node.identity.public_key
    with node.own_nonces.lock:
        first = node.own_nonces.take(1)[0]
        assert node.own_nonces.take(1)[0] == first + 1
