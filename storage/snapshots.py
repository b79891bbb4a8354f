"""State snapshots on disk: writing one, listing, reading its chunks, checking them, pruning.

A snapshot is the whole application state at one committed height, so a new node can start
there instead of replaying the chain. Layout, under the snapshot directory of a node home:

    <height:020>/manifest      msgpack map (see `SnapshotInfo`), written last: a snapshot
                               without its manifest is unfinished and ignored
    <height:020>/chunk-<i:06>  msgpack list of [state key, value] pairs, in key order; a chunk
                               is cut once it holds `CHUNK_BYTES` (the last may be smaller)
    <height:020>/attestations  msgpack list of [signer id, signature] over `attestation_message`

A snapshot is written into `<height>.partial/` and renamed when complete. The entries are
committed to by `entries_hash`: SHA-256 over every entry (length-prefixed key, then value) in
key order. It does not depend on how the entries were cut into chunks, so snapshots of one
height written by different nodes carry the same hash, and validators' signatures over it can
be compared (node/runtime/snapshots.py signs; a joiner counts them). Chunk hashes only guard
the transfer. `verify_chunks` rebuilds the entries from chunks and refuses, with a message that
says which, a chunk whose hash differs, keys out of order, or a count or hash that differs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

CHUNK_BYTES = 1024 * 1024
MAX_CHUNK_BYTES = 4 * CHUNK_BYTES  # what a reader accepts (one entry may make a chunk overflow)
KEEP_SNAPSHOTS = 2
FORMAT_VERSION = 1
ATTESTATION_DOMAIN = "medledger-snapshot-v2"
LEGACY_ATTESTATION_DOMAIN = "medledger-snapshot-v1"  # without the state checksum: still accepted for the entries
MANIFEST = "manifest"
ATTESTATIONS = "attestations"
_PARTIAL = ".partial"
_U64 = struct.Struct(">Q")


class SnapshotInvalid(Exception):
    """A snapshot (or a chunk of one) is damaged, incomplete or not what its manifest says."""


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise SnapshotInvalid(f"{what} does not decode: {exc}") from None


def chunk_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _entry_bytes(key: bytes, value: bytes) -> bytes:
    return _U64.pack(len(key)) + key + value


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotInfo:
    """What a manifest says: the height, its block (whole, with its commit certificate), the
    state root of that block, the chunks' hashes and what the entries add up to."""

    chain_id: str
    height: int
    block_hash: bytes
    state_root: bytes
    block: bytes  # the encoded block at `height`
    certificate: bytes  # its commit certificate
    chunk_hashes: tuple[bytes, ...]
    entries: int
    entries_hash: bytes
    state_sum: bytes  # storage.chain's checksum of the same entries (32 bytes)

    def encode(self) -> bytes:
        return _pack({
            "version": FORMAT_VERSION, "chain_id": self.chain_id, "height": self.height,
            "block_hash": self.block_hash, "state_root": self.state_root, "block": self.block,
            "certificate": self.certificate, "chunk_hashes": list(self.chunk_hashes),
            "entries": self.entries, "entries_hash": self.entries_hash, "state_sum": self.state_sum,
        })

    @classmethod
    def decode(cls, data: bytes) -> "SnapshotInfo":
        doc = _unpack(data, "the snapshot manifest")
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise SnapshotInvalid("the snapshot manifest is not a version-1 manifest")
        try:
            info = cls(
                chain_id=doc["chain_id"], height=doc["height"], block_hash=doc["block_hash"],
                state_root=doc["state_root"], block=doc["block"], certificate=doc["certificate"],
                chunk_hashes=tuple(doc["chunk_hashes"]), entries=doc["entries"],
                entries_hash=doc["entries_hash"], state_sum=doc["state_sum"],
            )
        except (KeyError, TypeError) as exc:
            raise SnapshotInvalid(f"the snapshot manifest lacks a field: {exc}") from None
        ok = (isinstance(info.chain_id, str) and isinstance(info.height, int) and info.height >= 1
              and isinstance(info.entries, int) and info.entries >= 0
              and all(isinstance(b, bytes) and len(b) == 32 for b in
                      (info.block_hash, info.state_root, info.entries_hash, info.state_sum, *info.chunk_hashes))
              and isinstance(info.block, bytes) and isinstance(info.certificate, bytes))
        if not ok:
            raise SnapshotInvalid("the snapshot manifest has a field of the wrong type")
        return info

    def to_json(self) -> dict[str, Any]:
        """The listing of GET /v1/snapshots (the block and certificate are fetched with it)."""
        return {
            "height": self.height, "block_hash": self.block_hash.hex(), "state_root": self.state_root.hex(),
            "chunks": len(self.chunk_hashes), "chunk_hashes": [h.hex() for h in self.chunk_hashes],
            "entries": self.entries, "entries_hash": self.entries_hash.hex(),
        }


