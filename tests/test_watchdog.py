"""The watchdog's rules (retrotread/watchdog.py) on their own: pure, table-driven.

Each row of the table in the module's docstring that the Watchdog object decides is
checked at its threshold, just below it and just above it. (The rules the session carries
out itself, such as a lost link or two unanswered commands, are in test_link_faults.py and
test_promises.py.)
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrotread.envelope import BACKWARD_CEILING_KMH, Direction
from retrotread.watchdog import (
    Watchdog,
    WatchdogLimits,
)

F, B = Direction.FORWARD, Direction.BACKWARD


def dog() -> Watchdog:
    return Watchdog(backward_ceiling_kmh=BACKWARD_CEILING_KMH, tick_period_s=0.1)


def feed(w: Watchdog, t: float, kmh: float | None, commanded: float, facing: Direction,
         moving: bool = True, started_s: float = 0.0):
    w.observe_telemetry(t, kmh)
    return w.check(t, commanded_kmh=commanded, facing=facing, belt_should_move=moving,
                   started_s=started_s)


# ------------------------------------------------------------------ stalled loop


@pytest.mark.parametrize(("gap_s", "stalled"), [(0.49, False), (0.51, True), (5.0, True)])
def test_a_stall_is_half_a_second_without_a_tick(gap_s: float, stalled: bool) -> None:
    w = dog()
    assert w.check_stall(10.0) is None  # no tick yet: nothing to judge
    w.observe_tick(10.0)
    trigger = w.check_stall(10.0 + gap_s)
    assert (trigger is not None) is stalled
    if trigger:
        assert (trigger.name, trigger.action) == ("loop_stalled", "stop")


def test_a_slow_tick_rate_gets_at_least_two_periods() -> None:
    slow = Watchdog(backward_ceiling_kmh=3.21, tick_period_s=1.0)
    slow.observe_tick(0.0)
    assert slow.check_stall(1.9) is None and slow.check_stall(2.1) is not None


# ------------------------------------------------------------------ stale telemetry


@pytest.mark.parametrize(("silence_s", "stale"), [(2.9, False), (3.1, True)])
def test_stale_telemetry_while_the_belt_should_move(silence_s: float, stale: bool) -> None:
    w = dog()
    assert feed(w, 1.0, 3.0, 3.0, F) is None
    trigger = w.check(1.0 + silence_s, commanded_kmh=3.0, facing=F, belt_should_move=True,
                      started_s=0.0)
    assert (trigger is not None and trigger.name == "telemetry_stale") is stale
    # a belt that should stand still may go quiet
    assert w.check(100.0, commanded_kmh=0.0, facing=F, belt_should_move=False,
                   started_s=0.0) is None


def test_stale_counts_from_the_start_when_no_sample_ever_came() -> None:
    w = dog()
    assert w.check(12.9, commanded_kmh=1.0, facing=F, belt_should_move=True,
                   started_s=10.0) is None
    assert w.check(13.1, commanded_kmh=1.0, facing=F, belt_should_move=True,
                   started_s=10.0) is not None


# ------------------------------------------------------------------ overspeed


def test_overspeed_recommands_after_2_s_and_stops_2_s_later() -> None:
    w = dog()
    actions = []
    for k in range(60):  # 10 Hz, 6 s at 0.6 km/h over a 3.0 km/h command (forward)
        trigger = feed(w, k / 10, 3.6, 3.0, F)
        if trigger:
            actions.append((round(k / 10, 1), trigger.action))
    assert actions[0] == (2.0, "retarget")
    assert ("stop" in [a for _, a in actions])
    first_stop = next(t for t, a in actions if a == "stop")
    assert first_stop == 4.0


def test_within_the_margin_nothing_happens() -> None:
    w = dog()
    for k in range(100):
        assert feed(w, k / 10, 3.49, 3.0, F) is None


def test_backward_the_limit_is_the_ceiling_plus_0_3() -> None:
    w = dog()
    # commanded 3.2 + 0.5 would allow 3.7, but backward the ceiling + 0.3 (3.51) rules
    actions = [t.action for k in range(25) if (t := feed(w, k / 10, 3.55, 3.2, B))]
    assert actions == ["retarget"]
    w2 = dog()  # the same belt facing forward is within commanded + 0.5
    forward = [feed(w2, k / 10, 3.55, 3.2, F) for k in range(25)]
    assert forward == [None] * 25


@pytest.mark.parametrize(("kmh", "at_once"), [(BACKWARD_CEILING_KMH + 0.99, False),
                                              (BACKWARD_CEILING_KMH + 1.01, True)])
def test_a_backward_runaway_stops_at_once(kmh: float, at_once: bool) -> None:
    w = dog()
    trigger = feed(w, 0.0, kmh, 3.2, B)
    assert (trigger is not None and trigger.action == "stop") is at_once


def test_reset_speed_checks_restarts_the_overspeed_timer() -> None:
    w = dog()
    for k in range(15):
        feed(w, k / 10, 3.6, 3.0, F)
    w.reset_speed_checks()
    assert feed(w, 1.6, 3.6, 3.0, F) is None  # counting starts again


# ------------------------------------------------------------------ underspeed


@pytest.mark.parametrize(("seconds", "stops"), [(14.0, False), (15.5, True)])
def test_a_speed_never_reached_stops_after_15_s(seconds: float, stops: bool) -> None:
    w = dog()
    trigger = None
    for k in range(int(seconds * 10) + 1):
        trigger = feed(w, k / 10, 1.0, 2.5, F) or trigger
    assert (trigger is not None and trigger.name == "speed_not_reached") is stops


# ------------------------------------------------------------------ console


def test_the_third_console_change_within_60_s_stops() -> None:
    w = dog()
    assert w.console_change(0.0, 4.0, allowed=True).action == "clamp"
    assert w.console_change(10.0, 4.0, allowed=False).action == "clamp"
    assert w.console_change(20.0, 4.0, allowed=True).action == "stop"
    w2 = dog()
    for t in (0.0, 61.0, 122.0, 183.0):  # spread out: never three within the window
        assert w2.console_change(t, 4.0, allowed=True).action == "clamp"


# ------------------------------------------------------------------ heart rate


# The heart-rate rule (HeartRateRule) has its own table-driven tests in test_heart_rate.py.


# ------------------------------------------------------------------ properties


@settings(max_examples=3000, deadline=None)
@given(samples=st.lists(st.tuples(st.floats(0.0, 8.0), st.floats(0.0, 8.0)),
                        min_size=1, max_size=60),
       facing=st.sampled_from([F, B]))
def test_a_belt_at_or_below_its_command_never_trips_a_speed_rule(
        samples: list[tuple[float, float]], facing: Direction) -> None:
    """Measured within 1.0 km/h below the command, and never above it or the backward
    ceiling: no watchdog action, whatever the sequence."""
    w = Watchdog(backward_ceiling_kmh=BACKWARD_CEILING_KMH, tick_period_s=0.1,
                 limits=WatchdogLimits())
    for k, (commanded, slack) in enumerate(samples):
        if facing is B:
            commanded = min(commanded, BACKWARD_CEILING_KMH)
        measured = max(0.0, commanded - min(slack, 0.99))
        assert feed(w, k * 0.1, measured, commanded, facing) is None


@pytest.mark.parametrize(("speed_kmh", "stops"), [(None, False), (0.0, False), (0.1, False),
                                                  (0.11, True), (3.0, True)])
def test_a_belt_that_should_stand_still(speed_kmh: float | None, stops: bool) -> None:
    trigger = Watchdog.check_standing(speed_kmh)
    assert (trigger is not None) is stops
    if trigger is not None:
        assert trigger.action == "stop"
