"""The one way retrotread writes speeds, distances, clocks and durations for a person.

Every screen, summary, table, message and export note goes through here, so the same
value reads the same everywhere (the terminal, the companion page, ``retrotread plan``,
``history``, the end-of-run summary, ``monitor``).

- **Units**: ``units`` is the person's choice, ``"mph"`` or ``"km/h"`` (anything but
  ``"mph"`` is metric). ``both=True`` adds the other unit in brackets, the chosen first:
  ``1.0 mph (1.6 km/h)``. The two figures come from the same value (the mph figure is
  never a rounding of the already rounded km/h).
- **Rounding**: ordinary values round to the nearest. A value that is a *limit* rounds
  toward safety: a ceiling (:attr:`Rounding.DOWN`) never reads higher than it is, a floor
  (:attr:`Rounding.UP`) never lower, with one allowance: speeds travel in FTMS steps of
  0.01 km/h and a ceiling is rounded down onto that grid from the cap it came from, so a
  ceiling is read as up to (less than) one such step above its wire value before it is
  rounded down. That is why the 2.0 mph cap, 3.21 km/h on the wire, reads ``2.0 mph``
  and not ``1.9 mph``, while a 3.3 km/h (2.05 mph) ceiling reads ``2.0 mph``, not ``2.1``.
- **Unknown**: ``None`` (or NaN) is written ``unknown`` (the clock: ``--:--``), never 0.
"""

from __future__ import annotations

import enum
import functools
import math

from retrotread.units import FTMS_SPEED_STEP_KMH, kmh_to_mph

M_PER_MILE = 1609.344
UNKNOWN = "unknown"
UNKNOWN_CLOCK = "--:--"
_STEP_ALLOWANCE_KMH = FTMS_SPEED_STEP_KMH * (1 - 1e-6)  # less than one FTMS step
_EPS = 1e-9


class Units(enum.StrEnum):
    """The person's units (a ``str``: ``"mph"``, ``"km/h"``)."""

    MPH = "mph"
    KMH = "km/h"


class Rounding(enum.Enum):
    NEAREST = "nearest"
    DOWN = "down"  # a ceiling: never reads higher than it is
    UP = "up"  # a floor: never reads lower than it is


def metric(units: str) -> bool:
    """Whether ``units`` (``"mph"`` or ``"km/h"``) is metric."""
    return units != "mph"


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _reading(value: float | None) -> bool:
    """A speed or distance that can be shown: known, and not negative (no machine
    reports one; a negative value is damage, not a reading)."""
    return value is not None and math.isfinite(value) and value >= 0


def _fixed(value: float, digits: int, rounding: Rounding = Rounding.NEAREST) -> str:
    """``value`` with ``digits`` decimals, rounded as asked (and never ``-0.0``)."""
    scale = 10 ** digits
    if rounding is Rounding.DOWN:
        value = math.floor(value * scale + _EPS) / scale
    elif rounding is Rounding.UP:
        value = math.ceil(value * scale - _EPS) / scale
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


# --------------------------------------------------------------------------- speeds
def _for_limit(speed_kmh: float, rounding: Rounding) -> float:
    """The km/h a limit is read as before rounding (see the module docstring)."""
    if rounding is Rounding.DOWN:
        return speed_kmh + _STEP_ALLOWANCE_KMH
    if rounding is Rounding.UP:
        return speed_kmh - _STEP_ALLOWANCE_KMH
    return speed_kmh


def mph_text(speed_kmh: float, digits: int = 1, rounding: Rounding = Rounding.NEAREST
             ) -> str:
    """``1.0 mph`` for a speed in km/h."""
    return f"{_fixed(kmh_to_mph(_for_limit(speed_kmh, rounding)), digits, rounding)} mph"


@functools.lru_cache(maxsize=1024)
def kmh_text(speed_kmh: float, digits: int = 1, rounding: Rounding = Rounding.NEAREST
             ) -> str:
    """``1.6 km/h`` (``1.61 km/h`` with ``digits=2``, the FTMS resolution). Remembered:
    a session names the same few speeds over and over (each echo of its own setpoint)."""
    return f"{_fixed(_for_limit(speed_kmh, rounding), digits, rounding)} km/h"


def speed_texts(speed_kmh: float, *, digits: int = 1,
                rounding: Rounding = Rounding.NEAREST) -> tuple[str, str]:
    """``("1.8 mph", "2.9 km/h")``: both units, ``digits`` decimals each."""
    return mph_text(speed_kmh, digits, rounding), kmh_text(speed_kmh, digits, rounding)


def speed_range_text(low_kmh: float, high_kmh: float, units: str = "mph", *,
                     digits: int = 2) -> str:
    """``0.62-7.46 mph`` or ``1.00-12.00 km/h``."""
    text = mph_text if not metric(units) else kmh_text
    low = text(low_kmh, digits).split(" ")[0]
    return f"{low}-{text(high_kmh, digits)}"


