"""Fitness Machine Status (0x2ADA): one class per status op code."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

from retrotread.errors import CodecError
from retrotread.ftms.codec._fields import (
    _SIZES,
    _Field,
    _pack,
    _Reader,
    _remembered,
)
from retrotread.ftms.codec.control_point import (
    StopPause,
    _encode_message,
    _Message,
    _message,
    _zones,
)


@dataclass(frozen=True)
class _StatusMessage(_Message):
    """A Fitness Machine Status. ``problem`` says what in its parameter could not be read
    (missing bytes, a reserved value); such a status still reaches listeners as its kind,
    with the unreadable values ``None`` or, for stop/pause, read as the safer "stop"."""

    problem: str | None = field(default=None, kw_only=True)


class StatusOp(enum.IntEnum):
    RESET = 0x01
    STOPPED_OR_PAUSED_BY_USER = 0x02
    STOPPED_BY_SAFETY_KEY = 0x03
    STARTED_OR_RESUMED_BY_USER = 0x04
    TARGET_SPEED_CHANGED = 0x05
    TARGET_INCLINE_CHANGED = 0x06
    TARGET_RESISTANCE_LEVEL_CHANGED = 0x07
    TARGET_POWER_CHANGED = 0x08
    TARGET_HEART_RATE_CHANGED = 0x09
    TARGETED_EXPENDED_ENERGY_CHANGED = 0x0A
    TARGETED_NUMBER_OF_STEPS_CHANGED = 0x0B
    TARGETED_NUMBER_OF_STRIDES_CHANGED = 0x0C
    TARGETED_DISTANCE_CHANGED = 0x0D
    TARGETED_TRAINING_TIME_CHANGED = 0x0E
    TARGETED_TIME_IN_TWO_HR_ZONES_CHANGED = 0x0F
    TARGETED_TIME_IN_THREE_HR_ZONES_CHANGED = 0x10
    TARGETED_TIME_IN_FIVE_HR_ZONES_CHANGED = 0x11
    INDOOR_BIKE_SIMULATION_CHANGED = 0x12
    WHEEL_CIRCUMFERENCE_CHANGED = 0x13
    SPIN_DOWN_STATUS = 0x14
    TARGETED_CADENCE_CHANGED = 0x15
    CONTROL_PERMISSION_LOST = 0xFF


@_message(StatusOp.RESET, "Reset")
@dataclass(frozen=True)
class StatusReset(_StatusMessage):
    pass


@_message(StatusOp.STOPPED_OR_PAUSED_BY_USER, "Stopped or Paused by the User",
          _Field("action", "u8", enum=StopPause, label="Control Information",
                 fallback=StopPause.STOP))
@dataclass(frozen=True)
class StoppedOrPausedByUser(_StatusMessage):
    action: StopPause


@_message(StatusOp.STOPPED_BY_SAFETY_KEY, "Stopped by Safety Key")
@dataclass(frozen=True)
class StoppedBySafetyKey(_StatusMessage):
    pass


@_message(StatusOp.STARTED_OR_RESUMED_BY_USER, "Started or Resumed by the User")
@dataclass(frozen=True)
class StartedOrResumedByUser(_StatusMessage):
    pass


@_message(StatusOp.TARGET_SPEED_CHANGED, "Target Speed Changed",
          _Field("speed_kmh", "u16", 100))
@dataclass(frozen=True)
class TargetSpeedChanged(_StatusMessage):
    speed_kmh: float | None


@_message(StatusOp.TARGET_INCLINE_CHANGED, "Target Incline Changed",
          _Field("inclination_pct", "s16", 10))
@dataclass(frozen=True)
class TargetInclineChanged(_StatusMessage):
    inclination_pct: float | None


@_message(StatusOp.TARGET_RESISTANCE_LEVEL_CHANGED, "Target Resistance Level Changed",
          _Field("resistance_level", "u8", 10))
@dataclass(frozen=True)
class TargetResistanceLevelChanged(_StatusMessage):
    resistance_level: float | None


@_message(StatusOp.TARGET_POWER_CHANGED, "Target Power Changed", _Field("power_w", "s16"))
@dataclass(frozen=True)
class TargetPowerChanged(_StatusMessage):
    power_w: int | None


@_message(StatusOp.TARGET_HEART_RATE_CHANGED, "Target Heart Rate Changed",
          _Field("heart_rate_bpm", "u8"))
@dataclass(frozen=True)
class TargetHeartRateChanged(_StatusMessage):
    heart_rate_bpm: int | None


@_message(StatusOp.TARGETED_EXPENDED_ENERGY_CHANGED, "Targeted Expended Energy Changed",
          _Field("energy_kcal", "u16"))
@dataclass(frozen=True)
class TargetedExpendedEnergyChanged(_StatusMessage):
    energy_kcal: int | None


@_message(StatusOp.TARGETED_NUMBER_OF_STEPS_CHANGED, "Targeted Number of Steps Changed",
          _Field("steps", "u16"))
@dataclass(frozen=True)
class TargetedNumberOfStepsChanged(_StatusMessage):
    steps: int | None


@_message(StatusOp.TARGETED_NUMBER_OF_STRIDES_CHANGED, "Targeted Number of Strides Changed",
          _Field("strides", "u16"))
@dataclass(frozen=True)
class TargetedNumberOfStridesChanged(_StatusMessage):
    strides: int | None


@_message(StatusOp.TARGETED_DISTANCE_CHANGED, "Targeted Distance Changed",
          _Field("distance_m", "u24"))
@dataclass(frozen=True)
class TargetedDistanceChanged(_StatusMessage):
    distance_m: int | None


@_message(StatusOp.TARGETED_TRAINING_TIME_CHANGED, "Targeted Training Time Changed",
          _Field("time_s", "u16"))
@dataclass(frozen=True)
class TargetedTrainingTimeChanged(_StatusMessage):
    time_s: int | None


@_message(StatusOp.TARGETED_TIME_IN_TWO_HR_ZONES_CHANGED,
          "Targeted Time in Two HR Zones Changed", *_zones(2))
@dataclass(frozen=True)
class TargetedTimeInTwoHeartRateZonesChanged(_StatusMessage):
    fat_burn_s: int | None
    fitness_s: int | None


@_message(StatusOp.TARGETED_TIME_IN_THREE_HR_ZONES_CHANGED,
          "Targeted Time in Three HR Zones Changed", *_zones(3))
@dataclass(frozen=True)
class TargetedTimeInThreeHeartRateZonesChanged(_StatusMessage):
    light_s: int | None
    moderate_s: int | None
    hard_s: int | None


@_message(StatusOp.TARGETED_TIME_IN_FIVE_HR_ZONES_CHANGED,
          "Targeted Time in Five HR Zones Changed", *_zones(5))
@dataclass(frozen=True)
class TargetedTimeInFiveHeartRateZonesChanged(_StatusMessage):
    very_light_s: int | None
    light_s: int | None
    moderate_s: int | None
    hard_s: int | None
    maximum_s: int | None


@_message(StatusOp.INDOOR_BIKE_SIMULATION_CHANGED, "Indoor Bike Simulation Parameters Changed",
          _Field("wind_speed_m_per_s", "s16", 1000), _Field("grade_pct", "s16", 100),
          _Field("rolling_resistance_coefficient", "u8", 10000),
          _Field("wind_resistance_coefficient_kg_per_m", "u8", 100))
@dataclass(frozen=True)
class IndoorBikeSimulationChanged(_StatusMessage):
    wind_speed_m_per_s: float | None
    grade_pct: float | None
    rolling_resistance_coefficient: float | None
    wind_resistance_coefficient_kg_per_m: float | None


@_message(StatusOp.WHEEL_CIRCUMFERENCE_CHANGED, "Wheel Circumference Changed",
          _Field("circumference_mm", "u16", 10))
@dataclass(frozen=True)
class WheelCircumferenceChanged(_StatusMessage):
    circumference_mm: float | None


@_message(StatusOp.SPIN_DOWN_STATUS, "Spin Down Status", _Field("spin_down_status", "u8"))
@dataclass(frozen=True)
class SpinDownStatus(_StatusMessage):
    spin_down_status: int  # 0x01 requested, 0x02 success, 0x03 error, 0x04 stop pedalling


@_message(StatusOp.TARGETED_CADENCE_CHANGED, "Targeted Cadence Changed",
          _Field("cadence_per_min", "u16", 2))
@dataclass(frozen=True)
class TargetedCadenceChanged(_StatusMessage):
    cadence_per_min: float | None


@_message(StatusOp.CONTROL_PERMISSION_LOST, "Control Permission Lost")
@dataclass(frozen=True)
class ControlPermissionLost(_StatusMessage):
    pass


@dataclass(frozen=True)
class OtherStatus:
    """A status op code the specification reserves (kept, never an error)."""

    op_code: int
    parameter: bytes = b""
    title: ClassVar[str] = "Other Status"

    @property
    def op(self) -> int:
        return self.op_code


MachineStatus = (
    StatusReset | StoppedOrPausedByUser | StoppedBySafetyKey | StartedOrResumedByUser
    | TargetSpeedChanged | TargetInclineChanged | TargetResistanceLevelChanged
    | TargetPowerChanged | TargetHeartRateChanged | TargetedExpendedEnergyChanged
    | TargetedNumberOfStepsChanged | TargetedNumberOfStridesChanged | TargetedDistanceChanged
    | TargetedTrainingTimeChanged | TargetedTimeInTwoHeartRateZonesChanged
    | TargetedTimeInThreeHeartRateZonesChanged | TargetedTimeInFiveHeartRateZonesChanged
    | IndoorBikeSimulationChanged | WheelCircumferenceChanged | SpinDownStatus
    | TargetedCadenceChanged | ControlPermissionLost | OtherStatus
)

STATUS_TYPES: dict[int, type[Any]] = {
    cls.op: cls for cls in MachineStatus.__args__  # type: ignore[attr-defined]
    if cls is not OtherStatus
}
"""Every Fitness Machine Status type by op code."""


def encode_status(status: MachineStatus) -> bytes:
    if isinstance(status, OtherStatus):
        if status.op_code in STATUS_TYPES:
            raise CodecError(f"Fitness Machine Status: op code 0x{status.op_code:02x} is "
                             f"{STATUS_TYPES[status.op_code].__name__}, not OtherStatus")
        return _pack("u8", status.op_code, "Fitness Machine Status", "op code") + (
            status.parameter)
    return _encode_message(status)


@_remembered
def decode_status(data: bytes) -> MachineStatus:
    """Decode 0x2ADA; only an empty message is an error.

    A status tells us what the machine did (the belt stopped, the safety key was pulled),
    so it is never dropped for a bad parameter. Reserved op codes become
    :class:`OtherStatus`. A known op code whose parameter is missing, cut short or holds a
    reserved value still becomes its own class, with ``problem`` saying what was wrong and
    the unreadable values ``None`` (a reserved or missing stop/pause parameter is read as
    "stop", the safer of the two). Bytes after the known parameters are ignored, so that a
    "Stopped by Safety Key" with a stray byte is still seen as one.
    """
    reader = _Reader(data, "Fitness Machine Status")
    op = reader.int("u8", "Op Code")
    cls = STATUS_TYPES.get(op)
    if cls is None:
        return OtherStatus(op, reader.rest())
    reader.what = f"Fitness Machine Status ({cls.title})"
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in cls._fields:
        size = _SIZES[f.kind]
        if reader.remaining < size:
            values[f.name] = f.fallback
            problems.append(f"{f.title} missing")
            reader.rest()
            continue
        raw = reader.int(f.kind, f.title)
        try:
            values[f.name] = f.from_raw(raw, reader.what)
        except CodecError:
            values[f.name] = f.fallback
            problems.append(f"{f.title} has the reserved value 0x{raw:02x}")
    problem = None
    if problems:
        fallbacks = [f"{f.name} read as {f.fallback.name.lower()}" for f in cls._fields
                     if f.fallback is not None and values[f.name] is f.fallback]
        problem = "; ".join(problems + fallbacks) + f" ({bytes(data).hex()})"
    return cls(**values, problem=problem)  # type: ignore[no-any-return]
