"""Entries of the consensus write-ahead log: the votes this validator signed, and why.

Before the engine sends any vote it signs (PRE-PREPARE, PREPARE, COMMIT, VIEW-CHANGE,
NEW-VIEW) it emits `Persist(height, entry)`; the runtime makes the entry durable before it
sends anything. After a crash the runtime hands the unpruned entries back to the engine, which
rebuilds what it promised at its current height: the view it moved to, the block it prepared
or committed in each view and the certificate behind it. So a restarted validator re-sends the
votes it already signed and never signs one that conflicts.

An entry is `[1, message, context]`: the signed message, plus for a PREPARE the pre-prepare it
accepted (with the payload, so the block is not lost), and for a COMMIT the prepared
certificate that justified it (so a later VIEW-CHANGE can still prove it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.certificate import CertificateDecodeError, PreparedCertificate
from consensus.encoding import KIND_PRE_PREPARE, pack
from consensus.errors import LocalProtocolError, WalCorruptError
from consensus.messages import (
    Commit,
    Message,
    MessageDecodeError,
    Prepare,
    PrePrepare,
    _from_value,
)

ENTRY_VOTE = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class WalRecord:
    """One signed vote of ours, with what justified it."""

    message: Message
    accepted: PrePrepare | None = None
    prepared: PreparedCertificate | None = None

    def __post_init__(self) -> None:
        if self.accepted is not None and type(self.message) is not Prepare:
            raise ValueError("only a PREPARE records the pre-prepare it accepted")
        if self.prepared is not None and type(self.message) is not Commit:
            raise ValueError("only a COMMIT records its prepared certificate")

    def encode(self) -> bytes:
        context: Any = None
        if self.accepted is not None:
            context = self.accepted.to_value()
        elif self.prepared is not None:
            context = self.prepared.to_value()
        return pack([ENTRY_VOTE, self.message.to_value(), context])


def decode_record(data: bytes, *, max_payload: int) -> WalRecord:
    """Parse one WAL entry written by `WalRecord.encode`; raises `WalCorruptError`."""
    try:
        value = msgpack.unpackb(data, raw=False, use_list=False, max_map_len=0, max_ext_len=0)
        if type(value) is not tuple or len(value) != 3 or value[0] != ENTRY_VOTE:
            raise WalCorruptError("WAL entry is not [1, message, context]")
        message = _from_value(value[1], max_payload)
        context = value[2]
        if context is None:
            return WalRecord(message=message)
        if type(message) is Prepare:
            accepted = _from_value(context, max_payload, KIND_PRE_PREPARE)
            return WalRecord(message=message, accepted=accepted)  # type: ignore[arg-type]  # only= gives a PrePrepare
        if type(message) is Commit:
            return WalRecord(message=message, prepared=PreparedCertificate.from_value(context))
        raise WalCorruptError("WAL entry has context for a message that takes none")
    except WalCorruptError:
        raise
    except (ValueError, TypeError, MessageDecodeError, CertificateDecodeError,
            msgpack.exceptions.UnpackException) as exc:
        raise WalCorruptError(f"WAL entry does not decode: {exc}") from None


def records_by_height(wal: Sequence[bytes], *, me: bytes, chain_id: str, above: int,
                      max_payload: int) -> dict[int, list[WalRecord]]:
    """Decode our WAL entries for heights above `above`, grouped by height, in order.

    Raises `LocalProtocolError` if an entry of those heights holds a vote that is not ours or not
    for `chain_id`. Entries of final heights (not yet pruned at a crash) are skipped unchecked: after
    a key rotation they hold votes signed with the old key, and a restart with the new key must not
    refuse them.
    """
    restored: dict[int, list[WalRecord]] = {}
    for entry in wal:
        record = decode_record(entry, max_payload=max_payload)
        if record.message.height <= above:
            continue
        if record.message.sender != me or record.message.chain_id != chain_id:
            raise LocalProtocolError("the WAL holds a vote that is not ours or not for this chain")
        restored.setdefault(record.message.height, []).append(record)
    return restored
