"""FTMS codec: bytes <-> typed values for every characteristic a treadmill uses.

Pure functions over values: no I/O, no clock, no logging. Layouts follow the Fitness
Machine Service 1.0 and the GATT Specification Supplement (summarised in the project's
``docs/ftms.md``); all multi-byte fields are little-endian.

Every decoder raises :class:`~retrotread.errors.CodecError` (and only that) for bytes it
cannot read, with a message naming the characteristic, the field and what was wrong;
never an ``IndexError`` or a silently wrong value. Encoders raise the same error for
values that do not fit the wire format. Values carry their unit in their name
(``speed_kmh``, ``inclination_pct``); fixed-point fields are scaled with rounding, never
truncation (2.3 km/h goes out as 230).

Characteristics:

* Fitness Machine Feature (0x2ACC): :class:`FitnessMachineFeature`
* Treadmill Data (0x2ACD): :class:`TreadmillData`, split over notifications of at most
  20 bytes by :func:`split_treadmill_data`, merged again by
  :class:`TreadmillDataAssembler`
* Training Status (0x2AD3): :class:`TrainingStatus`
* Supported Speed / Inclination Range (0x2AD4 / 0x2AD5): :class:`SpeedRange`,
  :class:`InclinationRange`
* Fitness Machine Control Point (0x2AD9): one class per request op code, and
  :class:`ControlPointResponse` for the server's Response Code indication
* Fitness Machine Status (0x2ADA): one class per status op code, :class:`OtherStatus`
  for op codes of other machine types
"""

from __future__ import annotations

import enum
import functools
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, NamedTuple, TypeVar

from retrotread.errors import CodecError, UnsupportedOpCodeError
from retrotread.formatting import kmh_text

# --------------------------------------------------------------------------- primitives


class _NotAvailable(enum.Enum):
    """The machine sent a field's "Data Not Available" value (decoded to ``None``)."""

    NOT_AVAILABLE = "not available"


NOT_AVAILABLE = _NotAvailable.NOT_AVAILABLE

_SIZES = {"u8": 1, "s8": 1, "u16": 2, "s16": 2, "u24": 3, "u32": 4}
_SIGNED = {"s8", "s16"}


def _range(kind: str) -> tuple[int, int]:
    bits = 8 * _SIZES[kind]
    if kind in _SIGNED:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


_RANGES = {kind: _range(kind) for kind in _SIZES}


