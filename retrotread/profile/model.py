"""The workout profile: the YAML format (pydantic models) and the validated result.

Two layers:

* ``*Doc`` models mirror the YAML as people write it (``speed: 1.5 mph``,
  ``forward: 2m30s``). They check each value and, in :class:`ProfileDoc`, the rules that
  need the whole profile (speeds against the ceilings, total backward time). Their JSON
  Schema is what ``retrotread schema`` prints.
* :class:`Profile` and :class:`SegmentSpec` are the validated result in fixed units
  (km/h, seconds) that the plan compiler and the runner use.

A profile may make the safety envelope stricter, never looser (see ``docs/safety.md``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from retrotread.envelope import (
    BACKWARD_CEILING_KMH,
    BACKWARD_CEILING_LOWEST_KMH,
    BACKWARD_CEILING_LOWEST_MPH,
    BACKWARD_CEILING_MPH,
    FORWARD_CEILING_DEFAULT_MPH,
    RAMP_BACKWARD_KMH_PER_S,
    RAMP_FORWARD_KMH_PER_S,
    TURNAROUND_ANNOUNCE_S,
    TURNAROUND_COUNTDOWN_MAX_S,
    TURNAROUND_COUNTDOWN_MIN_S,
    TURNAROUND_READY_HOLD_S,
    Direction,
    Envelope,
    MachineLimits,
)
from retrotread.formatting import duration_text, format_number
from retrotread.profile.quantities import (
    KMH,
    MPH,
    QuantityError,
    Speed,
    normalize_speed_unit,
    parse_duration,
    parse_ramp,
    parse_speed,
    shorten,
)
from retrotread.units import mph_to_kmh

# --- Limits of the format (ours) ------------------------------------------------------------
SEGMENT_MIN_S: Final = 5.0
SEGMENT_MAX_S: Final = 2 * 3600.0
REPEAT_MAX: Final = 50
BACKWARD_TOTAL_MAX_S: Final = 60 * 60.0
WORKOUT_TOTAL_MAX_S: Final = 4 * 3600.0
"""A whole workout (warm-up, repeats and cool-down counted) may plan at most 4 hours; more
is a typo (and the plan would be expanded segment by segment)."""
ANNOUNCE_MIN_S: Final = 5.0
ANNOUNCE_MAX_S: Final = 60.0
HOLD_MIN_S: Final = 5.0
HOLD_MAX_S: Final = 25.0
"""A timed ready hold stays well under the 30 s after which many consoles end a workout."""

_EPS: Final = 1e-9
_BACKWARD_HARD_KMH: Final = mph_to_kmh(BACKWARD_CEILING_MPH)  # exact; 2.0 mph itself is fine
_BACKWARD_LOWEST_KMH: Final = mph_to_kmh(BACKWARD_CEILING_LOWEST_MPH)
_FORWARD_CEILING_KMH: Final = mph_to_kmh(FORWARD_CEILING_DEFAULT_MPH)

RULES_ERROR: Final = "profile_rules"
"""pydantic error type of the whole-profile rules; ``ctx["problems"]`` holds (loc, message)."""

Loc = tuple[str | int, ...]


class Level(enum.StrEnum):
    BEGINNER = "beginner"
    INTERMEDIATE = "intermediate"
    ADVANCED = "advanced"


# --- Value types as written ------------------------------------------------------------------
def _custom(reason: str) -> PydanticCustomError:
    return PydanticCustomError("quantity", "{reason}", {"reason": reason})


def _speed(value: object) -> Speed:
    if isinstance(value, Speed):
        return value
    try:
        return parse_speed(value)
    except QuantityError as exc:
        raise _custom(str(exc)) from None


def _duration(value: object) -> float:
    try:
        return parse_duration(value)
    except QuantityError as exc:
        raise _custom(str(exc)) from None


def _ramp(value: object) -> float:
    try:
        return parse_ramp(value)
    except QuantityError as exc:
        raise _custom(str(exc)) from None


def _units(value: object) -> str:
    if not isinstance(value, str):
        raise _custom("units should be mph or km/h")
    try:
        return normalize_speed_unit(value)
    except QuantityError:
        raise _custom(f"'{shorten(value)}' is not a unit for speeds; use mph or km/h") from None


_NUMBER_SCHEMA: Final[dict[str, Any]] = {"type": "number", "exclusiveMinimum": 0}
SpeedValue = Annotated[
    Speed,
    PlainValidator(_speed),
    WithJsonSchema({
        "anyOf": [
            {**_NUMBER_SCHEMA, "description": "in the profile's units"},
            {"type": "string", "pattern": r"^\s*\d*\.?\d+\s*(mph|km/h|kmh|kph)\s*$"},
        ],
        "examples": ["1.5 mph", "2.4 km/h", 1.2],
    }),
]
DurationValue = Annotated[
    float,
    PlainValidator(_duration),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "minimum": 0, "description": "seconds"},
            {"type": "string",
             "pattern": r"^\s*(\d*\.?\d+\s*(h|hr|hours?|m|min|mins|minutes?|s|sec|secs|seconds?)"
                        r"\s*)+$"},
        ],
        "examples": ["90s", "2m30s", "2 min", 45],
    }),
]
RampValue = Annotated[
    float,
    PlainValidator(_ramp),
    WithJsonSchema({
        "anyOf": [
            {**_NUMBER_SCHEMA, "description": "km/h per second"},
            {"type": "string",
             "pattern": r"^\s*\d*\.?\d+\s*((mph|km/h|kmh|kph)\s*(/\s*s|\s+per\s+s(econd)?))?\s*$"},
        ],
        "examples": ["0.3 km/h/s"],
    }),
]
UnitsValue = Annotated[
    str,
    PlainValidator(_units),
    WithJsonSchema({"enum": [MPH, KMH, "kmh", "kph"]}),
]


def _check_range(value: float, low: float, high: float, what: str) -> float:
    if value < low - _EPS or value > high + _EPS:
        raise _custom(
            f"{what} of {duration_text(value)} is not allowed; use "
            f"{duration_text(low)} to {duration_text(high)}"
        )
    return value


# --- Document models (the YAML as written) ---------------------------------------------------
class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TurnaroundDoc(_Doc):
    """How a direction change goes: announce, stop the belt, ready gate, countdown."""

    announce: DurationValue = Field(
        TURNAROUND_ANNOUNCE_S, description="announce a turnaround this long before it (>= 5 s)")
    ready: Literal["hold", "key"] = Field(
        "hold", description="hold: a timed hold of the stopped belt; key: wait for the r key")
    hold: DurationValue = Field(
        TURNAROUND_READY_HOLD_S,
        description="seconds the belt stands still before the countdown (timed gate), 5 to 25")
    countdown: DurationValue = Field(
        TURNAROUND_COUNTDOWN_MIN_S, description="countdown before the belt starts, 3 to 5 s")

    @field_validator("announce")
    @classmethod
    def _announce_range(cls, value: float) -> float:
        return _check_range(value, ANNOUNCE_MIN_S, ANNOUNCE_MAX_S, "an announcement")

    @field_validator("hold")
    @classmethod
    def _hold_range(cls, value: float) -> float:
        return _check_range(value, HOLD_MIN_S, HOLD_MAX_S, "a ready hold")

    @field_validator("countdown")
    @classmethod
    def _countdown_range(cls, value: float) -> float:
        return _check_range(value, TURNAROUND_COUNTDOWN_MIN_S, TURNAROUND_COUNTDOWN_MAX_S,
                            "a countdown")


class SafetyDoc(_Doc):
    """Stricter limits for this profile; nothing here can loosen the defaults."""

    backward_max: SpeedValue | None = Field(
        None, description="lower the backward ceiling (1.0 to 2.0 mph)")
    ramp_backward: RampValue | None = Field(
        None, description="gentler speed changes while backward (at most 0.5 km/h per s)")
    ramp_forward: RampValue | None = Field(
        None, description="gentler speed changes while forward (at most 1.0 km/h per s)")
    heart_rate_max: int | None = Field(
        None, ge=60, le=220,
        description="heart-rate ceiling in beats per minute: above it the belt slows to its "
                    "lowest speed, and stops if it stays above for 60 s")
    heart_rate_max_percent: int | None = Field(
        None, ge=40, le=100,
        description="heart-rate ceiling as a percentage of the age-predicted maximum "
                    "(208 - 0.7 x age); needs age")
    age: int | None = Field(None, ge=10, le=110, description="years, for heart_rate_max_percent")

    @model_validator(mode="after")
    def _percent_needs_age(self) -> SafetyDoc:
        if self.heart_rate_max_percent is not None and self.age is None:
            raise _custom("heart_rate_max_percent needs age: (the maximum is predicted from it)")
        return self

    def heart_rate_max_bpm(self) -> int | None:
        """The stricter of the two ceilings, in beats per minute (None: no ceiling)."""
        ceilings = []
        if self.heart_rate_max is not None:
            ceilings.append(self.heart_rate_max)
        if self.heart_rate_max_percent is not None and self.age is not None:
            predicted_max = 208 - 0.7 * self.age  # Tanaka et al. 2001
            ceilings.append(math.floor(predicted_max * self.heart_rate_max_percent / 100))
        return min(ceilings) if ceilings else None

    @field_validator("ramp_backward")
    @classmethod
    def _ramp_backward_limit(cls, value: float | None) -> float | None:
        return _check_ramp(value, RAMP_BACKWARD_KMH_PER_S, "backward")

    @field_validator("ramp_forward")
    @classmethod
    def _ramp_forward_limit(cls, value: float | None) -> float | None:
        return _check_ramp(value, RAMP_FORWARD_KMH_PER_S, "forward")


def _check_ramp(value: float | None, limit: float, which: str) -> float | None:
    if value is not None and value > limit + _EPS:
        raise _custom(
            f"{format_number(value)} km/h per s is steeper than the {which} ramp limit of "
            f"{format_number(limit)} km/h per s; a profile may only make ramps gentler"
        )
    return value


class SegmentDoc(_Doc):
    """One stretch at one speed facing one way: ``forward: 2 min`` + ``speed: 2.5 mph``,
    or ``direction:`` + ``duration:`` + ``speed:``."""

    forward: DurationValue | None = Field(None, description="walk forward this long")
    backward: DurationValue | None = Field(None, description="walk backward this long")
    direction: Direction | None = Field(None, description="explicit form, with duration:")
    duration: DurationValue | None = Field(None, description="explicit form, with direction:")
    speed: SpeedValue = Field(description="belt speed; a bare number is in the profile's units")
    label: str | None = Field(None, description="shown on screen; default like 'Forward 2.5 mph'")
    cue: str | None = Field(None, description="announced at the start of the segment")
    hold_rails: bool = Field(False, description="tell the walker to hold the side rails")

    @model_validator(mode="before")
    @classmethod
    def _no_deeper_repeat(cls, data: Any) -> Any:
        if isinstance(data, dict) and "repeat" in data:
            raise PydanticCustomError(
                "nesting", "repeat blocks may nest only one level deep (a repeat inside a "
                "repeat is the most)")
        return data

    @field_validator("forward", "backward", "duration")
    @classmethod
    def _duration_range(cls, value: float | None) -> float | None:
        if value is not None:
            _check_range(value, SEGMENT_MIN_S, SEGMENT_MAX_S, "a segment duration")
        return value

    @model_validator(mode="after")
    def _one_direction(self) -> SegmentDoc:
        short = [name for name in ("forward", "backward") if getattr(self, name) is not None]
        if len(short) == 2:
            raise PydanticCustomError(
                "direction", "a segment has either forward: or backward:, not both "
                "(make two segments)")
        if short and (self.direction is not None or self.duration is not None):
            raise PydanticCustomError(
                "direction", "write either '{key}: 90s' or direction: with duration:, not both",
                {"key": short[0]})
        if not short:
            if self.direction is None:
                raise PydanticCustomError(
                    "direction", "a segment needs a direction: write 'forward: 2 min' or "
                    "'backward: 90s' (or direction: with duration:)")
            if self.duration is None:
                raise PydanticCustomError(
                    "direction", "a segment with direction: needs a duration: (like 90s)")
        return self

    @property
    def walk_direction(self) -> Direction:
        if self.forward is not None:
            return Direction.FORWARD
        if self.backward is not None:
            return Direction.BACKWARD
        assert self.direction is not None  # checked by _one_direction
        return self.direction

    @property
    def duration_s(self) -> float:
        value = self.forward if self.forward is not None else self.backward
        value = value if value is not None else self.duration
        assert value is not None  # checked by _one_direction
        return value


def _check_repeat(value: int) -> int:
    if not 1 <= value <= REPEAT_MAX:
        raise _custom(f"repeat must be 1 to {REPEAT_MAX}, not {value}")
    return value


class InnerRepeatDoc(_Doc):
    """A repeat block inside a repeat block (its segments cannot repeat again)."""

    repeat: int = Field(description=f"how many times, 1 to {REPEAT_MAX}",
                        json_schema_extra={"minimum": 1, "maximum": REPEAT_MAX})
    segments: list[SegmentDoc] = Field(min_length=1)

    @field_validator("repeat")
    @classmethod
    def _repeat_range(cls, value: int) -> int:
        return _check_repeat(value)


def item_kind(value: Any) -> str:
    if isinstance(value, dict) and ("repeat" in value or "segments" in value):
        return "repeat block"
    return "segment"


InnerItem = Annotated[
    Annotated[SegmentDoc, Tag("segment")] | Annotated[InnerRepeatDoc, Tag("repeat block")],
    Discriminator(item_kind),
]


class RepeatDoc(_Doc):
    """``repeat: N`` with ``segments:``: the segments N times over."""

    repeat: int = Field(description=f"how many times, 1 to {REPEAT_MAX}",
                        json_schema_extra={"minimum": 1, "maximum": REPEAT_MAX})
    segments: list[InnerItem] = Field(min_length=1)

    @field_validator("repeat")
    @classmethod
    def _repeat_range(cls, value: int) -> int:
        return _check_repeat(value)


Item = Annotated[
    Annotated[SegmentDoc, Tag("segment")] | Annotated[RepeatDoc, Tag("repeat block")],
    Discriminator(item_kind),
]
ITEM_TAGS: Final = frozenset({"segment", "repeat block"})
"""Union tags pydantic puts into error locations; the loader drops them."""


class ProfileDoc(_Doc):
    """A guided workout, as written in a profile file."""

    name: str = Field(min_length=1, description="shown at the start and in the session log")
    description: str = Field("", description="a sentence or two about the workout")
    level: Level = Field(Level.BEGINNER, description="beginner, intermediate or advanced")
    units: UnitsValue = Field(MPH, description="units of bare speed numbers: mph or km/h")
    turnaround: TurnaroundDoc = Field(default_factory=lambda: TurnaroundDoc.model_validate({}))
    safety: SafetyDoc = Field(default_factory=lambda: SafetyDoc.model_validate({}))
    warmup: list[Item] = Field(default_factory=list, description="segments before the main part")
    segments: list[Item] = Field(min_length=1, description="the main part of the workout")
    cooldown: list[Item] = Field(default_factory=list, description="segments after the main part")

    @model_validator(mode="after")
    def _whole_profile_rules(self) -> ProfileDoc:
        problems = self.rule_problems()
        if problems:
            summary = "; ".join(f"{format_loc(loc)}: {message}" for loc, message in problems)
            raise PydanticCustomError(RULES_ERROR, "{summary}",
                                      {"summary": summary, "problems": problems})
        return self

    # --- whole-profile rules -----------------------------------------------------------------
    def backward_ceiling(self) -> tuple[float, str]:
        """The backward ceiling in km/h (exact) and how to write it in a message."""
        return _backward_ceiling(self.units, self.safety.backward_max)

    def rule_problems(self) -> list[tuple[Loc, str]]:
        """Problems that need the whole profile, as (location, message) pairs."""
        return _rule_problems(self.units, self.safety.backward_max, self.walk())

    def walk(self) -> Iterator[tuple[Loc, SegmentDoc, int]]:
        """Every segment with its location and how many times it runs (not expanded)."""
        for part in ("warmup", "segments", "cooldown"):
            yield from _walk_items(getattr(self, part), (part,), 1)

    # --- the validated result ----------------------------------------------------------------
    def to_profile(self, path: str | None = None) -> Profile:
        specs: list[SegmentSpec] = []
        for part, phase in (("warmup", "warmup"), ("segments", "main"), ("cooldown", "cooldown")):
            for segment, repeat_index in _expand(getattr(self, part), None):
                specs.append(_spec(segment, len(specs), phase, repeat_index, self.units))
        safety = self.safety
        return Profile(
            name=self.name,
            description=self.description,
            level=self.level,
            units=self.units,
            turnaround=TurnaroundSettings(
                announce_s=self.turnaround.announce,
                ready=self.turnaround.ready,
                hold_s=self.turnaround.hold,
                countdown_s=self.turnaround.countdown,
            ),
            safety=SafetySettings(
                backward_max_kmh=(
                    None if safety.backward_max is None else safety.backward_max.kmh(self.units)
                ),
                ramp_backward_kmh_per_s=safety.ramp_backward,
                ramp_forward_kmh_per_s=safety.ramp_forward,
                heart_rate_max_bpm=safety.heart_rate_max_bpm(),
            ),
            path=path,
            specs=tuple(specs),
        )


def _rule_problems(
    units: str, backward_max: Speed | None, walked: Iterable[tuple[Loc, SegmentDoc, int]],
) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if backward_max is not None:
        text = backward_max.describe(units)
        if backward_max.kmh(units) > _BACKWARD_HARD_KMH + _EPS:
            problems.append((("safety", "backward_max"), (
                f"{text} is too high: a profile may only lower the backward ceiling "
                f"({format_number(BACKWARD_CEILING_MPH)} mph is the most)")))
        elif backward_max.kmh(units) < _BACKWARD_LOWEST_KMH - _EPS:
            problems.append((("safety", "backward_max"), (
                f"{text} is too low: the backward ceiling can be lowered to "
                f"{format_number(BACKWARD_CEILING_LOWEST_MPH)} mph and no further")))
    ceiling_kmh, ceiling_text = _backward_ceiling(units, backward_max)
    backward_s = total_s = 0.0
    for loc, segment, times in walked:
        speed_kmh = segment.speed.kmh(units)
        text = segment.speed.describe(units)
        total_s += segment.duration_s * times
        if segment.walk_direction is Direction.BACKWARD:
            backward_s += segment.duration_s * times
            if speed_kmh > ceiling_kmh + _EPS:
                problems.append(((*loc, "speed"),
                                 f"{text} is above the backward ceiling of {ceiling_text}"))
        elif speed_kmh > _FORWARD_CEILING_KMH + _EPS:
            problems.append(((*loc, "speed"), (
                f"{text} is above the forward ceiling of "
                f"{format_number(FORWARD_CEILING_DEFAULT_MPH)} mph")))
    if backward_s > BACKWARD_TOTAL_MAX_S + _EPS:
        problems.append((("segments",), (
            f"the profile plans {duration_text(backward_s)} of backward walking; "
            f"{duration_text(BACKWARD_TOTAL_MAX_S)} is the most")))
    if total_s > WORKOUT_TOTAL_MAX_S + _EPS:
        problems.append((("segments",), (
            f"the profile plans {duration_text(total_s)} of walking in all; "
            f"{duration_text(WORKOUT_TOTAL_MAX_S)} is the most (a typo in a duration or "
            "a repeat?)")))
    return problems


def _backward_ceiling(units: str, backward_max: Speed | None) -> tuple[float, str]:
    hard = (_BACKWARD_HARD_KMH, f"{format_number(BACKWARD_CEILING_MPH)} mph")
    if backward_max is None or backward_max.kmh(units) >= hard[0]:
        return hard
    return backward_max.kmh(units), backward_max.describe(units)


def lenient_rule_problems(data: Any) -> list[tuple[Loc, str]]:
    """The whole-profile rules on a document that failed validation: every segment that is
    valid on its own is checked, so one pass reports a too-fast backward segment next to a
    typo elsewhere. Values that are themselves wrong are left to their own messages."""
    if not isinstance(data, dict):
        return []
    try:
        units = _units(data.get("units", MPH))
    except PydanticCustomError:
        units = MPH
    try:
        backward_max = SafetyDoc.model_validate(data.get("safety") or {}).backward_max
    except ValidationError:
        backward_max = None
    walked = [found for part in ("warmup", "segments", "cooldown")
              for found in _walk_raw(data.get(part), (part,), 1, 0)]
    return _rule_problems(units, backward_max, walked)


def _walk_raw(items: Any, loc: Loc, times: int, depth: int,
              ) -> Iterator[tuple[Loc, SegmentDoc, int]]:
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if item_kind(item) == "repeat block":
            repeat = item.get("repeat")
            ok = isinstance(repeat, int) and not isinstance(repeat, bool)
            count = repeat if ok and 1 <= repeat <= REPEAT_MAX else 1
            if depth < 2:
                yield from _walk_raw(item.get("segments"), (*loc, i, "segments"),
                                     times * count, depth + 1)
            continue
        try:
            yield (*loc, i), SegmentDoc.model_validate(item), times
        except ValidationError:
            continue


def _walk_items(
    items: Sequence[SegmentDoc | RepeatDoc | InnerRepeatDoc], loc: Loc, times: int,
) -> Iterator[tuple[Loc, SegmentDoc, int]]:
    for i, item in enumerate(items):
        if isinstance(item, SegmentDoc):
            yield (*loc, i), item, times
        else:
            yield from _walk_items(item.segments, (*loc, i, "segments"), times * item.repeat)


def _expand(
    items: Sequence[SegmentDoc | RepeatDoc | InnerRepeatDoc], repeat_index: int | None,
) -> Iterator[tuple[SegmentDoc, int | None]]:
    """Segments in the order they run; the index of the outermost repeat they belong to."""
    for item in items:
        if isinstance(item, SegmentDoc):
            yield item, repeat_index
        else:
            for round_ in range(item.repeat):
                yield from _expand(item.segments, round_ if repeat_index is None else repeat_index)


def _spec(segment: SegmentDoc, index: int, phase: str, repeat_index: int | None,
          units: str) -> SegmentSpec:
    direction = segment.walk_direction
    label = segment.label or f"{direction.value.capitalize()} {segment.speed.describe(units)}"
    cue = segment.cue
    if segment.hold_rails:
        if segment.label is None:
            label += ", hold the rails"
        cue = "Hold the rails." if not cue else f"Hold the rails. {cue}"
    return SegmentSpec(
        index=index,
        label=label,
        direction=direction,
        duration_s=segment.duration_s,
        speed_kmh=segment.speed.kmh(units),
        cue=cue,
        phase=phase,
        repeat_index=repeat_index,
    )


def format_loc(loc: Loc) -> str:
    """``segments[2].speed`` from ``("segments", 2, "speed")``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


