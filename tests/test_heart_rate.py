"""Heart-rate limits end to end: the simulated person's heart rate against a profile's
ceiling, on the simulator in virtual time."""

from __future__ import annotations

import asyncio

import pytest

from retrotread.envelope import Direction
from retrotread.events import CommandSent, Outcome, WatchdogAction
from retrotread.profile import load_profile_text
from retrotread.session import Session
from retrotread.sim.person import HeartModel
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.watchdog import HEART_RATE_HOLD_S, HeartRateRule
from tests.workout_harness import check_invariants, run_on_sim

VIRTUAL = pytest.mark.looptime(noop_cycles=1)

BRISK = """\
name: Brisk walk with a heart-rate ceiling
units: mph
safety:
  heart_rate_max: {ceiling}
segments:
  - forward: 5 min
    speed: 3.5 mph
  - backward: 2 min
    speed: 1.5 mph
"""


def test_the_heart_works_harder_backward_and_rests_slower_than_it_rises() -> None:
    heart = HeartModel()
    forward = heart.steady_bpm(2.4)
    heart.facing = Direction.BACKWARD
    assert heart.steady_bpm(2.4) > forward > heart.rest_bpm
    heart.time_s = 0.0
    heart.advance_to(30.0, 5.0)  # one rise time constant: ~63 % of the way up
    risen = heart.bpm - heart.rest_bpm
    assert risen == pytest.approx(0.632 * (heart.steady_bpm(5.0) - heart.rest_bpm), rel=0.01)
    peak = heart.bpm
    heart.advance_to(60.0, 0.0)  # 30 s of rest fall less than 30 s of effort rose
    assert peak - heart.bpm < risen


def test_the_rule_clamps_then_releases_with_hysteresis_then_stops_when_it_persists() -> None:
    rule = HeartRateRule(ceiling_bpm=120)
    rule.observe(0.0, 110)
    assert rule.check(0.0) == (False, None)
    rule.observe(1.0, 125)
    limited, trigger = rule.check(1.0)
    assert limited and trigger is not None and trigger.action == "clamp"
    rule.observe(10.0, 118)  # below the ceiling, not below the hysteresis band
    assert rule.check(10.0) == (True, None)
    rule.observe(11.0, 114)
    limited, trigger = rule.check(11.0)
    assert not limited and trigger is not None and trigger.action == "release"
    rule.observe(20.0, 130)
    rule.check(20.0)
    rule.observe(20.0 + HEART_RATE_HOLD_S + 1, 130)
    limited, trigger = rule.check(20.0 + HEART_RATE_HOLD_S + 1)
    assert trigger is not None and trigger.action == "stop"


def test_a_lost_signal_holds_the_floor_then_ends() -> None:
    rule = HeartRateRule(ceiling_bpm=150)
    rule.observe(0.0, 100)
    limited, trigger = rule.check(6.0)
    assert limited and trigger is not None and trigger.name == "heart_rate_lost"
    _, trigger = rule.check(6.0 + HEART_RATE_HOLD_S + 1)
    assert trigger is not None and trigger.action == "stop"


def test_no_source_means_nothing_to_limit() -> None:
    assert HeartRateRule(ceiling_bpm=100).check(100.0) == (False, None)


@VIRTUAL
async def test_above_the_ceiling_the_belt_slows_to_the_floor_and_recovers() -> None:
    profile = load_profile_text(BRISK.format(ceiling=110), "brisk.yaml")
    run = await run_on_sim(profile)
    actions = [(e.trigger, e.action) for e in run.of(WatchdogAction)]
    assert ("heart_rate", "clamp") in actions
    assert ("heart_rate", "release") in actions
    assert run.result.outcome is Outcome.COMPLETED
    clamp = next(e for e in run.of(WatchdogAction) if e.action == "clamp")
    floor = run.session.floor_kmh
    after = [c.speed_kmh for c in run.of(CommandSent)
             if c.op == "SetTargetSpeed" and clamp.time_s < c.time_s < clamp.time_s + 15]
    assert after and min(after) == pytest.approx(floor)  # ramped down to the floor
    check_invariants(run)


@VIRTUAL
async def test_a_heart_rate_that_stays_above_stops_the_workout() -> None:
    profile = load_profile_text(BRISK.format(ceiling=110), "brisk.yaml")

    async def unfit_day(sim: SimulatedTreadmill, session: Session) -> None:
        sim.faults.heart_rate_extra_bpm = 60  # above the ceiling even at the floor speed

    run = await run_on_sim(profile, scenario=unfit_day)
    assert run.result.outcome is Outcome.WATCHDOG
    events = [e for e in run.of(WatchdogAction) if e.trigger == "heart_rate"]
    assert [e.action for e in events][:1] == ["clamp"] and events[-1].action == "stop"
    assert events[-1].time_s - events[0].time_s == pytest.approx(HEART_RATE_HOLD_S, abs=1.5)
    check_invariants(run)


@VIRTUAL
async def test_a_lost_heart_rate_signal_holds_the_floor_and_ends_the_workout() -> None:
    profile = load_profile_text(BRISK.format(ceiling=170), "brisk.yaml")

    async def strap_slips(sim: SimulatedTreadmill, session: Session) -> None:
        await asyncio.sleep(60)  # well into the first segment
        sim.faults.heart_rate_lost = True

    run = await run_on_sim(profile, scenario=strap_slips)
    assert run.result.outcome is Outcome.WATCHDOG
    assert "heart_rate_lost" in run.watchdog_triggers()
    check_invariants(run)
