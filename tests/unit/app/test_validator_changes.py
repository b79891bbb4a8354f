"""validator.add, validator.remove and validator.rotate: approvals by a quorum of the current
set, the new set effective at the deciding block's height + 2, the history that answers the set
of any height, and the refusals (too small, conflicting, quorum at risk, bad proof)."""

from __future__ import annotations

import pytest

from node.app import validator_sets as vs
from node.app.registry import check_tx_body
from node.chain.tx import TxRejected
from node.app.types.validator_rotate import rotation_message

from tests.unit.app.harness import CHAIN, Ledger, ident

ADDR = {"address": "10.0.0.5:7000", "api": "http://10.0.0.5:8000"}


def _ids(*names: str) -> list[bytes]:
    return [ident(n).public_key for n in names]


def _admit(ledger: Ledger, name: str, voters: tuple[str, ...] = ("A", "B", "C")) -> bytes:
    new = ident(name).public_key
    for v in voters:
        assert ledger.send(ident(v), "governance.admit_institution", {"institution": new, "name": f"inst-{name}"}) == "ok"
    return new


def _add(ledger: Ledger, name: str, voters: tuple[str, ...] = ("A", "B", "C")) -> list[str]:
    body = {"candidate": ident(name).public_key, **ADDR}
    return [ledger.send(ident(v), "validator.add", body) for v in voters]


def test_a_chain_without_changes_has_the_genesis_set_at_every_height():
    ledger = Ledger()
    assert ledger.state.get(b"meta/validator_sets") is None
    for h in (1, 2, 100):
        assert vs.validator_ids_at(ledger.state, h) == _ids("A", "B", "C", "D")
    assert vs.epoch_at(ledger.state, 5) == (0, 1)


def test_add_needs_a_quorum_and_takes_effect_two_blocks_later():
    ledger = Ledger()
    e = _admit(ledger, "E")
    body = {"candidate": e, **ADDR}
    assert ledger.send(ident("A"), "validator.add", body) == "ok"
    assert ledger.send(ident("A"), "validator.add", body) == "already_approved"
    assert ledger.send(ident("B"), "validator.add", {**body, "api": "http://other:1"}) == "proposal_mismatch"
    assert ledger.send(ident("E"), "validator.add", body) == "not_a_validator"
    assert ledger.send(ident("B"), "validator.add", body) == "ok"
    [pending] = vs.pending(ledger.state)
    assert pending["kind"] == "add" and len(pending["approvals"]) == 2
    assert ledger.send(ident("C"), "validator.add", body) == "ok"
    h = ledger.store.height
    assert vs.pending(ledger.state) == []
    assert vs.validator_ids_at(ledger.state, h + 1) == _ids("A", "B", "C", "D")
    assert vs.validator_ids_at(ledger.state, h + 2) == _ids("A", "B", "C", "D", "E")
    assert vs.validator_ids_at(ledger.state, 1) == _ids("A", "B", "C", "D")  # history keeps the past
    assert vs.epoch_at(ledger.state, h + 2) == (1, h + 2)
    rec = vs.describe(ledger.state, e, ledger.genesis.validators)
    assert rec == {"name": "inst-E", "since": h + 2, **ADDR}
    assert ledger.send(ident("D"), "validator.add", body) == "already_validator"


def test_only_an_admitted_institution_can_be_added():
    ledger = Ledger()
    assert _add(ledger, "X", ("A",)) == ["unknown_institution"]
    _refused(ledger, ident("A"), "validator.add", {"candidate": ident("X").public_key, "address": "nope", "api": ""},
             "invalid_body")


def _refused(ledger: Ledger, who, type_: str, body: dict, code: str) -> None:
    with pytest.raises(TxRejected) as caught:
        check_tx_body(ledger.tx(who, type_, body))
    assert caught.value.code == code


