"""The plan: a profile compiled into a timeline of steps the session follows.

Pure values and functions (no I/O, no clock). Compiling inserts what a person walking
backward needs between the segments a coach wrote: a ramp into every speed change, and
at every change of direction a turnaround (a ramp down to a standstill, a hold while the
person turns, a countdown) and a ramp up from the start speed. Every speed is clamped to
the envelope for the direction the person faces and quantized to the machine's speed
increment downward (slower is the safe side), never below the machine's floor.

The session advances plan time only while the belt runs as planned; turnaround holds and
countdowns are in the plan for the totals and the table, the session times them itself.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from retrotread.envelope import (
    TURNAROUND_COUNTDOWN_MIN_S,
    TURNAROUND_READY_HOLD_S,
    Direction,
    Envelope,
)
from retrotread.errors import SafetyError
from retrotread.formatting import (
    Rounding,
    clock_text,
    distance_text,
    kmh_text,
    minutes_text,
    mph_text,
    speed_text,
)
from retrotread.units import quantize_down

RAMP = "ramp"
HOLD = "hold"
TURNAROUND_STOP = "turnaround_stop"
TURNAROUND_HOLD = "turnaround_hold"
COUNTDOWN = "countdown"
FINISH_RAMP = "finish_ramp"
MOVING_KINDS = frozenset({RAMP, HOLD, TURNAROUND_STOP, FINISH_RAMP})
"""Steps during which the belt moves (the rest stand still)."""


class SegmentLike(Protocol):
    """What the compiler needs of a profile segment (``Profile.flatten()`` items)."""

    @property
    def index(self) -> int: ...
    @property
    def label(self) -> str: ...
    @property
    def direction(self) -> Direction: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def speed_kmh(self) -> float: ...


@dataclass(frozen=True)
class PlanStep:
    kind: str
    start_s: float
    end_s: float
    direction: Direction
    segment_index: int
    start_kmh: float
    end_kmh: float
    label: str = ""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def moving(self) -> bool:
        return self.kind in MOVING_KINDS

    def speed_at(self, t: float) -> float:
        if self.duration_s <= 0 or self.start_kmh == self.end_kmh:
            return self.end_kmh
        frac = min(1.0, max(0.0, (t - self.start_s) / self.duration_s))
        return self.start_kmh + (self.end_kmh - self.start_kmh) * frac

    @property
    def distance_m(self) -> float:
        if not self.moving:
            return 0.0
        return (self.start_kmh + self.end_kmh) / 2 / 3.6 * self.duration_s


@dataclass(frozen=True)
class Plan:
    steps: tuple[PlanStep, ...]
    envelope: Envelope
    notes: tuple[str, ...] = ()
    _starts: tuple[float, ...] = field(repr=False, compare=False, default=())
    _owners: tuple[PlanStep, ...] = field(repr=False, compare=False, default=())
    """For each step, the step that owns its start instant: itself, or the next one that
    is not zero-length (the last step if none is)."""

    def __post_init__(self) -> None:
        if not self.steps:
            raise SafetyError("a plan needs at least one step")
        object.__setattr__(self, "_starts", tuple(float(s.start_s) for s in self.steps))
        owners: list[PlanStep] = []
        owner = self.steps[-1]
        for step in reversed(self.steps[:-1]):
            if step.duration_s > 0:
                owner = step
            owners.append(owner)
        object.__setattr__(self, "_owners", (*reversed(owners), self.steps[-1]))

    @property
    def total_s(self) -> float:
        return self.steps[-1].end_s

    @property
    def backward_s(self) -> float:
        """Time facing backward on a moving belt."""
        return float(sum(s.duration_s for s in self.steps
                         if s.moving and s.direction is Direction.BACKWARD))

    @property
    def distance_m(self) -> float:
        return float(np.sum([s.distance_m for s in self.steps]))

    def step_at(self, t: float) -> PlanStep:
        # (bisect_right is at most len(steps): only an instant before the first start
        # needs clamping; a zero-length step never owns an instant: its owner does.)
        i = bisect.bisect_right(self._starts, t) - 1
        return self._owners[i if i > 0 else 0]

    def setpoint_at(self, t: float) -> tuple[float, Direction, PlanStep]:
        """The planned speed (km/h, unquantized on ramps), direction and step at ``t``."""
        step = self.step_at(t)
        return step.speed_at(t), step.direction, step

    def sample(self, period_s: float = 1.0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Times and planned speeds every ``period_s`` (for plots and checks)."""
        times = np.arange(0.0, self.total_s + period_s / 2, period_s)
        speeds = np.array([self.setpoint_at(float(t))[0] for t in times])
        return times, speeds

    @property
    def turnarounds(self) -> int:
        return sum(1 for s in self.steps if s.kind == TURNAROUND_STOP)