class _Reader:
    """Reads little-endian integers from a message, naming what was missing on error."""

    def __init__(self, data: bytes | bytearray | memoryview, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def need(self, size: int, name: str) -> None:
        if self.remaining < size:
            raise CodecError(
                f"{self.what}: truncated at {name} (needs {size} byte{'s' * (size != 1)} "
                f"at offset {self.pos}, the message has {len(self.data)} bytes: "
                f"{self.data.hex() or 'empty'})"
            )

    def int(self, kind: str, name: str) -> int:
        size = _SIZES[kind]
        start = self.pos
        end = start + size
        if end > len(self.data):
            self.need(size, name)
        self.pos = end
        return int.from_bytes(self.data[start:end], "little", signed=kind in _SIGNED)

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def _pack(kind: str, raw: int, what: str, name: str) -> bytes:
    low, high = _RANGES[kind]
    if not low <= raw <= high:
        raise CodecError(f"{what}: {name} does not fit the wire format "
                         f"(raw value {raw} is outside {low}..{high})")
    return raw.to_bytes(_SIZES[kind], "little", signed=kind in _SIGNED)


@dataclass(frozen=True)
class _Field:
    """One fixed-point or integer field: ``value = raw / scale`` (scale 1: an int)."""

    name: str
    kind: str
    scale: int = 1
    enum: type[enum.IntEnum] | None = None
    label: str = ""
    not_available: int | None = None
    """The raw "Data Not Available" value the specification reserves for this field."""
    fallback: Any = None
    """What a status parameter that cannot be read stands for (see :func:`decode_status`)."""

    @property
    def title(self) -> str:
        return self.label or self.name

    def to_raw(self, value: Any, what: str) -> int:
        try:
            if self.enum is not None:
                raw = int(self.enum(operator.index(value)))
            elif self.scale == 1:
                raw = operator.index(value)
            else:
                raw = round(float(value) * self.scale)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(f"{what}: {self.name} must be a number, not {value!r}") from exc
        if raw == self.not_available:
            raise CodecError(f"{what}: {self.name} = {value!r} is the 'Data Not Available' "
                             f"value 0x{raw & 0xFFFF:x}; list the field as unavailable instead")
        return raw

    def encode(self, value: Any, what: str) -> bytes:
        raw = self.to_raw(value, what)
        low, high = _RANGES[self.kind]
        if not low <= raw <= high:
            shown = raw if self.scale == 1 else raw / self.scale
            raise CodecError(
                f"{what}: {self.name} = {value!r} is outside what the field can carry "
                f"({low / self.scale if self.scale != 1 else low}.."
                f"{high / self.scale if self.scale != 1 else high}; got {shown})"
            )
        return raw.to_bytes(_SIZES[self.kind], "little", signed=self.kind in _SIGNED)

    def encode_not_available(self, what: str) -> bytes:
        if self.not_available is None:
            raise CodecError(f"{what}: {self.name} has no 'Data Not Available' value")
        return _pack(self.kind, self.not_available, what, self.name)

    def decode(self, reader: _Reader) -> Any:
        """The field's value; :data:`NOT_AVAILABLE` for the field's sentinel value."""
        return self.from_raw(reader.int(self.kind, self.title), reader.what)

    def from_raw(self, raw: int, what: str) -> Any:
        if raw == self.not_available:
            return NOT_AVAILABLE
        if self.enum is not None:
            try:
                return self.enum(raw)
            except ValueError:
                raise CodecError(
                    f"{what}: {self.title} has the invalid value 0x{raw:02x}"
                ) from None
        if self.scale == 1:
            return raw
        return raw / self.scale


_Decoded = TypeVar("_Decoded")


def _remembered(decode: Callable[[bytes], _Decoded]) -> Callable[[bytes], _Decoded]:
    """``decode`` with its recent answers remembered, by the message's bytes.

    A decoder is a pure function of the bytes (it reads them as ``bytes(data)`` first),
    and a session meets the same few short messages again and again: its own speeds
    echoed as statuses, "success" answers, the same requests on a simulator. The
    decoded messages are frozen, so callers can share one. A message that raises is
    not remembered: it raises again each time."""
    remembered = functools.lru_cache(maxsize=256)(decode)

    @functools.wraps(decode)
    def decode_remembered(data: bytes) -> _Decoded:
        return remembered(bytes(data))

    return decode_remembered


def _encode_fields(message: Any, spec: tuple[_Field, ...], what: str) -> bytes:
    return b"".join(f.encode(getattr(message, f.name), what) for f in spec)


def _decode_fields(reader: _Reader, spec: tuple[_Field, ...]) -> dict[str, Any]:
    return {f.name: f.decode(reader) for f in spec}


# --------------------------------------------------------------------------- feature


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


# --------------------------------------------------------------------------- training status


class TrainingStatusCode(enum.IntEnum):
    OTHER = 0x00
    IDLE = 0x01
    WARMING_UP = 0x02
    LOW_INTENSITY_INTERVAL = 0x03
    HIGH_INTENSITY_INTERVAL = 0x04
    RECOVERY_INTERVAL = 0x05
    ISOMETRIC = 0x06
    HEART_RATE_CONTROL = 0x07
    FITNESS_TEST = 0x08
    SPEED_OUTSIDE_CONTROL_REGION_LOW = 0x09
    SPEED_OUTSIDE_CONTROL_REGION_HIGH = 0x0A
    COOL_DOWN = 0x0B
    WATT_CONTROL = 0x0C
    MANUAL_MODE = 0x0D  # "Manual Mode (Quick Start)"
    PRE_WORKOUT = 0x0E
    POST_WORKOUT = 0x0F


_TS_STRING = 0x01
_TS_EXTENDED = 0x02


@dataclass(frozen=True)
class TrainingStatus:
    """0x2AD3. ``status`` is a plain int for codes the specification reserves."""

    status: TrainingStatusCode | int
    text: str | None = None
    extended_string: bool = False  # the string continues in a later notification


def encode_training_status(value: TrainingStatus) -> bytes:
    what = "Training Status"
    flags = (_TS_STRING if value.text is not None else 0) | (
        _TS_EXTENDED if value.extended_string else 0)
    out = _pack("u8", flags, what, "flags") + _pack("u8", int(value.status), what, "status")
    if value.text is not None:
        try:
            out += value.text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CodecError(f"{what}: the status string cannot be sent as UTF-8 "
                             f"({value.text!r})") from exc
    return out


def decode_training_status(data: bytes) -> TrainingStatus:
    reader = _Reader(data, "Training Status")
    flags = reader.int("u8", "Flags")
    raw = reader.int("u8", "Training Status")
    status: TrainingStatusCode | int
    try:
        status = TrainingStatusCode(raw)
    except ValueError:
        status = raw
    text = None
    rest = reader.rest()
    if flags & _TS_STRING:
        try:
            text = rest.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"Training Status: the status string is not UTF-8 "
                             f"({rest.hex()})") from exc
    return TrainingStatus(status, text, bool(flags & _TS_EXTENDED))


# --------------------------------------------------------------------------- treadmill data

PACE_WIDTH_UINT8 = 1
"""Instantaneous/Average Pace as uint8 (FTMS 1.0 era; every deployed treadmill so far)."""
PACE_WIDTH_UINT16 = 2
"""Instantaneous/Average Pace as uint16 (newer SIG field definitions)."""

_MORE_DATA = 0x0001
_TD_KNOWN_FLAGS = 0x3FFF  # bits 0..13; 14 and 15 are reserved

# (flag bit, fields) in wire order after the flags. Bit 0 is inverted: Instantaneous
# Speed is present when it is 0 ("More Data" clear). "pace" is uint8 or uint16.
_TD_SPEED = _Field("speed_kmh", "u16", 100, label="Instantaneous Speed")
_TD_GROUPS: tuple[tuple[int, tuple[_Field, ...]], ...] = (
    (1, (_Field("average_speed_kmh", "u16", 100, label="Average Speed"),)),
    (2, (_Field("total_distance_m", "u24", label="Total Distance"),)),
    (3, (_Field("inclination_pct", "s16", 10, label="Inclination", not_available=0x7FFF),
         _Field("ramp_angle_deg", "s16", 10, label="Ramp Angle Setting",
                not_available=0x7FFF))),
    (4, (_Field("positive_elevation_gain_m", "u16", 10, label="Positive Elevation Gain"),
         _Field("negative_elevation_gain_m", "u16", 10, label="Negative Elevation Gain"))),
    (5, (_Field("instantaneous_pace_km_per_min", "pace", 10, label="Instantaneous Pace"),)),
    (6, (_Field("average_pace_km_per_min", "pace", 10, label="Average Pace"),)),
    (7, (_Field("total_energy_kcal", "u16", label="Total Energy", not_available=0xFFFF),
         _Field("energy_per_hour_kcal", "u16", label="Energy Per Hour", not_available=0xFFFF),
         _Field("energy_per_minute_kcal", "u8", label="Energy Per Minute",
                not_available=0xFF))),
    (8, (_Field("heart_rate_bpm", "u8", label="Heart Rate"),)),
    (9, (_Field("metabolic_equivalent", "u8", 10, label="Metabolic Equivalent"),)),
    (10, (_Field("elapsed_time_s", "u16", label="Elapsed Time"),)),
    (11, (_Field("remaining_time_s", "u16", label="Remaining Time"),)),
    (12, (_Field("force_on_belt_n", "s16", label="Force on Belt", not_available=0x7FFF),
          _Field("power_output_w", "s16", label="Power Output", not_available=0x7FFF))),
    (13, (_Field("step_count", "u24", label="Step Count (vendor extension)"),)),
)
_STEP_COUNT_BIT = 13
"""Reserved by FTMS; several walking pads put a uint24 step count there (docs/ftms.md)."""
_TD_FIELD_NAMES = frozenset(f.name for _, group in _TD_GROUPS for f in group)


