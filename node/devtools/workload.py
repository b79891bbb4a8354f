"""Signed transaction workloads for `medledger bench`, prepared before the clock starts.

A workload is a list of setup phases (transactions that must be committed, phase by phase,
before the measurement: the practitioners, patients and records the measured transactions
refer to) and the measured transactions themselves. Every measured transaction has its own
sender, so no two of them race for a nonce and each one can be judged on its own.

- `register`: `identity.register` of fresh patient keys, nothing to set up.
- `mix`: what a hospital network sends, in the proportions of `MIX`: new patients registering,
  practitioners announcing records, patients granting consents, practitioners requesting access
  (half of those to records whose patient granted the institution's staff access in setup, so
  the access decisions are both granted and denied).

Ledger transactions carry metadata only, never health data (a patient's registration may not
even carry a label) and no free text at all (a break-glass reason is a code), so there is nothing
to pad a transaction with: `tx_bytes` is refused (it used to pad access requests with a free-text
reason, which the chain no longer takes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from node.app.types.identity import attest
from node.core.crypto import Identity
from node.chain.tx import Transaction

# Measured transactions per 100 in the `mix` workload.
MIX: tuple[tuple[str, int], ...] = (
    ("identity.register", 10),
    ("record.add", 30),
    ("consent.grant", 20),
    ("access.request", 40),
)
WORKLOADS = ("register", "mix")
SETUP_RECORDS = 64  # records (half of them consented) the measured access requests ask for
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    setup: tuple[tuple[Transaction, ...], ...]
    measured: tuple[Transaction, ...]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def mean_tx_bytes(self) -> int:
        return sum(len(t.encoded) for t in self.measured) // max(1, len(self.measured))


class _Keys:
    """Deterministic fresh identities from a seed (signing is the slow part, not this)."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.n = 0

    def next(self) -> Identity:
        self.n += 1
        return Identity.from_seed(hashlib.sha256(self.seed + self.n.to_bytes(8, "big")).digest())


def _tx(ident: Identity, chain_id: str, type_: str, nonce: int, body: dict[str, Any]) -> Transaction:
    return Transaction.create(ident, chain_id=chain_id, type=type_, nonce=nonce, body=body)


def _register(keys: _Keys, chain_id: str) -> Transaction:
    return _tx(keys.next(), chain_id, "identity.register", 1, {"role": "patient"})


def register_workload(chain_id: str, count: int, *, seed: bytes) -> Workload:
    keys = _Keys(seed)
    txs = tuple(_register(keys, chain_id) for _ in range(count))
    return Workload("register", (), txs, {"identity.register": count})


def _patient_body(institution: Identity, chain_id: str, patient: Identity) -> dict[str, Any]:
    """A patient's registration attested by `institution` (so its staff may write the patient's records)."""
    return {"role": "patient", "institution": institution.public_key,
            "attestation": attest(institution, chain_id=chain_id, registrant=patient.public_key, role="patient")}