def attestation_message(info: SnapshotInfo) -> bytes:
    """The bytes a validator signs to say "the state at this block is these entries, and their
    checksum is this" (the store's running checksum, storage.chain.state_entry_sum): a joiner
    holding f + 1 such signatures need not hash every entry again to know the checksum."""
    return _pack([ATTESTATION_DOMAIN, info.chain_id, info.height, info.block_hash, info.state_root,
                  info.entries, info.entries_hash, info.state_sum])


def legacy_attestation_message(info: SnapshotInfo) -> bytes:
    """What validators of the previous version signed: the entries without their checksum (a
    joiner counting these checks the checksum itself)."""
    return _pack([LEGACY_ATTESTATION_DOMAIN, info.chain_id, info.height, info.block_hash, info.state_root,
                  info.entries, info.entries_hash])


def _dir(root: Path, height: int) -> Path:
    return root / f"{height:020d}"


def write_snapshot(root: Path, entries: Iterable[tuple[bytes, bytes]], *, chain_id: str, height: int,
                   block_hash: bytes, state_root: bytes, block: bytes, certificate: bytes,
                   state_sum: bytes, chunk_bytes: int = CHUNK_BYTES, keep: int = KEEP_SNAPSHOTS) -> SnapshotInfo:
    """Write the snapshot of `entries` (state keys and values, in key order) at `height`, then
    prune all but the newest `keep`. Returns its manifest."""
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f"{height:020d}{_PARTIAL}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    digest = hashlib.sha256()
    hashes: list[bytes] = []
    count = 0
    pending: list[list[bytes]] = []
    size = 0

    def flush() -> None:
        nonlocal pending, size
        data = _pack(pending)
        (partial / f"chunk-{len(hashes):06d}").write_bytes(data)
        hashes.append(chunk_hash(data))
        pending, size = [], 0

    for key, value in entries:
        digest.update(_entry_bytes(key, value))
        count += 1
        pending.append([key, value])
        size += len(key) + len(value) + 8
        if size >= chunk_bytes:
            flush()
    if pending or not hashes:
        flush()
    info = SnapshotInfo(chain_id=chain_id, height=height, block_hash=block_hash, state_root=state_root,
                        block=block, certificate=certificate, chunk_hashes=tuple(hashes), entries=count,
                        entries_hash=digest.digest(), state_sum=state_sum)
    _write_atomic(partial / MANIFEST, info.encode())
    final = _dir(root, height)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    prune(root, keep)
    return info


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def heights(root: Path) -> list[int]:
    """Heights of the complete snapshots under `root`, oldest first."""
    if not root.is_dir():
        return []
    out = [int(p.name) for p in root.iterdir()
           if p.name.isdigit() and (p / MANIFEST).is_file()]
    return sorted(out)


