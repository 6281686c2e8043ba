"""Fitness Machine Control Point (0x2AD9): one class per request op code and the
server's Response Code indication."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from retrotread.errors import CodecError, UnsupportedOpCodeError
from retrotread.ftms.codec._fields import (
    _decode_fields,
    _encode_fields,
    _Field,
    _pack,
    _Reader,
    _remembered,
)


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
