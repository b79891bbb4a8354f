"""Evidence of equivocation: two conflicting votes signed by one validator.

An honest validator signs at most one PRE-PREPARE (if primary), one PREPARE and one COMMIT per
height and view, and persists each before sending it, so two signed votes of the same kind for
the same height and view but different blocks prove misbehaviour to anyone who knows the
validator's key. The engine keeps the first vote it saw from each validator; when a second,
different one arrives it builds `Evidence` and reports it. Two PRE-PREPAREs keep their
payloads, since their signatures cover them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.crypto import Verifier
from consensus.encoding import pack
from consensus.messages import (
    DEFAULT_MAX_PAYLOAD,
    Commit,
    MessageDecodeError,
    Prepare,
    PrePrepare,
    _from_value,
)

Vote = PrePrepare | Prepare | Commit


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """Two signed votes of one kind, by one validator, at one (chain, height, view), for different blocks."""

    first: Vote
    second: Vote

    def __post_init__(self) -> None:
        a, b = self.first, self.second
        if type(a) not in (PrePrepare, Prepare, Commit) or type(a) is not type(b):
            raise ValueError("evidence is two votes of the same kind")
        if (a.chain_id, a.height, a.view, a.sender) != (b.chain_id, b.height, b.view, b.sender):
            raise ValueError("evidence votes must share chain, height, view and sender")
        if a.digest == b.digest:
            raise ValueError("evidence votes must be for different blocks")

    @property
    def offender(self) -> bytes:
        return self.first.sender

    @property
    def height(self) -> int:
        return self.first.height

    def verify(self, verifier: Verifier) -> bool:
        """True if both votes carry valid signatures of the offender."""
        return all(verifier.verify(v.sender, v.signing_bytes(), v.signature) for v in (self.first, self.second))

    def encode(self) -> bytes:
        return pack([self.first.to_value(), self.second.to_value()])

    @classmethod
    def decode(cls, data: bytes, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Evidence:
        """Parse evidence from bytes; raises `MessageDecodeError` if malformed."""
        try:
            value: Any = msgpack.unpackb(data, raw=False, use_list=False, max_map_len=0, max_ext_len=0,
                                         max_array_len=16, max_str_len=64, max_bin_len=max(max_payload, 128))
            if type(value) is not tuple or len(value) != 2:
                raise MessageDecodeError("evidence is a pair of votes")
            first, second = (_from_value(v, max_payload) for v in value)
            return cls(first=first, second=second)  # type: ignore[arg-type]  # any message: __post_init__ refuses a non-vote
        except MessageDecodeError:
            raise
        except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:
            raise MessageDecodeError(f"malformed evidence: {exc}") from None


_VOTE_KINDS = {PrePrepare: 1, Prepare: 2, Commit: 3}


class EvidenceLog:
    """The evidence an engine keeps: one per (offender, height, view, kind), the oldest dropped past `limit`."""

    __slots__ = ("limit", "_items", "_keys")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: list[Evidence] = []
        self._keys: set[tuple[bytes, int, int, int]] = set()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> tuple[Evidence, ...]:
        return tuple(self._items)

    def add(self, first: Vote, second: Vote) -> Evidence | None:
        """Keep evidence of `first` and `second` (checked by the caller); None if this offence is known."""
        key = _key(first)
        if key in self._keys:
            return None
        evidence = Evidence(first=first, second=second)
        self._keys.add(key)
        if len(self._items) >= self.limit:
            self._keys.discard(_key(self._items.pop(0).first))
        self._items.append(evidence)
        return evidence


def _key(vote: Vote) -> tuple[bytes, int, int, int]:
    return (vote.sender, vote.height, vote.view, _VOTE_KINDS[type(vote)])