def load_snapshot(root: Path, height: int) -> SnapshotInfo:
    try:
        data = (_dir(root, height) / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise SnapshotInvalid(f"there is no snapshot at height {height}") from None
    return SnapshotInfo.decode(data)


def list_snapshots(root: Path) -> list[SnapshotInfo]:
    """The complete snapshots under `root`, newest first (a damaged manifest is skipped)."""
    out = []
    for h in reversed(heights(root)):
        try:
            out.append(load_snapshot(root, h))
        except SnapshotInvalid:
            continue
    return out


def read_chunk(root: Path, height: int, index: int) -> bytes:
    """Chunk `index` of the snapshot at `height` (SnapshotInvalid: no such snapshot or chunk)."""
    info = load_snapshot(root, height)
    if not 0 <= index < len(info.chunk_hashes):
        raise SnapshotInvalid(f"the snapshot at height {height} has no chunk {index} (it has {len(info.chunk_hashes)})")
    return (_dir(root, height) / f"chunk-{index:06d}").read_bytes()


def prune(root: Path, keep: int = KEEP_SNAPSHOTS) -> None:
    """Remove all but the newest `keep` complete snapshots, and unfinished ones older than them."""
    done = heights(root)
    kept = set(done[-keep:]) if keep > 0 else set()
    newest = max(done) if done else 0
    for p in root.iterdir() if root.is_dir() else ():
        if p.name.isdigit() and int(p.name) in done and int(p.name) not in kept:
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.endswith(_PARTIAL) and p.name[: -len(_PARTIAL)].isdigit() and int(p.name[: -len(_PARTIAL)]) < newest:
            shutil.rmtree(p, ignore_errors=True)


def add_attestation(root: Path, height: int, signer: bytes, signature: bytes) -> None:
    """Record one validator's signature over the snapshot's `attestation_message`."""
    known = dict(attestations(root, height))
    known[signer] = signature
    _write_atomic(_dir(root, height) / ATTESTATIONS, _pack(sorted([k, v] for k, v in known.items())))


def attestations(root: Path, height: int) -> list[tuple[bytes, bytes]]:
    try:
        data = (_dir(root, height) / ATTESTATIONS).read_bytes()
    except FileNotFoundError:
        return []
    doc = _unpack(data, "the snapshot attestations")
    if not isinstance(doc, list):
        raise SnapshotInvalid("the snapshot attestations are not a list")
    return [(bytes(s), bytes(sig)) for s, sig in doc if isinstance(s, bytes) and isinstance(sig, bytes)]


def verify_chunk_runs(info: SnapshotInfo, chunks: Iterable[bytes], *,
                      check_state_sum: bool = False) -> Iterator[list[list[bytes]]]:
    """Yield the snapshot's entries chunk by chunk (each a list of [key, value], in order),
    checking each chunk's size and hash, that every entry is a pair of byte strings, that keys
    strictly ascend, and at the end that the count and `entries_hash` are the manifest's; with
    `check_state_sum`, also the store's checksum of the entries (`state_sum`: the sum of the
    SHA-256 of each length-prefixed entry, as storage.chain.state_entry_sum), computed in the
    same pass from the same bytes. Raises SnapshotInvalid; a consumer must not keep the entries
    unless the iteration ends. A joiner runs the inner loop once for every entry of the state:
    it holds no call it can do without (a plain loop measured faster here than whole-list
    comprehensions and `map`)."""
    digest = hashlib.sha256()
    update = digest.update
    sha256 = hashlib.sha256
    from_bytes = int.from_bytes
    pack = _U64.pack
    total = 0
    count = 0
    last = b""
    index = -1
    for index, data in enumerate(chunks):
        if index >= len(info.chunk_hashes):
            raise SnapshotInvalid(f"the snapshot has more chunks than its manifest's {len(info.chunk_hashes)}")
        if len(data) > MAX_CHUNK_BYTES:
            raise SnapshotInvalid(f"snapshot chunk {index} is larger than {MAX_CHUNK_BYTES} bytes")
        if chunk_hash(data) != info.chunk_hashes[index]:
            raise SnapshotInvalid(f"snapshot chunk {index} does not match its hash in the manifest (damaged or altered)")
        doc = _unpack(data, f"snapshot chunk {index}")
        if type(doc) is not list:
            raise SnapshotInvalid(f"snapshot chunk {index} is not a list of [key, value] pairs")
        for pair in doc:
            if type(pair) is not list or len(pair) != 2:
                raise SnapshotInvalid(f"snapshot chunk {index} is not a list of [key, value] pairs")
            key, value = pair
            if type(key) is not bytes or type(value) is not bytes:
                raise SnapshotInvalid(f"snapshot chunk {index} is not a list of [key, value] pairs")
            if key <= last and count:
                raise SnapshotInvalid(f"snapshot chunk {index}: keys are not in ascending order")
            last = key
            entry = pack(len(key)) + key + value  # _entry_bytes
            update(entry)
            if check_state_sum:
                total += from_bytes(sha256(entry).digest(), "big")
            count += 1
        yield doc
    if index + 1 != len(info.chunk_hashes):
        raise SnapshotInvalid(f"the snapshot has {index + 1} chunks, its manifest {len(info.chunk_hashes)}")
    if count != info.entries or digest.digest() != info.entries_hash:
        raise SnapshotInvalid("the snapshot's entries do not add up to the manifest's entry hash")
    if check_state_sum and total % (1 << 256) != from_bytes(info.state_sum, "big"):
        raise SnapshotInvalid("the snapshot's entries do not give the state checksum its manifest names")


def verify_chunks(info: SnapshotInfo, chunks: Iterable[bytes], *, check_state_sum: bool = False) -> Iterator[tuple[bytes, bytes]]:
    """The entries of `verify_chunk_runs`, one by one, as (key, value)."""
    for run in verify_chunk_runs(info, chunks, check_state_sum=check_state_sum):
        for key, value in run:
            yield key, value


def snapshot_bytes(root: Path, height: int) -> int:
    """The size of the snapshot at `height` on disk: its chunks and manifest (0: none there)."""
    folder = _dir(root, height)
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.iterdir() if p.name == MANIFEST or p.name.startswith("chunk-"))