def test_remove_by_the_remaining_quorum_and_the_minimum_size():
    ledger = Ledger()
    _admit(ledger, "E")
    assert _add(ledger, "E") == ["ok"] * 3
    ledger.block()
    ledger.block()  # E votes now: five validators, quorum 4
    body = {"validator": ident("D").public_key}
    assert [ledger.send(ident(v), "validator.remove", body) for v in ("A", "B", "C")] == ["ok"] * 3
    assert vs.latest_ids(ledger.state) == _ids("A", "B", "C", "D", "E")  # 3 of 5 is not the quorum
    assert ledger.send(ident("E"), "validator.remove", body) == "ok"  # D, unresponsive, need not vote
    h = ledger.store.height
    assert vs.validator_ids_at(ledger.state, h + 2) == _ids("A", "B", "C", "E")
    assert vs.describe(ledger.state, ident("D").public_key, ledger.genesis.validators)["until"] == h + 2
    ledger.block()
    ledger.block()
    assert ledger.send(ident("D"), "validator.remove", {"validator": ident("A").public_key}) == "not_a_validator"
    refused = [ledger.send(ident(v), "validator.remove", {"validator": ident("A").public_key}) for v in ("B", "C", "E")]
    assert refused == ["ok", "ok", "validator_set_too_small"]
    assert ledger.send(ident("B"), "validator.remove", {"validator": ident("D").public_key}) == "unknown_validator"


def test_two_changes_for_the_same_height_conflict():
    ledger = Ledger()
    _admit(ledger, "E")
    _admit(ledger, "F")
    assert _add(ledger, "E", ("A", "B")) == ["ok", "ok"]
    assert _add(ledger, "F", ("A", "B")) == ["ok", "ok"]
    last_e = ledger.tx(ident("C"), "validator.add", {"candidate": ident("E").public_key, **ADDR})
    last_f = ledger.tx(ident("C"), "validator.add", {"candidate": ident("F").public_key, **ADDR})
    assert ledger.block(last_e, last_f) == ["ok", "validator_change_conflict"]
    # in a later block F's last approval goes through, effective one height later
    h = ledger.store.height
    assert ledger.send(ident("C"), "validator.add", {"candidate": ident("F").public_key, **ADDR}) == "ok"
    assert vs.validator_ids_at(ledger.state, h + 2) == _ids("A", "B", "C", "D", "E")
    assert vs.validator_ids_at(ledger.state, h + 3) == _ids("A", "B", "C", "D", "E", "F")


def test_rotate_replaces_the_key_in_place_with_both_signatures():
    ledger = Ledger()
    old, new = ident("B"), ident("B2")
    proof = new.sign(rotation_message(CHAIN, old.public_key, new.public_key))
    _refused(ledger, old, "validator.rotate", {"new_key": new.public_key, "proof": proof[:63] + b"\0"},
             "bad_rotation_proof")
    wrong = new.sign(rotation_message("other-chain", old.public_key, new.public_key))
    _refused(ledger, old, "validator.rotate", {"new_key": new.public_key, "proof": wrong}, "bad_rotation_proof")
    outsider = ident("P")
    ledger.patient("P")
    p_proof = new.sign(rotation_message(CHAIN, outsider.public_key, new.public_key))
    assert ledger.send(outsider, "validator.rotate", {"new_key": new.public_key, "proof": p_proof}) == "not_a_validator"
    assert ledger.send(old, "validator.rotate", {"new_key": new.public_key, "proof": proof}, verify=True) == "ok"
    h = ledger.store.height
    assert vs.validator_ids_at(ledger.state, h + 2) == _ids("A", "B2", "C", "D")
    rec = vs.describe(ledger.state, new.public_key, ledger.genesis.validators)
    assert rec["name"] == "inst-B" and rec["since"] == h + 2 and rec["rotated_from"] == old.public_key
    # the new key acts as the institution (its approvals count once it is in the set)
    ledger.block()
    ledger.block()
    assert ledger.send(old, "governance.admit_institution", {"institution": ident("E").public_key,
                                                             "name": "inst-E"}) == "not_a_validator"
    e = _admit(ledger, "E", ("A", "C", "D"))
    assert ledger.send(new, "validator.add", {"candidate": e, **ADDR}) == "ok"
    assert ledger.send(old, "validator.add", {"candidate": e, **ADDR}) == "not_a_validator"
