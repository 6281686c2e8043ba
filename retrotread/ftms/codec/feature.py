"""Fitness Machine Feature (0x2ACC) and the Supported Speed / Inclination Ranges
(0x2AD4 / 0x2AD5)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from retrotread.errors import CodecError
from retrotread.formatting import kmh_text
from retrotread.ftms.codec._fields import (
    _decode_fields,
    _encode_fields,
    _Field,
    _pack,
    _Reader,
)


class MachineFeature(enum.IntFlag):
    """Fitness Machine Features (first uint32 of 0x2ACC)."""

    AVERAGE_SPEED = 1 << 0
    CADENCE = 1 << 1
    TOTAL_DISTANCE = 1 << 2
    INCLINATION = 1 << 3
    ELEVATION_GAIN = 1 << 4
    PACE = 1 << 5
    STEP_COUNT = 1 << 6
    RESISTANCE_LEVEL = 1 << 7
    STRIDE_COUNT = 1 << 8
    EXPENDED_ENERGY = 1 << 9
    HEART_RATE = 1 << 10
    METABOLIC_EQUIVALENT = 1 << 11
    ELAPSED_TIME = 1 << 12
    REMAINING_TIME = 1 << 13
    POWER_MEASUREMENT = 1 << 14
    FORCE_ON_BELT_AND_POWER_OUTPUT = 1 << 15
    USER_DATA_RETENTION = 1 << 16


class TargetSettingFeature(enum.IntFlag):
    """Target Setting Features (second uint32 of 0x2ACC)."""

    SPEED = 1 << 0
    INCLINATION = 1 << 1
    RESISTANCE = 1 << 2
    POWER = 1 << 3
    HEART_RATE = 1 << 4
    TARGETED_EXPENDED_ENERGY = 1 << 5
    TARGETED_STEP_NUMBER = 1 << 6
    TARGETED_STRIDE_NUMBER = 1 << 7
    TARGETED_DISTANCE = 1 << 8
    TARGETED_TRAINING_TIME = 1 << 9
    TARGETED_TIME_IN_TWO_HR_ZONES = 1 << 10
    TARGETED_TIME_IN_THREE_HR_ZONES = 1 << 11
    TARGETED_TIME_IN_FIVE_HR_ZONES = 1 << 12
    INDOOR_BIKE_SIMULATION = 1 << 13
    WHEEL_CIRCUMFERENCE = 1 << 14
    SPIN_DOWN_CONTROL = 1 << 15
    TARGETED_CADENCE = 1 << 16


_NO_MACHINE_FEATURES = MachineFeature(0)
_NO_TARGET_FEATURES = TargetSettingFeature(0)


@dataclass(frozen=True)
class FitnessMachineFeature:
    machine: MachineFeature = _NO_MACHINE_FEATURES
    target: TargetSettingFeature = _NO_TARGET_FEATURES


def encode_feature(feature: FitnessMachineFeature) -> bytes:
    what = "Fitness Machine Feature"
    return (_pack("u32", int(feature.machine), what, "machine features")
            + _pack("u32", int(feature.target), what, "target setting features"))


def decode_feature(data: bytes) -> FitnessMachineFeature:
    """Decode 0x2ACC. Bytes beyond the two uint32 (non-conformant machines) are ignored."""
    reader = _Reader(data, "Fitness Machine Feature")
    machine = reader.int("u32", "Fitness Machine Features")
    target = reader.int("u32", "Target Setting Features")
    return FitnessMachineFeature(MachineFeature(machine), TargetSettingFeature(target))


# --------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class SpeedRange:
    min_kmh: float
    max_kmh: float
    increment_kmh: float


@dataclass(frozen=True)
class InclinationRange:
    min_pct: float
    max_pct: float
    increment_pct: float


_SPEED_RANGE = (
    _Field("min_kmh", "u16", 100, label="Minimum Speed"),
    _Field("max_kmh", "u16", 100, label="Maximum Speed"),
    _Field("increment_kmh", "u16", 100, label="Minimum Increment"),
)
_INCLINATION_RANGE = (
    _Field("min_pct", "s16", 10, label="Minimum Inclination"),
    _Field("max_pct", "s16", 10, label="Maximum Inclination"),
    _Field("increment_pct", "u16", 10, label="Minimum Increment"),
)


def encode_speed_range(value: SpeedRange) -> bytes:
    return _encode_fields(value, _SPEED_RANGE, "Supported Speed Range")


def decode_speed_range(data: bytes) -> SpeedRange:
    """Decode 0x2AD4; a minimum above the maximum is an error, not a value."""
    reader = _Reader(data, "Supported Speed Range")
    result = SpeedRange(**_decode_fields(reader, _SPEED_RANGE))
    if result.min_kmh > result.max_kmh:
        raise CodecError(f"Supported Speed Range: minimum {kmh_text(result.min_kmh, 2)} is above "
                         f"the maximum {kmh_text(result.max_kmh, 2)} ({bytes(data).hex()})")
    return result


def encode_inclination_range(value: InclinationRange) -> bytes:
    return _encode_fields(value, _INCLINATION_RANGE, "Supported Inclination Range")


def decode_inclination_range(data: bytes) -> InclinationRange:
    reader = _Reader(data, "Supported Inclination Range")
    result = InclinationRange(**_decode_fields(reader, _INCLINATION_RANGE))
    if result.min_pct > result.max_pct:
        raise CodecError(f"Supported Inclination Range: minimum {result.min_pct:.1f} % is "
                         f"above the maximum {result.max_pct:.1f} % ({bytes(data).hex()})")
    return result
