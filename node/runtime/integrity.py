"""The start-up integrity check of a node's chain store.

Before a node votes or serves anything it checks that what its disk holds is one consistent
chain, so a damaged store stops the node with a clear message instead of letting it diverge
silently or hand bad blocks to peers:

- the head: block `height` exists, decodes, hashes to the stored last hash, is indexed at its
  height, and its state root is the stored state root; its commit certificate is for that block
  and verifies against the validator set of that height; nothing is stored past the head;
- the most recent blocks (`RECENT_BLOCKS`): each decodes (its transaction root matches its
  transactions), links to the next by hash, is indexed, has a certificate naming it, and its
  transactions are indexed at their place;
- a store started from a snapshot at height B (`ChainStore.base_height`) holds no blocks
  before B, and the transactions of block B itself are not indexed (the snapshot carries the
  state, not the index): the checks above stop at B; with `[storage] keep_history` it may also
  hold blocks below B fetched from peers (node/runtime/history.py, checked when they came), and
  of those the lowest must be there, decode and be indexed (the fetch goes on below it);
- the application state: the checksum of every state entry equals the one kept up to date by
  each committed block (`storage.chain.state_entry_sum`), which finds an entry that was
  altered, added or lost. The one exception is the first start of a store just made from a
  snapshot, with nothing committed since: its init computed that checksum from the very
  entries it wrote and compared it with the one the validators attested, so the start does not
  read them all again (the mark that allows it is removed on use; every later start scans).

It raises `StoreCorrupted`; the CLI prints the message and exits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from consensus.certificate import CommitCertificate, verify_certificate
from consensus.crypto import Verifier
from consensus.validators import ValidatorSet
from storage.chain import ChainStore, StoreCorrupted

from node.chain.block import Block, BlockInvalid, decode_block
from node.core.crypto import sha256

log = logging.getLogger("medledger.node")

RECENT_BLOCKS = 256
ADVICE = "restore the data directory from a backup, or move it away and let the node sync from its peers"


def _damaged(what: str) -> StoreCorrupted:
    return StoreCorrupted(f"the data directory is damaged: {what}; {ADVICE}")


def _block(store: ChainStore, height: int) -> Block:
    raw = store.block_bytes(height)
    if raw is None:
        raise _damaged(f"block {height} is missing (the stored height is {store.height})")
    try:
        block = decode_block(raw)
    except BlockInvalid as exc:
        raise _damaged(f"block {height} does not decode: {exc}") from None
    if block.header.height != height:
        raise _damaged(f"the block stored at height {height} says it is block {block.header.height}")
    if store.height_of_block(block.hash) != height:
        raise _damaged(f"block {height} is not indexed under its hash")
    return block


def _certificate(store: ChainStore, height: int, digest: bytes) -> CommitCertificate:
    raw = store.certificate(height)
    if raw is None:
        raise _damaged(f"the commit certificate of block {height} is missing")
    try:
        cert = CommitCertificate.decode(raw)
    except ValueError as exc:
        raise _damaged(f"the commit certificate of block {height} does not decode: {exc}") from None
    if cert.height != height or cert.digest != digest:
        raise _damaged(f"the commit certificate stored for block {height} is for another block")
    return cert


def check_store(store: ChainStore, *, chain_id: str, validators_at: Callable[[int], ValidatorSet],
                verifier: Verifier) -> None:
    """Raise StoreCorrupted unless the store's head, recent blocks and state are consistent
    (`validators_at(h)`: the validator set of height h, from the stored state)."""
    height = store.height
    if store.block_bytes(height + 1) is not None:
        raise _damaged(f"block {height + 1} is stored past the head (height {height})")
    if height >= 1:
        head = _block(store, height)
        if head.hash != store.last_hash:
            raise _damaged(f"block {height} does not hash to the stored head hash")
        if head.header.state_root != store.state_root:
            raise _damaged(f"the state root in block {height} differs from the stored state root")
        if head.header.chain_id != chain_id:
            raise _damaged(f"block {height} belongs to chain {head.header.chain_id!r}")
        cert = _certificate(store, height, head.hash)
        if not verify_certificate(cert, chain_id=chain_id, validators=validators_at(height), verifier=verifier):
            raise _damaged(f"the commit certificate of block {height} does not verify against the validators of its height")
        child = head
        base = store.base_height
        for h in range(height - 1, max(0, height - RECENT_BLOCKS, base - 1), -1):
            block = _block(store, h)
            if child.header.prev_hash != block.hash:
                raise _damaged(f"block {h + 1} does not link to the stored block {h}")
            _certificate(store, h, block.hash)
            child = block
        for h in range(max(1, height - RECENT_BLOCKS + 1, base + 1), height + 1):
            block = head if h == height else _block(store, h)
            for index, tx in enumerate(block.txs):
                loc = store.tx_location(sha256(tx))
                if loc is None or (loc.height, loc.index) != (h, index):
                    raise _damaged(f"transaction {index} of block {h} is missing from the transaction index")
    low = store.lowest_height
    if 1 <= low < store.base_height:
        _certificate(store, low, _block(store, low).hash)
    if store.take_state_checked() == height == store.base_height:
        # the first start of a store just made from a snapshot (nothing committed since):
        # init_from_snapshot checked every entry against the attested checksum as it wrote it
        log.info("state written from the snapshot at height %d was checked as it was written; "
                 "later starts scan it", height)
        return
    scanned = store.scan_state_sum()
    stored = store.stored_state_sum()
    if stored is None:
        log.info("recording the state checksum of a store written before checksums existed")
        store.set_state_sum(scanned)
    elif stored != scanned:
        raise _damaged("the application state does not match its checksum (an entry was altered, added or lost)")
