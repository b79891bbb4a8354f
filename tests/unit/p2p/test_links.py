"""The link table (p2p.links) without sockets: the rules tests/integration/p2p/test_links.py sees over real ones."""

from __future__ import annotations

import ast
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import p2p.links
from p2p.backoff import Backoff
from p2p.links import REASON_DUPLICATE, REASON_REPLACED, DialSchedule, PeerLinks, Retire, dials_first

LOW = b"\x01" * 32
HIGH = b"\x02" * 32


@dataclass(frozen=True, eq=False)
class FakeLink:
    """A link end as the table sees it; compared by identity, as the network's links are."""

    outbound: bool
    name: str


def inbound(name: str = "in") -> FakeLink:
    return FakeLink(outbound=False, name=name)


def outbound(name: str = "out") -> FakeLink:
    return FakeLink(outbound=True, name=name)


# ---------------------------------------------------------------- one end


def test_the_first_link_connects_the_peer_whichever_way_it_was_dialed():
    for local, peer in ((LOW, HIGH), (HIGH, LOW)):
        for link in (inbound(), outbound()):
            links: PeerLinks[FakeLink] = PeerLinks(local, peer)
            decision = links.attach(link)
            assert decision.connected and decision.current is link and decision.retire == ()
            assert links.current is link and len(links) == 1


def test_the_lower_id_keeps_both_links_and_sends_on_its_own_dial():
    links: PeerLinks[FakeLink] = PeerLinks(LOW, HIGH)
    theirs, ours = inbound(), outbound()
    links.attach(theirs)
    decision = links.attach(ours)
    assert not decision.connected and decision.retire == ()  # the peer closes the other one
    assert decision.current is ours and len(links) == 2
    assert links.attached() == (ours, theirs)


def test_the_higher_id_retires_its_own_dial_when_the_lower_ids_arrives():
    links: PeerLinks[FakeLink] = PeerLinks(HIGH, LOW)
    ours, theirs = outbound(), inbound()
    assert links.attach(ours).current is ours
    decision = links.attach(theirs)
    assert decision.retire == (Retire(link=ours, reason=REASON_DUPLICATE),)
    assert not decision.connected  # seamless for the node: no second connected event
    assert decision.current is theirs and links.current is theirs and len(links) == 1


def test_the_higher_ids_own_dial_is_retired_at_once_when_the_lower_ids_is_there():
    links: PeerLinks[FakeLink] = PeerLinks(HIGH, LOW)
    theirs, ours = inbound(), outbound()
    links.attach(theirs)
    decision = links.attach(ours)
    assert decision.retire == (Retire(link=ours, reason=REASON_DUPLICATE),)
    assert decision.current is theirs and not decision.connected
    assert links.attached() == (theirs,)


@pytest.mark.parametrize(("local", "peer"), [(LOW, HIGH), (HIGH, LOW)])
@pytest.mark.parametrize("make", [inbound, outbound])
def test_a_new_link_in_the_same_direction_replaces_the_old_one(local, peer, make):
    links: PeerLinks[FakeLink] = PeerLinks(local, peer)
    old, new = make("old"), make("new")
    links.attach(old)
    decision = links.attach(new)  # the peer restarted; the old link is dead or dying
    assert decision.retire == (Retire(link=old, reason=REASON_REPLACED),)
    assert decision.current is new and not decision.connected
    assert not links.detach(old)  # its reader ending later changes nothing
    assert links.current is new


def test_detaching_the_last_link_disconnects_and_the_next_link_connects_again():
    links: PeerLinks[FakeLink] = PeerLinks(LOW, HIGH)
    first = outbound("first")
    links.attach(first)
    assert links.detach(first) is True
    assert links.current is None and len(links) == 0
    assert links.detach(first) is False  # reported once
    second = outbound("second")
    assert links.attach(second).connected


def test_detaching_the_current_link_falls_back_to_the_other_one_quietly():
    links: PeerLinks[FakeLink] = PeerLinks(LOW, HIGH)
    theirs, ours = inbound(), outbound()
    links.attach(theirs)
    links.attach(ours)
    assert links.detach(ours) is False
    assert links.current is theirs
    assert links.detach(theirs) is True


def test_detaching_a_link_we_do_not_send_on_changes_nothing():
    links: PeerLinks[FakeLink] = PeerLinks(LOW, HIGH)
    theirs, ours = inbound(), outbound()
    links.attach(theirs)
    links.attach(ours)
    assert links.detach(theirs) is False  # the higher id closed its duplicate
    assert links.current is ours and len(links) == 1


def test_a_link_that_was_never_attached_is_ignored():
    links: PeerLinks[FakeLink] = PeerLinks(LOW, HIGH)
    assert links.detach(inbound()) is False
    links.attach(ours := outbound())
    assert links.detach(outbound("stranger")) is False
    assert links.current is ours


