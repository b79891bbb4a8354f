"""The custodian's off-chain record store: ciphertext and wrapped data keys, never plaintext.

Kept in its own LevelDB (`data/records`) apart from the chain, so that erasing a record can
delete its keys and compact exactly that range until the bytes are gone from the files, without
rewriting chain data. Values are bytes (the custodian's encoding); the store does not interpret them.
"""

from __future__ import annotations

from .kv import KeyValueStore, WriteBatch

P_RECORD = b"r/"
P_TRIAL = b"t/"  # a trial site's own items: invitations, participant links, submissions (sealed by the node)
MAX_RECORD_BYTES = 2 * 1024 * 1024
# Two keys that bracket every record key. LevelDB's manual compaction rewrites the levels above
# the deepest one holding a key range, never that deepest level itself; if a record and its
# deletion were flushed together into a table at the deepest level, the bytes would stay on
# disk. With the brackets kept in a table at the deepest level, every later flush lands above
# them, so compacting a record's range always merges the deletion into the value and drops both.
SENTINELS = (b"\x00medledger-lower-bound", b"\xff\xffmedledger-upper-bound")


class OffchainStore:
    """Ciphertexts and wrapped keys by record id (32 bytes)."""

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv
        if any(kv.get(k) is None for k in SENTINELS):
            batch = WriteBatch()
            for key in SENTINELS:
                batch.put(key, b"")
            kv.write(batch, sync=True)
            kv.compact(None, None)

    def put(self, record_id: bytes, value: bytes) -> None:
        batch = WriteBatch()
        batch.put(P_RECORD + record_id, value)
        self.kv.write(batch, sync=True)

    def get(self, record_id: bytes) -> bytes | None:
        return self.kv.get(P_RECORD + record_id) or None

    def has(self, record_id: bytes) -> bool:
        return self.kv.get(P_RECORD + record_id) is not None

    def erase(self, record_id: bytes) -> bool:
        """Delete a record and compact its key range so the bytes leave the LevelDB files."""
        key = P_RECORD + record_id
        existed = self.kv.get(key) is not None
        batch = WriteBatch()
        batch.delete(key)
        self.kv.write(batch, sync=True)
        # See SENTINELS for why this compaction reliably removes the bytes.
        self.kv.compact(key, key + b"\xff")
        return existed

    def put_trial_item(self, key: bytes, value: bytes) -> None:
        """Keep one of a trial site's items (the caller seals what it puts: node/research/trial_site.py)."""
        batch = WriteBatch()
        batch.put(P_TRIAL + key, value)
        self.kv.write(batch, sync=True)

    def trial_item(self, key: bytes) -> bytes | None:
        return self.kv.get(P_TRIAL + key)

    def trial_items(self, prefix: bytes, limit: int = 10_000) -> list[tuple[bytes, bytes]]:
        """A trial site's items under `prefix`, in key order, at most `limit`."""
        found = []
        for key, value in self.kv.iterate(P_TRIAL + prefix):
            found.append((key[len(P_TRIAL):], value))
            if len(found) >= limit:
                break
        return found

    def record_ids(self) -> list[bytes]:
        return [k[len(P_RECORD):] for k, _ in self.kv.iterate(P_RECORD)]

    def close(self) -> None:
        self.kv.close()
