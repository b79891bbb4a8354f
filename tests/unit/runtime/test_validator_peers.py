"""The network learns a validator voted in without a restart: the daemon admits its key at the
next handshake and the network service dials its address once the change is committed."""

from __future__ import annotations

import pytest

from node.daemon import allowed_peers, peer_map
from node.net.gossip import NetworkService
from tests.harness.changes import ADDRESS, with_fifth_validator


async def test_a_validator_voted_in_is_dialed_and_admitted(monkeypatch: pytest.MonkeyPatch):
    c, e, _ = with_fifth_validator()
    try:
        node = c.nodes[0]
        newcomer = c.id(e)
        assert newcomer in allowed_peers(node) and peer_map(node)[newcomer] == ADDRESS["address"]
        svc = NetworkService(node, host="127.0.0.1", port=0, peers={c.id(i): f"mem:{i}" for i in (1, 2, 3)})
        dialed: list[tuple[bytes, str]] = []
        monkeypatch.setattr(svc.net, "add_peer", lambda vid, address: dialed.append((vid, address)))
        assert node.on_validators_changed == svc.learn_validators  # the node tells the service of changes
        assert svc.learn_validators() == [newcomer] and dialed == [(newcomer, ADDRESS["address"])]
        assert svc.learn_validators() == []  # known now: not dialed twice
    finally:
        c.stop()
