"""The devnet supervisor's rules on a fake cluster and clock: an exit is reported, the node is
restarted after a back-off that doubles with exits in a row and resets after a stable run, and
with restart off it stays down; the other nodes are never touched."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.devtools.cluster import Supervisor


@dataclass
class FakeNode:
    index: int
    home: Path = Path("devnet/nodeX")


@dataclass
class FakeCluster:
    nodes: list[FakeNode] = field(default_factory=lambda: [FakeNode(i) for i in range(4)])
    pending_exits: list[tuple[int, int]] = field(default_factory=list)
    started: list[int] = field(default_factory=list)

    def exited(self) -> list[tuple[int, int]]:
        out, self.pending_exits = self.pending_exits, []
        return out

    def start(self, i: int) -> None:
        self.started.append(i)


def test_a_node_that_exits_is_restarted_after_a_doubling_backoff_and_the_others_are_untouched():
    now = [0.0]
    cluster = FakeCluster()
    sup = Supervisor(cluster, backoff_s=1.0, max_backoff_s=4.0, stable_s=60.0, clock=lambda: now[0])
    cluster.pending_exits = [(2, -9)]
    events = sup.poll()
    assert events and "node2 exited killed by signal 9" in events[0] and "restarting it in 1 s" in events[0]
    assert sup.describe(2).startswith("down") and cluster.started == []
    now[0] = 0.9
    assert sup.poll() == [] and cluster.started == []
    now[0] = 1.0
    assert sup.poll() == ["node2 restarted (restart 1)"] and cluster.started == [2]
    # it exits again at once: twice the wait, then four times, capped
    for expected in (2, 4, 4):
        cluster.pending_exits = [(2, 1)]
        assert f"restarting it in {expected} s" in sup.poll()[0]
        now[0] += expected
        sup.poll()
    # after a stable run the back-off starts over
    now[0] += 61
    cluster.pending_exits = [(2, 0)]
    assert "exited cleanly (exit code 0); the others keep running; restarting it in 1 s" in sup.poll()[0]
    assert sup.watch[2].failures == 1
    assert set(cluster.started) == {2}  # nobody else was restarted


def test_with_restart_off_a_node_that_exits_stays_down():
    cluster = FakeCluster()
    sup = Supervisor(cluster, restart=False, clock=lambda: 0.0)
    cluster.pending_exits = [(1, 0)]
    assert "it stays down" in sup.poll()[0]
    assert sup.poll() == [] and sup.describe(1) == "stopped" and cluster.started == []


def test_status_table_shows_a_down_node_with_its_exit_code_and_restart(tmp_path):
    from rich.console import Console

    from node.commands.devnet import devnet_table
    from node.devtools.cluster import Cluster

    cluster = Cluster.create(tmp_path / "devnet", 2)  # homes only: no process is started
    sup = Supervisor(cluster, clock=lambda: 100.0)
    w = sup.watch[1]
    w.state, w.exit_code, w.restart_at, w.restarts = "down", -9, 103.0, 2
    console = Console(width=160, record=True)
    console.print(devnet_table(cluster, sup))
    rows = {line.split("│")[1].strip(): line for line in console.export_text().splitlines() if line.startswith("│")}
    assert "down, restart in 3 s" in rows["node1"] and "-9" in rows["node1"] and " 2 " in rows["node1"]
    assert "down" in rows["node0"]  # not running, whatever the supervisor saw last
