"""governance.admit_institution: a new institution is registered once a quorum of the genesis
validators approved it, and can then attest its staff."""

from __future__ import annotations

import pytest

from node.app import queries
from node.app.types.governance import quorum
from node.app.types.identity import attest

from tests.unit.app.harness import CHAIN, Ledger, ident


@pytest.mark.parametrize("n, q", [(1, 1), (3, 2), (4, 3), (5, 4), (7, 5)])
def test_quorum_is_the_consensus_formula(n, q):
    assert quorum([bytes([i]) * 32 for i in range(n)]) == q


def test_admission_needs_a_quorum_of_distinct_validators():
    ledger = Ledger()  # four validators A-D: quorum 3
    new = ident("E").public_key
    body = {"institution": new, "name": "Hospital E"}
    assert ledger.send(ident("A"), "governance.admit_institution", body) == "ok"
    assert ledger.send(ident("A"), "governance.admit_institution", body) == "already_approved"
    assert ledger.send(ident("B"), "governance.admit_institution", {**body, "name": "Other"}) == "name_mismatch"
    pat = ledger.patient("pat")
    assert ledger.send(pat, "governance.admit_institution", body) == "not_a_validator"
    assert ledger.send(ident("B"), "governance.admit_institution", body) == "ok"
    pending = queries.admission(ledger.state, new)
    assert len(pending["approvals"]) == 2 and pending["quorum"] == 3 and "admitted_height" not in pending
    assert queries.identity(ledger.state, new) is None
    # not an institution yet: it cannot attest a practitioner
    assert ledger.send(ident("doc-e"), "identity.register", _staff_body("doc-e", "E")) == "unknown_institution"
    assert ledger.send(ident("C"), "governance.admit_institution", body) == "ok"
    got = queries.identity(ledger.state, new)
    assert got["role"] == "institution" and got["label"] == "Hospital E"
    assert queries.admission(ledger.state, new)["admitted_height"] == ledger.store.height
    assert ledger.send(ident("D"), "governance.admit_institution", body) == "already_registered"
    assert ledger.send(ident("doc-e"), "identity.register", _staff_body("doc-e", "E")) == "ok"
    # an admitted institution votes on nothing: it is not a validator
    assert ledger.send(ident("E"), "governance.admit_institution", {"institution": ident("F").public_key, "name": "F"}) == "not_a_validator"


def test_registered_identities_cannot_be_admitted():
    ledger = Ledger(validators=("A",))
    pat = ledger.patient("pat")
    assert ledger.send(ident("A"), "governance.admit_institution", {"institution": pat.public_key, "name": "P"}) == "already_registered"
    # with one validator its approval is the quorum
    assert ledger.send(ident("A"), "governance.admit_institution", {"institution": ident("E").public_key, "name": "E"}) == "ok"
    assert queries.identity(ledger.state, ident("E").public_key)["role"] == "institution"


def _staff_body(name: str, institution: str) -> dict:
    who, inst = ident(name), ident(institution)
    return {"role": "practitioner", "institution": inst.public_key,
            "attestation": attest(inst, chain_id=CHAIN, registrant=who.public_key, role="practitioner")}
