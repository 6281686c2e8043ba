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

The parts: ``_fields`` (the reader, fields and packing every part uses), ``feature``,
``training_status``, ``treadmill_data``, ``control_point`` and ``machine_status``; every
public name is here, so ``from retrotread.ftms import codec`` then ``codec.X`` reads any of them.
"""

from retrotread.ftms.codec._fields import (
    NOT_AVAILABLE,
)
from retrotread.ftms.codec.control_point import (
    REQUEST_TYPES,
    ControlPointOp,
    ControlPointRequest,
    ControlPointResponse,
    RequestControl,
    Reset,
    ResultCode,
    SetIndoorBikeSimulation,
    SetTargetedCadence,
    SetTargetedDistance,
    SetTargetedExpendedEnergy,
    SetTargetedNumberOfSteps,
    SetTargetedNumberOfStrides,
    SetTargetedTimeInFiveHeartRateZones,
    SetTargetedTimeInThreeHeartRateZones,
    SetTargetedTimeInTwoHeartRateZones,
    SetTargetedTrainingTime,
    SetTargetHeartRate,
    SetTargetInclination,
    SetTargetPower,
    SetTargetResistanceLevel,
    SetTargetSpeed,
    SetWheelCircumference,
    SpinDown,
    SpinDownControl,
    StartOrResume,
    StopOrPause,
    StopPause,
    decode_control_point,
    decode_control_point_response,
    encode_control_point,
    encode_control_point_response,
    response_parameter_sizes,
)
from retrotread.ftms.codec.feature import (
    FitnessMachineFeature,
    InclinationRange,
    MachineFeature,
    SpeedRange,
    TargetSettingFeature,
    decode_feature,
    decode_inclination_range,
    decode_speed_range,
    encode_feature,
    encode_inclination_range,
    encode_speed_range,
)
from retrotread.ftms.codec.machine_status import (
    STATUS_TYPES,
    ControlPermissionLost,
    IndoorBikeSimulationChanged,
    MachineStatus,
    OtherStatus,
    SpinDownStatus,
    StartedOrResumedByUser,
    StatusOp,
    StatusReset,
    StoppedBySafetyKey,
    StoppedOrPausedByUser,
    TargetedCadenceChanged,
    TargetedDistanceChanged,
    TargetedExpendedEnergyChanged,
    TargetedNumberOfStepsChanged,
    TargetedNumberOfStridesChanged,
    TargetedTimeInFiveHeartRateZonesChanged,
    TargetedTimeInThreeHeartRateZonesChanged,
    TargetedTimeInTwoHeartRateZonesChanged,
    TargetedTrainingTimeChanged,
    TargetHeartRateChanged,
    TargetInclineChanged,
    TargetPowerChanged,
    TargetResistanceLevelChanged,
    TargetSpeedChanged,
    WheelCircumferenceChanged,
    decode_status,
    encode_status,
)
from retrotread.ftms.codec.training_status import (
    TrainingStatus,
    TrainingStatusCode,
    decode_training_status,
    encode_training_status,
)
from retrotread.ftms.codec.treadmill_data import (
    PACE_WIDTH_UINT8,
    PACE_WIDTH_UINT16,
    TreadmillData,
    TreadmillDataAssembler,
    decode_treadmill_data,
    encode_treadmill_data,
    split_treadmill_data,
)

__all__ = [
    "NOT_AVAILABLE",
    "PACE_WIDTH_UINT8",
    "PACE_WIDTH_UINT16",
    "REQUEST_TYPES",
    "STATUS_TYPES",
    "ControlPermissionLost",
    "ControlPointOp",
    "ControlPointRequest",
    "ControlPointResponse",
    "FitnessMachineFeature",
    "InclinationRange",
    "IndoorBikeSimulationChanged",
    "MachineFeature",
    "MachineStatus",
    "OtherStatus",
    "RequestControl",
    "Reset",
    "ResultCode",
    "SetIndoorBikeSimulation",
    "SetTargetHeartRate",
    "SetTargetInclination",
    "SetTargetPower",
    "SetTargetResistanceLevel",
    "SetTargetSpeed",
    "SetTargetedCadence",
    "SetTargetedDistance",
    "SetTargetedExpendedEnergy",
    "SetTargetedNumberOfSteps",
    "SetTargetedNumberOfStrides",
    "SetTargetedTimeInFiveHeartRateZones",
    "SetTargetedTimeInThreeHeartRateZones",
    "SetTargetedTimeInTwoHeartRateZones",
    "SetTargetedTrainingTime",
    "SetWheelCircumference",
    "SpeedRange",
    "SpinDown",
    "SpinDownControl",
    "SpinDownStatus",
    "StartOrResume",
    "StartedOrResumedByUser",
    "StatusOp",
    "StatusReset",
    "StopOrPause",
    "StopPause",
    "StoppedBySafetyKey",
    "StoppedOrPausedByUser",
    "TargetHeartRateChanged",
    "TargetInclineChanged",
    "TargetPowerChanged",
    "TargetResistanceLevelChanged",
    "TargetSettingFeature",
    "TargetSpeedChanged",
    "TargetedCadenceChanged",
    "TargetedDistanceChanged",
    "TargetedExpendedEnergyChanged",
    "TargetedNumberOfStepsChanged",
    "TargetedNumberOfStridesChanged",
    "TargetedTimeInFiveHeartRateZonesChanged",
    "TargetedTimeInThreeHeartRateZonesChanged",
    "TargetedTimeInTwoHeartRateZonesChanged",
    "TargetedTrainingTimeChanged",
    "TrainingStatus",
    "TrainingStatusCode",
    "TreadmillData",
    "TreadmillDataAssembler",
    "WheelCircumferenceChanged",
    "decode_control_point",
    "decode_control_point_response",
    "decode_feature",
    "decode_inclination_range",
    "decode_speed_range",
    "decode_status",
    "decode_training_status",
    "decode_treadmill_data",
    "encode_control_point",
    "encode_control_point_response",
    "encode_feature",
    "encode_inclination_range",
    "encode_speed_range",
    "encode_status",
    "encode_training_status",
    "encode_treadmill_data",
    "response_parameter_sizes",
    "split_treadmill_data",
]
