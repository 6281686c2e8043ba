"""Workouts end to end on the simulator, in virtual time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from retrotread.events import Outcome, SegmentStarted, WatchdogAction
from retrotread.ftms import codec
from retrotread.profile import load_profile
from retrotread.sim.presets import PRESETS
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


@pytest.mark.looptime(noop_cycles=1)
@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"fast-minimum"}))
async def test_intervals_on_every_machine_preset(preset: str) -> None:
    """Every simulated machine fit for retro walking, with its quirks, runs a workout with
    turnarounds (fast-minimum is refused: tests/test_promises.py)."""
    profile = load_profile(Path(__file__).parent.parent / "profiles" / "intervals.yaml")
    run = await run_on_sim(profile, preset=preset)
    assert run.result.outcome is Outcome.COMPLETED, (run.result, run.watchdog_triggers())
    check_invariants(run)


@pytest.mark.looptime(noop_cycles=1)
async def test_a_matching_quirk_file_makes_the_envelope_stricter() -> None:
    """hardware/quirks/sim-coarse.yaml: the real minimum is above the advertised one."""
    profile = load_profile(Path(__file__).parent.parent / "profiles" / "first-session.yaml")
    run = await run_on_sim(profile, preset="coarse")
    assert run.session.treadmill.quirks.ignores_pause
    assert run.session.envelope.machine.min_kmh == pytest.approx(1.5)
    assert run.result.outcome is Outcome.COMPLETED
    # No speed below the quirk's floor ever went out (the machine would refuse it).
    speeds = [r.speed_kmh for r in run.sim.requests if isinstance(r, codec.SetTargetSpeed)]
    assert speeds and min(speeds) >= 1.5
    check_invariants(run)


@pytest.mark.looptime(noop_cycles=1)
async def test_a_sped_up_clock_does_not_magnify_a_stall() -> None:
    """At 20x, a 0.3 s freeze of the computer would be 6 s of simulated time (a stale
    telemetry fault that never happened); the demo clock advances at most 1.5 s at once."""
    from retrotread.clock import MAX_SCALED_STEP_S, ScaledClock

    clock = ScaledClock(20.0)
    start = clock.now()
    for _ in range(10):  # ordinary running: read every 10 ms, exactly 20x
        await asyncio.sleep(0.01)
        clock.now()
    assert clock.now() - start == pytest.approx(2.0, abs=1e-6)
    before = clock.now()
    await asyncio.sleep(0.3)  # a freeze: nobody reads the clock for 0.3 s
    assert clock.now() - before == pytest.approx(MAX_SCALED_STEP_S)
    await clock.sleep_until(clock.now() + 1.0)  # and sleeping still works in scaled time
