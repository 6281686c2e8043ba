"""Speeds, durations and ramps as people write them in a profile.

``1.5 mph``, ``2.4 km/h``, ``90s``, ``2m30s``, ``0.3 km/h/s``: each parser takes what YAML
gave (a number or a string) and returns a value in one fixed unit (km/h, seconds, km/h
per second), or raises :class:`QuantityError` with a message a person can act on.

Conversions are exact (no rounding): quantizing to what a machine accepts is the plan's
job, and it rounds toward safety there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from retrotread.formatting import format_number
from retrotread.units import mph_to_kmh

MPH: Final = "mph"
KMH: Final = "km/h"

_SPEED_UNITS: Final[dict[str, str]] = {
    "mph": MPH,
    "km/h": KMH,
    "kmh": KMH,
    "kph": KMH,
    "km/hr": KMH,
}

MAX_NUMBER_DIGITS: Final = 15
"""Digits in one number of a profile: more than a float holds exactly, far more than any
speed or duration needs; a longer number is a typo (or an attack on the parser)."""

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_SPEED_RE: Final = re.compile(
    rf"^\s*(?P<number>{_NUMBER})\s*(?P<unit>[a-z][a-z/ ]*?)?\s*$", re.IGNORECASE)
_DIGITS_RE: Final = re.compile(r"\d+")
_DURATION_PART_RE: Final = re.compile(
    r"\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*"
    r"(?P<unit>hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])",
    re.IGNORECASE,
)
_BARE_NUMBER_RE: Final = re.compile(rf"^\s*{_NUMBER}(?:[eE][-+]?\d+)?\s*$")
_CLOCK_RE: Final = re.compile(r"^\s*\d+:\d{1,2}(?::\d{1,2})?(?:\.\d+)?\s*$")
_RAMP_RE: Final = re.compile(
    rf"^\s*(?P<number>{_NUMBER})\s*(?:(?P<unit>[a-z/]+?)\s*(?:/\s*s|\s+per\s+s(?:econd)?))?\s*$",
    re.IGNORECASE,
)
_SECONDS_PER_UNIT: Final[dict[str, float]] = {"h": 3600.0, "m": 60.0, "s": 1.0}


class QuantityError(ValueError):
    """A speed, duration or ramp that cannot be understood; the message says why."""


def shorten(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis), for quoting it in a message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(text: str) -> float:
    """A number read from text; too many digits is refused before converting."""
    longest = max((len(run) for run in _DIGITS_RE.findall(text)), default=0)
    if longest > MAX_NUMBER_DIGITS:
        raise QuantityError(f"'{shorten(text)}' has a number with {longest} digits; "
                            f"{MAX_NUMBER_DIGITS} is the most")
    number = float(text)
    if not math.isfinite(number):
        raise QuantityError(f"'{shorten(text)}' is not a finite number")
    return number


def normalize_speed_unit(unit: str) -> str:
    """``"mph"`` or ``"km/h"`` for any accepted spelling (``kmh``, ``kph``, ``KM/H``)."""
    found = _SPEED_UNITS.get(unit.strip().lower())
    if found is None:
        raise QuantityError(
            f"unknown speed unit '{shorten(unit.strip())}' (use mph or km/h; kmh and kph work "
            "too)"
        )
    return found


@dataclass(frozen=True)
class Speed:
    """A speed as written: ``value`` in ``unit``, or in the profile's units when the
    profile gave a bare number (``unit`` is then None)."""

    value: float
    unit: str | None = None

    def kmh(self, default_unit: str = MPH) -> float:
        """The speed in km/h (exact), reading a bare number in ``default_unit``."""
        unit = self.unit or default_unit
        return mph_to_kmh(self.value) if unit == MPH else self.value

    def describe(self, default_unit: str = MPH) -> str:
        """``2.5 mph``: the speed as the person wrote it (bare numbers get the unit)."""
        return f"{format_number(self.value)} {self.unit or default_unit}"


def _finite_number(value: object, what: str) -> float | None:
    """``value`` as a float if YAML gave a number; None if it gave text."""
    if isinstance(value, bool):
        raise QuantityError(f"{what} should be a number with a unit, not {str(value).lower()}")
    if isinstance(value, int) and abs(value) >= 10**MAX_NUMBER_DIGITS:
        raise QuantityError(f"{what} should have at most {MAX_NUMBER_DIGITS} digits")
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise QuantityError(f"{what} should be a finite number, not {number}")
        return number
    if isinstance(value, str):
        return None
    raise QuantityError(f"{what} should be a number or text like {_EXAMPLES[what]}, not a "
                        f"{_kind(value)}")


_EXAMPLES: Final[dict[str, str]] = {
    "a speed": "'1.5 mph'",
    "a duration": "'90s' or '2m30s'",
    "a ramp": "'0.3 km/h/s'",
}


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return "value of another kind"


def parse_speed(value: object) -> Speed:
    """``1.5 mph``, ``2.4 km/h``, ``2.4kph`` or a bare number; it must be above 0."""
    number = _finite_number(value, "a speed")
    unit: str | None = None
    if number is None:
        text = str(value)
        match = _SPEED_RE.match(text)
        if match is None:
            raise QuantityError(
                f"'{shorten(text)}' is not a speed; write a number and a unit, like '1.5 mph' "
                "or '2.4 km/h'"
            )
        number = _number(match["number"])
        if match["unit"]:
            unit = normalize_speed_unit(match["unit"])
    if number <= 0:
        written = Speed(number, unit).describe("").strip()
        raise QuantityError(f"a speed must be above 0, not {written}")
    return Speed(number, unit)


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``90s``, ``2m30s``, ``2 min``, ``1.5 min`` or ``1h``.

    ``1:30`` is refused: it could be minutes:seconds or hours:minutes (and YAML 1.1 reads
    it as the number 90), so the message asks for ``1m30s``.
    """
    number = _finite_number(value, "a duration")
    if number is None:
        text = str(value).strip()
        if _CLOCK_RE.match(text):
            parts = text.split(":")
            hint = (
                f"{parts[0]}h{parts[1]}m{parts[2]}s" if len(parts) == 3
                else f"{parts[0]}m{parts[1]}s or {parts[0]}h{parts[1]}m"
            )
            raise QuantityError(
                f"'{shorten(text)}' is ambiguous (minutes:seconds or hours:minutes?); write "
                f"{shorten(hint)}"
            )
        if text.startswith("-"):
            raise QuantityError(f"a duration cannot be negative ('{shorten(text)}')")
        number = _parse_duration_text(text)
    if number < 0:
        raise QuantityError(f"a duration cannot be negative ({format_number(number)} s)")
    return number


