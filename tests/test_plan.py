"""The plan compiler (retrotread/plan.py) on its own: random segment lists on random
machines, 1,000 examples. Whatever the input, the plan keeps the envelope's promises."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from retrotread.envelope import START_SPEED_MAX_KMH, Direction, Envelope, MachineLimits
from retrotread.errors import SafetyError
from retrotread.plan import (
    COUNTDOWN,
    FINISH_RAMP,
    HOLD,
    RAMP,
    TURNAROUND_HOLD,
    TURNAROUND_STOP,
    compile_segments,
)
from retrotread.units import quantize_up


@dataclass(frozen=True)
class Seg:
    index: int
    label: str
    direction: Direction
    speed_kmh: float
    duration_s: float


@st.composite
def workouts(draw: st.DrawFn) -> tuple[list[Seg], Envelope]:
    increment = draw(st.sampled_from([0.01, 0.1, 0.5]))
    low = draw(st.integers(10, 160)) / 100
    assume(quantize_up(low, increment) <= START_SPEED_MAX_KMH)
    machine = MachineLimits(min_kmh=low, max_kmh=draw(st.floats(6.0, 20.0)),
                            increment_kmh=increment)
    envelope = Envelope.build(machine)
    segments = [
        Seg(i, f"s{i}", draw(st.sampled_from(list(Direction))),
            draw(st.floats(0.1, 12.0)), draw(st.floats(1.0, 300.0)))
        for i in range(draw(st.integers(1, 8)))
    ]
    return segments, envelope


@settings(max_examples=1000, deadline=None)
@given(workout=workouts())
def test_every_plan_keeps_the_envelope(workout: tuple[list[Seg], Envelope]) -> None:
    segments, envelope = workout
    plan = compile_segments(segments, envelope)
    steps = plan.steps
    # contiguous, non-negative, ending in a stop
    assert steps[0].start_s == 0.0
    for a, b in itertools.pairwise(steps):
        assert b.start_s == pytest.approx(a.end_s)
        assert a.duration_s >= 0
    assert steps[-1].kind == FINISH_RAMP and steps[-1].end_kmh == 0.0
    for step in steps:
        for speed in (step.start_kmh, step.end_kmh):
            assert speed <= envelope.ceiling_kmh(step.direction) + 1e-9
        if step.duration_s > 0 and step.kind in (RAMP, HOLD, TURNAROUND_STOP, FINISH_RAMP):
            change = abs(step.end_kmh - step.start_kmh)
            stopping = step.kind in (TURNAROUND_STOP, FINISH_RAMP)
            limit = (envelope.ramp_stop_kmh_per_s if stopping
                     else envelope.ramp_kmh_per_s(step.direction))
            # as a speed change: a step microseconds long has an inexact slope
            # (plan.check_plan); 1e-9 km/h is far below the wire's 0.01 km/h
            assert change <= limit * step.duration_s + 1e-9, step
    # every change of direction goes through a stop, a hold and a countdown, and the
    # belt starts again at no more than 1.0 mph
    for i, step in enumerate(steps):
        if i and step.direction is not steps[i - 1].direction and step.kind != TURNAROUND_HOLD:
            pytest.fail(f"direction changed outside a turnaround: {steps[i - 1]} -> {step}")
        if step.kind == TURNAROUND_STOP:
            assert step.end_kmh == 0.0
            assert [s.kind for s in steps[i + 1:i + 3]] == [TURNAROUND_HOLD, COUNTDOWN]
            after = steps[i + 3]
            assert after.start_kmh <= START_SPEED_MAX_KMH + 1e-9
    assert steps[0].start_kmh <= START_SPEED_MAX_KMH + 1e-9
    # the workout's own time is all there
    moving = sum(s.duration_s for s in steps if s.kind in (RAMP, HOLD))
    assert moving == pytest.approx(sum(s.duration_s for s in segments))
    turns = sum(1 for a, b in itertools.pairwise(segments)
                if a.direction is not b.direction)
    assert plan.turnarounds == turns


def test_an_empty_workout_is_refused() -> None:
    with pytest.raises(SafetyError, match="at least one segment"):
        compile_segments([], Envelope.build())


def test_backward_speeds_above_the_cap_run_at_the_cap_and_say_so() -> None:
    plan = compile_segments([Seg(0, "too fast", Direction.BACKWARD, 5.0, 60.0)],
                            Envelope.build())
    holds = [s for s in plan.steps if s.kind == HOLD]
    assert holds[0].end_kmh == 3.2  # 2.0 mph, on the machine's 0.1 km/h step
    assert any("backward limit" in note for note in plan.notes)


def test_a_segment_a_hair_longer_than_its_ramp_compiles() -> None:
    """Found by hypothesis: 2.00001 s of 1.5 -> 4.0 km/h leaves the belt at 3.50001
    km/h, and the next segment's ramp to 3.5 km/h lasts 10 microseconds at t = 256.6 s.
    Its slope, from start and end times, came out 1.0000000025 km/h/s against a limit
    of 1.0: the self-check refused a plan that keeps the limit."""
    F = Direction.FORWARD
    segments = [Seg(0, "s0", F, 1.0, 1.0), Seg(1, "s1", Direction.BACKWARD, 1.0, 1.0),
                Seg(2, "s2", F, 1.5, 225.0), Seg(3, "s3", F, 4.0, 2.00001),
                Seg(4, "s4", F, 3.5, 1.0)]
    envelope = Envelope.build(MachineLimits(min_kmh=0.1, max_kmh=6.0, increment_kmh=0.01))
    plan = compile_segments(segments, envelope)
    tiny = [s for s in plan.steps if 0 < s.duration_s < 1e-3]
    assert tiny and all(s.start_kmh - s.end_kmh <= 1e-5 + 1e-9 for s in tiny)