# --------------------------------------------------------------------------- compiling


def _ramp_s(from_kmh: float, to_kmh: float, rate_kmh_per_s: float) -> float:
    return abs(to_kmh - from_kmh) / rate_kmh_per_s


def planned_speed(envelope: Envelope, direction: Direction, speed_kmh: float) -> float:
    """A segment's speed as it will be commanded: clamped, quantized down, >= the floor."""
    clamped = envelope.clamp(direction, speed_kmh)
    quantized = quantize_down(clamped, envelope.machine.increment_kmh)
    return max(quantized, envelope.floor_kmh())


def speed_change_note(envelope: Envelope, seg: SegmentLike, target_kmh: float) -> str | None:
    """A note for a segment whose speed changes by a step the person would notice (one
    machine increment or more), saying why; ``None`` for mere rounding to the machine's
    speed step (3.22 km/h run as 3.2 km/h on a 0.1 km/h machine says nothing)."""
    increment = envelope.machine.increment_kmh
    if abs(target_kmh - seg.speed_kmh) < increment - 1e-9:
        return None
    asked, runs = _speed(seg.speed_kmh, "km/h"), _speed(target_kmh, "km/h")
    if target_kmh < seg.speed_kmh:
        ceiling = envelope.ceiling_kmh(seg.direction)
        why = (f"the {seg.direction.value} limit for this run"
               if target_kmh >= ceiling - increment / 2 else "the machine's speed step")
    else:
        why = "the machine's lowest speed"
    return f"{seg.label}: runs at {runs} instead of {asked} ({why})"


def compile_segments(
    segments: Sequence[SegmentLike],
    envelope: Envelope,
    *,
    hold_s: float = TURNAROUND_READY_HOLD_S,
    countdown_s: float = TURNAROUND_COUNTDOWN_MIN_S,
) -> Plan:
    """Compile segments into a plan (see the module docstring)."""
    if not segments:
        raise SafetyError("a workout needs at least one segment")
    floor = envelope.floor_kmh()
    for direction in Direction:
        if floor > envelope.ceiling_kmh(direction):
            raise SafetyError(
                f"the machine's lowest speed ({kmh_text(floor, 2)}, {mph_text(floor)}) "
                f"is above the {direction.value} ceiling "
                f"({kmh_text(envelope.ceiling_kmh(direction), 2)}): this machine cannot be "
                "used for this workout")
    steps: list[PlanStep] = []
    notes: list[str] = []
    t = 0.0
    current_kmh = 0.0
    facing: Direction | None = None

    def add(kind: str, duration: float, direction: Direction, index: int, start: float,
            end: float, label: str) -> None:
        nonlocal t
        steps.append(PlanStep(kind, t, t + duration, direction, index, start, end, label))
        t += duration

    for seg in segments:
        target = planned_speed(envelope, seg.direction, seg.speed_kmh)
        note = speed_change_note(envelope, seg, target)
        if note and note not in notes:  # a repeated segment is noted once
            notes.append(note)
        if facing is not None and seg.direction is not facing:
            # Turnaround: ramp down, stand still while the person turns, count down.
            stop_s = _ramp_s(current_kmh, 0.0, envelope.ramp_stop_kmh_per_s)
            prev = steps[-1]
            add(TURNAROUND_STOP, stop_s, facing, prev.segment_index, current_kmh, 0.0,
                f"turnaround: slow to a stop, then face {seg.direction.value}")
            add(TURNAROUND_HOLD, hold_s, seg.direction, seg.index, 0.0, 0.0,
                f"turn around to face {seg.direction.value}")
            add(COUNTDOWN, countdown_s, seg.direction, seg.index, 0.0, 0.0, "countdown")
            current_kmh = 0.0
        if current_kmh == 0.0:
            current_kmh = envelope.start_speed_kmh()
        rate = envelope.ramp_kmh_per_s(seg.direction)
        ramp_s = min(_ramp_s(current_kmh, target, rate), seg.duration_s)
        reached = current_kmh + np.sign(target - current_kmh) * rate * ramp_s
        reached = target if abs(reached - target) < 1e-9 else float(reached)
        if ramp_s > 0:
            add(RAMP, ramp_s, seg.direction, seg.index, current_kmh, reached, seg.label)
        if reached != target:
            notes.append(f"{seg.label}: too short to reach {kmh_text(target, 2)} at the ramp limit;"
                         f" it ends at {kmh_text(reached, 2)}")
        if seg.duration_s - ramp_s > 0:
            add(HOLD, seg.duration_s - ramp_s, seg.direction, seg.index, reached, reached,
                seg.label)
        current_kmh = reached
        facing = seg.direction

    assert facing is not None
    add(FINISH_RAMP, _ramp_s(current_kmh, 0.0, envelope.ramp_stop_kmh_per_s), facing,
        steps[-1].segment_index, current_kmh, 0.0, "cool down to a stop")
    plan = Plan(tuple(steps), envelope, tuple(notes))
    check_plan(plan)
    return plan


