"""Merkle trees over ordered leaves, with inclusion proofs (RFC 6962 / Certificate Transparency).

Leaves and interior nodes are hashed with different prefixes (0x00 / 0x01) so a leaf can never
pass for a node. The tree over n leaves splits at the largest power of two below n, so proofs
are at most ceil(log2 n) hashes and the root of the empty tree is SHA-256 of nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256 as _sha256

from node.core.crypto import sha256

EMPTY_ROOT = sha256(b"")


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    # Iterative RFC 6962 root: pair neighbours level by level, promoting an odd last node.
    # This matches the recursive definition (largest power of two split) for every n.
    level = list(hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        # node_hash inlined: a block's roots hash tens of thousands of nodes
        nxt = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root of the tree over `leaves` (raw leaf data, hashed here)."""
    return _root_of_hashes([_sha256(b"\x00" + leaf).digest() for leaf in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path proving leaf `index` in the tree over `leaves`."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} outside a tree of {len(leaves)}")
    hashes = [leaf_hash(leaf) for leaf in leaves]
    path: list[bytes] = []

    def walk(lo: int, hi: int, i: int) -> None:
        n = hi - lo
        if n == 1:
            return
        k = _split(n)
        if i < k:
            walk(lo, lo + k, i)
            path.append(_root_of_hashes(hashes[lo + k : hi]))
        else:
            walk(lo + k, hi, i - k)
            path.append(_root_of_hashes(hashes[lo : lo + k]))

    walk(0, len(hashes), index)
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """Check an audit path (RFC 6962 section 2.1.1 verification algorithm)."""
    if not 0 <= index < size:
        return False
    return verify_inclusion_of_hash(leaf_hash(leaf), index, size, path, root)


def verify_inclusion_of_hash(leaf_digest: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """`verify_inclusion` from the leaf's hash, SHA-256(0x00 || leaf): what a public proof gives
    (the explorer does not show the leaf of a transaction that concerns a patient)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_digest
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
