"""Data-sharing agreements on the ledger (issue 19, point 2): proposed, co-signed by every party
on the policy's digest, in force, superseded by a later version, revoked; the stored policy is
canonical, checked and free of free text; the queries and the policies in force, bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.app import agreements as ag
from node.app import queries
from node.app.policies.check import PolicyRefused, canonical_form, policy_digest
from node.app.registry import check_admission
from node.chain.tx import TxRejected
from node.core.crypto import Identity

from tests.unit.app.harness import DAY, Ledger, ident

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples" / "policies"
NOMINATION = canonical_form((EXAMPLES / "pharmacy-nomination.cedar").read_text())
PAYER = canonical_form((EXAMPLES / "payer-minimum-necessary.cedar").read_text())
A, B, C, D = (ident(n) for n in "ABCD")


def checked(ledger: Ledger, who: Identity, type_: str, body: dict[str, Any]) -> str:
    """The refusal at admission (the body's check and the admission-only rules), else the result
    in its own block."""
    tx = ledger.tx(who, type_, body)
    try:
        check_admission(tx)
    except TxRejected as exc:
        return exc.code
    return ledger.block(tx, verify=True)[0]


def parties(*who: Identity) -> list[bytes]:
    return sorted(w.public_key for w in who)


def propose(ledger: Ledger, who: Identity = A, *, agreement: str = "pharm-1", version: int = 1,
            members: tuple[Identity, ...] = (A, B), policy: str = NOMINATION, **extra: Any) -> str:
    body = {"agreement": agreement, "version": version, "parties": parties(*members), "purposes": ["treatment"],
            "policy": policy, **extra}
    return checked(ledger, who, "agreement.propose", body)


def sign(ledger: Ledger, who: Identity, *, agreement: str = "pharm-1", version: int = 1,
         policy: str = NOMINATION, digest: bytes | None = None) -> str:
    body = {"agreement": agreement, "version": version, "digest": digest or policy_digest_of(policy)}
    return checked(ledger, who, "agreement.sign", body)


def revoke(ledger: Ledger, who: Identity, *, agreement: str = "pharm-1", version: int = 1) -> str:
    return checked(ledger, who, "agreement.revoke", {"agreement": agreement, "version": version})


def policy_digest_of(canonical: str) -> bytes:
    return ag.check_stored_policy(canonical)


def status(ledger: Ledger, version: int | None = None, agreement: str = "pharm-1") -> str:
    found = queries.agreement(ledger.state, agreement, version)
    assert found is not None
    return str(found["status"])


# -- the stored policy ------------------------------------------------------------------------
def test_the_digest_is_that_of_the_canonical_form_medledger_policy_check_computes():
    text = (EXAMPLES / "pharmacy-nomination.cedar").read_text()
    assert ag.check_stored_policy(NOMINATION) == policy_digest(text)


def test_a_policy_must_be_canonical_valid_and_without_free_text():
    ledger = Ledger()
    text = (EXAMPLES / "pharmacy-nomination.cedar").read_text()
    assert propose(ledger, policy=text) == "policy_not_canonical"  # Cedar text: canonicalise it first
    assert propose(ledger, policy=NOMINATION.replace('{"statements":', '{"statements": ', 1)) == "policy_not_canonical"
    typo = NOMINATION.replace('"profession"', '"professon"', 1)
    assert propose(ledger, policy=typo) == "policy_type_error"
    assert propose(ledger, policy='{"statements":[{"effect":"permit"}]}') == "invalid_policy"
    prose = canonical_form('permit (principal, action, resource) when { principal.profession == "patient Jane Doe" };')
    assert propose(ledger, policy=prose) == "policy_free_text"
    for hidden in ('principal has "Jane Doe HIV"', '{"Jane Doe": 1} has "x"', '{"x": 1}["x"] == 1 && principal has "a b"'):
        smuggled = canonical_form(f"permit (principal, action, resource) when {{ {hidden} }};")
        assert propose(ledger, policy=smuggled) == "policy_free_text", hidden
    ident_literal = canonical_form('permit (principal in Institution::"ab12", action, resource) '
                                   'when { principal.profession == "claims-officer" };')
    assert propose(ledger, policy=ident_literal) == "ok"
    for linked in ('permit (principal, action, resource == Record::"ab12");',
                   'permit (principal, action, resource) when { [Record::"ab12", Record::"cd34"].contains(resource) };'):
        named = canonical_form(linked)  # an agreement is public: naming a record would publish who is in it
        assert propose(ledger, policy=named) == "policy_names_patient", linked
    one_patient = canonical_form('forbid (principal, action, resource) when { resource.patient == Patient::"ab12" };')
    assert propose(ledger, policy=one_patient) == "policy_names_patient"
    assert propose(ledger, policy="x" * (ag.MAX_CANONICAL_BYTES + 1)) == "policy_too_large"
    with pytest.raises(PolicyRefused) as refused:
        ag.check_stored_policy('{"statements":[1]}')
    assert refused.value.code == "invalid_policy"


def test_a_policy_that_reads_as_widening_access_is_refused():
    """An agreement cannot grant beyond consent (combine ANDs it); a permit written as if it could
    is refused at submission, with the reason, and so is one about emergency or research reads."""
    ledger = Ledger()
    everything = canonical_form("permit (principal, action, resource);")
    assert propose(ledger, policy=everything) == "policy_widens"
    assert propose(ledger, agreement="standing.nominated-pharmacy") == "invalid_agreement_id"  # the protocol's names
    for closed in ("emergency", "research"):
        text = canonical_form(f'permit (principal, action, resource) when {{ context.purpose == "{closed}" }};')
        assert propose(ledger, policy=text) == "policy_widens", closed
        assert propose(ledger, purposes=[closed]) == "policy_widens", closed
    with pytest.raises(PolicyRefused) as refused:
        ag.check_new_agreement("x", everything, ["treatment"])
    assert "never grants beyond the patient's consent" in refused.value.message
    # an admission rule, not a block's: a chain that holds such a proposal from before still replays
    tx = ledger.tx(A, "agreement.propose", {"agreement": "old-wide", "version": 1, "parties": parties(A, B),
                                            "purposes": ["treatment"], "policy": everything})
    assert ledger.block(tx, verify=True) == ["ok"]
    # a forbid may say anything (it only narrows), and a scoped permit routes
    assert propose(ledger, policy=canonical_form('forbid (principal, action, resource) when '
                                                 '{ context.purpose == "emergency" };')) == "ok"
    assert propose(ledger, agreement="route-1", policy=canonical_form(
        'permit (principal, action, resource) when { principal.profession == "pharmacist" };')) == "ok"


def test_propose_checks_its_body():
    ledger = Ledger()
    assert propose(ledger, agreement="bad id") == "invalid_agreement_id"
    assert propose(ledger, version=0) == "invalid_version"
    assert propose(ledger, members=(A,)) == "invalid_parties"
    assert propose(ledger, members=(B, C)) == "invalid_parties"  # the proposer among them
    unsorted = {"agreement": "x", "version": 1, "parties": sorted(parties(A, B), reverse=True),
                "purposes": ["treatment"], "policy": NOMINATION}
    assert unsorted["parties"] != sorted(unsorted["parties"])
    assert checked(ledger, A, "agreement.propose", unsorted) == "invalid_parties"
    assert checked(ledger, A, "agreement.propose", {"agreement": "x", "version": 1, "parties": parties(A, A),
                                                    "purposes": ["treatment"], "policy": NOMINATION}) == "invalid_body"
    assert checked(ledger, A, "agreement.propose", {"agreement": "x", "version": 1, "parties": parties(A, B),
                                                    "purposes": ["leisure"], "policy": NOMINATION}) == "invalid_purpose"
    assert checked(ledger, A, "agreement.propose", {"agreement": "x", "version": 1, "parties": parties(A, B),
                                                    "purposes": [], "policy": NOMINATION}) == "invalid_purpose"
    assert propose(ledger, note="hello") == "invalid_body"  # no other field, no free text


def test_propose_needs_institutions_and_a_future_end():
    ledger = Ledger()
    doc = ledger.staff("doc", "A")
    assert propose(ledger, doc, members=(A, doc)) == "role_not_allowed"
    stranger = ident("nobody")
    assert propose(ledger, members=(A, stranger)) == "unknown_institution"
    assert propose(ledger, valid_until_ms=ledger.now) == "invalid_period"
    assert queries.agreement(ledger.state, "pharm-1") is None


# -- signatures, in force ---------------------------------------------------------------------
def test_in_force_once_every_party_signed_the_digest():
    ledger = Ledger()
    assert propose(ledger, members=(A, B, C)) == "ok"
    found = queries.agreement(ledger.state, "pharm-1")
    assert found is not None
    assert found["status"] == "proposed" and found["signatures"] == [A.public_key.hex()]
    assert found["awaiting"] == [p.hex() for p in parties(B, C)]  # not in force until they sign
    assert found["parties"] == [p.hex() for p in parties(A, B, C)] and found["policy_id"] == "pharm-1@1"
    assert found["digest"] == ag.check_stored_policy(NOMINATION).hex() and found["in_force_version"] is None
    assert sign(ledger, D) == "not_a_party"
    assert sign(ledger, B, digest=b"\x01" * 32) == "digest_mismatch"
    assert sign(ledger, B, digest=b"\x01" * 31) == "invalid_body"
    assert sign(ledger, A) == "already_signed"  # the proposal is the proposer's signature
    assert sign(ledger, B) == "ok"
    assert status(ledger) == "proposed" and queries.agreements_of(ledger.state, A.public_key) == []
    assert sign(ledger, B) == "already_signed"
    assert sign(ledger, C) == "ok"
    found = queries.agreement(ledger.state, "pharm-1", 1)
    assert found is not None and found["status"] == "in_force" and found["in_force_version"] == 1
    assert found["awaiting"] == []
    assert found["in_force_height"] == ledger.store.height
    assert [a["policy_id"] for a in queries.agreements_of(ledger.state, C.public_key)] == ["pharm-1@1"]
    assert queries.agreements_of(ledger.state, D.public_key) == []
    assert sign(ledger, C) == "already_signed"
    assert sign(ledger, B, version=2) == "unknown_agreement"
    assert sign(ledger, B, agreement="other") == "unknown_agreement"


def test_an_agreement_ends_at_valid_until_ms():
    ledger = Ledger()
    end = ledger.now + DAY
    assert propose(ledger, valid_until_ms=end) == "ok"
    assert sign(ledger, B) == "ok"
    assert [p.id for p in ag.policies_in_force(ledger.state, [A.public_key], now_ms=end)] == ["pharm-1@1"]
    assert ag.policies_in_force(ledger.state, [A.public_key], now_ms=end + 1) == []
    assert queries.agreement(ledger.state, "pharm-1", now_ms=end + 1)["status"] == "expired"  # type: ignore[index]
    assert queries.agreements_of(ledger.state, A.public_key, now_ms=end + 1) == []
    assert propose(ledger, agreement="late", valid_until_ms=ledger.now + 2000) == "ok"
    ledger.block(at_ms=ledger.now + 5000)
    assert sign(ledger, B, agreement="late") == "agreement_expired"


# -- versions ---------------------------------------------------------------------------------
def test_a_new_version_supersedes_the_one_in_force_once_it_is_in_force():
    ledger = Ledger()
    assert propose(ledger) == "ok" and sign(ledger, B) == "ok"
    assert propose(ledger, version=3) == "wrong_agreement_version"
    assert propose(ledger, version=1) == "wrong_agreement_version"
    assert propose(ledger, C, version=2, members=(B, C)) == "not_a_party"  # not a party of version 1
    assert propose(ledger, B, version=2, members=(A, B, C), policy=PAYER) == "ok"
    assert status(ledger, 1) == "in_force" and status(ledger, 2) == "proposed"
    assert sign(ledger, B, version=2) == "already_signed"
    assert sign(ledger, A, version=2) == "digest_mismatch"  # signing version 1's text for version 2
    assert sign(ledger, A, version=2, policy=PAYER) == "ok" and status(ledger, 1) == "in_force"
    assert sign(ledger, C, version=2, policy=PAYER) == "ok"
    old = queries.agreement(ledger.state, "pharm-1", 1)
    assert old is not None and old["status"] == "superseded" and old["superseded_by"] == 2
    assert old["policy"] == NOMINATION  # still readable
    assert status(ledger) == "in_force" and queries.agreement(ledger.state, "pharm-1")["version"] == 2  # type: ignore[index]
    assert [a["version"] for a in queries.agreements_of(ledger.state, A.public_key)] == [2]
    assert [p.text for p in ag.policies_in_force(ledger.state, [C.public_key], now_ms=ledger.now)] == [PAYER]
    assert revoke(ledger, A, version=1) == "agreement_superseded"
    assert sign(ledger, B, version=1) == "agreement_superseded"


def test_only_the_latest_proposal_can_be_signed():
    ledger = Ledger()
    assert propose(ledger, members=(A, B, C)) == "ok"
    assert propose(ledger, version=2, members=(A, B, C), policy=PAYER) == "ok"
    assert status(ledger, 1) == "superseded"
    assert sign(ledger, B, version=1) == "agreement_superseded"
    assert sign(ledger, B, version=2, policy=PAYER) == "ok" and sign(ledger, C, version=2, policy=PAYER) == "ok"
    assert status(ledger, 2) == "in_force"


# -- revocation -------------------------------------------------------------------------------
def test_any_party_revokes_a_proposal_or_a_version_in_force_which_is_kept_marked():
    ledger = Ledger()
    assert propose(ledger, members=(A, B, C)) == "ok"
    assert revoke(ledger, D) == "not_a_party"
    assert revoke(ledger, C) == "ok" and status(ledger) == "revoked"
    assert sign(ledger, B) == "agreement_revoked"
    assert revoke(ledger, A) == "agreement_revoked"
    assert propose(ledger, version=2, members=(A, B, C)) == "ok"
    assert sign(ledger, B, version=2) == "ok" and sign(ledger, C, version=2) == "ok"
    assert revoke(ledger, B, version=2) == "ok"
    found = queries.agreement(ledger.state, "pharm-1", 2)
    assert found is not None and found["status"] == "revoked" and found["revoked_by"] == B.public_key.hex()
    assert found["in_force_version"] is None and found["policy"] == NOMINATION
    assert queries.agreements_of(ledger.state, A.public_key) == []
    assert ag.policies_in_force(ledger.state, [A.public_key, B.public_key], now_ms=ledger.now) == []


# -- policies in force, bounded ---------------------------------------------------------------
def test_policies_in_force_for_a_set_of_institutions_by_purpose_sorted_and_bounded():
    ledger = Ledger()
    assert propose(ledger, agreement="zeta", members=(A, B)) == "ok" and sign(ledger, B, agreement="zeta") == "ok"
    body = {"agreement": "alpha", "version": 1, "parties": parties(C, D), "purposes": ["payment"], "policy": PAYER}
    assert checked(ledger, C, "agreement.propose", body) == "ok"
    assert sign(ledger, D, agreement="alpha", policy=PAYER) == "ok"
    everyone = [w.public_key for w in (A, B, C, D)]
    assert [p.id for p in ag.policies_in_force(ledger.state, everyone, now_ms=ledger.now)] == ["alpha@1", "zeta@1"]
    assert [p.id for p in ag.policies_in_force(ledger.state, everyone, now_ms=ledger.now, purpose="payment")] == ["alpha@1"]
    assert [p.id for p in ag.policies_in_force(ledger.state, [B.public_key], now_ms=ledger.now)] == ["zeta@1"]
    with pytest.raises(PolicyRefused) as refused:
        ag.policies_in_force(ledger.state, [*everyone, ident("E").public_key], now_ms=ledger.now)
    assert refused.value.code == "too_many_policies"


def test_an_institution_is_party_to_at_most_max_in_force_agreements(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ag, "MAX_IN_FORCE", 2)
    ledger = Ledger()
    for n in (1, 2):
        assert propose(ledger, agreement=f"a{n}") == "ok" and sign(ledger, B, agreement=f"a{n}") == "ok"
    assert propose(ledger, agreement="a3") == "ok"
    assert sign(ledger, B, agreement="a3") == "too_many_agreements"
    assert status(ledger, agreement="a3") == "proposed"
    assert propose(ledger, agreement="a1", version=2) == "ok"  # a new version replaces its own entry
    assert sign(ledger, B, agreement="a1", version=2) == "ok"
    assert revoke(ledger, A, agreement="a2") == "ok" and sign(ledger, B, agreement="a3") == "ok"


def test_an_ended_agreement_keeps_its_place_until_revoked(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ag, "MAX_IN_FORCE", 1)
    ledger = Ledger()
    end = ledger.now + 2000
    assert propose(ledger, agreement="short", valid_until_ms=end) == "ok" and sign(ledger, B, agreement="short") == "ok"
    ledger.block(at_ms=end + 1000)
    assert propose(ledger, agreement="next") == "ok"
    assert sign(ledger, B, agreement="next") == "too_many_agreements"
    assert revoke(ledger, B, agreement="short") == "ok"  # an ended version is still revocable
    assert sign(ledger, B, agreement="next") == "ok"


def test_revoking_a_new_proposal_leaves_the_version_in_force():
    ledger = Ledger()
    assert propose(ledger) == "ok" and sign(ledger, B) == "ok"
    assert propose(ledger, version=2, policy=PAYER) == "ok"
    assert revoke(ledger, B, version=2) == "ok"
    assert status(ledger, 1) == "in_force" and status(ledger, 2) == "revoked"
    assert [p.id for p in ag.policies_in_force(ledger.state, [B.public_key], now_ms=ledger.now)] == ["pharm-1@1"]
    assert propose(ledger, version=3) == "ok"  # the next version after a revoked one


def test_the_same_agreement_transactions_give_the_same_state_root():
    roots = []
    for _ in range(2):
        ledger = Ledger()
        propose(ledger, members=(A, B, C))
        sign(ledger, B)
        sign(ledger, C)
        propose(ledger, version=2, members=(A, B, C), policy=PAYER)
        revoke(ledger, C, version=2)
        roots.append(ledger.store.state_root)
    assert roots[0] == roots[1]
