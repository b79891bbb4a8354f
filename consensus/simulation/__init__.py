"""A deterministic simulator for the consensus engine: many validators, one process, no IO.

Seeded (`random.Random(seed)` only) with a mock clock that jumps from event to event, so a run
is a pure function of its configuration and seed. See `consensus.simulation.runner.run_sim`.
"""
