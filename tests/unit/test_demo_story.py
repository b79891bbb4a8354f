"""The demo's step runner with fake steps: order, failures, skips of the steps that need a failed
one (and of those that need a skipped one), and the checks of the list; the command's refusals of
a directory or ports in the way (no node is started)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from node.devtools.cluster import Cluster
from node.devtools.demo_story import STORY, Step, StepFailed, check_steps, run_steps


def test_steps_run_in_order_and_failures_skip_what_needs_them() -> None:
    calls: list[str] = []

    def ok(name: str) -> Step:
        def run(ctx: list[str]) -> str:
            ctx.append(name)
            return f"{name} done"
        return Step(name, run, ())

    def boom(ctx: list[str]) -> str:
        ctx.append("b")
        raise StepFailed("b broke")

    def crash(ctx: list[str]) -> str:
        raise KeyError("x")

    steps = [ok("a"), Step("b", boom, ("a",)), Step("c", ok("c").run, ("b",)), Step("d", ok("d").run, ("c",)),
             Step("e", ok("e").run, ("a",)), Step("f", crash), Step("g", ok("g").run, ("e", "f"))]
    started: list[str] = []
    results = run_steps(steps, calls, on_start=lambda s: started.append(s.name))
    assert [(r.name, r.ok, r.detail) for r in results] == [
        ("a", True, "a done"), ("b", False, "b broke"), ("c", False, "skipped: b failed"), ("d", False, "skipped: c failed"),
        ("e", True, "e done"), ("f", False, "KeyError: 'x'"), ("g", False, "skipped: f failed")]
    assert calls == ["a", "b", "e"] and started == ["a", "b", "e", "f"]  # skipped steps never start


def test_every_ok_when_nothing_fails() -> None:
    results = run_steps([Step("one", lambda ctx: "1"), Step("two", lambda ctx: "2", ("one",))], None)
    assert [r.to_json()["ok"] for r in results] == [True, True] and results[1].detail == "2"


def test_the_list_is_checked() -> None:
    with pytest.raises(ValueError, match="two steps"):
        check_steps([Step("a", lambda c: ""), Step("a", lambda c: "")])
    with pytest.raises(ValueError, match="not a step before it"):
        check_steps([Step("a", lambda c: "", ("b",)), Step("b", lambda c: "")])
    check_steps(STORY)
    assert STORY[0].name == "network_started" and all(step.narration for step in STORY)


def demo(*args: str):
    return CliRunner().invoke(main, ["demo", *args], catch_exceptions=False)


def test_a_previous_demo_or_a_devnet_in_the_way_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "demo.json").write_text("{}\n")
    r = demo("--dir", str(old), "--exit")
    assert r.exit_code == 2 and "previous demo" in r.output and "remove it" in r.output
    Cluster.create(tmp_path / "net", 1)  # homes only, nothing started
    r = demo("--dir", str(tmp_path / "net"), "--exit")
    assert r.exit_code == 2 and "devnet that is not a demo's" in r.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    r = demo("--dir", str(tmp_path / "other"), "--exit")
    assert r.exit_code == 2 and "not empty" in r.output


def test_ports_in_use_are_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        if port > 65000:
            pytest.skip("the OS gave a port above --base-port's range")
        r = demo("--dir", str(tmp_path / "d"), "--base-port", str(port), "--exit")
    assert r.exit_code == 2 and f"{port}" in r.output and "in use" in r.output
    assert not (tmp_path / "d").exists()