def mix_counts(count: int) -> dict[str, int]:
    """How many of each type `count` measured transactions hold (the rounding goes to the last)."""
    total = sum(w for _, w in MIX)
    counts = {name: count * w // total for name, w in MIX}
    counts[MIX[-1][0]] += count - sum(counts.values())
    return counts


def mix_workload(chain_id: str, count: int, *, seed: bytes, institution: Identity, now_ms: int,
                 tx_bytes: int = 0) -> Workload:
    """The `mix` workload; `institution` attests the practitioners and holds the records."""
    if tx_bytes:
        raise ValueError("transactions carry no free text any more, so access requests cannot be padded (tx_bytes)")
    keys = _Keys(seed)
    counts = mix_counts(count)
    inst = institution.public_key

    def practitioner() -> tuple[Identity, Transaction]:
        ident = keys.next()
        body = {"role": "practitioner", "institution": inst,
                "attestation": attest(institution, chain_id=chain_id, registrant=ident.public_key, role="practitioner")}
        return ident, _tx(ident, chain_id, "identity.register", 1, body)

    def patient() -> tuple[Identity, Transaction]:
        # registered at the institution: the treatment relationship its practitioners need to
        # add records for the patient (node/app/relationships.py)
        ident = keys.next()
        return ident, _tx(ident, chain_id, "identity.register", 1, _patient_body(institution, chain_id, ident))

    phase1: list[Transaction] = []
    phase2: list[Transaction] = []
    writers = [practitioner() for _ in range(counts["record.add"])]
    requesters = [practitioner() for _ in range(counts["access.request"])]
    granters = [patient() for _ in range(counts["consent.grant"])]
    n_records = min(SETUP_RECORDS, max(2, count // 50))
    record_authors = [practitioner() for _ in range(n_records)]
    record_patients = [patient() for _ in range(n_records)]
    for group in (writers, requesters, granters, record_authors, record_patients):
        phase1.extend(tx for _, tx in group)

    until = now_ms + 365 * DAY_MS
    record_ids = [hashlib.sha256(b"bench-record" + keys.seed + i.to_bytes(4, "big")).digest() for i in range(n_records)]
    for i, ((author, _), (pat, _)) in enumerate(zip(record_authors, record_patients, strict=True)):
        phase2.append(_tx(author, chain_id, "record.add", 2, {
            "record": record_ids[i], "patient": pat.public_key, "resource_type": "Observation",
            "hash": hashlib.sha256(record_ids[i]).digest(), "custodian": inst}))
        if i % 2 == 0:  # every second record's patient lets the institution's staff in
            phase2.append(_tx(pat, chain_id, "consent.grant", 2, {
                "grantee_kind": "institution", "grantee": inst, "purposes": ["treatment"],
                "resource_types": ["*"], "valid_until": until}))

    measured: list[Transaction] = []
    per_type: dict[str, list[Transaction]] = {name: [] for name, _ in MIX}
    per_type["identity.register"] = [_register(keys, chain_id) for _ in range(counts["identity.register"])]
    for i, (author, _) in enumerate(writers):
        rid = hashlib.sha256(b"bench-new-record" + keys.seed + i.to_bytes(4, "big")).digest()
        owner = granters[i % len(granters)][0] if granters else record_patients[0][0]
        per_type["record.add"].append(_tx(author, chain_id, "record.add", 2, {
            "record": rid, "patient": owner.public_key, "resource_type": "Condition",
            "hash": hashlib.sha256(rid).digest(), "custodian": inst}))
    for i, (pat, _) in enumerate(granters):
        grantee = requesters[i % len(requesters)][0].public_key if requesters else inst
        kind = "practitioner" if requesters else "institution"
        per_type["consent.grant"].append(_tx(pat, chain_id, "consent.grant", 2, {
            "grantee_kind": kind, "grantee": grantee, "purposes": ["treatment"],
            "resource_types": ["Condition", "Observation"], "valid_until": until}))
    for j, (req, _) in enumerate(requesters):
        body: dict[str, Any] = {"record": record_ids[j % n_records], "purpose": "treatment"}
        per_type["access.request"].append(_tx(req, chain_id, "access.request", 2, body))
    # interleave the types in their proportions, as they would arrive
    queues = {name: list(reversed(txs)) for name, txs in per_type.items()}
    while any(queues.values()):
        for name, weight in MIX:
            for _ in range(weight // 10):
                if queues[name]:
                    measured.append(queues[name].pop())
    return Workload("mix", (tuple(phase1), tuple(phase2)), tuple(measured), counts)


def preload_phases(chain_id: str, records: int, *, seed: bytes, institution: Identity,
                   writers: int = 10_000) -> Iterator[tuple[Transaction, ...]]:
    """Phases that put `records` records in state: `writers` practitioners and as many patients
    register, then each practitioner announces one record per phase (its nonce rising by one a
    phase, so no phase holds two transactions of one sender). Generated lazily: a million signed
    transactions are never all in memory at once."""
    keys = _Keys(b"preload" + seed)
    inst = institution.public_key
    writers = max(1, min(writers, records))
    staff = [keys.next() for _ in range(writers)]
    patients = [keys.next() for _ in range(writers)]
    first: list[Transaction] = []
    for ident in staff:
        first.append(_tx(ident, chain_id, "identity.register", 1, {
            "role": "practitioner", "institution": inst,
            "attestation": attest(institution, chain_id=chain_id, registrant=ident.public_key, role="practitioner")}))
    first.extend(_tx(p, chain_id, "identity.register", 1, _patient_body(institution, chain_id, p)) for p in patients)
    yield tuple(first)
    done, nonce = 0, 2
    while done < records:
        phase = []
        for i, author in enumerate(staff[: records - done]):
            rid = hashlib.sha256(b"preload-record" + keys.seed + (done + i).to_bytes(8, "big")).digest()
            phase.append(_tx(author, chain_id, "record.add", nonce, {
                "record": rid, "patient": patients[i].public_key, "resource_type": "Observation",
                "hash": hashlib.sha256(rid).digest(), "custodian": inst}))
        done += len(phase)
        nonce += 1
        yield tuple(phase)
