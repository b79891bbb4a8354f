"""What the engine asks the node runtime to do: frozen dataclasses, executed in order.

The engine never touches a socket, a disk or a clock. Each of its methods returns a list of
actions and the runtime carries them out one after another, in the order given. The order is
part of the contract: a `Persist` must be durable (appended and fsynced) before any later
action of the same list runs, which is how "every vote is persisted before it is sent" holds
even if the process dies in the middle of a list. `CommitBlock` must likewise be durable before
later actions run.

| action           | the runtime ...                                                           |
| ---------------- | ------------------------------------------------------------------------- |
| Broadcast        | sends the message to every other validator (and observers)                |
| Send             | sends the message to one validator                                        |
| Persist          | appends `entry` to the consensus WAL under `height`, fsyncs               |
| PruneWal         | deletes WAL entries of heights below `below_height` (no fsync needed)     |
| SetTimer         | (re)arms timer `key` to fire `on_timer(key)` after `delay_ms`             |
| CancelTimer      | disarms timer `key` (no-op if not armed)                                  |
| RequestProposal  | builds a block for (height, view), answers `on_proposal_ready`            |
| ValidateBlock    | checks that `payload` is a valid block whose digest is `digest`,          |
|                  | answers `on_block_validated(height, digest, ok)`; `prepared_before`: a    |
|                  | quorum is known to have prepared (or committed) it, so its time was       |
|                  | checked when it was fresh and may be old now (a re-proposal)              |
| CommitBlock      | applies and stores the final block with its certificate                   |
| ReportEvidence   | stores / forwards proof that a validator signed two conflicting votes     |
| ViewChanged      | informational (logs, metrics)                                             |
| NeedSync         | fetches final blocks up to at least `height` from peers (block sync)      |
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from consensus.certificate import CommitCertificate
from consensus.evidence import Evidence
from consensus.messages import Message

# One frozen record per action: the runtime dispatches on the type, so the decorator and the
# field lists repeat on purpose (a shared base would only hide which fields each action has).

@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcast:
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    to: bytes
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    height: int
    entry: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneWal:
    below_height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTimer:
    key: Hashable
    delay_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer:
    key: Hashable


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestProposal:
    height: int
    view: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidateBlock:
    height: int
    view: int
    digest: bytes
    payload: bytes
    prepared_before: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitBlock:
    height: int
    view: int
    digest: bytes
    payload: bytes
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportEvidence:
    evidence: Evidence


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewChanged:
    height: int
    view: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NeedSync:
    height: int


Action = (Broadcast | Send | Persist | PruneWal | SetTimer | CancelTimer | RequestProposal | ValidateBlock
          | CommitBlock | ReportEvidence | ViewChanged | NeedSync)