def speed_parts(speed_kmh: float, units: str = "mph", *, digits: int = 1,
                rounding: Rounding = Rounding.NEAREST) -> tuple[str, str]:
    """(the chosen units, the other): ``("1.0 mph", "1.6 km/h")`` or the reverse."""
    mph, kmh = speed_texts(speed_kmh, digits=digits, rounding=rounding)
    return (kmh, mph) if metric(units) else (mph, kmh)


def speed_text(speed_kmh: float | None, units: str = "mph", *, both: bool = False,
               digits: int = 1, rounding: Rounding = Rounding.NEAREST,
               unknown: str = UNKNOWN) -> str:
    """``1.0 mph``; ``1.0 mph (1.6 km/h)`` with ``both``; ``unknown`` for None (or a
    negative value)."""
    if speed_kmh is None or not _reading(speed_kmh):
        return unknown
    first, second = speed_parts(speed_kmh, units, digits=digits, rounding=rounding)
    return f"{first} ({second})" if both else first


# --------------------------------------------------------------------------- distances
def distance_parts(distance_m: float, units: str = "mph") -> tuple[str, str]:
    """(the chosen units, the other): ``("0.52 mi", "0.84 km")`` or the reverse."""
    miles = f"{_fixed(distance_m / M_PER_MILE, 2)} mi"
    km = f"{_fixed(distance_m / 1000, 2)} km"
    return (km, miles) if metric(units) else (miles, km)


def distance_text(distance_m: float | None, units: str = "mph", *, both: bool = False,
                  unknown: str = UNKNOWN) -> str:
    """``0.52 mi`` or ``0.84 km``; both: ``0.52 mi (0.84 km)``; ``unknown`` for None (or
    a negative value)."""
    if distance_m is None or not _reading(distance_m):
        return unknown
    first, second = distance_parts(distance_m, units)
    return f"{first} ({second})" if both else first


def heart_rate_text(bpm: float | None, *, unknown: str = UNKNOWN) -> str:
    """``112 bpm``; ``unknown`` for None or 0 (what a machine without a sensor sends)."""
    if bpm is None or not _known(bpm) or bpm <= 0:
        return unknown
    return f"{round(bpm)} bpm"


# --------------------------------------------------------------------------- clocks
def clock_text(seconds: float | None, *, hours: bool = False,
               unknown: str = UNKNOWN_CLOCK) -> str:
    """``m:ss`` to the nearest second (minutes may exceed 59: ``75:00``); with ``hours``,
    ``h:mm:ss`` from an hour on (``1:15:00``). Negative reads ``0:00``; None ``--:--``."""
    if seconds is None or not _known(seconds):
        return unknown
    total = max(0, round(seconds))
    minutes, secs = divmod(total, 60)
    if hours and minutes >= 60:
        whole_hours, minutes = divmod(minutes, 60)
        return f"{whole_hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def minutes_text(seconds: float | None, *, digits: int | None = 1,
                 unknown: str = UNKNOWN) -> str:
    """``12.5 min`` (``digits`` decimals); ``digits=None``: as short as exact
    (``5 min``, ``7.5 min``)."""
    if seconds is None or not _known(seconds):
        return unknown
    minutes = seconds / 60
    return f"{minutes:g} min" if digits is None else f"{_fixed(minutes, digits)} min"


def format_number(value: float) -> str:
    """``2.0`` stays ``2.0``, ``2.25`` stays ``2.25``, ``1e-7`` is not written in e-form:
    a number as a person wrote it (a profile's speed, a limit in a message)."""
    if abs(value) >= 1e15 or not math.isfinite(value):
        return f"{value:.3g}"  # an absurd value (a typo): short, e-form is fine
    text = f"{value:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def duration_text(seconds: float) -> str:
    """``45 s``, ``2 min 30 s``, ``1 h 5 min``: a duration for messages."""
    if not 0 <= seconds < 1e9:
        return f"{format_number(seconds)} s"  # an absurd value: no hours and minutes
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = format_number(secs + seconds - whole).removesuffix(".0")
    parts = [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    if sec_text != "0" or not parts:
        parts.append(f"{sec_text} s")
    return " ".join(parts)


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" + ("" if count == 1 else "s")


def duration_words(seconds: float | None, *, unknown: str = UNKNOWN) -> str:
    """A duration to say or read in a sentence, to the nearest second: ``3 minutes``,
    ``1 minute 30 seconds``, ``45 seconds``, ``1 hour 5 minutes``."""
    if seconds is None or not _known(seconds):
        return unknown
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = ([_plural(hours, "hour")] * bool(hours) + [_plural(minutes, "minute")]
             * bool(minutes) + [_plural(secs, "second")] * bool(secs))
    return " ".join(parts) or "0 seconds"
