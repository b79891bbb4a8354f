"""The simulator in CI: fixed seeds, every fault and behaviour, and proof that the checks bite.

Each test id carries its seed; a failure is reproduced with
`run_seed(CONFIG, seed)` (or `medledger sim ... --seeds <seed>`) from the same options.
"""

from __future__ import annotations

import pytest

import consensus.engine as engine_module
import consensus.view_change as view_change_module
from consensus.simulation.cluster import SeedResult, SimConfig, Simulation, run_seed
from consensus.simulation.runner import BEHAVIOURS, parse_seeds, run_sim
from consensus.validators import ValidatorSet

from .conftest import ed25519_crypto, seed_id

ALL = tuple(BEHAVIOURS)
N4 = SimConfig(validators=4, byzantine=1, behaviours=ALL, drop=0.2, partition=True)
LOCK_PROBE = {"validators": 4, "byzantine": 1, "behaviours": ["withhold", "double-vote"], "drop": 0.3,
              "partition": True}
N7 = SimConfig(validators=7, byzantine=2, behaviours=ALL, drop=0.2, partition=True)


def explain(result: SeedResult) -> str:
    return (f"seed {result.seed}: byzantine {result.byzantine} {result.behaviours}; safety {result.safety_violations[:3]}; "
            f"liveness {result.liveness_failures[:3]}; errors {result.errors[:3]}")


@pytest.mark.parametrize("seed", range(100), ids=seed_id)
def test_n4_one_byzantine_with_every_behaviour_drops_and_partitions(seed: int) -> None:
    result = run_seed(N4, seed)
    assert result.ok, explain(result)
    assert result.min_height >= N4.heights


@pytest.mark.parametrize("seed", range(40), ids=seed_id)
def test_n7_two_byzantine_with_every_behaviour_drops_and_partitions(seed: int) -> None:
    result = run_seed(N7, seed)
    assert result.ok, explain(result)


@pytest.mark.parametrize(("n", "seed"), [pytest.param(n, s, id=f"n={n}-seed={s}") for n in (1, 2, 3, 5, 10)
                                         for s in range(3)])
def test_other_sizes_with_crashes_drops_and_partitions(n: int, seed: int) -> None:
    f = (n - 1) // 3
    config = SimConfig(validators=n, byzantine=f, behaviours=ALL if f else (), drop=0.2, partition=True)
    result = run_seed(config, seed)
    assert result.ok, explain(result)


def test_a_single_validator_runs_through_the_same_code() -> None:
    result = run_seed(SimConfig(validators=1, heights=20, partition=True, drop=0.2), 0)
    assert result.ok and result.min_height >= 20 and result.messages == 0


@pytest.mark.parametrize("seed", range(8), ids=seed_id)
def test_restart_without_state_counts_as_a_fault_and_the_node_rejoins(seed: int) -> None:
    config = SimConfig(validators=4, byzantine=0, drop=0.2, partition=True, amnesia=True)
    sim = Simulation(config, seed)
    result = sim.run()
    assert result.ok, explain(result)
    assert len(sim.amnesiacs) <= config.f
    # Every endpoint that lost its disk synced back and is among those that reached the target.
    assert all(len(sim.endpoints[i].chain) >= (sim.target or 0) for i in sim.amnesiacs)


@pytest.mark.parametrize("seed", range(20), ids=seed_id)
def test_validator_set_changes_mid_run(seed: int) -> None:
    n = 4 + seed % 7  # n from 4 to 10, f Byzantine
    config = SimConfig(validators=n, byzantine=(n - 1) // 3, behaviours=ALL, drop=0.1, partition=True,
                       reconfigure=True)
    sim = Simulation(config, seed)
    result = sim.run()
    assert result.ok, explain(result) + f"; schedule {result.reconfiguration}"
    schedule = sim.reconfiguration
    assert schedule is not None and result.reconfiguration
    for change in schedule.changes:
        assert 4 <= len(schedule.members_at(change.effective)) and config.byzantine <= (
            len(schedule.members_at(change.effective)) - 1) // 3
    # Every endpoint that reached a height holds a certificate of that height's set only.
    for ep in sim.endpoints:
        if not ep.honest:
            continue
        for height, (_, _, cert) in enumerate(ep.chain, start=1):
            members = {sim.ids[v] for v in schedule.members_at(height)}
            assert {v for v, _ in cert.votes} <= members, f"height {height} certified outside its set"


