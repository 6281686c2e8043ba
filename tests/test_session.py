"""Workouts end to end on the simulator, in virtual time."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrotread.events import Outcome, SegmentStarted, WatchdogAction
from retrotread.profile import load_profile
from tests.workout_harness import check_invariants, run_on_sim

PROFILES = sorted((Path(__file__).parent.parent / "profiles").glob("*.yaml"))


@pytest.mark.looptime(noop_cycles=1)
@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
async def test_every_bundled_profile_runs_to_completion(path: Path) -> None:
    profile = load_profile(path)
    run = await run_on_sim(profile)
    assert run.result.outcome is Outcome.COMPLETED, run.result
    check_invariants(run)
    segments = run.of(SegmentStarted)
    assert [s.index for s in segments] == list(range(len(profile.flatten())))
    assert run.result.backward_s == pytest.approx(profile.backward_seconds(), abs=30)
    # A clean run on a well-behaved machine: the watchdog never had to act.
    assert run.of(WatchdogAction) == []
