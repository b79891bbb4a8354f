"""Peer addresses as the node configures them ("host:port")."""

from __future__ import annotations

import pytest

from p2p.network import parse_address, short_id


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:7400", ("127.0.0.1", 7400)),
        ("node-b.example.org:1", ("node-b.example.org", 1)),
        ("[::1]:7400", ("::1", 7400)),
    ],
)
def test_addresses_parse(address, parsed):
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["", "7400", "host:", ":7400", "host:0", "host:65536", "host:x1", None, 7400])
def test_bad_addresses_are_refused(address):
    with pytest.raises(ValueError):
        parse_address(address)


def test_short_ids_are_16_hex_digits():
    assert short_id(bytes(range(32))) == "0001020304050607"
    assert short_id(None) == "?"
