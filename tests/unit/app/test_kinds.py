"""Institution kinds and practitioner professions (issue 19, point 1): in the genesis, in the
admission vote (approvals for different kinds never add up), in `identity.register` under the
institution's attestation, and in `queries.identity`; chains made before them keep their
hashes and state roots."""

from __future__ import annotations

from typing import Any

import pytest

from node.app import queries
from node.app.executor import genesis_state_root
from node.app.fields import INSTITUTION_KINDS, PROFESSIONS
from node.app.registry import check_tx_body
from node.app.types.identity import attest, attestation_message
from node.chain.genesis import Genesis, GenesisError, InstitutionInfo
from node.chain.tx import TxRejected
from node.chain.vocabulary import devnet_kinds, devnet_names
from node.core.encoding import canonical

from tests.unit.app.harness import CHAIN, Ledger, ident, make_genesis

ADMIT = "governance.admit_institution"


def checked(ledger: Ledger, who: Any, type_: str, body: dict[str, Any]) -> str:
    """The refusal at admission (the body's check, the attestation), else the result of the
    transaction in its own block."""
    tx = ledger.tx(who, type_, body)
    try:
        check_tx_body(tx)
    except TxRejected as exc:
        return exc.code
    return ledger.block(tx, verify=True)[0]


def practitioner_body(name: str, institution: str, profession: str | None, *, attested: str | None = "same") -> dict[str, Any]:
    who, inst = ident(name), ident(institution)
    signed = profession if attested == "same" else attested
    body: dict[str, Any] = {"role": "practitioner", "institution": inst.public_key,
                            "attestation": attest(inst, chain_id=CHAIN, registrant=who.public_key, role="practitioner",
                                                  profession=signed)}
    if profession is not None:
        body["profession"] = profession
    return body


# -- genesis ---------------------------------------------------------------------------------
def test_genesis_kinds_are_in_state_and_absent_means_unspecified():
    base = make_genesis()
    kinded = Genesis(chain_id=base.chain_id, genesis_time_ms=base.genesis_time_ms, validators=base.validators,
                     institutions=tuple(InstitutionInfo(id=i.id, name=i.name, kind=k)
                                        for i, k in zip(base.institutions, ("hospital", "clinic", "pharmacy", "insurer"))))
    again = Genesis.from_json(kinded.to_json())
    assert [i.kind for i in again.institutions] == ["hospital", "clinic", "pharmacy", "insurer"]
    assert again.hash() == kinded.hash() != base.hash()
    assert genesis_state_root(kinded) != genesis_state_root(base)
    ledger = Ledger()  # the harness genesis names no kinds
    assert queries.identity(ledger.state, ident("A").public_key)["kind"] == "unspecified"


def test_a_genesis_without_kinds_keeps_its_hash_and_refuses_a_bad_kind():
    base = make_genesis()
    doc = base.to_json()
    assert all("kind" not in inst for inst in doc["institutions"])
    assert Genesis.from_json(doc).hash() == base.hash()
    doc["institutions"][0]["kind"] = "spa"
    with pytest.raises(GenesisError, match="kind must be one of hospital"):
        Genesis.from_json(doc)
    doc["institutions"][0]["kind"] = "unspecified"  # shown, never given
    with pytest.raises(GenesisError, match="kind"):
        Genesis.from_json(doc)


# -- admission -------------------------------------------------------------------------------
def test_the_kind_is_part_of_what_the_validators_approve():
    ledger = Ledger()  # four validators: quorum 3
    new = ident("E").public_key
    body = {"institution": new, "name": "Pharmacy E", "kind": "pharmacy"}
    assert checked(ledger, ident("A"), ADMIT, body) == "ok"
    assert queries.admission(ledger.state, new)["kind"] == "pharmacy"
    # approvals for another kind, or for none, do not combine with it
    assert checked(ledger, ident("B"), ADMIT, {**body, "kind": "insurer"}) == "kind_mismatch"
    assert checked(ledger, ident("B"), ADMIT, {"institution": new, "name": "Pharmacy E"}) == "kind_mismatch"
    assert checked(ledger, ident("B"), ADMIT, body) == "ok"
    assert queries.identity(ledger.state, new) is None
    assert checked(ledger, ident("C"), ADMIT, {**body, "kind": "hospital"}) == "kind_mismatch"
    assert checked(ledger, ident("C"), ADMIT, body) == "ok"
    got = queries.identity(ledger.state, new)
    assert got["role"] == "institution" and got["kind"] == "pharmacy" and got["label"] == "Pharmacy E"


