"""The Byzantine modes' rewriting of outgoing consensus messages, message by message, checked
against the real decoder, signature check and block validation."""

from __future__ import annotations

import pytest

from consensus.messages import Commit, MessageDecodeError, Prepare, PrePrepare, decode_message, sign_message
from node.app.executor import BlockRejected
from node.chain.block import BlockInvalid, decode_block
from node.devtools.byzantine import (
    ENV_MODE,
    FRAME_CONSENSUS,
    MODES,
    OVERSIZED_BYTES,
    ByzantineConfigError,
    Mutator,
    empty_alternative,
    empty_block,
    mode_from_env,
)
from node.core.crypto import Ed25519Verifier, Identity
from node.chain.tx import Transaction
from tests.helpers import CHAIN, make_node

ME = Identity.from_seed(b"\x07" * 32)  # the validator of tests.helpers.make_node
PEERS = sorted(Identity.from_seed(bytes([i]) * 32).public_key for i in (1, 2, 3))
VERIFY = Ed25519Verifier().verify


def signed_ok(msg) -> bool:
    return VERIFY(msg.sender, msg.signing_bytes(), msg.signature)


@pytest.fixture(scope="module")
def block_one():
    """A node at height 0 and a valid block 1 with one transaction (built by the node itself)."""
    node = make_node()
    tx = Transaction.create(Identity.from_seed(b"\x09" * 32), chain_id=CHAIN, type="identity.register", nonce=1,
                            body={"role": "patient"})
    assert node.admit([[tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]])[0].error is None
    block, _ = node.build_block(1)
    return node, block


def mutator(mode: str, alternative=None) -> Mutator:
    return Mutator(mode, signer=ME, chain_id=CHAIN, validators=[ME.public_key, *PEERS], seed=5,
                   alternative_block=alternative)


def proposal(block) -> PrePrepare:
    return sign_message(PrePrepare(chain_id=CHAIN, height=1, view=0, sender=ME.public_key, digest=block.hash,
                                   payload=block.encode()), ME)


def vote(cls=Prepare, digest=b"\x01" * 32):
    return sign_message(cls(chain_id=CHAIN, height=1, view=0, sender=ME.public_key, digest=digest), ME)


def test_modes_need_test_switches_and_a_known_name():
    assert mode_from_env(False, {}) is None
    assert mode_from_env(True, {ENV_MODE: "withhold"}) == "withhold"
    with pytest.raises(ByzantineConfigError, match="unsafe-test-switches"):
        mode_from_env(False, {ENV_MODE: "withhold"})
    with pytest.raises(ByzantineConfigError, match="unknown Byzantine mode"):
        mode_from_env(True, {ENV_MODE: "be-evil"})


@pytest.mark.parametrize("mode", MODES)
def test_messages_of_other_senders_pass_unchanged(mode):
    other = Identity.from_seed(b"\x01" * 32)
    msg = sign_message(Prepare(chain_id=CHAIN, height=1, view=0, sender=other.public_key, digest=b"\x02" * 32), other)
    assert mutator(mode).outgoing(msg.encode(), PEERS) == [(p, FRAME_CONSENSUS, msg.encode()) for p in PEERS]


def test_equivocating_primary_tells_two_groups_two_valid_stories(block_one):
    node, block = block_one
    alt = empty_alternative(node, block.encode())
    assert alt is not None
    empty = decode_block(alt)
    assert empty.txs == () and empty.hash != block.hash
    node.check_block(1, empty.hash, alt, now_ms=None)  # the second story is a valid block too
    m = mutator("equivocate", alternative=lambda payload: empty_alternative(node, payload))
    out = m.outgoing(proposal(block).encode(), PEERS)
    assert len(out) == 2 * len(PEERS)
    for peer in PEERS:
        first, second = (decode_message(data) for p, _, data in out if p == peer)
        assert {first.digest, second.digest} == {block.hash, empty.hash}
        assert all(type(x) is PrePrepare and signed_ok(x) and x.sender == ME.public_key for x in (first, second))
        assert (first.digest == block.hash) == (peer in m.group_one)
    assert 0 < len(m.group_one) < len(PEERS)


def test_double_voter_signs_a_conflicting_vote_for_each_vote():
    m = mutator("double-vote")
    for cls in (Prepare, Commit):
        real = vote(cls)
        out = m.outgoing(real.encode(), PEERS)
        assert len(out) == 2 * len(PEERS)
        msgs = [decode_message(d) for _, _, d in out]
        assert all(type(x) is cls and signed_ok(x) and (x.height, x.view) == (1, 0) for x in msgs)
        assert len({x.digest for x in msgs}) == 2 and real.digest in {x.digest for x in msgs}


