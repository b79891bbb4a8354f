"""The engine holds to its transition table: `consensus.height.TRANSITIONS` is checked, not just read.

The simulator runs seeds with every Byzantine behaviour, drops and partitions; every engine of
the run reports its (height, phase) each time it emits an action and at the start and end of
every call. Each change between two reports must be one move of the table (the height moving
on counts as `NEXT_HEIGHT`, and only `on_block_synced` may move on from any phase). The module
docstring of `consensus.height` shows the same table to readers; it is checked to name every
event of the data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

import consensus.engine as engine_module
import consensus.height as height_module
from consensus.engine import Engine
from consensus.height import NEXT_HEIGHT, TRANSITIONS, Event, Next, Phase
from consensus.simulation.runner import BEHAVIOURS, run_sim

ENTRY_POINTS = ("start", "on_message", "on_work", "on_timer", "on_proposal_ready", "on_block_validated",
                "on_block_synced")


def one_move(before: Phase, after: Next, *, synced: bool) -> bool:
    return any(after in targets for (phase, event), targets in TRANSITIONS.items()
               if phase == before and (synced or event is not Event.SYNCED))


class Recorder:
    """Every (height, phase) an engine passes through, and the moves the table does not allow."""

    def __init__(self) -> None:
        # Keyed by the engine itself (not its id, which a later engine may reuse).
        self.last: dict[Engine, tuple[int, Phase]] = {}
        self.in_call: dict[Engine, str | None] = {}
        self.moves: set[tuple[Phase, Next]] = set()
        self.illegal: list[str] = []

    def report(self, engine: Engine) -> None:
        now = (engine.height, Phase(engine.status()["phase"]))
        before = self.last.get(engine)
        self.last[engine] = now
        if before is None or before == now:
            return
        after: Next = now[1] if now[0] == before[0] else NEXT_HEIGHT
        if now[0] < before[0]:
            self.illegal.append(f"height went back: {before} -> {now}")
            return
        self.moves.add((before[1], after))
        synced = self.in_call.get(engine) == "on_block_synced"
        if not one_move(before[1], after, synced=synced):
            self.illegal.append(f"{self.in_call.get(engine)}: {before} -> {now}")


class ReportingList(list[Any]):
    def __init__(self, engine: Engine, recorder: Recorder) -> None:
        super().__init__()
        self._engine, self._recorder = engine, recorder

    def append(self, item: Any) -> None:
        self._recorder.report(self._engine)
        super().append(item)

    def __iadd__(self, items: Any) -> ReportingList:  # type: ignore[misc]  # returns the subclass; list.__add__ gives a plain list
        self._recorder.report(self._engine)
        super().__iadd__(items)
        return self


def watch(monkeypatch: pytest.MonkeyPatch, recorder: Recorder) -> None:
    """Make every Engine report to `recorder` (its action list is swapped for a reporting one)."""
    monkeypatch.setattr(Engine, "_out", property(
        lambda self: self.__dict__["_watched_out"],
        lambda self, value: self.__dict__.__setitem__("_watched_out", _reporting(self, recorder, value))),
        raising=False)
    for name in ENTRY_POINTS:
        monkeypatch.setattr(Engine, name, _reporting_call(getattr(Engine, name), name, recorder))


def _reporting(engine: Engine, recorder: Recorder, value: list[Any]) -> ReportingList:
    out = ReportingList(engine, recorder)
    list.extend(out, value)
    return out


def _reporting_call(method: Callable[..., Any], name: str, recorder: Recorder) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Engine, *args: Any, **kwargs: Any) -> Any:
        outer = recorder.in_call.get(self)
        recorder.in_call[self] = name
        recorder.report(self)
        try:
            return method(self, *args, **kwargs)
        finally:
            recorder.report(self)
            recorder.in_call[self] = outer
    return call


@pytest.mark.parametrize(("validators", "byzantine", "drop", "partition"), [(4, 1, 0.1, True), (7, 2, 0.2, True)])
def test_the_engine_makes_only_the_moves_of_its_table(monkeypatch: pytest.MonkeyPatch, validators: int,
                                                      byzantine: int, drop: float, partition: bool) -> None:
    recorder = Recorder()
    watch(monkeypatch, recorder)
    report = run_sim(validators=validators, byzantine=byzantine, behaviours=BEHAVIOURS, drop=drop,
                     partition=partition, seeds=range(6), amnesia=True)
    assert report["failing_seeds"] == [], report["failures"][:3]
    assert recorder.illegal == [], recorder.illegal[:10]
    # The run went through the interesting moves, so the check above had something to check.
    for move in [(Phase.PRE_PREPARE, Phase.PREPARE), (Phase.PREPARE, Phase.COMMIT), (Phase.COMMIT, NEXT_HEIGHT),
                 (Phase.PRE_PREPARE, Phase.VIEW_CHANGE), (Phase.VIEW_CHANGE, Phase.PRE_PREPARE)]:
        assert move in recorder.moves, (move, sorted(map(str, recorder.moves)))


def test_a_move_outside_the_table_is_reported() -> None:
    assert one_move(Phase.PRE_PREPARE, Phase.PREPARE, synced=False)
    assert not one_move(Phase.PRE_PREPARE, Phase.COMMIT, synced=False)
    assert not one_move(Phase.AWAITING_BLOCK, Phase.VIEW_CHANGE, synced=False)
    assert not one_move(Phase.AWAITING_BLOCK, Phase.PRE_PREPARE, synced=True)
    assert one_move(Phase.VIEW_CHANGE, NEXT_HEIGHT, synced=True)


def test_the_docstring_table_shows_every_event_and_the_engine_points_to_it() -> None:
    doc = height_module.__doc__ or ""
    for event in Event:
        assert f"| {event.value}" in doc, event
    for phase in Phase:
        assert phase.value in doc, phase
    assert "consensus.height.TRANSITIONS" in (engine_module.__doc__ or "")