def test_retired_keys_keep_voting_and_are_never_counted() -> None:
    ghosts = 0
    for seed in range(6):
        sim = Simulation(SimConfig(validators=4, byzantine=1, behaviours=("equivocate", "double-vote"), drop=0.1,
                                   reconfigure=True, heights=10), seed)
        result = sim.run()
        assert result.ok, explain(result)
        ghosts += sim.ghost_votes if sim.retired else 0
    assert ghosts > 0  # the check is exercised: retired keys did sign after their switch


def test_a_liveness_failure_the_schedule_explains_is_reported_as_such() -> None:
    sim = Simulation(SimConfig(validators=4, byzantine=1, behaviours=("silent",), reconfigure=True), 0)
    assert sim.reconfiguration is not None
    sim.behaviours_of[sim.reconfiguration.members_at(1)[1]] = frozenset({"silent"})  # a second one down
    assert "not a failure of the protocol" in sim._explain_liveness(1)
    assert Simulation(SimConfig(validators=4, reconfigure=True), 0)._explain_liveness(1) == ""


def test_reconfigure_report_counts_explained_failures_and_lists_schedules() -> None:
    report = run_sim(validators=4, byzantine=1, behaviours=["equivocate"], drop=0.1, partition=False, seeds=[0, 1],
                     reconfigure=True)
    assert report["safety_violations"] == 0 and report["liveness_explained"] == 0
    assert "liveness_explained" not in run_sim(validators=4, byzantine=0, behaviours=[], drop=0.0, partition=False,
                                               seeds=[0])


@pytest.mark.parametrize("seed", range(2), ids=seed_id)
def test_real_ed25519_signatures(seed: int) -> None:
    config = SimConfig(validators=4, byzantine=1, behaviours=("equivocate", "double-vote", "bad-signature"),
                       drop=0.2, partition=True, heights=4)
    result = run_seed(config, seed, crypto=ed25519_crypto)
    assert result.ok, explain(result)


def test_same_seed_same_result_and_same_final_hashes() -> None:
    first, second = run_seed(N4, 11), run_seed(N4, 11)
    assert first == second
    assert first.final_hashes == second.final_hashes and first.final_hashes[0][2]
    assert run_seed(N4, 12).final_hashes != first.final_hashes


def test_byzantine_above_f_is_caught_by_the_safety_check() -> None:
    report = run_sim(validators=4, byzantine=2, behaviours=["equivocate", "double-vote"], drop=0.2, partition=True,
                     seeds=range(10))
    assert report["safety_violations"] > 0
    assert report["failing_seeds"]
    # Each failing seed fails again, the same way, when run alone.
    seed = report["failing_seeds"][0]
    alone = run_sim(validators=4, byzantine=2, behaviours=["equivocate", "double-vote"], drop=0.2, partition=True,
                    seeds=[seed])
    assert alone["failing_seeds"] == [seed]
    assert alone["failures"][0] == report["failures"][0]


def test_too_many_silent_validators_are_caught_by_the_liveness_check() -> None:
    result = run_seed(SimConfig(validators=4, byzantine=2, behaviours=("silent",), liveness_bound_ms=5000), 0)
    assert result.liveness_failures and not result.safety_violations