def test_withholder_drops_its_votes_but_still_proposes(block_one):
    m = mutator("withhold")
    assert m.outgoing(vote(Prepare).encode(), PEERS) == []
    assert m.outgoing(vote(Commit).encode(), PEERS) == []
    pp = proposal(block_one[1])
    assert len(m.outgoing(pp.encode(), PEERS)) == len(PEERS)


def test_invalid_blocks_are_signed_proposals_that_validation_rejects(block_one):
    node, block = block_one
    m = mutator("invalid-block")
    reasons = set()
    for _ in range(8):
        out = m.outgoing(proposal(block).encode(), PEERS)
        pp = decode_message(out[0][2])
        assert type(pp) is PrePrepare and signed_ok(pp) and pp.digest != block.hash
        with pytest.raises((BlockInvalid, BlockRejected)) as err:
            node.check_block(1, pp.digest, pp.payload, now_ms=None)
        reasons.add("state root" if "state root" in str(err.value) else "transaction")
    assert reasons == {"state root", "transaction"}


def test_impersonated_messages_name_another_validator_and_fail_its_signature_check():
    m = mutator("impersonate")
    for _ in range(5):
        out = m.outgoing(vote(Prepare).encode(), PEERS)
        lie = decode_message(out[0][2])
        assert lie.sender in PEERS and not signed_ok(lie)


def test_replayer_sends_old_messages_again():
    m = mutator("replay")
    old = [vote(Prepare, bytes([i]) * 32).encode() for i in range(5)]
    for data in old:
        m.observe(FRAME_CONSENSUS, data)
    sent = m.tick(PEERS)
    assert sent and all(kind == FRAME_CONSENSUS and data in old and peer in PEERS for peer, kind, data in sent)


def test_garbage_is_refused_by_the_decoder_or_the_frame_limit():
    m = mutator("garbage")
    frames = [f for _ in range(10) for f in m.tick(PEERS)]
    assert any(len(data) >= OVERSIZED_BYTES for _, _, data in frames)  # over the peers' 4 MiB frame limit
    kinds = {kind for _, kind, _ in frames}
    assert FRAME_CONSENSUS in kinds and len(kinds) >= 2
    for _, kind, data in frames:
        if kind != FRAME_CONSENSUS or len(data) >= OVERSIZED_BYTES:
            continue
        try:
            msg = decode_message(data)
        except MessageDecodeError:
            continue
        # the only decodable garbage: a signed proposal whose payload is not the block it names
        assert type(msg) is PrePrepare and len(msg.payload) > 1024 * 1024
        with pytest.raises(BlockInvalid):
            decode_block(msg.payload)


def test_relabel_mode_sends_each_peer_a_new_view_made_of_its_own_signature(block_one):
    from consensus.messages import NewView, ViewChange

    node, block = block_one
    victim = Identity.from_seed(bytes([1]) * 32)
    m = Mutator("relabel", signer=ME, chain_id=CHAIN, validators=[ME.public_key, *PEERS], seed=5,
                fresh_block=lambda height: empty_block(node, height))
    own = sign_message(ViewChange(chain_id=CHAIN, height=1, view=1, sender=victim.public_key), victim)
    other = Identity.from_seed(bytes([2]) * 32)
    late = sign_message(ViewChange(chain_id=CHAIN, height=2, view=1, sender=other.public_key), other)
    m.observe(FRAME_CONSENSUS, late.encode())
    assert m.tick(PEERS) == []  # the node is not at height 2: it has no valid block to re-propose there
    m.observe(FRAME_CONSENSUS, own.encode())
    [(to, kind, data)] = m.tick(PEERS)
    assert (to, kind) == (victim.public_key, FRAME_CONSENSUS)
    nv = decode_message(data)
    assert type(nv) is NewView and signed_ok(nv) and signed_ok(nv.pre_prepare)
    assert m.validator_set.primary(1, nv.view) == ME.public_key and nv.view > own.view
    assert len(nv.view_changes) == m.validator_set.quorum
    assert victim.public_key in {vc.sender for vc in nv.view_changes}
    assert all(vc.signature == own.signature and vc.prepared is None for vc in nv.view_changes)
    assert not any(signed_ok(vc) for vc in nv.view_changes)  # what every honest validator checks
    forged = decode_block(nv.pre_prepare.payload)
    assert forged.hash != block.hash and forged.header.height == 1 and forged.txs == ()
    node.check_block(1, forged.hash, nv.pre_prepare.payload, now_ms=None)  # a valid block: only the proof is false
    assert m.tick(PEERS) == []  # once per victim, height and view