# --- The validated result --------------------------------------------------------------------
@dataclass(frozen=True)
class TurnaroundSettings:
    announce_s: float = TURNAROUND_ANNOUNCE_S
    ready: str = "hold"  # "hold" (timed) or "key" (wait for r)
    hold_s: float = TURNAROUND_READY_HOLD_S
    countdown_s: float = TURNAROUND_COUNTDOWN_MIN_S


@dataclass(frozen=True)
class SafetySettings:
    """Stricter limits a profile set (None: the default applies)."""

    backward_max_kmh: float | None = None
    ramp_backward_kmh_per_s: float | None = None
    ramp_forward_kmh_per_s: float | None = None
    heart_rate_max_bpm: int | None = None


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of the flattened workout, in fixed units (speed exact, not quantized)."""

    index: int
    label: str
    direction: Direction
    duration_s: float
    speed_kmh: float
    cue: str | None = None
    phase: str = "main"  # warmup | main | cooldown
    repeat_index: int | None = None  # 0-based round of the (outermost) repeat block


@dataclass(frozen=True)
class Profile:
    """A validated workout profile. Build it with ``load_profile`` / ``load_profile_text``."""

    name: str
    description: str
    level: Level
    units: str
    turnaround: TurnaroundSettings
    safety: SafetySettings
    path: str | None = None
    specs: tuple[SegmentSpec, ...] = field(default=(), repr=False)

    def flatten(self) -> list[SegmentSpec]:
        """Warm-up, main segments (repeats expanded) and cool-down, in order."""
        return list(self.specs)

    def total_seconds(self) -> float:
        return sum(spec.duration_s for spec in self.specs)

    def backward_seconds(self) -> float:
        return sum(spec.duration_s for spec in self.specs
                   if spec.direction is Direction.BACKWARD)

    def envelope(self, machine: MachineLimits | None = None) -> Envelope:
        """The default envelope on ``machine``, made stricter by this profile's settings."""
        kwargs: dict[str, float] = {}
        if self.safety.backward_max_kmh is not None:
            # Validation allows 1.0..2.0 mph exactly; Envelope.build wants FTMS-rounded limits.
            kwargs["backward_ceiling_kmh"] = min(
                max(self.safety.backward_max_kmh, BACKWARD_CEILING_LOWEST_KMH),
                BACKWARD_CEILING_KMH,
            )
        if self.safety.ramp_backward_kmh_per_s is not None:
            kwargs["ramp_backward_kmh_per_s"] = self.safety.ramp_backward_kmh_per_s
        if self.safety.ramp_forward_kmh_per_s is not None:
            kwargs["ramp_forward_kmh_per_s"] = self.safety.ramp_forward_kmh_per_s
        return Envelope.build(machine, **kwargs)


# --- JSON Schema -----------------------------------------------------------------------------
class _PeopleSchema(GenerateJsonSchema):
    """JSON Schema for hand-written files: optional keys are left out, never null."""

    def nullable_schema(self, schema: CoreSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])  # type: ignore[typeddict-item]

    def default_schema(self, schema: CoreSchema) -> JsonSchemaValue:
        value = super().default_schema(schema)  # type: ignore[arg-type]
        if value.get("default", 0) is None:
            del value["default"]
        return value


def profile_json_schema() -> dict[str, Any]:
    """The JSON Schema of the profile format as people write it (``"1.5 mph"`` etc.)."""
    schema = ProfileDoc.model_json_schema(schema_generator=_PeopleSchema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "retrotread workout profile",
        **{key: value for key, value in schema.items() if key != "title"},
    }