def test_an_engine_that_forgets_prepared_blocks_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutation check: NEW-VIEW ignores prepared certificates. A seed needs a block final at <= f
    # validators followed by a view change without them; withholding and double-voting
    # validators with 30 % loss get there in a few seeds per hundred, so this runs many seeds
    # (the same configuration with the real engine is in the next test). Seeds 95 and 167 catch
    # it (the simulation is deterministic per seed): the range holds two, not just one.
    monkeypatch.setattr(view_change_module, "highest_prepared", lambda view_changes: None)
    report = run_sim(**LOCK_PROBE, seeds=range(168))
    assert report["safety_violations"] > 0


def test_the_lock_probe_configuration_is_clean_with_the_real_engine() -> None:
    report = run_sim(**LOCK_PROBE, seeds=range(100))
    assert report["failing_seeds"] == [], report["failures"][:3]


def test_an_engine_with_too_small_a_quorum_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutation check: quorum f + 1 instead of floor((n + f) / 2) + 1; quorums no longer intersect.
    # seeds 0, 14 and 36 catch it (deterministic per seed); 100 seeds were three times the work
    monkeypatch.setattr(ValidatorSet, "quorum", property(lambda self: self.f + 1))
    report = run_sim(validators=4, byzantine=1, behaviours=ALL, drop=0.2, partition=True, seeds=range(37))
    assert report["safety_violations"] > 0


def test_an_engine_that_ignores_its_wal_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutation check: a restarted validator forgets what it signed; it then signs conflicting votes.
    # seeds 4, 5 and 9 catch it (deterministic per seed); 60 seeds were six times the work
    monkeypatch.setattr(engine_module.Engine, "_restore", lambda self, h: self._restored.pop(h.height, None))
    report = run_sim(validators=4, byzantine=0, behaviours=[], drop=0.2, partition=True, seeds=range(10))
    assert report["safety_violations"] > 0
    assert any("signed two different" in v for f in report["failures"] for v in f["safety"])


def test_run_sim_report_shape_and_progress() -> None:
    ticks: list[int] = []
    report = run_sim(validators=4, byzantine=1, behaviours=["silent"], drop=0.1, partition=False, seeds=[3, 4],
                     heights=3, progress=ticks.append)
    assert ticks == [1, 1]
    for key in ("seeds", "safety_violations", "liveness_failures", "min_height", "max_height", "view_changes",
                "failing_seeds"):
        assert key in report
    assert report["seeds"] == 2 and report["failing_seeds"] == [] and report["min_height"] >= 3


def test_run_sim_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown behaviours"):
        run_sim(validators=4, byzantine=1, behaviours=["nonsense"], drop=0.1, partition=False, seeds=[0])
    with pytest.raises(ValueError):
        run_sim(validators=4, byzantine=5, behaviours=["silent"], drop=0.1, partition=False, seeds=[0])
    with pytest.raises(ValueError):
        run_sim(validators=4, byzantine=1, behaviours=["silent"], drop=1.5, partition=False, seeds=[0])
    with pytest.raises(ValueError, match="unknown simulator options"):
        run_sim(validators=4, byzantine=0, behaviours=[], drop=0.0, partition=False, seeds=[0], colour="blue")


def test_parse_seeds() -> None:
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("7") == [7]
    assert parse_seeds("1,5, 9-10,5") == [1, 5, 9, 10]
    for bad in ("", "a", "3-1", "-2", "1,,2"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_medledger_sim_takes_reconfigure() -> None:
    import json

    from click.testing import CliRunner

    from node.commands.sim import sim

    out = CliRunner().invoke(sim, ["--validators", "5", "--byzantine", "1", "--reconfigure", "--seeds", "0-1", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["seeds"] == 2 and report["safety_violations"] == 0 and report["liveness_explained"] == 0


def test_mutation_an_engine_that_ignores_set_changes_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module.Engine, "schedule_validators", lambda self, effective, validators: [])
    config = SimConfig(validators=4, byzantine=1, behaviours=("equivocate", "double-vote"), drop=0.1, partition=True,
                       reconfigure=True)
    caught = [run_seed(config, seed).safety_violations for seed in range(4)]
    assert all(caught), "keeping the genesis set after a change must show up as safety violations"
