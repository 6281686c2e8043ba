"""Random workouts x random faults x random commands on the pure session core, run as a
plain loop (tests/machine_scenarios.py says what is drawn and which invariants are
checked, on every write and at the end).

The suite runs a fixed slice of seeds (``MACHINE_RUNS``, 500 by default), so CI runs the
same workouts every time; ``python -m benchmarks.plain_loop --runs 10000`` runs fresh
ones, and ``--seed N`` replays one."""

from __future__ import annotations

import os

import pytest

from tests.machine_scenarios import random_scenario, run_scenario, summary

RUNS = int(os.environ.get("MACHINE_RUNS", "500"))
SLICES = 10


@pytest.mark.parametrize("part", range(SLICES))
def test_random_workouts_keep_every_safety_invariant(part: int) -> None:
    seeds = range(part * RUNS // SLICES, (part + 1) * RUNS // SLICES)
    runs = [run_scenario(random_scenario(seed)) for seed in seeds]
    outcomes = summary(runs)
    assert sum(outcomes.values()) == len(seeds)
    # Every run ended by itself, and the faults drawn made some of them end early.
    assert all(run.machine.finished for run in runs)


def test_the_slice_meets_every_kind_of_ending() -> None:
    """The draws reach what they are meant to: completions, watchdog stops, the person's
    stops, the safety key and Ctrl-C all occur among the first seeds."""
    outcomes = summary([run_scenario(random_scenario(seed)) for seed in range(150)])
    for kind in ("completed", "watchdog", "stopped_by_user", "safety_key", "interrupted"):
        assert outcomes.get(kind, 0) > 0, outcomes
