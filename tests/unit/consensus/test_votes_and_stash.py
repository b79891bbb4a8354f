"""The engine's building blocks on their own: a VoteSet's verdicts and the stash's fair shares."""

from __future__ import annotations

from consensus.messages import Commit, Prepare, sign_message
from consensus.simulation.fake_crypto import FakeKeyring
from consensus.stash import Stash
from consensus.votes import VoteSet

from .conftest import CHAIN, block

KEYS = FakeKeyring()
SIGNERS = [KEYS.new_signer(f"v{i}".encode()) for i in range(4)]


def vote(cls: type, i: int, view: int = 0, tag: str = "") -> Prepare | Commit:
    return sign_message(cls(chain_id=CHAIN, height=1, view=view, sender=SIGNERS[i].public_key,
                            digest=block(1, view, tag)[0]), SIGNERS[i])


def test_a_vote_set_counts_first_votes_and_names_repeats_and_conflicts() -> None:
    votes: VoteSet[Prepare] = VoteSet()
    first = vote(Prepare, 0)
    assert votes.add(first) == ("added", None)
    assert votes.add(first) == ("duplicate", first)
    assert votes.add(vote(Prepare, 0, tag="other")) == ("conflict", first)
    assert votes.add(vote(Prepare, 1))[0] == "added" and votes.add(vote(Prepare, 1, view=1))[0] == "added"
    digest = first.digest
    assert votes.count(0, digest) == 2 and votes.count(1, digest) == 0
    assert votes.voted(0, SIGNERS[1].public_key) and not votes.voted(2, SIGNERS[1].public_key)
    signatures = votes.signatures(0, digest)
    assert [s for s, _ in signatures] == sorted(s.public_key for s in SIGNERS[:2])


def test_the_stash_drops_repeats_and_gives_a_newcomer_the_longest_queues_newest_slot() -> None:
    stash = Stash(per_sender=3, total=4)
    a = [vote(Commit, 0, view=v) for v in range(3)]
    for m in a:
        assert stash.add(m) == ""
    assert stash.add(a[0]) == "duplicate"
    assert stash.add(vote(Commit, 0, view=5)) == "stash full"  # per sender
    assert stash.add(vote(Commit, 1)) == ""
    assert stash.add(vote(Commit, 2)) == ""  # total reached: sender 0 gives up its newest
    assert len(stash) == 4
    taken = stash.take_all()
    assert a[2] not in taken and a[0] in taken and a[1] in taken and len(stash) == 0
