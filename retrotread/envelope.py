"""The safety envelope: every speed limit of retrotread, in one file a reader can audit.

Pure values and functions (no I/O, no clock). The numbers come from ``docs/safety.md``,
which also gives the evidence behind them. A profile or a user may make them stricter,
never looser: :meth:`Envelope.build` refuses anything that would loosen a limit.

Rounding is always toward safety: a ceiling rounds down, a floor rounds up, and a speed
is quantized to the machine's increment downward (slower is the safe side).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from retrotread.errors import SafetyError
from retrotread.formatting import speed_text
from retrotread.units import (
    ceiling_to_ftms,
    floor_to_ftms,
    ftms_to_kmh,
    mph_to_kmh,
    quantize_down,
    quantize_up,
)


class Direction(enum.StrEnum):
    """The way the person faces. The belt itself always runs the same way."""

    FORWARD = "forward"
    BACKWARD = "backward"


# --- Hard limits (ours; see docs/safety.md). Nothing raises these. ---------------------------
BACKWARD_CEILING_MPH = 2.0
"""Backward walking is capped at 2.0 mph, whatever a profile, console or remote asks."""
BACKWARD_CEILING_LOWEST_MPH = 1.0
"""A user may lower the backward cap, but to no less than 1.0 mph."""
BACKWARD_CEILING_KMH = ftms_to_kmh(ceiling_to_ftms(mph_to_kmh(BACKWARD_CEILING_MPH)))  # 3.21
BACKWARD_CEILING_LOWEST_KMH = ftms_to_kmh(floor_to_ftms(mph_to_kmh(BACKWARD_CEILING_LOWEST_MPH)))

FORWARD_CEILING_DEFAULT_MPH = 4.0
FORWARD_CEILING_DEFAULT_KMH = ftms_to_kmh(ceiling_to_ftms(mph_to_kmh(FORWARD_CEILING_DEFAULT_MPH)))

RAMP_BACKWARD_KMH_PER_S = 0.5
"""Largest commanded setpoint slope while the person faces backward."""
RAMP_FORWARD_KMH_PER_S = 1.0
"""Largest commanded setpoint slope while the person faces forward."""
RAMP_STOP_KMH_PER_S = 1.0
"""Planned stops ramp down no faster than this before Stop is sent."""

START_SPEED_MAX_KMH = ftms_to_kmh(ceiling_to_ftms(mph_to_kmh(1.0)))  # 1.60
"""A belt starts at no more than 1.0 mph, then ramps."""

STOPPED_SPEED_KMH = 0.1
"""Measured speed at or below this counts as stopped ..."""
STOPPED_CONFIRM_S = 1.0
"""... once it has stayed there this long."""

TURNAROUND_ANNOUNCE_S = 10.0
TURNAROUND_READY_HOLD_S = 10.0
TURNAROUND_MAX_STOPPED_S = 30.0
"""Keep a turnaround's stopped time under this: many consoles end a paused workout."""
TURNAROUND_COUNTDOWN_MIN_S = 3.0
TURNAROUND_COUNTDOWN_MAX_S = 5.0
START_COUNTDOWN_S = 3.0

ANNOUNCE_SPEED_CHANGE_KMH = 0.5
"""Automatic speed changes larger than this are announced before they happen ..."""
SPEED_CHANGE_NOTICE_S = 5.0
"""... this long before (or as the belt starts, for the ramp after a start)."""

# Overspeed tolerances used by the watchdog.
OVERSPEED_MARGIN_KMH = 0.5
BACKWARD_OVERSPEED_MARGIN_KMH = 0.3
OVERSPEED_GRACE_S = 2.0


@dataclass(frozen=True)
class MachineLimits:
    """What the machine says it can do (Supported Speed Range, or a quirk file)."""

    min_kmh: float = 0.5
    max_kmh: float = 20.0
    increment_kmh: float = 0.1

    def __post_init__(self) -> None:
        if not (0 <= self.min_kmh < self.max_kmh) or self.increment_kmh <= 0:
            raise SafetyError(
                f"the machine's speed range makes no sense: min {self.min_kmh} km/h, "
                f"max {self.max_kmh} km/h, increment {self.increment_kmh} km/h"
            )


