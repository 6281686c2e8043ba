"""The one formatter (retrotread.formatting) and the unit conversions under it
(retrotread.units): table-driven."""

from __future__ import annotations

import math

import pytest

from retrotread import units
from retrotread.envelope import BACKWARD_CEILING_KMH, START_SPEED_MAX_KMH, describe_kmh
from retrotread.formatting import (
    Rounding,
    clock_text,
    distance_parts,
    distance_text,
    duration_text,
    duration_words,
    format_number,
    heart_rate_text,
    kmh_text,
    minutes_text,
    mph_text,
    speed_parts,
    speed_range_text,
    speed_text,
    speed_texts,
)

NAN = float("nan")


# --------------------------------------------------------------------------- units
@pytest.mark.parametrize(("mph", "kmh"), [(0.0, 0.0), (1.0, 1.609344), (2.0, 3.218688),
                                          (-1.0, -1.609344)])
def test_mph_and_kmh_convert_both_ways(mph: float, kmh: float) -> None:
    assert units.mph_to_kmh(mph) == pytest.approx(kmh)
    assert units.kmh_to_mph(kmh) == pytest.approx(mph)


@pytest.mark.parametrize(("kmh", "nearest", "ceiling", "floor"), [
    (2.3, 230, 230, 230),  # not 229: ordinary values round to the nearest step
    (units.mph_to_kmh(2.0), 322, 321, 322),  # 3.2187: a cap rounds down, a floor up
    (units.mph_to_kmh(1.0), 161, 160, 161),  # 1.6093
    (0.0, 0, 0, 0),
    (0.004, 0, 0, 1),
])
def test_ftms_steps_round_toward_safety_for_limits(kmh: float, nearest: int, ceiling: int,
                                                   floor: int) -> None:
    assert units.kmh_to_ftms(kmh) == nearest
    assert units.ceiling_to_ftms(kmh) == ceiling
    assert units.floor_to_ftms(kmh) == floor
    assert units.ftms_to_kmh(nearest) == pytest.approx(nearest / 100)


@pytest.mark.parametrize(("kmh", "step", "down", "up", "nearest"), [
    (3.219, 0.1, 3.2, 3.3, 3.2),
    (1.601, 0.1, 1.6, 1.7, 1.6),
    (2.34, 0.05, 2.3, 2.35, 2.35),
    (3.2, 0.1, 3.2, 3.2, 3.2),  # already on the grid: unchanged every way
    (1.0, 0.001, 1.0, 1.0, 1.0),  # a step below 0.01 counts as 0.01 (the FTMS step)
])
def test_quantize_to_the_machine_step(kmh: float, step: float, down: float, up: float,
                                      nearest: float) -> None:
    assert units.quantize_down(kmh, step) == pytest.approx(down)
    assert units.quantize_up(kmh, step) == pytest.approx(up)
    assert units.quantize_nearest(kmh, step) == pytest.approx(nearest)


# --------------------------------------------------------------------------- speeds
@pytest.mark.parametrize(("kmh", "units_", "both", "text"), [
    (1.6, "mph", False, "1.0 mph"),
    (1.6, "km/h", False, "1.6 km/h"),
    (1.6, "mph", True, "1.0 mph (1.6 km/h)"),
    (1.6, "km/h", True, "1.6 km/h (1.0 mph)"),
    (2.9, "mph", True, "1.8 mph (2.9 km/h)"),
    (0.0, "mph", True, "0.0 mph (0.0 km/h)"),  # a stopped belt is a reading, not unknown
    (None, "mph", False, "unknown"),
    (None, "km/h", True, "unknown"),
    (NAN, "mph", False, "unknown"),
    (-1.0, "mph", False, "unknown"),  # no machine reports one: damage, not a speed
])
def test_speed_text(kmh: float | None, units_: str, both: bool, text: str) -> None:
    assert speed_text(kmh, units_, both=both) == text


def test_speed_text_mph_is_not_a_rounding_of_the_rounded_kmh() -> None:
    # 1.54 km/h is 0.957 mph: 1.0 mph; the shown 1.5 km/h converted would say 0.9
    assert speed_texts(1.54) == ("1.0 mph", "1.5 km/h")
    assert speed_parts(1.54, "km/h") == ("1.5 km/h", "1.0 mph")


@pytest.mark.parametrize(("kmh", "digits", "rounding", "mph", "kmh_shown"), [
    # the hard cap: 2.0 mph, 3.21 km/h on the wire, reads as the cap it came from
    (BACKWARD_CEILING_KMH, 1, Rounding.DOWN, "2.0 mph", "3.2 km/h"),
    (BACKWARD_CEILING_KMH, 2, Rounding.DOWN, "2.00 mph", "3.21 km/h"),
    (BACKWARD_CEILING_KMH, 2, Rounding.NEAREST, "1.99 mph", "3.21 km/h"),
    # a ceiling between two figures never reads the higher one
    (3.3, 1, Rounding.DOWN, "2.0 mph", "3.3 km/h"),  # 2.05 mph
    (3.3, 1, Rounding.NEAREST, "2.1 mph", "3.3 km/h"),  # reads higher than it is
    (3.2, 1, Rounding.DOWN, "1.9 mph", "3.2 km/h"),  # 1.988 mph is below 2.0
    (3.29, 1, Rounding.DOWN, "2.0 mph", "3.2 km/h"),  # 2.044 mph; 3.29 not 3.3
    (START_SPEED_MAX_KMH, 1, Rounding.DOWN, "1.0 mph", "1.6 km/h"),  # the 1.0 mph start cap
    # a floor never reads lower than it is
    (units.ftms_to_kmh(units.floor_to_ftms(units.mph_to_kmh(1.0))), 1, Rounding.UP,
     "1.0 mph", "1.7 km/h"),  # 1.61 km/h: 1.6 would read lower
    (1.61, 2, Rounding.UP, "1.00 mph", "1.61 km/h"),
    (0.0, 1, Rounding.DOWN, "0.0 mph", "0.0 km/h"),
])
def test_limits_round_toward_safety(kmh: float, digits: int, rounding: Rounding,
                                    mph: str, kmh_shown: str) -> None:
    assert mph_text(kmh, digits, rounding) == mph
    assert kmh_text(kmh, digits, rounding) == kmh_shown
    assert speed_texts(kmh, digits=digits, rounding=rounding) == (mph, kmh_shown)