def _pace_field(f: _Field, pace_width: int) -> _Field:
    if f.kind != "pace":
        return f
    if pace_width not in (PACE_WIDTH_UINT8, PACE_WIDTH_UINT16):
        raise CodecError(f"pace width must be 1 or 2 bytes, not {pace_width}")
    return replace(f, kind="u8" if pace_width == PACE_WIDTH_UINT8 else "u16")


@dataclass(frozen=True)
class TreadmillData:
    """One Treadmill Data record (0x2ACD); ``None`` means the value is unknown.

    A value is unknown when the field was not sent, or when it was sent as the
    specification's "Data Not Available" value (0x7FFF for inclination, ramp angle, force
    on belt and power output; 0xFFFF for total energy and energy per hour; 0xFF for energy
    per minute): such fields are named in ``unavailable``. A sentinel is never a number.

    ``more_data`` is True for a partial record (one notification of a split record,
    without the speed). ``unknown_flags`` holds reserved flag bits that were set,
    ``truncated_flags`` flag bits whose field did not fit in what was left of the message
    (only bit 13, the vendor step count, is read that leniently: the rest of the record
    stays good) and ``extra_bytes`` any bytes left over after the known fields:
    diagnostics from real machines, never an error.
    """

    more_data: bool = False
    speed_kmh: float | None = None
    average_speed_kmh: float | None = None
    total_distance_m: int | None = None
    inclination_pct: float | None = None
    ramp_angle_deg: float | None = None
    positive_elevation_gain_m: float | None = None
    negative_elevation_gain_m: float | None = None
    instantaneous_pace_km_per_min: float | None = None
    average_pace_km_per_min: float | None = None
    total_energy_kcal: int | None = None
    energy_per_hour_kcal: int | None = None
    energy_per_minute_kcal: int | None = None
    heart_rate_bpm: int | None = None
    metabolic_equivalent: float | None = None
    elapsed_time_s: int | None = None
    remaining_time_s: int | None = None
    force_on_belt_n: int | None = None
    power_output_w: int | None = None
    step_count: int | None = None
    unknown_flags: int = 0
    extra_bytes: bytes = b""
    unavailable: frozenset[str] = frozenset()
    truncated_flags: int = 0

    def merged(self, later: TreadmillData) -> TreadmillData:
        """This partial record completed by a later notification of the same record."""
        return TreadmillData.from_values(_merged_values(vars(self), vars(later)))

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> TreadmillData:
        """``TreadmillData(**values)``, the same record, for values whose every key is a
        field (the simulator's and the codec's own). A frozen dataclass sets its 24
        fields one ``object.__setattr__`` at a time; with a record a second, that was the
        largest single cost of a simulated workout's telemetry."""
        record = object.__new__(cls)
        fields = record.__dict__
        fields.update(_TD_DEFAULTS)
        fields.update(values)
        if len(fields) != len(_TD_DEFAULTS):  # (a key that is no field added one)
            raise TypeError(f"not TreadmillData fields: {sorted(fields - _TD_DEFAULTS.keys())}")
        return record


_TD_DEFAULTS = {f.name: f.default for f in fields(TreadmillData)}
"""Every field of a :class:`TreadmillData` with its default, in order."""