_CLAMPED_REMEMBERED = 4096
"""How many clamped speeds an envelope remembers (see :meth:`Envelope.clamp`)."""


@dataclass(frozen=True)
class Envelope:
    """The limits in force for one workout on one machine. Build it with :meth:`build`."""

    backward_ceiling_kmh: float
    forward_ceiling_kmh: float
    ramp_backward_kmh_per_s: float
    ramp_forward_kmh_per_s: float
    ramp_stop_kmh_per_s: float
    machine: MachineLimits

    @classmethod
    def build(
        cls,
        machine: MachineLimits | None = None,
        *,
        backward_ceiling_kmh: float | None = None,
        forward_ceiling_kmh: float | None = None,
        ramp_backward_kmh_per_s: float | None = None,
        ramp_forward_kmh_per_s: float | None = None,
    ) -> Envelope:
        """The default envelope, made stricter by any of the given settings.

        Raises :class:`SafetyError` for a setting that would loosen a limit or that
        leaves no speed at which a person can walk backward on this machine.
        """
        machine = machine or MachineLimits()
        backward = BACKWARD_CEILING_KMH
        if backward_ceiling_kmh is not None:
            if backward_ceiling_kmh > mph_to_kmh(BACKWARD_CEILING_MPH) + 1e-9:
                # (2.0 mph itself is allowed: it rounds down to BACKWARD_CEILING_KMH)
                raise SafetyError(
                    f"a backward ceiling of {describe_kmh(backward_ceiling_kmh)} is above the "
                    f"hard limit of {describe_kmh(BACKWARD_CEILING_KMH)}; it can only be lowered"
                )
            if backward_ceiling_kmh < mph_to_kmh(BACKWARD_CEILING_LOWEST_MPH) - 1e-9:
                # (1.0 mph itself is allowed: as a cap it rounds down, toward safety)
                raise SafetyError(
                    f"a backward ceiling of {describe_kmh(backward_ceiling_kmh)} is below the "
                    f"lowest allowed cap of {describe_kmh(BACKWARD_CEILING_LOWEST_KMH)}"
                )
            backward = ftms_to_kmh(ceiling_to_ftms(backward_ceiling_kmh))
        forward = FORWARD_CEILING_DEFAULT_KMH
        if forward_ceiling_kmh is not None:
            if forward_ceiling_kmh <= 0:
                raise SafetyError("the forward ceiling must be above 0 km/h")
            forward = ftms_to_kmh(ceiling_to_ftms(forward_ceiling_kmh))
        ramps = {}
        for name, value, limit in (
            ("backward ramp", ramp_backward_kmh_per_s, RAMP_BACKWARD_KMH_PER_S),
            ("forward ramp", ramp_forward_kmh_per_s, RAMP_FORWARD_KMH_PER_S),
        ):
            if value is None:
                ramps[name] = limit
            elif value <= 0 or value > limit + 1e-9:
                raise SafetyError(
                    f"a {name} of {value} km/h per s is not allowed: it must be above 0 and "
                    f"at most {limit} km/h per s"
                )
            else:
                ramps[name] = value
        envelope = cls(
            backward_ceiling_kmh=backward,
            forward_ceiling_kmh=forward,
            ramp_backward_kmh_per_s=ramps["backward ramp"],
            ramp_forward_kmh_per_s=ramps["forward ramp"],
            ramp_stop_kmh_per_s=min(RAMP_STOP_KMH_PER_S, ramps["forward ramp"]),
            machine=machine,
        )
        if envelope.floor_kmh() > START_SPEED_MAX_KMH + 1e-9:
            raise SafetyError(
                f"this machine's lowest speed ({describe_kmh(envelope.floor_kmh())}) is above "
                f"the {describe_kmh(START_SPEED_MAX_KMH)} a belt may start at: a person "
                "stepping on, or turning to walk backward, would start too fast on it"
            )
        if envelope.ceiling_kmh(Direction.BACKWARD) < envelope.floor_kmh():
            raise SafetyError(
                f"this machine's lowest speed ({describe_kmh(machine.min_kmh)}) is above the "
                f"backward ceiling ({describe_kmh(backward)}): backward walking is not safe on it"
            )
        return envelope

    # --- limits ---------------------------------------------------------------------------
    @functools.cached_property
    def _limits_kmh(self) -> tuple[float, float, float]:
        """(floor, backward ceiling, forward ceiling), computed once: an envelope never
        changes, and the control loop asks for them on every tick."""
        increment = self.machine.increment_kmh
        top = self.machine.max_kmh
        return (quantize_up(max(self.machine.min_kmh, 0.01), increment),
                quantize_down(min(self.backward_ceiling_kmh, top), increment),
                quantize_down(min(self.forward_ceiling_kmh, top), increment))

    def floor_kmh(self) -> float:
        """The lowest speed the belt can run at (machine minimum, rounded up)."""
        return self._limits_kmh[0]

    def ceiling_kmh(self, direction: Direction) -> float:
        """The highest speed allowed facing ``direction`` on this machine (rounded down)."""
        return self._limits_kmh[1 if direction is Direction.BACKWARD else 2]

    def ramp_kmh_per_s(self, direction: Direction) -> float:
        if direction is Direction.BACKWARD:
            return self.ramp_backward_kmh_per_s
        return self.ramp_forward_kmh_per_s

    def start_speed_kmh(self) -> float:
        """The speed a belt starts at (then it ramps): the machine's floor, the most
        conservative choice. :meth:`build` refuses a machine whose floor is above
        ``START_SPEED_MAX_KMH``, so this is never above 1.0 mph."""
        return min(self.floor_kmh(), START_SPEED_MAX_KMH)

    # --- clamping -------------------------------------------------------------------------
    @functools.cached_property
    def _clamped(self) -> dict[tuple[Direction, float], float]:
        """:meth:`clamp`'s answers so far: the control loop clamps the same few speeds on
        most ticks (a steady segment's setpoint, again and again)."""
        return {}

    def clamp(self, direction: Direction, speed_kmh: float) -> float:
        """``speed_kmh`` made safe for ``direction``: quantized down and inside
        [floor, ceiling]. Zero (stop) stays zero; negative speeds become zero."""
        remembered = self._clamped
        key = (direction, speed_kmh)
        clamped = remembered.get(key)
        if clamped is None:
            clamped = self._clamp(direction, speed_kmh)
            if len(remembered) < _CLAMPED_REMEMBERED:  # (a ramp's speeds are all new)
                remembered[key] = clamped
        return clamped

    def _clamp(self, direction: Direction, speed_kmh: float) -> float:
        if speed_kmh <= 0:
            return 0.0
        floor, backward, forward = self._limits_kmh  # (as floor_kmh and ceiling_kmh)
        ceiling = backward if direction is Direction.BACKWARD else forward
        speed = quantize_down(min(speed_kmh, ceiling), self.machine.increment_kmh)
        return max(speed, floor)

    def is_allowed(self, direction: Direction, speed_kmh: float) -> bool:
        return speed_kmh == 0 or (
            self.floor_kmh() - 1e-9 <= speed_kmh <= self.ceiling_kmh(direction) + 1e-9
        )

    def ramp_step(
        self, direction: Direction, current_kmh: float, target_kmh: float, dt_s: float,
        *, stopping: bool = False,
    ) -> float:
        """The next setpoint from ``current_kmh`` toward ``target_kmh`` after ``dt_s``
        seconds, no steeper than the ramp limit (the stop ramp when ``stopping``)."""
        rate = self.ramp_stop_kmh_per_s if stopping else self.ramp_kmh_per_s(direction)
        max_step = rate * max(dt_s, 0.0)
        if target_kmh > current_kmh:
            return min(target_kmh, current_kmh + max_step)
        return max(target_kmh, current_kmh - max_step)


def describe_kmh(speed_kmh: float) -> str:
    """``3.21 km/h (1.99 mph)``: both units, two decimals, for messages a person reads
    (:func:`retrotread.formatting.speed_text`)."""
    return speed_text(speed_kmh, "km/h", both=True, digits=2)
