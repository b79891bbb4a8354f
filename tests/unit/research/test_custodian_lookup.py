"""Where a custodian's API is found (node/research/service.py `custodian_api`, used by research
extracts and by the record-fetch proxy): a validator voted in has its API in its validator
record in the state; a genesis validator's comes from the genesis file."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from node.research.service import custodian_api
from node.runtime.membership import Membership
from tests.harness.changes import ADDRESS, with_fifth_validator


def test_an_added_validator_is_found_in_the_state_and_a_genesis_one_in_the_genesis():
    c, e, _ = with_fifth_validator()
    try:
        node = c.nodes[0]
        assert custodian_api(node, c.id(e).hex()) == ADDRESS["api"]
        # a genesis validator (no record of its own in the state): the genesis file's API
        published = dataclasses.replace(c.genesis, validators=tuple(
            dataclasses.replace(v, api=f"https://v{i}.example") for i, v in enumerate(c.genesis.validators)))
        with_apis = SimpleNamespace(membership=Membership(published, node.state_reader))
        assert custodian_api(with_apis, c.id(1).hex()) == "https://v1.example"
        assert custodian_api(with_apis, c.id(e).hex()) == ADDRESS["api"]  # the record, not the genesis
        assert custodian_api(node, "ab" * 32) is None  # no validator: no API
    finally:
        c.stop()