# ---------------------------------------------------------------- both ends


@dataclass
class End:
    """One node's table for its peer, with what the node would have been told."""

    links: PeerLinks[FakeLink]
    connected: int = 0
    disconnected: int = 0
    retired: list[Retire[FakeLink]] = field(default_factory=list)

    def attach(self, link: FakeLink) -> None:
        decision = self.links.attach(link)
        self.connected += decision.connected
        self.retired += decision.retire

    def detach(self, link: FakeLink) -> None:
        self.disconnected += self.links.detach(link)


@pytest.mark.parametrize(
    ("low_order", "high_order"), list(itertools.product(["own dial first", "peer's dial first"], repeat=2))
)
def test_simultaneous_dials_leave_one_link_both_ends_agree_on(low_order, high_order):
    # Two connections: the low id's dial (ends low_out, high_in) and the high id's (high_out, low_in).
    low_out, high_in = outbound("low's dial"), inbound("low's dial")
    high_out, low_in = outbound("high's dial"), inbound("high's dial")
    other_end = {low_out: high_in, high_in: low_out, high_out: low_in, low_in: high_out}
    low, high = End(PeerLinks(LOW, HIGH)), End(PeerLinks(HIGH, LOW))
    for link in (low_out, low_in) if low_order == "own dial first" else (low_in, low_out):
        low.attach(link)
    for link in (high_out, high_in) if high_order == "own dial first" else (high_in, high_out):
        high.attach(link)
    # Carry out the retirements: the retiring end's reader ends, then the peer sees the close.
    for end, peer_end in ((low, high), (high, low)):
        for retire in end.retired:
            end.detach(retire.link)
            peer_end.detach(other_end[retire.link])
    assert low.links.current is low_out and high.links.current is high_in  # the lower id's dial
    assert len(low.links) == len(high.links) == 1
    assert [r.reason for r in high.retired] == [REASON_DUPLICATE] and low.retired == []
    assert (low.connected, low.disconnected, high.connected, high.disconnected) == (1, 0, 1, 0)  # no flapping


def test_the_lower_id_is_the_one_whose_dial_wins():
    assert dials_first(LOW, HIGH) and not dials_first(HIGH, LOW)


# ---------------------------------------------------------------- dialing


def test_the_lower_id_dials_at_once_and_the_higher_after_a_head_start():
    first = DialSchedule(local_id=LOW, peer_id=HIGH, base=0.2, cap=3.0, rng=random.Random(1))
    assert first.take_delay() == 0.0
    second = DialSchedule(local_id=HIGH, peer_id=LOW, base=0.2, cap=3.0, rng=random.Random(1))
    head_start = second.take_delay()
    assert 0.1 <= head_start <= 0.2
    assert second.take_delay() == 0.0  # taken


def test_failed_dials_back_off_up_to_the_cap_and_a_link_starts_over():
    schedule = DialSchedule(local_id=LOW, peer_id=HIGH, base=0.1, cap=1.0, rng=random.Random(7))
    delays = []
    for _ in range(8):
        schedule.dialed(False)
        delays.append(schedule.take_delay())
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(8)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    schedule.dialed(True)
    assert 0.05 <= schedule.take_delay() <= 0.1


@pytest.mark.parametrize(("local", "peer"), [(LOW, HIGH), (HIGH, LOW)])
def test_the_schedule_draws_from_the_rng_in_a_fixed_order(local, peer):
    # Head start, then after each attempt the backoff and the head start again: a
    # seeded network dials at the same moments run after run.
    seed, base, cap = 11, 0.05, 0.4
    schedule = DialSchedule(local_id=local, peer_id=peer, base=base, cap=cap, rng=random.Random(seed))
    got = [schedule.take_delay()]
    for linked in (False, False, True, False):
        schedule.dialed(linked)
        got.append(schedule.take_delay())

    rng = random.Random(seed)
    backoff = Backoff(base=base, cap=cap, rng=rng)

    def head_start() -> float:
        return 0.0 if local < peer else rng.uniform(0.5, 1.0) * base

    want = [head_start()]
    for linked in (False, False, True, False):
        if linked:
            backoff.reset()
        want.append(backoff.next_delay() + head_start())
    assert got == want


def test_the_schedule_refuses_a_bad_backoff():
    with pytest.raises(ValueError):
        DialSchedule(local_id=LOW, peer_id=HIGH, base=1.0, cap=0.5, rng=random.Random(0))


# ---------------------------------------------------------------- purity


def test_the_link_table_does_no_io_and_reads_no_clock():
    tree = ast.parse(Path(p2p.links.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= {"__future__", "random", "dataclasses", "typing", "p2p.backoff"}, imported
