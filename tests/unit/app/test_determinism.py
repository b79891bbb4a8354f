"""Two replicas executing the same blocks compute the same results, writes and roots, whether
they saw the transactions before (mempool) or verify them from the block."""

from __future__ import annotations

from node.app.executor import execute_block
from node.app.types.identity import attest

from tests.unit.app.harness import CHAIN, DAY, Ledger, ident, rid


def scripted_blocks(ledger: Ledger) -> list[list]:
    """Blocks of mixed transactions, built against `ledger` (which is then discarded)."""
    pat, pat2 = ident("pat"), ident("pat2")
    doc_a, doc_b = ident("doc-a"), ident("doc-b")
    def staff(who, inst):
        return ledger.tx(who, "identity.register", {"role": "practitioner", "institution": ident(inst).public_key,
                                                      "attestation": attest(ident(inst), chain_id=CHAIN, registrant=who.public_key, role="practitioner")})

    def patient(who):  # registered at A, whose practitioner writes their records
        return ledger.tx(who, "identity.register", {"role": "patient", "institution": ident("A").public_key,
                                                    "attestation": attest(ident("A"), chain_id=CHAIN, registrant=who.public_key, role="patient")})

    b1 = [patient(pat), patient(pat2), staff(doc_a, "A"), staff(doc_b, "B")]
    b2 = [ledger.tx(doc_a, "record.add", {"record": rid(f"r{i}"), "patient": (pat if i % 2 else pat2).public_key,
                                          "resource_type": "Observation", "hash": rid(f"h{i}"), "custodian": ident("A").public_key})
          for i in range(6)]
    grant = ledger.tx(pat, "consent.grant", {"grantee_kind": "institution", "grantee": ident("B").public_key,
                                             "purposes": ["treatment"], "resource_types": ["*"], "valid_until": 2_000_000_000_000})
    b3 = [grant, ledger.tx(pat2, "consent.breakglass", {"opt_out": True})]
    b4 = [ledger.tx(doc_b, "access.request", {"record": rid(f"r{i}"), "purpose": "treatment"}) for i in range(6)]
    b4.append(ledger.tx(doc_b, "access.request", {"record": rid("r0"), "purpose": "emergency", "reason": "unconscious"}))
    b4.append(ledger.tx(pat, "consent.revoke", {"consent": grant.hash}))
    b4.append(ledger.tx(doc_b, "access.request", {"record": rid("r1"), "purpose": "treatment"}))
    return [b1, b2, b3, b4]


def replay(blocks, *, verify: bool):
    ledger = Ledger()
    for txs in blocks:
        ledger.block(*txs, verify=verify)
        yield ledger.last


def test_same_blocks_same_roots_and_results():
    blocks = scripted_blocks(Ledger())
    first = list(replay(blocks, verify=False))
    second = list(replay(blocks, verify=True))
    for a, b in zip(first, second, strict=True):
        assert (a.results, a.writes, a.state_root, a.results_root) == (b.results, b.writes, b.state_root, b.results_root)
    # pat2's records are not covered, pat2 opted out of break-glass, pat revoked before the last
    assert first[-1].results == ["denied", "ok", "denied", "ok", "denied", "ok", "denied", "ok", "denied"]
    assert first[-1].writes == sorted(first[-1].writes)


def test_executing_a_block_twice_on_the_same_state_gives_the_same_bytes():
    blocks = scripted_blocks(Ledger())
    ledger = Ledger()
    for txs in blocks[:-1]:
        ledger.block(*txs)
    pool = {t.hash: t for t in blocks[-1]}
    runs = [execute_block(ledger.state, ledger.store.state_root, [t.encoded for t in blocks[-1]], chain_id="test-chain",
                          height=ledger.store.height + 1, timestamp_ms=ledger.now + DAY, known=pool.get,
                          committed=ledger.store.has_tx) for _ in range(2)]
    assert runs[0].state_root == runs[1].state_root and runs[0].writes == runs[1].writes
    other_time = execute_block(ledger.state, ledger.store.state_root, [t.encoded for t in blocks[-1]], chain_id="test-chain",
                               height=ledger.store.height + 1, timestamp_ms=ledger.now + DAY + 1, known=pool.get,
                               committed=ledger.store.has_tx)
    assert other_time.state_root != runs[0].state_root  # block time is part of what is recorded


def every_type(verify: bool) -> tuple[list[list[str]], bytes]:
    """One scenario that sends every transaction type; its results and final root."""
    ledger = Ledger()
    results = []

    def send(who, type_, body):
        results.append(ledger.block(ledger.tx(who, type_, body), verify=verify))

    pat, parent = ident("pat"), ident("parent")
    doc, res, doc_b = ident("doc"), ident("res"), ident("doc-b")
    send(pat, "identity.register", {"role": "patient", "institution": ident("A").public_key,
                                    "attestation": attest(ident("A"), chain_id=CHAIN, registrant=pat.public_key, role="patient")})
    send(parent, "identity.register", {"role": "patient"})
    for who, role, inst in ((doc, "practitioner", "A"), (res, "researcher", "A"), (doc_b, "practitioner", "B")):
        send(who, "identity.register", {"role": role, "institution": ident(inst).public_key,
                                        "attestation": attest(ident(inst), chain_id=CHAIN, registrant=who.public_key, role=role)})
    send(pat, "patient.set_guardian", {"guardian": parent.public_key})
    send(doc, "record.add", {"record": rid("r"), "patient": pat.public_key, "resource_type": "Observation",
                             "hash": rid("h"), "custodian": ident("A").public_key})
    send(ident("A"), "study.register", {"study": "S", "title": "t", "ethics_ref": "e", "until_ms": ledger.now + DAY})
    send(ident("A"), "study.add_researcher", {"study": "S", "researcher": res.public_key})
    send(parent, "consent.grant", {"grantee_kind": "study", "grantee": "S", "purposes": ["research"], "resource_types": ["*"],
                                   "valid_until": ledger.now + DAY, "on_behalf_of": pat.public_key})
    send(doc, "access.request", {"record": rid("r"), "purpose": "treatment"})
    send(ident("A"), "research.release", {"study": "S", "custodian": ident("A").public_key, "researcher": res.public_key,
                                          "patients": [pat.public_key], "resources": 1, "release_hash": rid("x")})
    send(pat, "consent.breakglass", {"opt_out": True})
    send(pat, "consent.breakglass", {"opt_out": False})
    bg = ledger.tx(doc_b, "access.request", {"record": rid("r"), "purpose": "emergency", "reason": "unconscious"})
    results.append(ledger.block(bg, verify=verify))
    send(ident("A"), "breakglass.review", {"access": bg.hash, "outcome": "justified"})
    grant = ledger.tx(pat, "consent.grant", {"grantee_kind": "institution", "grantee": ident("B").public_key,
                                             "purposes": ["treatment"], "record_ids": [rid("r")], "valid_until": ledger.now + DAY})
    results.append(ledger.block(grant, verify=verify))
    send(pat, "consent.revoke", {"consent": grant.hash})
    send(pat, "record.contest", {"record": rid("r"), "reason": "inaccurate"})
    send(pat, "record.erase", {"record": rid("r")})
    for v in "ABC":
        send(ident(v), "governance.admit_institution", {"institution": ident("E").public_key, "name": "E"})
    return results, ledger.store.state_root


def test_every_type_replays_to_the_same_root():
    seen, root = every_type(verify=False)
    assert all(r == ["ok"] for r in seen), seen
    assert every_type(verify=True) == (seen, root)