def _merged_values(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of two parts of a record merged: the later part's known
    values win, flags and trailing bytes add up (a missing key is the field's default)."""
    known_later = {name: value for name, value in later.items() if value is not None}
    unavailable = earlier.get("unavailable", frozenset()) - known_later.keys()
    return earlier | known_later | {
        "more_data": later.get("more_data", False),
        "unknown_flags": earlier.get("unknown_flags", 0) | later.get("unknown_flags", 0),
        "truncated_flags": earlier.get("truncated_flags", 0) | later.get("truncated_flags", 0),
        "extra_bytes": earlier.get("extra_bytes", b"") + later.get("extra_bytes", b""),
        "unavailable": unavailable | later.get("unavailable", frozenset()),
    }


_WHAT_TD = "Treadmill Data"


def _group_bytes(data: TreadmillData, group: tuple[_Field, ...], pace_width: int) -> bytes | None:
    """A flag bit's fields on the wire; None when the record has none of them. (One pass
    for the common case; anything unusual is redone by :func:`_checked_group_bytes`,
    which raises the first problem in a fixed order.)"""
    unavailable = data.unavailable
    out = b""
    missing = 0
    try:
        for f in group:
            value = getattr(data, f.name)
            if f.name in unavailable:
                if value is not None:
                    return _checked_group_bytes(data, group, pace_width)
                out += f.encode_not_available(_WHAT_TD)
            elif value is None:
                missing += 1
            else:
                out += (_pace_field(f, pace_width) if f.kind == "pace" else f).encode(
                    value, _WHAT_TD)
    except CodecError:
        return _checked_group_bytes(data, group, pace_width)
    if missing == len(group):
        return None
    return _checked_group_bytes(data, group, pace_width) if missing else out


def _checked_group_bytes(data: TreadmillData, group: tuple[_Field, ...],
                         pace_width: int) -> bytes | None:
    present = [getattr(data, f.name) is not None or f.name in data.unavailable for f in group]
    if not any(present):
        return None
    if not all(present):
        missing = [f.name for f, p in zip(group, present, strict=True) if not p]
        raise CodecError(f"{_WHAT_TD}: {', '.join(missing)} must be given together with "
                         f"{', '.join(f.name for f in group if f.name not in missing)} "
                         "(they share one flag bit; list an unknown one as unavailable)")
    out = b""
    for f in group:
        value = getattr(data, f.name)
        if f.name in data.unavailable:
            if value is not None:
                raise CodecError(f"{_WHAT_TD}: {f.name} = {value!r} is listed as unavailable")
            out += f.encode_not_available(_WHAT_TD)
        else:
            out += _pace_field(f, pace_width).encode(value, _WHAT_TD)
    return out


def encode_treadmill_data(data: TreadmillData, pace_width: int = PACE_WIDTH_UINT8) -> bytes:
    """One notification. Use :func:`split_treadmill_data` to respect a 20-byte MTU."""
    if data.unknown_flags & _TD_KNOWN_FLAGS:
        raise CodecError(f"{_WHAT_TD}: unknown_flags 0x{data.unknown_flags:04x} overlaps "
                         "defined flag bits")
    if data.unavailable - _TD_FIELD_NAMES:
        raise CodecError(f"{_WHAT_TD}: unavailable names unknown fields "
                         f"{sorted(data.unavailable - _TD_FIELD_NAMES)}")
    if data.truncated_flags and (
            data.truncated_flags != 1 << _STEP_COUNT_BIT or data.step_count is not None
            or len(data.extra_bytes) >= 3):
        raise CodecError(f"{_WHAT_TD}: truncated_flags 0x{data.truncated_flags:04x} can "
                         "only be the step count bit, without a step count and with "
                         "fewer than 3 bytes after it")
    flags = data.unknown_flags | data.truncated_flags
    body = b""
    if data.more_data:
        flags |= _MORE_DATA
        if data.speed_kmh is not None:
            raise CodecError(f"{_WHAT_TD}: a partial record (more_data) cannot carry the "
                             "Instantaneous Speed")
    else:
        if data.speed_kmh is None:
            raise CodecError(f"{_WHAT_TD}: a complete record must carry speed_kmh "
                             "(the More Data bit is inverted)")
        body += _TD_SPEED.encode(data.speed_kmh, _WHAT_TD)
    for bit, group in _TD_GROUPS:
        chunk = _group_bytes(data, group, pace_width)
        if chunk is not None:
            flags |= 1 << bit
            body += chunk
    return _pack("u16", flags, _WHAT_TD, "flags") + body + data.extra_bytes


def decode_treadmill_data(raw: bytes, pace_width: int = PACE_WIDTH_UINT8) -> TreadmillData:
    """Decode one notification (a whole record, or one part of a split record)."""
    return TreadmillData.from_values(_treadmill_data_values(raw, pace_width))


def _treadmill_data_values(raw: bytes, pace_width: int) -> dict[str, Any]:
    """One notification as the keyword arguments of its :class:`TreadmillData`."""
    if len(raw) >= 2:
        flags = raw[0] | raw[1] << 8
        layout = _treadmill_data_layout(flags, pace_width)
        if layout is not None and len(raw) >= 2 + layout.struct.size:
            return _values_by_layout(raw, flags, layout)
    return _values_field_by_field(raw, pace_width)


_STRUCT_CODES = {"u8": "B", "s8": "b", "u16": "H", "s16": "h", "u24": "3s", "u32": "I"}


class _Layout(NamedTuple):
    """The fields a Treadmill Data flags value announces, in wire order, and one struct
    that reads them all at once."""

    fields: tuple[_Field, ...]
    struct: struct.Struct
    readers: tuple[tuple[str, int, int | None], ...]
    """(name, scale, "Data Not Available" value) of each field: what
    :meth:`_Field.from_raw` needs for a field without an enum."""


@functools.lru_cache(maxsize=64)
def _treadmill_data_layout(flags: int, pace_width: int) -> _Layout | None:
    """None for what only the field-by-field decoder reads (reserved flag bits, the
    vendor step count with its leniency, a bad pace width)."""
    if (flags & ~_TD_KNOWN_FLAGS & 0xFFFF or flags & (1 << _STEP_COUNT_BIT)
            or pace_width not in (PACE_WIDTH_UINT8, PACE_WIDTH_UINT16)):
        return None
    spec = [] if flags & _MORE_DATA else [_TD_SPEED]
    for bit, group in _TD_GROUPS:
        if flags & (1 << bit):
            spec.extend(_pace_field(f, pace_width) for f in group)
    if any(f.enum is not None for f in spec):
        return None
    codes = "".join(_STRUCT_CODES[f.kind] for f in spec)
    return _Layout(tuple(spec), struct.Struct("<" + codes),
                   tuple((f.name, f.scale, f.not_available) for f in spec))


def _values_by_layout(raw: bytes, flags: int, layout: _Layout) -> dict[str, Any]:
    """The common case, fast: a message long enough for every field its flags announce."""
    values: dict[str, Any] = {"more_data": bool(flags & _MORE_DATA)}
    unavailable = []
    for (name, scale, not_available), wire in zip(
            layout.readers, layout.struct.unpack_from(raw, 2), strict=True):
        if type(wire) is bytes:  # (a uint24)
            wire = int.from_bytes(wire, "little")
        if wire == not_available:
            unavailable.append(name)
        else:  # (as _Field.from_raw reads a field without an enum)
            values[name] = wire if scale == 1 else wire / scale
    values["extra_bytes"] = bytes(raw[2 + layout.struct.size:])
    values["unavailable"] = frozenset(unavailable)
    return values


def _values_field_by_field(raw: bytes, pace_width: int) -> dict[str, Any]:
    """Any message, with a precise error for one that is cut short."""
    reader = _Reader(raw, _WHAT_TD)
    flags = reader.int("u16", "Flags")
    values: dict[str, Any] = {"more_data": bool(flags & _MORE_DATA)}
    unavailable = set()
    truncated = 0
    if not flags & _MORE_DATA:
        values["speed_kmh"] = _TD_SPEED.decode(reader)
    for bit, group in _TD_GROUPS:
        if not flags & (1 << bit):
            continue
        if bit == _STEP_COUNT_BIT and reader.remaining < 3:
            # A vendor extension cut short: keep the record, note the bit.
            truncated |= 1 << bit
            continue
        for f in group:
            value = _pace_field(f, pace_width).decode(reader)
            if value is NOT_AVAILABLE:
                unavailable.add(f.name)
            else:
                values[f.name] = value
    values["unknown_flags"] = flags & ~_TD_KNOWN_FLAGS & 0xFFFF
    values["extra_bytes"] = reader.rest()
    values["unavailable"] = frozenset(unavailable)
    values["truncated_flags"] = truncated
    return values


def _record_groups(data: TreadmillData, pace_width: int) -> list[tuple[int, bytes]]:
    out = []
    for bit, group in _TD_GROUPS:
        chunk = _group_bytes(data, group, pace_width)
        if chunk is not None:
            out.append((bit, chunk))
    return out


def split_treadmill_data(data: TreadmillData, max_len: int = 20,
                         pace_width: int = PACE_WIDTH_UINT8) -> list[bytes]:
    """Split a complete record into notifications of at most ``max_len`` bytes.

    Every notification but the last has More Data set (and no speed); the last carries
    the speed. Fields that share a flag bit stay together.
    """
    if data.more_data or data.speed_kmh is None:
        raise CodecError(f"{_WHAT_TD}: only a complete record (with speed_kmh) can be split")
    if data.unknown_flags or data.extra_bytes or data.truncated_flags:
        raise CodecError(f"{_WHAT_TD}: a record with reserved flags, truncated fields or "
                         "trailing bytes cannot be split (their position in a split record "
                         "is undefined)")
    if max_len < 7:
        raise CodecError(f"{_WHAT_TD}: notifications of {max_len} bytes cannot carry a record")
    values = _td_split_values(data)
    plan = _split_plan(tuple(map(type, values)), data.unavailable, max_len, pace_width)
    if plan is not None:
        try:
            return _split_by_plan(values, plan)
        except (CodecError, TypeError, ValueError, OverflowError, struct.error):
            pass  # a value that does not fit: the general path below names it
    return _split_field_by_field(data, max_len, pace_width)


def _split_field_by_field(data: TreadmillData, max_len: int, pace_width: int) -> list[bytes]:
    speed = _TD_SPEED.encode(data.speed_kmh, _WHAT_TD)
    room = max_len - 2
    packets: list[tuple[int, bytes]] = []
    flags, body = 0, b""
    for bit, chunk in _record_groups(data, pace_width):
        if len(body) + len(chunk) > room:
            packets.append((flags, body))
            flags, body = 0, b""
        flags |= 1 << bit
        body += chunk
    if len(body) + len(speed) <= room:
        last = (flags, speed + body)
    else:
        packets.append((flags, body))
        last = (0, speed)
    out = [_pack("u16", f | _MORE_DATA, _WHAT_TD, "flags") + b for f, b in packets]
    out.append(_pack("u16", last[0], _WHAT_TD, "flags") + last[1])
    return out


# Splitting the simulator's record every second is the plain loop's commonest encoding:
# which fields a record carries (and which it lists as unavailable) fixes the packets and
# their layouts, so they are worked out once per such shape (:func:`_split_plan`), and
# each record is then converted value by value and packed with one struct per packet.
# Any value that does not fit falls back to :func:`_split_field_by_field`, which raises
# the same error it always did; tests/test_codec.py checks both give the same bytes.

_TD_SPLIT_FIELDS = (_TD_SPEED, *(f for _, group in _TD_GROUPS for f in group))
_td_split_values = operator.attrgetter(*(f.name for f in _TD_SPLIT_FIELDS))
"""The values of a record's fields, in :data:`_TD_SPLIT_FIELDS` order."""


class _Slot(NamedTuple):
    """One field in a packet: where its value is (-1: it is sent as "Data Not
    Available"), and how it goes on the wire."""

    position: int
    field: _Field


class _Packet(NamedTuple):
    struct: struct.Struct  # the flags, then every slot
    flags: int
    slots: tuple[_Slot, ...]


@functools.lru_cache(maxsize=64)
def _split_plan(types: tuple[type, ...], unavailable: frozenset[str], max_len: int,
                pace_width: int) -> tuple[_Packet, ...] | None:
    """The packets of every record whose values have ``types`` (NoneType: not given);
    None when the general path must decide (a value listed as unavailable, a flag
    bit's fields given in part, a bad pace width)."""
    if pace_width not in (PACE_WIDTH_UINT8, PACE_WIDTH_UINT16):
        return None
    groups: list[tuple[int, list[_Slot], int]] = []  # (bit, slots, bytes)
    index = 1  # (0 is the speed)
    for bit, group in _TD_GROUPS:
        slots = []
        for f in group:
            given = types[index] is not type(None)
            if f.name in unavailable:
                if given or f.not_available is None:
                    return None
                slots.append(_Slot(-1, f))
            elif given:
                slots.append(_Slot(index, _pace_field(f, pace_width)))
            index += 1
        if slots and len(slots) != len(group):
            return None
        if slots:
            groups.append((bit, slots, sum(_SIZES[slot.field.kind] for slot in slots)))
    room = max_len - 2
    speed = [_Slot(0, _TD_SPEED)]
    packets: list[tuple[int, list[_Slot]]] = []
    flags: int = 0
    body: list[_Slot] = []
    used = 0
    for bit, slots, size in groups:  # (as _split_field_by_field packs the groups)
        if used + size > room:
            packets.append((flags | _MORE_DATA, body))
            flags, body, used = 0, [], 0
        flags |= 1 << bit
        body = body + slots
        used += size
    if used + _SIZES[_TD_SPEED.kind] <= room:
        packets.append((flags, speed + body))
    else:
        packets.append((flags | _MORE_DATA, body))
        packets.append((0, speed))
    return tuple(
        _Packet(struct.Struct("<H" + "".join(_STRUCT_CODES[slot.field.kind] for slot in slots)),
                packet_flags, tuple(slots))
        for packet_flags, slots in packets)


def _split_by_plan(values: tuple[Any, ...], plan: tuple[_Packet, ...]) -> list[bytes]:
    """Raises (CodecError, TypeError, ValueError, OverflowError or struct.error) for a
    value the wire cannot carry; :func:`_split_field_by_field` then says which."""
    out = []
    for packet in plan:
        raws: list[int | bytes] = []
        for position, f in packet.slots:
            # (to_raw refuses a value equal to the sentinel; a field listed as unavailable
            # goes out as its sentinel, which the plan made sure it has)
            raw = f.to_raw(values[position], _WHAT_TD) if position >= 0 else f.not_available
            assert raw is not None
            raws.append(_on_wire(f, raw))
        out.append(packet.struct.pack(packet.flags, *raws))
    return out


class TreadmillDataAssembler:
    """Merges the notifications of a split record; yields one record per final part.

    A part with More Data set is held; the next part without it completes the record.
    :meth:`reset` (on a link loss) discards a partial record. A machine that never sends
    the final part cannot make the held record grow without bound.
    """

    MAX_PARTS = 8

    def __init__(self, pace_width: int = PACE_WIDTH_UINT8) -> None:
        self.pace_width = pace_width
        self._partial: dict[str, Any] | None = None  # the held parts, merged
        self._parts = 0
        self.discarded_parts = 0

    def reset(self) -> None:
        if self._partial is not None:
            self.discarded_parts += self._parts
        self._partial = None
        self._parts = 0

    def feed(self, raw: bytes) -> TreadmillData | None:
        """Decode one notification; return the complete record when it is finished."""
        part = _treadmill_data_values(raw, self.pace_width)
        merged = part if self._partial is None else _merged_values(self._partial, part)
        if part["more_data"]:
            if self._parts >= self.MAX_PARTS:
                self.reset()
                merged = part
            self._partial = merged
            self._parts += 1
            return None
        self._partial = None
        self._parts = 0
        return TreadmillData.from_values(merged)


# --------------------------------------------------------------------------- control point


class ControlPointOp(enum.IntEnum):
    REQUEST_CONTROL = 0x00
    RESET = 0x01
    SET_TARGET_SPEED = 0x02
    SET_TARGET_INCLINATION = 0x03
    SET_TARGET_RESISTANCE_LEVEL = 0x04
    SET_TARGET_POWER = 0x05
    SET_TARGET_HEART_RATE = 0x06
    START_OR_RESUME = 0x07
    STOP_OR_PAUSE = 0x08
    SET_TARGETED_EXPENDED_ENERGY = 0x09
    SET_TARGETED_NUMBER_OF_STEPS = 0x0A
    SET_TARGETED_NUMBER_OF_STRIDES = 0x0B
    SET_TARGETED_DISTANCE = 0x0C
    SET_TARGETED_TRAINING_TIME = 0x0D
    SET_TARGETED_TIME_IN_TWO_HR_ZONES = 0x0E
    SET_TARGETED_TIME_IN_THREE_HR_ZONES = 0x0F
    SET_TARGETED_TIME_IN_FIVE_HR_ZONES = 0x10
    SET_INDOOR_BIKE_SIMULATION = 0x11
    SET_WHEEL_CIRCUMFERENCE = 0x12
    SPIN_DOWN_CONTROL = 0x13
    SET_TARGETED_CADENCE = 0x14
    RESPONSE_CODE = 0x80


class StopPause(enum.IntEnum):
    """Parameter of Stop or Pause (control point 0x08) and status 0x02."""

    STOP = 0x01
    PAUSE = 0x02


class ResultCode(enum.IntEnum):
    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_PARAMETER = 0x03
    OPERATION_FAILED = 0x04
    CONTROL_NOT_PERMITTED = 0x05


class SpinDown(enum.IntEnum):
    START = 0x01
    IGNORE = 0x02


class _Message:
    """A control point request or status: an op code and fixed fields."""

    op: ClassVar[int]
    title: ClassVar[str]
    _fields: ClassVar[tuple[_Field, ...]] = ()


def _message(op: int, title: str, *spec: _Field) -> Any:
    """Class decorator: attach op code, title and wire fields to a dataclass."""

    def apply(cls: type[Any]) -> type[Any]:
        cls.op = op
        cls.title = title
        cls._fields = spec
        return cls

    return apply


@_message(ControlPointOp.REQUEST_CONTROL, "Request Control")
@dataclass(frozen=True)
class RequestControl(_Message):
    pass


@_message(ControlPointOp.RESET, "Reset")
@dataclass(frozen=True)
class Reset(_Message):
    pass


@_message(ControlPointOp.SET_TARGET_SPEED, "Set Target Speed", _Field("speed_kmh", "u16", 100))
@dataclass(frozen=True)
class SetTargetSpeed(_Message):
    speed_kmh: float


@_message(ControlPointOp.SET_TARGET_INCLINATION, "Set Target Inclination",
          _Field("inclination_pct", "s16", 10))
@dataclass(frozen=True)
class SetTargetInclination(_Message):
    inclination_pct: float


@_message(ControlPointOp.SET_TARGET_RESISTANCE_LEVEL, "Set Target Resistance Level",
          _Field("resistance_level", "u8", 10))
@dataclass(frozen=True)
class SetTargetResistanceLevel(_Message):
    resistance_level: float


@_message(ControlPointOp.SET_TARGET_POWER, "Set Target Power", _Field("power_w", "s16"))
@dataclass(frozen=True)
class SetTargetPower(_Message):
    power_w: int


@_message(ControlPointOp.SET_TARGET_HEART_RATE, "Set Target Heart Rate",
          _Field("heart_rate_bpm", "u8"))
@dataclass(frozen=True)
class SetTargetHeartRate(_Message):
    heart_rate_bpm: int


@_message(ControlPointOp.START_OR_RESUME, "Start or Resume")
@dataclass(frozen=True)
class StartOrResume(_Message):
    pass


@_message(ControlPointOp.STOP_OR_PAUSE, "Stop or Pause",
          _Field("action", "u8", enum=StopPause))
@dataclass(frozen=True)
class StopOrPause(_Message):
    action: StopPause


@_message(ControlPointOp.SET_TARGETED_EXPENDED_ENERGY, "Set Targeted Expended Energy",
          _Field("energy_kcal", "u16"))
@dataclass(frozen=True)
class SetTargetedExpendedEnergy(_Message):
    energy_kcal: int


@_message(ControlPointOp.SET_TARGETED_NUMBER_OF_STEPS, "Set Targeted Number of Steps",
          _Field("steps", "u16"))
@dataclass(frozen=True)
class SetTargetedNumberOfSteps(_Message):
    steps: int


@_message(ControlPointOp.SET_TARGETED_NUMBER_OF_STRIDES, "Set Targeted Number of Strides",
          _Field("strides", "u16"))
@dataclass(frozen=True)
class SetTargetedNumberOfStrides(_Message):
    strides: int


@_message(ControlPointOp.SET_TARGETED_DISTANCE, "Set Targeted Distance",
          _Field("distance_m", "u24"))
@dataclass(frozen=True)
class SetTargetedDistance(_Message):
    distance_m: int


@_message(ControlPointOp.SET_TARGETED_TRAINING_TIME, "Set Targeted Training Time",
          _Field("time_s", "u16"))
@dataclass(frozen=True)
class SetTargetedTrainingTime(_Message):
    time_s: int


def _zones(n: int) -> tuple[_Field, ...]:
    names = {2: ("fat_burn", "fitness"), 3: ("light", "moderate", "hard"),
             5: ("very_light", "light", "moderate", "hard", "maximum")}[n]
    return tuple(_Field(f"{name}_s", "u16") for name in names)


@_message(ControlPointOp.SET_TARGETED_TIME_IN_TWO_HR_ZONES, "Set Targeted Time in Two HR Zones",
          *_zones(2))
@dataclass(frozen=True)
class SetTargetedTimeInTwoHeartRateZones(_Message):
    fat_burn_s: int
    fitness_s: int


@_message(ControlPointOp.SET_TARGETED_TIME_IN_THREE_HR_ZONES,
          "Set Targeted Time in Three HR Zones", *_zones(3))
@dataclass(frozen=True)
class SetTargetedTimeInThreeHeartRateZones(_Message):
    light_s: int
    moderate_s: int
    hard_s: int


@_message(ControlPointOp.SET_TARGETED_TIME_IN_FIVE_HR_ZONES,
          "Set Targeted Time in Five HR Zones", *_zones(5))
@dataclass(frozen=True)
class SetTargetedTimeInFiveHeartRateZones(_Message):
    very_light_s: int
    light_s: int
    moderate_s: int
    hard_s: int
    maximum_s: int


@_message(ControlPointOp.SET_INDOOR_BIKE_SIMULATION, "Set Indoor Bike Simulation Parameters",
          _Field("wind_speed_m_per_s", "s16", 1000), _Field("grade_pct", "s16", 100),
          _Field("rolling_resistance_coefficient", "u8", 10000),
          _Field("wind_resistance_coefficient_kg_per_m", "u8", 100))
@dataclass(frozen=True)
class SetIndoorBikeSimulation(_Message):
    wind_speed_m_per_s: float
    grade_pct: float
    rolling_resistance_coefficient: float
    wind_resistance_coefficient_kg_per_m: float


@_message(ControlPointOp.SET_WHEEL_CIRCUMFERENCE, "Set Wheel Circumference",
          _Field("circumference_mm", "u16", 10))
@dataclass(frozen=True)
class SetWheelCircumference(_Message):
    circumference_mm: float


@_message(ControlPointOp.SPIN_DOWN_CONTROL, "Spin Down Control",
          _Field("control", "u8", enum=SpinDown))
@dataclass(frozen=True)
class SpinDownControl(_Message):
    control: SpinDown


@_message(ControlPointOp.SET_TARGETED_CADENCE, "Set Targeted Cadence",
          _Field("cadence_per_min", "u16", 2))
@dataclass(frozen=True)
class SetTargetedCadence(_Message):
    cadence_per_min: float


ControlPointRequest = (
    RequestControl | Reset | SetTargetSpeed | SetTargetInclination | SetTargetResistanceLevel
    | SetTargetPower | SetTargetHeartRate | StartOrResume | StopOrPause
    | SetTargetedExpendedEnergy | SetTargetedNumberOfSteps | SetTargetedNumberOfStrides
    | SetTargetedDistance | SetTargetedTrainingTime | SetTargetedTimeInTwoHeartRateZones
    | SetTargetedTimeInThreeHeartRateZones | SetTargetedTimeInFiveHeartRateZones
    | SetIndoorBikeSimulation | SetWheelCircumference | SpinDownControl | SetTargetedCadence
)

REQUEST_TYPES: dict[int, type[Any]] = {
    cls.op: cls for cls in ControlPointRequest.__args__  # type: ignore[attr-defined]
}
"""Every control point request type by op code."""


def _encode_message(message: Any) -> bytes:
    what = type(message).title
    return _pack("u8", int(message.op), what, "op code") + _encode_fields(
        message, type(message)._fields, what)


def _decode_message(cls: type[Any], reader: _Reader) -> Any:
    return cls(**_decode_fields(reader, cls._fields))


def _on_wire(f: _Field, raw: int) -> int | bytes:
    """A raw value as its struct code takes it (a uint24 as three bytes)."""
    return raw.to_bytes(3, "little") if f.kind == "u24" else raw


def encode_control_point(request: ControlPointRequest) -> bytes:
    return _encode_message(request)


@_remembered
def decode_control_point(data: bytes) -> ControlPointRequest:
    """Decode a control point write (the server side).

    An op code this codec does not know raises :class:`UnsupportedOpCodeError` (answer
    "op code not supported"); missing or surplus parameter bytes and invalid parameter
    values raise :class:`CodecError` (answer "invalid parameter").
    """
    reader = _Reader(data, "Fitness Machine Control Point")
    op = reader.int("u8", "Op Code")
    cls = REQUEST_TYPES.get(op)
    if cls is None:
        raise UnsupportedOpCodeError(
            f"Fitness Machine Control Point: unknown op code 0x{op:02x}", op)
    reader.what = f"Fitness Machine Control Point ({cls.title})"
    request = _decode_message(cls, reader)
    if reader.remaining:
        raise CodecError(f"{reader.what}: {reader.remaining} unexpected parameter byte(s) "
                         f"({bytes(data).hex()})")
    return request  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ControlPointResponse:
    """The server's Response Code indication: ``[0x80, request op, result, params...]``.

    ``request_op`` and ``result`` are plain ints when the value is outside the known
    op codes / result codes (a server may answer an op code we do not know).
    """

    request_op: ControlPointOp | int
    result: ResultCode | int
    parameter: bytes = b""

    @property
    def ok(self) -> bool:
        return self.result == ResultCode.SUCCESS


def encode_control_point_response(response: ControlPointResponse) -> bytes:
    what = "Control Point Response"
    return (bytes([ControlPointOp.RESPONSE_CODE])
            + _pack("u8", int(response.request_op), what, "request op code")
            + _pack("u8", int(response.result), what, "result code") + response.parameter)


@_remembered
def decode_control_point_response(data: bytes) -> ControlPointResponse:
    reader = _Reader(data, "Control Point Response")
    code = reader.int("u8", "Response Code op code")
    if code != ControlPointOp.RESPONSE_CODE:
        raise CodecError(f"Control Point Response: expected op code 0x80, got 0x{code:02x} "
                         f"({bytes(data).hex()})")
    op_raw = reader.int("u8", "Request Op Code")
    result_raw = reader.int("u8", "Result Code")
    op: ControlPointOp | int
    result: ResultCode | int
    try:
        op = ControlPointOp(op_raw)
    except ValueError:
        op = op_raw
    try:
        result = ResultCode(result_raw)
    except ValueError:
        result = result_raw
    parameter = reader.rest()
    allowed = response_parameter_sizes(op, result)
    if allowed is not None and len(parameter) not in allowed:
        raise CodecError(
            f"Control Point Response: malformed answer to op code 0x{op_raw:02x}: "
            f"{len(parameter)} parameter byte(s) where FTMS allows "
            f"{' or '.join(map(str, sorted(allowed)))} ({bytes(data).hex()})")
    return ControlPointResponse(op, result, parameter)


def response_parameter_sizes(request_op: ControlPointOp | int,
                             result: ResultCode | int) -> frozenset[int] | None:
    """How many parameter bytes a Response Code may carry after ``[0x80, op, result]``.

    FTMS gives a response parameter to one procedure only: a successful Spin Down Control
    (Start) answers with the target speed low and high (two uint16); every other answer
    carries none. ``None`` for op codes the specification reserves (nothing to check).
    """
    if request_op not in _REQUEST_OPS:
        return None
    if request_op == ControlPointOp.SPIN_DOWN_CONTROL and result == ResultCode.SUCCESS:
        return _NONE_OR_SPEEDS
    return _NO_PARAMETER


_REQUEST_OPS = frozenset(ControlPointOp) - {ControlPointOp.RESPONSE_CODE}
_NO_PARAMETER = frozenset({0})
_NONE_OR_SPEEDS = frozenset({0, 4})


# --------------------------------------------------------------------------- machine status


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
