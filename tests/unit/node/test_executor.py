"""The state machine: deterministic results, state roots, replay protection."""

import pytest

from node.app.executor import (
    BlockRejected,
    execute_block,
    genesis_state_root,
    read_nonce,
    state_root,
)
from node.app.state import FuncReader, Overlay
from node.app.types.identity import attest
from node.core.crypto import Identity
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.chain.tx import Transaction

CHAIN = "test-chain"


class Dict:
    def __init__(self):
        self.d = {}

    def get(self, k):
        return self.d.get(k)

    def items(self, prefix):
        return iter(sorted((k, v) for k, v in self.d.items() if k.startswith(prefix)))

    def apply(self, writes):
        for k, v in writes:
            if v is None:
                self.d.pop(k, None)
            else:
                self.d[k] = v


def reg(seed: int, nonce=1, role="patient"):
    body = {"role": role}
    if role in ("practitioner", "researcher"):  # staff register with an institution's attestation
        inst = Identity.from_seed(b"\xee" * 32)
        body.update(institution=inst.public_key, attestation=attest(inst, chain_id=CHAIN, registrant=Identity.from_seed(bytes([seed]) * 32).public_key, role=role))
    return Transaction.create(Identity.from_seed(bytes([seed]) * 32), chain_id=CHAIN, type="identity.register", nonce=nonce, body=body)


def run(state, txs, height=1, known=True, committed=()):
    pool = {t.hash: t for t in txs} if known else {}
    return execute_block(state, bytes(32), [t.encoded for t in txs], chain_id=CHAIN, height=height, timestamp_ms=1000,
                         known=pool.get, committed=lambda h: h in committed)


def test_results_and_writes():
    state = Dict()
    a, b = reg(1), reg(2, role="researcher")
    again = reg(1, nonce=2)
    ex = run(state, [a, b, again])
    assert ex.results == ["ok", "unknown_institution", "already_registered"]
    state.apply(ex.writes)
    assert read_nonce(state, a.sender) == 2  # a failed transaction still consumes its nonce
    replay = reg(1, nonce=2)
    ex2 = run(state, [reg(3), Transaction.create(Identity.from_seed(b"\x01" * 32), chain_id=CHAIN, type="identity.register", nonce=1, body={"role": "patient"})], height=2, known=False)
    assert ex2.results == ["ok", "nonce_replayed"]
    assert replay.hash == again.hash


def test_determinism_of_roots():
    txs = [reg(i) for i in range(1, 20)]
    r1 = run(Dict(), txs)
    r2 = run(Dict(), txs, known=False)
    assert (r1.state_root, r1.results_root, r1.writes) == (r2.state_root, r2.results_root, r2.writes)
    reordered = run(Dict(), list(reversed(txs)))
    assert reordered.state_root == r1.state_root  # independent writes: same state either way
    assert reordered.results_root != r1.results_root  # but the results root commits to the order
    assert state_root(bytes(32), 1, r1.writes) == r1.state_root
    assert state_root(bytes(32), 2, r1.writes) != r1.state_root


def test_failed_tx_writes_are_discarded():
    state = Dict()
    ex = run(state, [reg(1), reg(1, nonce=5)])
    assert ex.results == ["ok", "already_registered"]
    keys = [k for k, _ in ex.writes]
    assert sum(1 for k in keys if k.startswith(b"identity/")) == 1


def test_block_with_repeated_or_forged_tx_is_rejected():
    a = reg(1)
    with pytest.raises(BlockRejected, match="repeated"):
        run(Dict(), [a, a])
    state = Dict()
    state.apply(run(state, [a]).writes)  # committed at height 1: its sender's nonce is 1
    with pytest.raises(BlockRejected, match="repeated"):
        run(state, [a], height=2, committed={a.hash})
    from node.core.encoding import canonical

    enc = canonical([CHAIN, a.type, a.sender, a.nonce, {"role": "institution"}, a.signature])
    with pytest.raises(BlockRejected, match="bad_signature"):
        execute_block(Dict(), bytes(32), [enc], chain_id=CHAIN, height=1, timestamp_ms=0, known=lambda h: None, committed=lambda h: False)


def test_genesis_root_is_stable():
    ids = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 4)]
    g = Genesis(chain_id=CHAIN, genesis_time_ms=0,
                validators=tuple(ValidatorInfo(id=i.public_key, name=f"v{n}", address="") for n, i in enumerate(ids)),
                institutions=tuple(InstitutionInfo(id=i.public_key, name=f"v{n}") for n, i in enumerate(ids)))
    assert genesis_state_root(g) == genesis_state_root(Genesis.from_json(g.to_json()))
    assert len(genesis_state_root(g)) == 32


