"""The set of each height across several changes: catching up, retired keys, and a restart after a rotation."""

from __future__ import annotations

import pytest

from consensus.actions import Send
from consensus.certificate import CommitCertificate
from consensus.engine import Engine
from consensus.errors import LocalProtocolError
from consensus.messages import Commit, Prepare, sign_message
from consensus.simulation.fake_crypto import FakeKeyring, FakeSigner, FakeVerifier
from consensus.validators import ValidatorSet

from .conftest import CHAIN, CONFIG, ZERO, block, two_final_heights


def certificate(height: int, signers: list[FakeSigner]) -> CommitCertificate:
    digest = block(height, 0)[0]
    votes = {s.public_key: sign_message(Commit(chain_id=CHAIN, height=height, view=0, sender=s.public_key,
                                               digest=digest), s).signature for s in signers}
    return CommitCertificate(height=height, view=0, digest=digest, votes=tuple(sorted(votes.items())))


class TwoChanges:
    """Genesis v0..v3; block 1 removes v0 and adds v4 (in force at 3); block 2 rotates v3 to v5 (at 4)."""

    def __init__(self) -> None:
        keyring = FakeKeyring()
        self.s = [keyring.new_signer(f"v{i}".encode()) for i in range(6)]
        self.verifier = FakeVerifier(keyring)
        self.sets = {1: self.members(0, 1, 2, 3), 3: self.members(1, 2, 3, 4), 4: self.members(1, 2, 5, 4)}
        self.engine = Engine(chain_id=CHAIN, validators=self.sets[1], signer=self.s[1], verifier=self.verifier,
                             config=CONFIG, last_height=0, last_digest=ZERO)
        self.engine.start()
        self.engine.schedule_validators(3, self.sets[3])
        self.engine.schedule_validators(4, self.sets[4])

    def members(self, *numbers: int) -> ValidatorSet:
        return ValidatorSet(validators=tuple(self.s[i].public_key for i in numbers))

    def sync(self, height: int, *numbers: int) -> None:
        self.engine.on_block_synced(height, block(height, 0)[0], certificate(height, [self.s[i] for i in numbers]))


def test_catching_up_across_two_changes_checks_each_certificate_with_the_set_of_its_height() -> None:
    t = TwoChanges()
    t.sync(1, 0, 1, 2)
    t.sync(2, 0, 2, 3)
    with pytest.raises(LocalProtocolError):
        t.sync(3, 0, 2, 3)  # v0 was removed at 3: the genesis set no longer certifies
    t.sync(3, 2, 3, 4)
    with pytest.raises(LocalProtocolError):
        t.sync(4, 2, 3, 4)  # v3 rotated out at 4
    t.sync(4, 2, 5, 4)
    assert t.engine.height == 5 and t.engine.status()["validators"] == 4


def test_votes_of_a_removed_and_a_rotated_out_key_are_not_counted_after_their_switch() -> None:
    t = TwoChanges()
    t.sync(1, 0, 1, 2)
    t.sync(2, 0, 2, 3)
    t.sync(3, 2, 3, 4)
    digest = block(4, 0)[0]
    for retired in (t.s[0], t.s[3]):
        vote = sign_message(Prepare(chain_id=CHAIN, height=4, view=0, sender=retired.public_key, digest=digest),
                            retired)
        verdict, actions = t.engine.on_message(vote)
        assert (verdict.kind, verdict.reason) == ("discard", "sender is not a validator at this height")
        assert actions == []
    new_key = sign_message(Prepare(chain_id=CHAIN, height=4, view=0, sender=t.s[5].public_key, digest=digest),
                           t.s[5])
    assert t.engine.on_message(new_key)[0].kind in ("process", "stash")


def test_restart_with_a_rotated_key_skips_old_key_entries_of_final_heights() -> None:
    # A validator rotated its key at height 3 and crashed after committing height 2, before its WAL
    # was pruned: the WAL still holds votes of heights 1 and 2 signed with the old key.
    c, node, entries = two_final_heights()
    unpruned = tuple(e for _, e in entries)
    assert unpruned and len(node.committed) == 2
    new_signer = c.keyring.new_signer(b"v0-rotated")
    rotated = ValidatorSet(validators=(new_signer.public_key,) + c.validators.validators[1:])
    last = node.committed[-1]
    engine = Engine(chain_id=CHAIN, validators=rotated, signer=new_signer, verifier=c.verifier, config=CONFIG,
                    last_height=last.height, last_digest=last.digest, wal=unpruned)
    engine.start()
    assert engine.height == 3 and engine.status()["member"] is True


def test_after_a_restart_a_member_of_the_last_heights_set_only_still_gets_a_decision() -> None:
    # v0 was removed at height 3; a node restarted at height 3 must still answer v0, stuck at height 2.
    t = TwoChanges()
    t.sync(1, 0, 1, 2)
    digest, payload = block(2, 0)
    cert = certificate(2, [t.s[0], t.s[2], t.s[3]])
    engine = Engine(chain_id=CHAIN, validators=t.sets[3], signer=t.s[1], verifier=t.verifier, config=CONFIG,
                    last_height=2, last_digest=digest, last_certificate=cert, last_payload=payload,
                    previous_validators=t.sets[1])
    engine.start()
    behind = sign_message(Prepare(chain_id=CHAIN, height=2, view=1, sender=t.s[0].public_key, digest=digest), t.s[0])
    _, actions = engine.on_message(behind)
    assert [type(a.message).__name__ for a in actions if isinstance(a, Send)] == ["Decision"]