def _parse_duration_text(text: str) -> float:
    if _BARE_NUMBER_RE.match(text):
        return _number(text)  # a bare number given as text: seconds
    total = 0.0
    position = 0
    for match in _DURATION_PART_RE.finditer(text):
        if match.start() != position:
            break
        total += _number(match["number"]) * _SECONDS_PER_UNIT[match["unit"][0].lower()]
        position = match.end()
    if position == 0 or text[position:].strip():
        raise QuantityError(
            f"'{shorten(text)}' is not a duration; write seconds or a unit, like '90s', "
            "'2m30s', '2 min' or '1h'"
        )
    return total


def parse_ramp(value: object) -> float:
    """km/h per second from ``0.3 km/h/s``, ``0.3 kmh/s``, ``0.2 mph/s`` or a bare
    number (read as km/h per second). It must be above 0."""
    number = _finite_number(value, "a ramp")
    if number is None:
        text = str(value)
        match = _RAMP_RE.match(text)
        if match is None:
            raise QuantityError(
                f"'{shorten(text)}' is not a ramp; write it like '0.3 km/h/s' "
                "(km/h per second)"
            )
        number = _number(match["number"])
        if match["unit"] and normalize_speed_unit(match["unit"]) == MPH:
            number = mph_to_kmh(number)
    if number <= 0:
        raise QuantityError(f"a ramp must be above 0 km/h per s, not {format_number(number)}")
    return number