def test_overlay_layers():
    base = Dict()
    base.d[b"a"] = b"1"
    top = Overlay(FuncReader(base.get))
    top.delete(b"a")
    top.put(b"b", b"2")
    assert top.get(b"a") is None and top.get(b"b") == b"2" and base.get(b"a") == b"1"
    assert top.sorted_writes() == [(b"a", None), (b"b", b"2")]


def test_a_certified_block_is_executed_without_verifying_its_signatures_again(monkeypatch):
    # A node catching up applies blocks that 2f+1 validators signed: at least f+1 honest ones
    # verified every signature, so it re-executes (and compares roots) without verifying again.
    import node.app.executor as ex

    calls = []
    real = ex.check_signature
    monkeypatch.setattr(ex, "check_signature", lambda tx: (calls.append(tx.hash), real(tx)))
    txs = [reg(1), reg(2)]
    unknown = execute_block(Dict(), bytes(32), [t.encoded for t in txs], chain_id=CHAIN, height=1, timestamp_ms=0,
                            known=lambda h: None, committed=lambda h: False)
    assert calls == [t.hash for t in txs]
    certified = execute_block(Dict(), bytes(32), [t.encoded for t in txs], chain_id=CHAIN, height=1, timestamp_ms=0,
                              known=lambda h: None, committed=lambda h: False, certified=True)
    assert calls == [t.hash for t in txs]  # no further verification
    assert certified.state_root == unknown.state_root and certified.results == unknown.results


def guardian_tx(seed: int, nonce: int = 1) -> Transaction:
    """A transaction that needs a registered sender (it names no one who exists, which does not matter)."""
    return Transaction.create(Identity.from_seed(bytes([seed]) * 32), chain_id=CHAIN, type="consent.breakglass", nonce=nonce,
                              body={"opt_out": True})


def test_a_block_carrying_a_transaction_from_an_unregistered_sender_is_rejected():
    from node.app.executor import UnregisteredSender

    with pytest.raises(UnregisteredSender):
        run(Dict(), [reg(1), guardian_tx(2)])
    with pytest.raises(UnregisteredSender):  # checked without the mempool too (a proposer's block from a peer)
        run(Dict(), [guardian_tx(2)], known=False)
    ex = run(Dict(), [reg(1), guardian_tx(1, nonce=2)])  # registered earlier in the same block: fine
    assert ex.results == ["ok", "ok"]


def test_the_proposer_leaves_out_transactions_of_unregistered_senders():
    txs = [reg(1), guardian_tx(2), guardian_tx(1, nonce=2), reg(3, role="institution"), guardian_tx(3, nonce=2)]
    ex = execute_block(Dict(), bytes(32), [t.encoded for t in txs], chain_id=CHAIN, height=1, timestamp_ms=1000,
                       known={t.hash: t for t in txs}.get, committed=lambda h: False, drop_unregistered=True)
    assert [t.hash for t in ex.txs] == [txs[0].hash, txs[2].hash, txs[3].hash]
    assert ex.dropped == (txs[1].hash, txs[4].hash)
    assert ex.results == ["ok", "ok", "role_not_allowed"]
    # what the proposer kept is a block every validator accepts, with the same roots
    again = run(Dict(), list(ex.txs), known=False)
    assert (again.state_root, again.results_root) == (ex.state_root, ex.results_root)
    assert not any(k.endswith(txs[1].sender) for k, _ in ex.writes)  # nothing written for the dropped


def test_the_transaction_index_is_asked_only_below_the_committed_nonce():
    """A committed transaction's nonce is never above its sender's committed nonce, so only a
    transaction at or below it costs a lookup of the transaction index."""
    state = Dict()
    first = reg(1)
    state.apply(run(state, [first]).writes)
    asked = []
    later = [reg(1, nonce=2), reg(2), reg(1, nonce=1)]  # a fresh nonce, a new sender, a replayed nonce
    ex = execute_block(state, bytes(32), [t.encoded for t in later], chain_id=CHAIN, height=2, timestamp_ms=2000,
                       known={t.hash: t for t in later}.get, committed=lambda h: asked.append(h) or False)
    assert asked == [later[2].hash]
    assert ex.results == ["already_registered", "ok", "nonce_replayed"]


def test_the_proposer_leaves_committed_transactions_out():
    state = Dict()
    a, b = reg(1), reg(2)
    state.apply(run(state, [a]).writes)
    ex = execute_block(state, bytes(32), [a.encoded, b.encoded], chain_id=CHAIN, height=2, timestamp_ms=2000,
                       known={a.hash: a, b.hash: b}.get, committed=lambda h: h == a.hash, drop_unregistered=True)
    assert [t.hash for t in ex.txs] == [b.hash] and ex.dropped == (a.hash,) and ex.results == ["ok"]
