"""Steps of validator-set changes on the harness cluster: commit a block, pass a proposal by
each voter's approval in turn, and a four-validator cluster that votes in a fifth."""

from __future__ import annotations

from tests.harness.cluster import Cluster, identities, patient_registrations

ADDRESS = {"address": "mem:4", "api": "http://127.0.0.1:8004"}


def commit_one(c: Cluster, live: list[int], tag: bytes) -> int:
    """Submit a transaction at the first live node; run until every live node committed it."""
    target = max(c.nodes[i].store.height for i in live) + 1
    c.submit(live[0], patient_registrations(1, seed=tag))
    assert c.run_until(lambda: all(c.nodes[i].store.height >= target for i in live), max_steps=2_000), c.heights()
    return target


def decide(c: Cluster, voters: list[int], type_: str, body: dict, live: list[int]) -> int:
    """Each voter's approval in turn (each committed before the next); the height that decided it."""
    for v in voters:
        height = max(c.nodes[i].store.height for i in live) + 1
        c.send(live[0], c.idents[v], type_, body)
        assert c.run_until(lambda: all(c.nodes[i].store.height >= height for i in live), max_steps=2_000), c.heights()
    last = c.nodes[live[0]].store
    return last.height


def with_fifth_validator() -> tuple[Cluster, int, int]:
    """Four validators admit institution 4, start its node and vote it in; (cluster, its index,
    the height its membership takes effect at)."""
    c = Cluster(4)
    c.start()
    new = identities(5)[4]
    for v in range(3):
        c.send(0, c.idents[v], "governance.admit_institution", {"institution": new.public_key, "name": "v4"})
    assert c.run_until(lambda: all(n.store.state_get(b"identity/" + new.public_key) for n in c.nodes))
    e = c.add_node(new)
    decided = decide(c, [0, 1, 2], "validator.add", {"candidate": new.public_key, **ADDRESS}, [0, 1, 2, 3, 4])
    return c, e, decided + 2
