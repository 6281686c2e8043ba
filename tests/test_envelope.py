"""The envelope (retrotread/envelope.py) and the unit rounding it rests on, on their own.

Every constant the envelope states is checked here or in the test named beside it in
docs/safety.md; properties run at a few thousand examples (the envelope is cheap).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from retrotread import envelope as env
from retrotread.envelope import Direction, Envelope, MachineLimits
from retrotread.errors import SafetyError
from retrotread.units import (
    ceiling_to_ftms,
    floor_to_ftms,
    kmh_to_ftms,
    kmh_to_mph,
    mph_to_kmh,
    quantize_down,
    quantize_nearest,
    quantize_up,
)

DEEP = settings(max_examples=3000, deadline=None)

increments = st.sampled_from([0.01, 0.05, 0.1, 0.2, 0.5, 1.0])
speeds = st.floats(0.0, 25.0, allow_nan=False)


@st.composite
def machines(draw: st.DrawFn) -> MachineLimits:
    increment = draw(increments)
    low = draw(st.integers(1, int(env.START_SPEED_MAX_KMH * 100))) / 100
    # a machine fit for retro walking: its lowest step can start a belt at 1.0 mph
    assume(quantize_up(low, increment) <= env.START_SPEED_MAX_KMH)
    high = draw(st.floats(low + 3.3, 25.0))
    return MachineLimits(min_kmh=low, max_kmh=high, increment_kmh=increment)


# ------------------------------------------------------------------ units


@pytest.mark.parametrize(("mph", "kmh"), [(1.0, 1.609344), (2.0, 3.218688), (0.0, 0.0)])
def test_mph_conversions(mph: float, kmh: float) -> None:
    assert mph_to_kmh(mph) == pytest.approx(kmh)
    assert kmh_to_mph(kmh) == pytest.approx(mph)


def test_the_two_documented_limits_round_toward_safety() -> None:
    assert ceiling_to_ftms(mph_to_kmh(2.0)) == 321  # a cap rounds down: 3.21 km/h
    assert floor_to_ftms(mph_to_kmh(1.0)) == 161  # a floor rounds up: 1.61 km/h
    assert env.BACKWARD_CEILING_KMH == 3.21
    assert env.START_SPEED_MAX_KMH == 1.60  # a start limit is a ceiling: rounds down


@DEEP
@given(speed=speeds, increment=increments)
def test_quantizing_rounds_the_safe_way_by_less_than_one_step(speed: float,
                                                              increment: float) -> None:
    down, up = quantize_down(speed, increment), quantize_up(speed, increment)
    assert down <= speed + 1e-9 and up >= speed - 1e-9
    assert speed - down < increment + 1e-9 and up - speed < increment + 1e-9
    step = kmh_to_ftms(increment)
    assert kmh_to_ftms(down) % step == 0 and kmh_to_ftms(up) % step == 0
    nearest = quantize_nearest(speed, increment)
    assert abs(nearest - speed) <= increment / 2 + 0.01


# ------------------------------------------------------------------ building


def test_nothing_raises_the_backward_ceiling() -> None:
    with pytest.raises(SafetyError, match="hard limit"):
        Envelope.build(backward_ceiling_kmh=env.BACKWARD_CEILING_KMH + 0.01)
    fine = MachineLimits(increment_kmh=0.01)
    assert Envelope.build(fine, backward_ceiling_kmh=env.BACKWARD_CEILING_KMH) \
        .ceiling_kmh(Direction.BACKWARD) == env.BACKWARD_CEILING_KMH
    assert Envelope.build(fine, backward_ceiling_kmh=mph_to_kmh(2.0)) \
        .ceiling_kmh(Direction.BACKWARD) == env.BACKWARD_CEILING_KMH


def test_the_backward_ceiling_may_be_lowered_to_1_mph_and_no_further() -> None:
    lowest = Envelope.build(MachineLimits(increment_kmh=0.01),
                            backward_ceiling_kmh=mph_to_kmh(1.0))  # found refused: fixed
    assert lowest.ceiling_kmh(Direction.BACKWARD) == 1.60  # rounds down, toward safety
    with pytest.raises(SafetyError, match="lowest allowed"):
        Envelope.build(backward_ceiling_kmh=mph_to_kmh(0.9))


@pytest.mark.parametrize(("name", "kwargs"), [
    ("backward ramp", {"ramp_backward_kmh_per_s": env.RAMP_BACKWARD_KMH_PER_S + 0.01}),
    ("forward ramp", {"ramp_forward_kmh_per_s": env.RAMP_FORWARD_KMH_PER_S + 0.01}),
    ("backward ramp", {"ramp_backward_kmh_per_s": 0.0}),
    ("forward ramp", {"ramp_forward_kmh_per_s": -1.0}),
])
def test_ramps_can_only_be_made_gentler(name: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(SafetyError, match=name):
        Envelope.build(**kwargs)


def test_the_stop_ramp_is_never_steeper_than_the_forward_ramp() -> None:
    assert Envelope.build().ramp_stop_kmh_per_s == env.RAMP_STOP_KMH_PER_S
    gentle = Envelope.build(ramp_forward_kmh_per_s=0.4)
    assert gentle.ramp_stop_kmh_per_s == 0.4


def test_a_machine_too_fast_to_start_or_to_walk_backward_is_refused() -> None:
    with pytest.raises(SafetyError, match="lowest speed"):
        Envelope.build(MachineLimits(min_kmh=1.7))
    with pytest.raises(SafetyError, match="makes no sense"):
        MachineLimits(min_kmh=5.0, max_kmh=4.0)


# ------------------------------------------------------------------ limits and clamping


@DEEP
@given(machine=machines(), speed=st.floats(-5.0, 30.0, allow_nan=False),
       direction=st.sampled_from(list(Direction)))
def test_clamp_always_lands_inside_the_envelope(machine: MachineLimits, speed: float,
                                               direction: Direction) -> None:
    envelope = Envelope.build(machine)
    clamped = envelope.clamp(direction, speed)
    assert envelope.is_allowed(direction, clamped)
    if speed <= 0:
        assert clamped == 0.0
    else:
        assert envelope.floor_kmh() <= clamped <= envelope.ceiling_kmh(direction)
        assert clamped <= max(speed, envelope.floor_kmh()) + 1e-9  # never faster than asked
    if direction is Direction.BACKWARD:
        assert clamped <= env.BACKWARD_CEILING_KMH


@DEEP
@given(machine=machines())
def test_floor_ceiling_and_start_speed(machine: MachineLimits) -> None:
    envelope = Envelope.build(machine)
    floor = envelope.floor_kmh()
    assert floor >= machine.min_kmh - 1e-9  # never below what the machine can do
    assert envelope.start_speed_kmh() <= env.START_SPEED_MAX_KMH
    assert envelope.start_speed_kmh() >= floor - 1e-9 or floor > env.START_SPEED_MAX_KMH
    for direction in Direction:
        ceiling = envelope.ceiling_kmh(direction)
        assert ceiling <= machine.max_kmh + 1e-9
        assert kmh_to_ftms(ceiling) % kmh_to_ftms(machine.increment_kmh) == 0
    assert envelope.ceiling_kmh(Direction.BACKWARD) <= env.BACKWARD_CEILING_KMH


@DEEP
@given(current=st.floats(0.0, 8.0), target=st.floats(0.0, 8.0), dt=st.floats(0.0, 2.0),
       direction=st.sampled_from(list(Direction)), stopping=st.booleans())
def test_ramp_step_never_steps_faster_than_its_rate(current: float, target: float,
                                                    dt: float, direction: Direction,
                                                    stopping: bool) -> None:
    envelope = Envelope.build()
    rate = envelope.ramp_stop_kmh_per_s if stopping else envelope.ramp_kmh_per_s(direction)
    nxt = envelope.ramp_step(direction, current, target, dt, stopping=stopping)
    assert abs(nxt - current) <= rate * dt + 1e-9
    assert min(current, target) - 1e-9 <= nxt <= max(current, target) + 1e-9
    if abs(target - current) <= rate * dt:
        assert nxt == target


def test_the_backward_ramp_is_half_the_forward_one() -> None:
    envelope = Envelope.build()
    assert envelope.ramp_kmh_per_s(Direction.BACKWARD) == env.RAMP_BACKWARD_KMH_PER_S == 0.5
    assert envelope.ramp_kmh_per_s(Direction.FORWARD) == env.RAMP_FORWARD_KMH_PER_S == 1.0


def test_every_constant_of_the_envelope_is_a_finite_positive_number() -> None:
    names = [n for n in dir(env) if n.isupper() and isinstance(getattr(env, n), float)]
    assert len(names) >= 15
    for name in names:
        value = getattr(env, name)
        assert math.isfinite(value) and value > 0, name