@pytest.mark.parametrize("kmh", [0.5, 1.0, 1.61, 2.0, 3.21, 3.22, 3.25, 3.3, 5.0, 12.87])
def test_a_ceiling_never_reads_more_than_one_ftms_step_above_itself(kmh: float) -> None:
    for digits in (1, 2):
        shown_mph = float(mph_text(kmh, digits, Rounding.DOWN).split()[0])
        shown_kmh = float(kmh_text(kmh, digits, Rounding.DOWN).split()[0])
        assert units.mph_to_kmh(shown_mph) < kmh + units.FTMS_SPEED_STEP_KMH
        assert shown_kmh <= kmh + 1e-9
        assert shown_mph <= units.kmh_to_mph(kmh) + units.kmh_to_mph(0.01)


def test_describe_kmh_is_the_formatter() -> None:
    assert describe_kmh(3.21) == "3.21 km/h (1.99 mph)"
    assert describe_kmh(3.21) == speed_text(3.21, "km/h", both=True, digits=2)


@pytest.mark.parametrize(("low", "high", "units_", "text"), [
    (1.0, 12.0, "km/h", "1.00-12.00 km/h"),
    (1.0, 12.0, "mph", "0.62-7.46 mph"),
])
def test_speed_range_text(low: float, high: float, units_: str, text: str) -> None:
    assert speed_range_text(low, high, units_) == text


# --------------------------------------------------------------------------- distances
@pytest.mark.parametrize(("metres", "units_", "both", "text"), [
    (0.0, "mph", False, "0.00 mi"),
    (400.0, "mph", True, "0.25 mi (0.40 km)"),
    (400.0, "km/h", True, "0.40 km (0.25 mi)"),
    (1609.344, "mph", False, "1.00 mi"),
    (1609.344, "km/h", False, "1.61 km"),
    (None, "mph", False, "unknown"),
    (-5.0, "km/h", False, "unknown"),
    (math.inf, "mph", True, "unknown"),
])
def test_distance_text(metres: float | None, units_: str, both: bool, text: str) -> None:
    assert distance_text(metres, units_, both=both) == text


def test_distance_parts_put_the_persons_units_first() -> None:
    assert distance_parts(840.0, "mph") == ("0.52 mi", "0.84 km")
    assert distance_parts(840.0, "km/h") == ("0.84 km", "0.52 mi")


# --------------------------------------------------------------------------- clocks
@pytest.mark.parametrize(("seconds", "hours", "text"), [
    (0, False, "0:00"),
    (59.4, False, "0:59"),
    (59.6, False, "1:00"),  # to the nearest second, rolling the minute over
    (90, False, "1:30"),
    (3599.4, False, "59:59"),
    (3599.6, False, "60:00"),  # minutes may pass 59 ...
    (3725, False, "62:05"),
    (3599.6, True, "1:00:00"),  # ... or roll over into hours
    (3725, True, "1:02:05"),
    (59 * 60 + 59, True, "59:59"),  # under an hour: no hours field
    (36000, True, "10:00:00"),
    (-3, False, "0:00"),
    (-3, True, "0:00"),
    (None, False, "--:--"),
    (NAN, True, "--:--"),
])
def test_clock_text(seconds: float | None, hours: bool, text: str) -> None:
    assert clock_text(seconds, hours=hours) == text


def test_clock_text_unknown_can_be_said_otherwise() -> None:
    assert clock_text(None, unknown="-") == "-"


@pytest.mark.parametrize(("seconds", "digits", "text"), [
    (750, 1, "12.5 min"),
    (0, 1, "0.0 min"),
    (-0.01, 1, "0.0 min"),  # never "-0.0"
    (300, None, "5 min"),
    (450, None, "7.5 min"),
    (None, 1, "unknown"),
])
def test_minutes_text(seconds: float | None, digits: int | None, text: str) -> None:
    assert minutes_text(seconds, digits=digits) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (45, "45 s"), (150, "2 min 30 s"), (3900, "1 h 5 min"), (0, "0 s"), (1.5, "1.5 s"),
    (3600, "1 h"), (-5, "-5.0 s"), (1e20, "1e+20 s"),
])
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (180, "3 minutes"), (60, "1 minute"), (90, "1 minute 30 seconds"), (1, "1 second"),
    (45.4, "45 seconds"), (3900, "1 hour 5 minutes"), (7200, "2 hours"),
    (3601, "1 hour 1 second"), (0, "0 seconds"), (-4, "0 seconds"),
    (None, "unknown"), (NAN, "unknown"),
])
def test_duration_words(seconds: float | None, text: str) -> None:
    assert duration_words(seconds) == text


@pytest.mark.parametrize(("bpm", "text"), [
    (112, "112 bpm"), (0, "unknown"), (None, "unknown"), (-1, "unknown"), (99.6, "100 bpm"),
])
def test_heart_rate_text(bpm: float | None, text: str) -> None:
    assert heart_rate_text(bpm) == text


@pytest.mark.parametrize(("value", "text"), [
    (2.0, "2.0"), (2.25, "2.25"), (1e-7, "0.0"), (1e16, "1e+16"), (-3.5, "-3.5"),
])
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text
