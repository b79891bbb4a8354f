"""A node acting for its institution's people: the records service the FHIR server calls.

A FHIR client authenticates with a bearer token (node/fhir/), so the node does not hold the
practitioner's key. The node's institution then acts *on behalf of* the identity the token was
issued to: it signs `record.add` and `access.request` with its own key and `on_behalf_of` the
practitioner (the ledger checks that the practitioner is registered under that institution and
decides and audits the access for the practitioner, naming both), and a custodian re-wraps a
record's key for the institution of a delegated reader, so the plaintext exists only at the
reader's own institution (docs/fhir.md, "Where the data is decrypted").

This module holds the interface the FHIR layer codes against (`RecordAccess`) and the values
it passes; the implementation for a running node is built beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from node.core.errors import CodedError


@dataclass(frozen=True)
class NewRecord:
    """One resource to store for its author: validated FHIR JSON (bytes, as the author wrote it,
    the patient reference already the ledger's), for a registered patient. `supersedes` is the
    record id of the version this one replaces (its latest version), or None for a new record.
    `record_id` is the id to register it under (32 bytes: a transaction Bundle's entries refer
    to each other by the ids the server gave them before storing), or None for a fresh one."""

    patient: bytes
    resource_type: str
    resource_json: bytes
    supersedes: bytes | None = None
    record_id: bytes | None = None


@dataclass(frozen=True)
class StoredRecord:
    """A record stored by this node's institution and registered by a committed `record.add`."""

    record_id: bytes
    tx_hash: bytes
    height: int


class RecordAccess(Protocol):
    """What the FHIR layer asks of the records service, for an identity it authenticated.

    Every failure is a CodedError whose `code` is the ledger's or the custodian's reason
    (`no_consent`, `consent_revoked`, `erased`, `no_grant`, `not_our_practitioner`, ...) and
    whose `status` is the HTTP status to answer with."""

    def predict(self, reader: bytes, record_id: bytes, purpose: str, *, reason: str | None = None) -> str | None:
        """Without writing anything: None if `access.request` by `reader` (through this node's
        institution) would be granted at the current state, else the refusal's code. A patient
        reader (or its guardian) may read its own records held by this node's institution. Lets a search
        leave out what it may not show without filling the patient's audit trail with denials."""
        ...

    async def read_for(self, reader: bytes, record_ids: Sequence[bytes], purpose: str, *,
                       reason: str | None = None) -> list[bytes | CodedError]:
        """For each record, in order: its decrypted FHIR JSON, or why not. Decided on the ledger
        for `reader` (one `access.request` on behalf of the reader per record not already
        granted, submitted as one batch), fetched from its custodian and decrypted here."""
        ...

    async def store_for(self, author: bytes, items: Sequence[NewRecord]) -> list[StoredRecord | CodedError]:
        """Encrypt each item (keys wrapped for the patient and this institution), keep it at this
        node's custodian store and register it with `record.add` on behalf of `author` (a
        practitioner of this institution); the transactions go out as one batch and the answer
        waits for their commit. For each item, in order: the stored record, or why not."""
        ...