def check_plan(plan: Plan) -> None:
    """Self-check: every planned speed inside the envelope, every ramp within its limit."""
    env = plan.envelope
    for step in plan.steps:
        for speed in (step.start_kmh, step.end_kmh):
            if speed > env.ceiling_kmh(step.direction) + 1e-9:
                raise SafetyError(f"internal error: the plan exceeds the {step.direction.value}"
                                  f" ceiling at {step.start_s:.1f} s ({kmh_text(speed, 2)})")
        if step.duration_s > 0 and step.moving:
            change = abs(step.end_kmh - step.start_kmh)
            slope = change / step.duration_s
            limit = (env.ramp_stop_kmh_per_s if step.end_kmh < step.start_kmh
                     and step.kind in (TURNAROUND_STOP, FINISH_RAMP)
                     else env.ramp_kmh_per_s(step.direction))
            # Compared as a speed change, not a slope: a step of a few microseconds (a
            # segment a hair longer than its ramp) has a duration known only to about
            # 1e-13 s at plan times of minutes, so its slope is inexact in the 9th digit.
            if change > limit * step.duration_s + 1e-9:
                raise SafetyError(f"internal error: a ramp of {slope:.2f} km/h/s at "
                                  f"{step.start_s:.1f} s exceeds {limit:.2f} km/h/s")


def compile_plan(profile: Any, envelope: Envelope) -> Plan:
    """Compile a :class:`retrotread.profile.Profile` for a machine's envelope."""
    turnaround = getattr(profile, "turnaround", None)
    hold_s = getattr(turnaround, "hold_s", None) or TURNAROUND_READY_HOLD_S
    countdown_s = getattr(turnaround, "countdown_s", None) or TURNAROUND_COUNTDOWN_MIN_S
    return compile_segments(profile.flatten(), envelope, hold_s=float(hold_s),
                            countdown_s=float(countdown_s))


# --------------------------------------------------------------------------- the table


def _speed(kmh: float, units: str, rounding: Rounding = Rounding.NEAREST) -> str:
    return speed_text(kmh, units, both=True, digits=2, rounding=rounding)


def format_plan_table(plan: Plan, units: str = "mph") -> str:
    """``retrotread plan``: every step, then totals, in both units."""
    rows = [("start", "length", "step", "facing", "speed", "what")]
    for step in plan.steps:
        if step.duration_s <= 0:
            continue
        if step.start_kmh == step.end_kmh:
            speed = _speed(step.end_kmh, units) if step.moving else "stopped"
        else:
            speed = f"{_speed(step.start_kmh, units)} -> {_speed(step.end_kmh, units)}"
        rows.append((clock_text(step.start_s), f"{step.duration_s:.0f}s",
                     step.kind.replace("_", " "), step.direction.value, speed, step.label))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True))
             + "  " + row[5] for row in rows]
    lines.insert(1, "-" * (sum(widths) + 2 * 5 + 10))
    env = plan.envelope
    lines += [
        "",
        f"total time       {clock_text(plan.total_s)} (turnaround holds and countdowns "
        "included)",
        f"backward walking {minutes_text(plan.backward_s)}",
        f"distance         {distance_text(plan.distance_m, units, both=True)}",
        f"turnarounds      {plan.turnarounds}",
        "backward ceiling "
        f"{_speed(env.ceiling_kmh(Direction.BACKWARD), units, Rounding.DOWN)}",
    ]
    for note in plan.notes:
        lines.append(f"note: {note}")
    return "\n".join(line.rstrip() for line in lines)
