"""A ledger in memory for the application tests: a genesis with four institutions that are also
the validators, signed transactions with automatic nonces, and blocks executed by the real
executor and committed to a real ChainStore, read back through the reader the runtime uses."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from node.app import queries
from node.app.executor import BlockExecution, execute_block, genesis_state_root, genesis_writes
from node.app.state import FuncReader
from node.app.types.identity import attest
from node.core.crypto import Identity, sha256
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.chain.tx import Transaction
from storage.chain import ChainStore
from storage.kv import MemoryStore

CHAIN = "test-chain"
GENESIS_MS = 1_700_000_000_000
BLOCK_MS = 1_000
HOUR = 60 * 60 * 1000
DAY = 24 * HOUR


def ident(name: str) -> Identity:
    """A fixed identity per name (tests are reproducible)."""
    return Identity.from_seed(sha256(b"medledger-test/" + name.encode()))


def rid(name: str) -> bytes:
    """A fixed record id per name."""
    return sha256(b"record/" + name.encode())


# the kinds a care test gives the institutions (`Ledger(kinds=CARE_KINDS)`)
CARE_KINDS = {"A": "hospital", "B": "clinic", "C": "pharmacy", "D": "insurer", "E": "lab", "F": "pharmacy"}


def make_genesis(validators: Sequence[str] = ("A", "B", "C", "D"), kinds: Mapping[str, str] | None = None) -> Genesis:
    return Genesis(
        chain_id=CHAIN, genesis_time_ms=GENESIS_MS,
        validators=tuple(ValidatorInfo(id=ident(n).public_key, name=f"inst-{n}", address="") for n in validators),
        institutions=tuple(InstitutionInfo(id=ident(n).public_key, name=f"inst-{n}",
                                           **({"kind": kinds[n]} if kinds and n in kinds else {})) for n in validators),
    )


class Ledger:
    def __init__(self, validators: Sequence[str] = ("A", "B", "C", "D"), kinds: Mapping[str, str] | None = None) -> None:
        self.genesis = make_genesis(validators, kinds)
        self.store = ChainStore(MemoryStore())
        self.store.init_genesis(self.genesis.hash(), genesis_writes(self.genesis), genesis_state_root(self.genesis))
        self.state = FuncReader(self.store.state_get, self.store.state_items)
        self.nonces: dict[bytes, int] = defaultdict(int)
        self.now = GENESIS_MS
        self.last: BlockExecution | None = None

    # -- transactions and blocks ---------------------------------------------------------------
    def tx(self, who: Identity, type_: str, body: dict[str, Any], *, nonce: int | None = None) -> Transaction:
        if nonce is None:
            self.nonces[who.public_key] += 1
            nonce = self.nonces[who.public_key]
        return Transaction.create(who, chain_id=CHAIN, type=type_, nonce=nonce, body=body)

    def block(self, *txs: Transaction, at_ms: int | None = None, verify: bool = False) -> list[str]:
        """Execute and commit one block; `verify` re-checks bodies and signatures as for txs a
        node has not seen before."""
        self.now = at_ms if at_ms is not None else self.now + BLOCK_MS
        pool = {} if verify else {t.hash: t for t in txs}
        height = self.store.height + 1
        ex = execute_block(self.state, self.store.state_root, [t.encoded for t in txs], chain_id=CHAIN,
                           height=height, timestamp_ms=self.now, known=pool.get, committed=self.store.has_tx)
        self.store.commit_block(height=height, block_hash=sha256(b"block" + height.to_bytes(8, "big")),
                                block_bytes=b"", certificate=b"", tx_results=list(zip([t.hash for t in ex.txs], ex.results)),
                                state_writes=ex.writes, state_root=ex.state_root)
        self.last = ex
        return ex.results

    def send(self, who: Identity, type_: str, body: dict[str, Any], **kw: Any) -> str:
        """One transaction in its own block; its result code."""
        return self.block(self.tx(who, type_, body), **kw)[0]

    # -- common steps --------------------------------------------------------------------------
    def patient(self, name: str, attested_by: str | None = "A") -> Identity:
        """A patient registered at `attested_by` (by default A, where most test records are
        written: the treatment relationship record.add needs), or self-registered (None)."""
        who = ident(name)
        body: dict[str, Any] = {"role": "patient"}
        if attested_by:
            inst = ident(attested_by)
            body.update(institution=inst.public_key,
                        attestation=attest(inst, chain_id=CHAIN, registrant=who.public_key, role="patient"))
        assert self.send(who, "identity.register", body) == "ok"
        return who

    def staff(self, name: str, institution: str, role: str = "practitioner") -> Identity:
        who, inst = ident(name), ident(institution)
        body = {"role": role, "institution": inst.public_key,
                "attestation": attest(inst, chain_id=CHAIN, registrant=who.public_key, role=role)}
        assert self.send(who, "identity.register", body) == "ok"
        return who

    def add_record(self, author: Identity, patient: Identity, name: str, resource_type: str = "Observation",
                   custodian: str = "A") -> bytes:
        body = {"record": rid(name), "patient": patient.public_key, "resource_type": resource_type,
                "hash": sha256(name.encode()), "custodian": ident(custodian).public_key}
        assert self.send(author, "record.add", body) == "ok"
        return rid(name)

    def grant(self, patient: Identity, grantee: bytes | str, *, kind: str = "institution",
              purposes: Sequence[str] = ("treatment",), types: Sequence[str] = ("Observation",),
              records: Sequence[bytes] = (), deny: Sequence[str] = (), until: int | None = None,
              valid_from: int | None = None, sender: Identity | None = None) -> tuple[str, bytes]:
        body: dict[str, Any] = {"grantee_kind": kind, "grantee": grantee, "purposes": list(purposes),
                                "valid_until": until if until is not None else self.now + 30 * DAY}
        if types:
            body["resource_types"] = list(types)
        if records:
            body["record_ids"] = list(records)
        if deny:
            body["deny_types"] = list(deny)
        if valid_from is not None:
            body["valid_from"] = valid_from
        if sender is not None:
            body["on_behalf_of"] = patient.public_key
        t = self.tx(sender or patient, "consent.grant", body)
        return self.block(t)[0], t.hash

    def request(self, who: Identity, record_id: bytes, purpose: str = "treatment", reason: str = "",
                **kw: Any) -> tuple[str, bytes]:
        body: dict[str, Any] = {"record": record_id, "purpose": purpose}
        if reason:
            body["reason"] = reason
        t = self.tx(who, "access.request", body)
        return self.block(t, **kw)[0], t.hash

    def decision(self, request_tx: bytes) -> dict[str, Any]:
        found = queries.access_grant(self.state, request_tx)
        assert found is not None
        return found

    def audit_events(self, patient: Identity) -> list[str]:
        return [e["event"] for e in queries.patient_audit(self.state, patient.public_key)]


def record_world() -> tuple[Ledger, Identity, Identity, Identity, Identity, bytes]:
    """(ledger, patient, practitioners at A, B and C, one Observation written at A for the patient)."""
    ledger = Ledger()
    pat = ledger.patient("pat")
    doc_a, doc_b, doc_c = ledger.staff("doc-a", "A"), ledger.staff("doc-b", "B"), ledger.staff("doc-c", "C")
    obs = ledger.add_record(doc_a, pat, "obs-1")
    return ledger, pat, doc_a, doc_b, doc_c, obs
