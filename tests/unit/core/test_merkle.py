"""Merkle roots and inclusion proofs (RFC 6962)."""

import hashlib

import pytest
from hypothesis import given, strategies as st

from node.core.merkle import EMPTY_ROOT, inclusion_proof, merkle_root, verify_inclusion


def h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def test_known_small_trees():
    assert merkle_root([]) == EMPTY_ROOT == h(b"")
    assert merkle_root([b"a"]) == h(b"\x00a")
    ab = h(b"\x01" + h(b"\x00a") + h(b"\x00b"))
    assert merkle_root([b"a", b"b"]) == ab
    # three leaves: RFC 6962 splits at 2, so c is promoted
    assert merkle_root([b"a", b"b", b"c"]) == h(b"\x01" + ab + h(b"\x00c"))


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40), st.data())
def test_every_proof_verifies_and_nothing_else_does(leaves, data):
    root = merkle_root(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    path = inclusion_proof(leaves, i)
    assert verify_inclusion(leaves[i], i, len(leaves), path, root)
    assert not verify_inclusion(leaves[i] + b"!", i, len(leaves), path, root)
    if len(leaves) > 1:
        j = (i + 1) % len(leaves)
        if leaves[j] != leaves[i]:
            assert not verify_inclusion(leaves[i], j, len(leaves), inclusion_proof(leaves, j), root)


def test_index_out_of_range():
    with pytest.raises(IndexError):
        inclusion_proof([b"a"], 1)
    assert not verify_inclusion(b"a", 5, 1, [], merkle_root([b"a"]))
