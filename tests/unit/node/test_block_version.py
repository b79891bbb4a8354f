"""The protocol version in the block header: a version-1 header encodes exactly as before
versions existed (so every old block keeps its hash), later versions add one field."""

from __future__ import annotations

import pytest

from node.chain.block import BASE_VERSION, Block, BlockInvalid, Header, decode_block
from node.core.crypto import Identity, sha256
from node.core.merkle import merkle_root

# computed by the code before header versions existed, for the block of `_fixture()`
OLD_BLOCK_HASH = "70d1011453d46ca78e3aa9c55c97a7348c2d0837a8137a072cd41fc91f5c5353"
OLD_BLOCK_BYTES_SHA256 = "c3b349d18301034585d4a513339180178c26842a1e44dddfc700d009617cf824"


def _fixture(**changes: object) -> Block:
    proposer = Identity.from_seed(b"upgrade-fixture".ljust(32, b"\0")).public_key
    txs = (b"first tx", b"second tx")
    fields: dict = dict(chain_id="medledger-local", height=7, prev_hash=sha256(b"block 6"),
                        timestamp_ms=1_700_000_123_456, proposer=proposer, tx_root=merkle_root(list(txs)),
                        results_root=sha256(b"results"), state_root=sha256(b"state"), prev_certificate=b"\x01cert")
    return Block(header=Header(**{**fields, **changes}), txs=txs)


def test_a_version_1_block_keeps_its_hash_and_bytes():
    block = _fixture()
    assert block.header.version == BASE_VERSION
    assert block.hash.hex() == OLD_BLOCK_HASH
    assert sha256(block.encode()).hex() == OLD_BLOCK_BYTES_SHA256
    assert len(block.header.fields()) == 10
    again = decode_block(block.encode())
    assert again.hash == block.hash and again.header.version == 1


def test_a_later_version_is_an_eleventh_field_and_changes_the_hash():
    block = _fixture(version=2)
    assert block.header.fields()[-1] == 2 and len(block.header.fields()) == 11
    assert block.hash != _fixture().hash
    again = decode_block(block.encode())
    assert again.header.version == 2 and again.hash == block.hash
    assert block.header.to_json()["version"] == 2


@pytest.mark.parametrize("bad", [1, 0, True, "2", 2**16 + 1])
def test_a_version_field_must_be_above_1(bad):
    from node.core.encoding import canonical

    block = _fixture()
    raw = canonical([[*block.header.fields(), bad], list(block.txs)])
    with pytest.raises(BlockInvalid, match="version"):
        decode_block(raw)