@pytest.mark.parametrize("kind", ["spa", "Hospital", "unspecified", "", 3])
def test_an_unknown_kind_is_refused_at_admission(kind):
    ledger = Ledger()
    body = {"institution": ident("E").public_key, "name": "E", "kind": kind}
    assert checked(ledger, ident("A"), ADMIT, body) == ("invalid_kind" if isinstance(kind, str) else "invalid_body")


def test_an_admission_without_a_kind_writes_what_it_wrote_before_kinds():
    ledger = Ledger(validators=("A",))
    new = ident("E").public_key
    assert checked(ledger, ident("A"), ADMIT, {"institution": new, "name": "E"}) == "ok"
    written = dict(ledger.last.writes)
    from node.app import keys

    assert written[keys.identity(new)] == canonical({"role": "institution", "label": "E", "height": ledger.store.height})
    assert queries.identity(ledger.state, new)["kind"] == "unspecified"


# -- professions -----------------------------------------------------------------------------
@pytest.mark.parametrize("profession", PROFESSIONS)
def test_a_practitioner_registers_with_an_attested_profession(profession):
    ledger = Ledger()
    assert checked(ledger, ident("doc"), "identity.register", practitioner_body("doc", "A", profession)) == "ok"
    got = queries.identity(ledger.state, ident("doc").public_key)
    assert got["profession"] == profession and got["institution"] == ident("A").public_key.hex()


def test_the_attestation_covers_the_profession():
    ledger = Ledger()
    # attested as a nurse, claimed as a physician; attested without a profession, claimed with one
    assert checked(ledger, ident("d1"), "identity.register",
                   practitioner_body("d1", "A", "physician", attested="nurse")) == "bad_attestation"
    assert checked(ledger, ident("d2"), "identity.register",
                   practitioner_body("d2", "A", "physician", attested=None)) == "bad_attestation"
    # attested with a profession, sent without it
    assert checked(ledger, ident("d3"), "identity.register",
                   practitioner_body("d3", "A", None, attested="physician")) == "bad_attestation"
    v1 = attestation_message(CHAIN, ident("d").public_key, "practitioner", ident("A").public_key)
    v2 = attestation_message(CHAIN, ident("d").public_key, "practitioner", ident("A").public_key, "physician")
    assert v1 != v2


def test_an_old_attestation_without_a_profession_still_verifies_and_shows_unspecified():
    ledger = Ledger()
    doc = ledger.staff("doc", "A")  # the harness attests with the v1 message
    assert queries.identity(ledger.state, doc.public_key)["profession"] == "unspecified"
    assert "profession" not in queries.identity(ledger.state, ledger.staff("res", "B", "researcher").public_key)


@pytest.mark.parametrize("profession", ["surgeon", "Physician", "unspecified", ""])
def test_an_unknown_profession_is_refused(profession):
    ledger = Ledger()
    body = practitioner_body("doc", "A", profession)
    assert checked(ledger, ident("doc"), "identity.register", body) == "invalid_profession"


def test_only_an_attested_practitioner_carries_a_profession():
    ledger = Ledger()
    inst = ident("A")
    res = ident("res")
    body = {"role": "researcher", "profession": "physician", "institution": inst.public_key,
            "attestation": attest(inst, chain_id=CHAIN, registrant=res.public_key, role="researcher", profession="physician")}
    assert checked(ledger, res, "identity.register", body) == "invalid_body"
    assert checked(ledger, ident("pat"), "identity.register", {"role": "patient", "profession": "nurse"}) == "invalid_body"
    assert checked(ledger, ident("doc"), "identity.register", {"role": "practitioner", "profession": "nurse"}) == "invalid_body"


# -- the devnet's names ----------------------------------------------------------------------
def test_the_devnet_names_its_institutions_by_kind():
    assert devnet_names(4) == ["hospital", "clinic", "pharmacy", "insurer"]
    assert devnet_names(5)[-1] == "research" and devnet_kinds(5)[-1] == "research"
    names, kinds = devnet_names(14), devnet_kinds(14)
    assert len(set(names)) == 14 and names[6:8] == ["hospital-2", "clinic-2"] and names[12] == "hospital-3"
    assert set(kinds) == set(INSTITUTION_KINDS) and kinds[6] == "hospital"
