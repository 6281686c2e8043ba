"""Speed units and FTMS fixed-point conversion (writing them for a person:
:mod:`retrotread.formatting`).

FTMS carries speed as uint16 in 0.01 km/h. Ordinary values are rounded to the nearest
step (2.3 km/h goes out as 230, not 229). Safety limits round toward safety: a ceiling
rounds down, a floor rounds up.
"""

from __future__ import annotations

import functools
import math

KMH_PER_MPH = 1.609344
FTMS_SPEED_STEP_KMH = 0.01
_EPS = 1e-9


def mph_to_kmh(mph: float) -> float:
    return mph * KMH_PER_MPH


def kmh_to_mph(kmh: float) -> float:
    return kmh / KMH_PER_MPH


def kmh_to_ftms(kmh: float) -> int:
    """Nearest FTMS speed unit (0.01 km/h) for an ordinary value."""
    return round(kmh * 100.0)


def ftms_to_kmh(units: int) -> float:
    return units / 100.0


def ceiling_to_ftms(kmh: float) -> int:
    """A speed *ceiling* in FTMS units, rounded down (2.0 mph -> 321)."""
    return math.floor(kmh * 100.0 + _EPS)


def floor_to_ftms(kmh: float) -> int:
    """A speed *floor* in FTMS units, rounded up (1.0 mph -> 161)."""
    return math.ceil(kmh * 100.0 - _EPS)


@functools.lru_cache(maxsize=4096)
def quantize_down(kmh: float, increment_kmh: float) -> float:
    """Largest multiple of ``increment_kmh`` that is <= ``kmh`` (in exact 0.01 steps).

    Remembered: the control loop asks for the same few speeds on every tick (the
    envelope's clamp, the setpoint on the wire), about 19 times in 20 a repeat."""
    step = max(1, kmh_to_ftms(increment_kmh))
    units = ceiling_to_ftms(kmh)
    return ftms_to_kmh((units // step) * step)


def quantize_up(kmh: float, increment_kmh: float) -> float:
    """Smallest multiple of ``increment_kmh`` that is >= ``kmh``."""
    step = max(1, kmh_to_ftms(increment_kmh))
    units = floor_to_ftms(kmh)
    return ftms_to_kmh(-((-units) // step) * step)


def quantize_nearest(kmh: float, increment_kmh: float) -> float:
    step = max(1, kmh_to_ftms(increment_kmh))
    units = kmh_to_ftms(kmh)
    return ftms_to_kmh(round(units / step) * step)


TIME_TOLERANCE_S = 1e-6
"""Deadlines within this of ``now`` count as reached. A virtual clock (looptime) keeps
time in whole microseconds, so ``0.1 + 0.05`` (0.15000000000000002) is never reached
exactly; comparing with this tolerance avoids waiting forever for it."""
