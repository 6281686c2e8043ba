"""Tests of the FTMS codec (retrotread.ftms.codec).

The byte vectors below are worked out by hand from the layouts in
``docs/ftms.md`` (little-endian everywhere), not produced by the codec; each
byte is explained in a comment. Round-trip and fuzz properties use Hypothesis.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrotread.errors import CodecError, UnsupportedOpCodeError
from retrotread.ftms import codec
from retrotread.ftms.codec import (
    PACE_WIDTH_UINT8,
    PACE_WIDTH_UINT16,
    ControlPermissionLost,
    ControlPointOp,
    ControlPointResponse,
    FitnessMachineFeature,
    InclinationRange,
    MachineFeature,
    OtherStatus,
    RequestControl,
    Reset,
    ResultCode,
    SetTargetInclination,
    SetTargetPower,
    SetTargetSpeed,
    SpeedRange,
    StartedOrResumedByUser,
    StartOrResume,
    StatusReset,
    StopOrPause,
    StopPause,
    StoppedBySafetyKey,
    StoppedOrPausedByUser,
    TargetInclineChanged,
    TargetSettingFeature,
    TargetSpeedChanged,
    TrainingStatus,
    TrainingStatusCode,
    TreadmillData,
    TreadmillDataAssembler,
    control_point,
    treadmill_data,
)


def h(text: str) -> bytes:
    """Bytes from a spaced hex string: ``h("02 e6 00")``."""
    return bytes.fromhex(text)


# =========================================================================== 1. vectors
# --------------------------------------------------------------------------- control point


def test_set_target_speed_2_3_kmh() -> None:
    # 02    op code Set Target Speed
    # e6 00 uint16 LE 0x00e6 = 230 -> 230 * 0.01 km/h = 2.30 km/h
    # 2.3 * 100 is 229.99999999999997 in binary floating point: truncation would give 229.
    assert codec.encode_control_point(SetTargetSpeed(2.3)) == h("02 e6 00")
    assert codec.decode_control_point(h("02 e6 00")) == SetTargetSpeed(2.3)


@pytest.mark.parametrize(
    ("speed_kmh", "raw"),
    [
        (2.3, 230),  # 229.99999999999997
        (0.29, 29),  # 28.999999999999996
        (1.15, 115),  # 114.99999999999999
        (4.35, 435),  # 434.99999999999994
        (8.2, 820),  # 819.9999999999999
        (1.005, 100),  # the double 1.005 is 1.00499999999999989..., nearest is 100
        (1.006, 101),  # 100.6 rounds up (truncation would give 100)
        (0.004, 0),
        (655.35, 0xFFFF),  # the largest speed the uint16 can carry
    ],
)
def test_speed_is_rounded_not_truncated(speed_kmh: float, raw: int) -> None:
    # 02 = Set Target Speed, then the uint16 little-endian raw value in 0.01 km/h.
    assert codec.encode_control_point(SetTargetSpeed(speed_kmh)) == (
        b"\x02" + raw.to_bytes(2, "little"))


def test_every_uint16_speed_survives_the_float_round_trip() -> None:
    # For every raw value r, r / 100 must go out as r again (never r - 1).
    for raw in range(0x10000):
        assert codec.encode_control_point(SetTargetSpeed(raw / 100))[1:] == (
            raw.to_bytes(2, "little")), raw


def test_every_sint16_inclination_survives_the_float_round_trip() -> None:
    for raw in range(-0x8000, 0x8000):
        assert codec.encode_control_point(SetTargetInclination(raw / 10))[1:] == (
            raw.to_bytes(2, "little", signed=True)), raw


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (RequestControl(), "00"),  # 00 = Request Control, no parameter
        (Reset(), "01"),  # 01 = Reset, no parameter
        (StartOrResume(), "07"),  # 07 = Start or Resume, no parameter
        # 08 = Stop or Pause; parameter uint8 01 = stop (the spec table, not swapped)
        (StopOrPause(StopPause.STOP), "08 01"),
        # 08 = Stop or Pause; parameter uint8 02 = pause
        (StopOrPause(StopPause.PAUSE), "08 02"),
        # 03 = Set Target Inclination; sint16 -15 = 0xfff1 -> f1 ff; -15 * 0.1 % = -1.5 %
        (SetTargetInclination(-1.5), "03 f1 ff"),
        # 03; sint16 +150 = 0x0096 -> 96 00 = 15.0 %
        (SetTargetInclination(15.0), "03 96 00"),
        # 02 = Set Target Speed; 0x07d0 = 2000 -> 20.00 km/h
        (SetTargetSpeed(20.0), "02 d0 07"),
        # 05 = Set Target Power; sint16 -2 W = 0xfffe
        (SetTargetPower(-2), "05 fe ff"),
    ],
)
def test_control_point_vectors(message: Any, wire: str) -> None:
    assert codec.encode_control_point(message) == h(wire)
    decoded = codec.decode_control_point(h(wire))
    assert decoded == message
    assert type(decoded) is type(message)


def test_stop_pause_constants_match_the_spec_table() -> None:
    assert StopPause.STOP == 0x01
    assert StopPause.PAUSE == 0x02
    assert ControlPointOp.REQUEST_CONTROL == 0x00
    assert ControlPointOp.RESET == 0x01
    assert ControlPointOp.SET_TARGET_SPEED == 0x02
    assert ControlPointOp.SET_TARGET_INCLINATION == 0x03
    assert ControlPointOp.START_OR_RESUME == 0x07
    assert ControlPointOp.STOP_OR_PAUSE == 0x08
    assert ControlPointOp.RESPONSE_CODE == 0x80
    assert codec.decode_control_point(h("08 01")).action is StopPause.STOP  # type: ignore[union-attr]
    assert codec.decode_control_point(h("08 02")).action is StopPause.PAUSE  # type: ignore[union-attr]


def test_result_codes_match_the_spec_table() -> None:
    assert [(c.name, c.value) for c in ResultCode] == [
        ("SUCCESS", 1), ("OP_CODE_NOT_SUPPORTED", 2), ("INVALID_PARAMETER", 3),
        ("OPERATION_FAILED", 4), ("CONTROL_NOT_PERMITTED", 5)]


# --------------------------------------------------------------------------- response


def test_response_success() -> None:
    # 80 = Response Code, 02 = the request was Set Target Speed, 01 = success
    response = codec.decode_control_point_response(h("80 02 01"))
    assert response.request_op is ControlPointOp.SET_TARGET_SPEED
    assert response.result is ResultCode.SUCCESS
    assert response.parameter == b""
    assert response.ok
    assert codec.encode_control_point_response(response) == h("80 02 01")


def test_response_unknown_result_is_kept_as_int() -> None:
    # 80 = Response Code, 08 = Stop or Pause, 09 = a result code the spec does not define
    response = codec.decode_control_point_response(h("80 08 09"))
    assert response.request_op is ControlPointOp.STOP_OR_PAUSE
    assert response.result == 9
    assert type(response.result) is int
    assert not response.ok


def test_response_unknown_request_op_and_parameter_are_kept() -> None:
    # 80, 55 = an op code we do not know, 02 = op code not supported, aa bb = parameters
    response = codec.decode_control_point_response(h("80 55 02 aa bb"))
    assert response.request_op == 0x55
    assert type(response.request_op) is int
    assert response.result is ResultCode.OP_CODE_NOT_SUPPORTED
    assert response.parameter == h("aa bb")


def test_response_must_start_with_0x80() -> None:
    with pytest.raises(CodecError, match="0x80"):
        codec.decode_control_point_response(h("81 02 01"))


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("01", StatusReset()),  # 01 = Reset
        ("02 01", StoppedOrPausedByUser(StopPause.STOP)),  # 02 = by user, 01 = stop
        ("02 02", StoppedOrPausedByUser(StopPause.PAUSE)),  # 02 = by user, 02 = pause
        ("03", StoppedBySafetyKey()),  # 03 = safety key
        ("04", StartedOrResumedByUser()),  # 04 = started or resumed
        # 05 = Target Speed Changed; 0x012c = 300 -> 3.00 km/h
        ("05 2c 01", TargetSpeedChanged(3.0)),
        # 06 = Target Incline Changed; sint16 0xffce = -50 -> -5.0 %
        ("06 ce ff", TargetInclineChanged(-5.0)),
        ("ff", ControlPermissionLost()),  # ff = Control Permission Lost
        # 30 = reserved op code: kept with its parameter bytes, never an error
        ("30", OtherStatus(0x30)),
        ("30 01 02", OtherStatus(0x30, h("01 02"))),
    ],
)
def test_status_vectors(wire: str, expected: Any) -> None:
    decoded = codec.decode_status(h(wire))
    assert decoded == expected
    assert type(decoded) is type(expected)
    assert codec.encode_status(expected) == h(wire)


def test_status_with_stray_byte_is_still_recognised() -> None:
    # 03 = Stopped by Safety Key, 00 = a stray byte some machines append
    assert codec.decode_status(h("03 00")) == StoppedBySafetyKey()


def test_other_status_cannot_hide_a_known_op() -> None:
    with pytest.raises(CodecError):
        codec.encode_status(OtherStatus(0x05, h("2c 01")))


# --------------------------------------------------------------------------- training status


def test_training_status_idle() -> None:
    # 00 = flags (no string), 01 = Idle
    assert codec.decode_training_status(h("00 01")) == TrainingStatus(TrainingStatusCode.IDLE)
    assert codec.encode_training_status(TrainingStatus(TrainingStatusCode.IDLE)) == h("00 01")


def test_training_status_with_string() -> None:
    # 01 = flags bit 0 (string present), 0d = Manual Mode (Quick Start), then UTF-8 "Quick"
    wire = h("01 0d") + b"Quick"
    status = codec.decode_training_status(wire)
    assert status.status is TrainingStatusCode.MANUAL_MODE
    assert status.text == "Quick"
    assert not status.extended_string
    assert codec.encode_training_status(status) == wire


def test_training_status_codes_match_the_spec() -> None:
    # GATT Specification Supplement, Training Status field (public implementations agree):
    # 0x0B Cool Down, 0x0D Manual Mode (Quick Start), 0x0E Pre-Workout, 0x0F Post-Workout.
    assert TrainingStatusCode.OTHER == 0x00
    assert TrainingStatusCode.IDLE == 0x01
    assert TrainingStatusCode.WARMING_UP == 0x02
    assert TrainingStatusCode.COOL_DOWN == 0x0B
    assert TrainingStatusCode.MANUAL_MODE == 0x0D
    assert TrainingStatusCode.PRE_WORKOUT == 0x0E
    assert TrainingStatusCode.POST_WORKOUT == 0x0F


def test_training_status_reserved_code_and_extended_flag() -> None:
    # 03 = flags: string present + extended string; 42 = a reserved status; "ab"
    status = codec.decode_training_status(h("03 42 61 62"))
    assert status == TrainingStatus(0x42, "ab", extended_string=True)
    assert type(status.status) is int


def test_training_status_invalid_utf8() -> None:
    with pytest.raises(CodecError, match="Training Status"):
        codec.decode_training_status(h("01 01 ff fe"))


# --------------------------------------------------------------------------- ranges, feature


def test_speed_range_vector() -> None:
    # 32 00 = 50 -> 0.50 km/h min; d0 07 = 2000 -> 20.00 km/h max; 0a 00 = 10 -> 0.10 step
    value = codec.decode_speed_range(h("32 00 d0 07 0a 00"))
    assert value == SpeedRange(0.5, 20.0, 0.1)
    assert codec.encode_speed_range(value) == h("32 00 d0 07 0a 00")


def test_inclination_range_with_negative_minimum() -> None:
    # e2 ff = sint16 -30 -> -3.0 %; 96 00 = 150 -> 15.0 %; 05 00 = 5 -> 0.5 % step
    value = codec.decode_inclination_range(h("e2 ff 96 00 05 00"))
    assert value == InclinationRange(-3.0, 15.0, 0.5)
    assert codec.encode_inclination_range(value) == h("e2 ff 96 00 05 00")


def test_feature_vector() -> None:
    # machine features uint32: bit 0 average speed + bit 2 total distance = 0x05
    # target setting features uint32: bit 0 speed target = 0x01
    wire = h("05 00 00 00 01 00 00 00")
    feature = codec.decode_feature(wire)
    assert feature.machine == MachineFeature.AVERAGE_SPEED | MachineFeature.TOTAL_DISTANCE
    assert feature.target == TargetSettingFeature.SPEED
    assert MachineFeature.INCLINATION not in feature.machine
    assert codec.encode_feature(feature) == wire


def test_feature_bits_of_a_typical_treadmill() -> None:
    # machine: 0x0000140C = bit 2 total distance, bit 3 inclination, bit 10 heart rate,
    # bit 12 elapsed time; target: 0x00000003 = speed + inclination targets
    feature = codec.decode_feature(h("0c 14 00 00 03 00 00 00"))
    assert feature.machine == (MachineFeature.TOTAL_DISTANCE | MachineFeature.INCLINATION
                               | MachineFeature.HEART_RATE | MachineFeature.ELAPSED_TIME)
    assert feature.target == TargetSettingFeature.SPEED | TargetSettingFeature.INCLINATION


def test_feature_reserved_bits_are_kept() -> None:
    feature = codec.decode_feature(h("00 00 00 80 00 00 00 80"))
    assert int(feature.machine) == 0x8000_0000
    assert int(feature.target) == 0x8000_0000
    assert codec.encode_feature(feature) == h("00 00 00 80 00 00 00 80")


# --------------------------------------------------------------------------- treadmill data


def test_treadmill_data_distance_and_time() -> None:
    # 04 04    flags 0x0404: bit 2 total distance, bit 10 elapsed time; bit 0 clear, so
    #          the Instantaneous Speed is present
    # 2c 01    speed 0x012c = 300 -> 3.00 km/h
    # 64 00 00 total distance uint24 = 100 m
    # 1e 00    elapsed time 30 s
    wire = h("04 04 2c 01 64 00 00 1e 00")
    data = codec.decode_treadmill_data(wire)
    assert data == TreadmillData(speed_kmh=3.0, total_distance_m=100, elapsed_time_s=30)
    assert codec.encode_treadmill_data(data) == wire


FULL_RECORD_WIRE = h(
    "fe 3f"  # flags 0x3ffe: bits 1..13 set, bit 0 clear (speed present)
    " f4 01"  # Instantaneous Speed 500 -> 5.00 km/h
    " c2 01"  # bit 1  Average Speed 450 -> 4.50 km/h
    " d2 04 00"  # bit 2  Total Distance uint24 1234 m
    " f1 ff 14 00"  # bit 3  Inclination -15 -> -1.5 %, Ramp Angle 20 -> 2.0 degrees
    " 7b 00 05 00"  # bit 4  Elevation Gain +123 -> 12.3 m, -5 -> 0.5 m
    " 0c"  # bit 5  Instantaneous Pace uint8 12 -> 1.2 km/min
    " 0b"  # bit 6  Average Pace uint8 11 -> 1.1 km/min
    " 64 00 ff ff ff"  # bit 7  Energy: total 100 kcal, per hour 0xffff and per minute 0xff
    #                     "Data Not Available": unknown, never a number
    " 78"  # bit 8  Heart Rate 120 bpm
    " 23"  # bit 9  Metabolic Equivalent 35 -> 3.5
    " 58 02"  # bit 10 Elapsed Time 600 s
    " b0 04"  # bit 11 Remaining Time 1200 s
    " f6 ff 32 00"  # bit 12 Force on Belt -10 N, Power Output 50 W
    " 70 11 01"  # bit 13 Step Count uint24 0x011170 = 70000
)
FULL_RECORD = TreadmillData(
    speed_kmh=5.0, average_speed_kmh=4.5, total_distance_m=1234, inclination_pct=-1.5,
    ramp_angle_deg=2.0, positive_elevation_gain_m=12.3, negative_elevation_gain_m=0.5,
    instantaneous_pace_km_per_min=1.2, average_pace_km_per_min=1.1, total_energy_kcal=100,
    unavailable=frozenset({"energy_per_hour_kcal", "energy_per_minute_kcal"}), heart_rate_bpm=120,
    metabolic_equivalent=3.5, elapsed_time_s=600, remaining_time_s=1200, force_on_belt_n=-10,
    power_output_w=50, step_count=70000,
)


def test_treadmill_data_full_record() -> None:
    assert len(FULL_RECORD_WIRE) == 37
    assert codec.decode_treadmill_data(FULL_RECORD_WIRE) == FULL_RECORD
    assert codec.encode_treadmill_data(FULL_RECORD) == FULL_RECORD_WIRE


def test_treadmill_data_more_data_without_speed() -> None:
    # 05 00    flags 0x0005: bit 0 More Data (so no speed), bit 2 total distance
    # e8 03 00 total distance 1000 m
    data = codec.decode_treadmill_data(h("05 00 e8 03 00"))
    assert data == TreadmillData(more_data=True, total_distance_m=1000)
    assert data.speed_kmh is None
    assert codec.encode_treadmill_data(data) == h("05 00 e8 03 00")


def test_treadmill_data_negative_inclination() -> None:
    # 08 00 flags bit 3; 2c 01 = 3.00 km/h; ce ff = -50 -> -5.0 %; 00 00 ramp angle 0.0
    data = codec.decode_treadmill_data(h("08 00 2c 01 ce ff 00 00"))
    assert data == TreadmillData(speed_kmh=3.0, inclination_pct=-5.0, ramp_angle_deg=0.0)


def test_treadmill_data_heart_rate() -> None:
    # 00 01 flags 0x0100 = bit 8 heart rate; 2c 01 = 3.00 km/h; 8c = 140 bpm
    data = codec.decode_treadmill_data(h("00 01 2c 01 8c"))
    assert data == TreadmillData(speed_kmh=3.0, heart_rate_bpm=140)


def test_treadmill_data_step_count_bit_13() -> None:
    # 00 20 flags 0x2000 = bit 13 (vendor step count); 2c 01 speed; 10 27 00 = 10000 steps
    data = codec.decode_treadmill_data(h("00 20 2c 01 10 27 00"))
    assert data == TreadmillData(speed_kmh=3.0, step_count=10000)
    assert data.unknown_flags == 0


def test_treadmill_data_pace_width_changes_the_reading() -> None:
    # 20 00 flags bit 5 Instantaneous Pace; 2c 01 = 3.00 km/h; then 0c 01
    wire = h("20 00 2c 01 0c 01")
    narrow = codec.decode_treadmill_data(wire, PACE_WIDTH_UINT8)
    # uint8: pace 0x0c = 12 -> 1.2 km/min, and 01 is a trailing byte
    assert narrow.instantaneous_pace_km_per_min == 1.2
    assert narrow.extra_bytes == h("01")
    wide = codec.decode_treadmill_data(wire, PACE_WIDTH_UINT16)
    # uint16: pace 0x010c = 268 -> 26.8 km/min, nothing left over
    assert wide.instantaneous_pace_km_per_min == 26.8
    assert wide.extra_bytes == b""
    assert codec.encode_treadmill_data(narrow, PACE_WIDTH_UINT8) == wire
    assert codec.encode_treadmill_data(wide, PACE_WIDTH_UINT16) == wire


def test_treadmill_data_wrong_pace_width_is_detected() -> None:
    # 20 01 flags bit 5 pace + bit 8 heart rate; 2c 01 speed; 0c pace (uint8); 78 = 120 bpm
    wire = h("20 01 2c 01 0c 78")
    assert codec.decode_treadmill_data(wire, PACE_WIDTH_UINT8) == TreadmillData(
        speed_kmh=3.0, instantaneous_pace_km_per_min=1.2, heart_rate_bpm=120)
    # read as uint16 the pace swallows the heart rate, which is then missing
    with pytest.raises(CodecError, match="Heart Rate"):
        codec.decode_treadmill_data(wire, PACE_WIDTH_UINT16)
    # and a uint16 pace cut short is reported as such
    with pytest.raises(CodecError, match="Instantaneous Pace"):
        codec.decode_treadmill_data(h("20 00 2c 01 0c"), PACE_WIDTH_UINT16)


def test_treadmill_data_invalid_pace_width() -> None:
    with pytest.raises(CodecError, match="pace width"):
        codec.decode_treadmill_data(h("20 00 2c 01 0c"), 3)


def test_treadmill_data_reserved_flags_are_kept() -> None:
    # 00 c0 flags 0xc000: reserved bits 14 and 15; 2c 01 speed
    data = codec.decode_treadmill_data(h("00 c0 2c 01"))
    assert data == TreadmillData(speed_kmh=3.0, unknown_flags=0xC000)
    assert codec.encode_treadmill_data(data) == h("00 c0 2c 01")


def test_treadmill_data_trailing_bytes_are_kept() -> None:
    # 00 00 flags; 2c 01 speed; aa bb left over
    data = codec.decode_treadmill_data(h("00 00 2c 01 aa bb"))
    assert data == TreadmillData(speed_kmh=3.0, extra_bytes=h("aa bb"))
    assert codec.encode_treadmill_data(data) == h("00 00 2c 01 aa bb")


def test_treadmill_data_all_zero_packet() -> None:
    # 00 00 flags (nothing but speed); 00 00 speed 0 km/h
    data = codec.decode_treadmill_data(h("00 00 00 00"))
    assert data == TreadmillData(speed_kmh=0.0)


def test_treadmill_data_encoder_rejects_inconsistent_records() -> None:
    with pytest.raises(CodecError, match="speed_kmh"):
        codec.encode_treadmill_data(TreadmillData())  # complete record without speed
    with pytest.raises(CodecError, match="partial"):
        codec.encode_treadmill_data(TreadmillData(more_data=True, speed_kmh=1.0))
    with pytest.raises(CodecError, match="ramp_angle_deg"):  # half of a shared flag bit
        codec.encode_treadmill_data(TreadmillData(speed_kmh=1.0, inclination_pct=1.0))
    with pytest.raises(CodecError, match="unknown_flags"):
        codec.encode_treadmill_data(TreadmillData(speed_kmh=1.0, unknown_flags=0x0004))


# =========================================================================== 2. split, merge


def test_split_full_record_into_20_byte_notifications() -> None:
    packets = codec.split_treadmill_data(FULL_RECORD, max_len=20)
    assert len(packets) >= 2  # 37 bytes cannot go in one 20-byte notification
    for packet in packets:
        assert len(packet) <= 20
    for packet in packets[:-1]:
        assert packet[0] & 0x01  # More Data set
        part = codec.decode_treadmill_data(packet)
        assert part.more_data
        assert part.speed_kmh is None
    last = codec.decode_treadmill_data(packets[-1])
    assert not packets[-1][0] & 0x01
    assert not last.more_data
    assert last.speed_kmh == 5.0
    # every flag bit 1..13 appears in exactly one packet
    bits = [int.from_bytes(p[:2], "little") & ~0x0001 for p in packets]
    assert sum(bits) == 0x3FFE
    for i, a in enumerate(bits):
        for b in bits[i + 1:]:
            assert a & b == 0


def test_assembler_merges_split_record() -> None:
    assembler = TreadmillDataAssembler()
    packets = codec.split_treadmill_data(FULL_RECORD, max_len=20)
    results = [assembler.feed(p) for p in packets]
    assert results[:-1] == [None] * (len(packets) - 1)
    assert results[-1] == FULL_RECORD
    # and the next record starts afresh
    assert assembler.feed(h("00 00 2c 01")) == TreadmillData(speed_kmh=3.0)


def test_split_record_that_fits_is_one_packet() -> None:
    record = TreadmillData(speed_kmh=3.0, total_distance_m=100, elapsed_time_s=30)
    assert codec.split_treadmill_data(record) == [h("04 04 2c 01 64 00 00 1e 00")]


def test_split_refuses_partial_record_and_tiny_mtu() -> None:
    with pytest.raises(CodecError):
        codec.split_treadmill_data(TreadmillData(more_data=True, total_distance_m=1))
    with pytest.raises(CodecError):
        codec.split_treadmill_data(FULL_RECORD, max_len=6)


def test_assembler_final_packet_alone_is_a_record() -> None:
    assembler = TreadmillDataAssembler()
    assert assembler.feed(h("04 04 2c 01 64 00 00 1e 00")) == TreadmillData(
        speed_kmh=3.0, total_distance_m=100, elapsed_time_s=30)


def test_assembler_reset_discards_partial_record() -> None:
    assembler = TreadmillDataAssembler()
    # 05 00: More Data + total distance; e8 03 00 = 1000 m
    assert assembler.feed(h("05 00 e8 03 00")) is None
    assembler.reset()  # link lost
    assert assembler.discarded_parts == 1
    record = assembler.feed(h("00 00 2c 01"))
    assert record == TreadmillData(speed_kmh=3.0)
    assert record is not None and record.total_distance_m is None


def test_assembler_pace_width_option() -> None:
    assembler = TreadmillDataAssembler(pace_width=PACE_WIDTH_UINT16)
    # 21 00: More Data + Instantaneous Pace (uint16 0x010c = 268 -> 26.8 km/min)
    assert assembler.feed(h("21 00 0c 01")) is None
    assert assembler.feed(h("00 00 2c 01")) == TreadmillData(
        speed_kmh=3.0, instantaneous_pace_km_per_min=26.8)


def test_assembler_merges_diagnostics() -> None:
    assembler = TreadmillDataAssembler()
    # part 1: flags 0x4001 (More Data + reserved bit 14), trailing aa
    assert assembler.feed(h("01 40 aa")) is None
    # part 2: flags 0x8000 (reserved bit 15), speed 3.00, trailing bb
    assert assembler.feed(h("00 80 2c 01 bb")) == TreadmillData(
        speed_kmh=3.0, unknown_flags=0xC000, extra_bytes=h("aa bb"))


def test_assembler_never_grows_without_bound() -> None:
    assembler = TreadmillDataAssembler()
    count = 10 * assembler.MAX_PARTS + 3
    for _ in range(count):
        # 01 00: More Data, no fields; aa: one trailing byte per partial notification
        assert assembler.feed(h("01 00 aa")) is None
    record = assembler.feed(h("00 00 2c 01"))
    assert record is not None
    held = len(record.extra_bytes)
    assert held <= assembler.MAX_PARTS
    assert held + assembler.discarded_parts == count


# =========================================================================== 3. errors


@pytest.mark.parametrize(
    ("decode", "wire", "substrings"),
    [
        (codec.decode_feature, "", ["Fitness Machine Feature", "Fitness Machine Features"]),
        (codec.decode_feature, "05 00 00 00 01",
         ["Fitness Machine Feature", "Target Setting Features"]),
        (codec.decode_treadmill_data, "04", ["Treadmill Data", "Flags"]),
        (codec.decode_treadmill_data, "00 00 2c", ["Treadmill Data", "Instantaneous Speed"]),
        (codec.decode_treadmill_data, "04 04 2c 01 64 00", ["Treadmill Data", "Total Distance"]),
        (codec.decode_treadmill_data, "04 04 2c 01 64 00 00 1e",
         ["Treadmill Data", "Elapsed Time"]),
        (codec.decode_treadmill_data, "08 00 2c 01 ce ff",
         ["Treadmill Data", "Ramp Angle Setting"]),
        (codec.decode_treadmill_data, "80 00 2c 01 64 00 ff ff",
         ["Treadmill Data", "Energy Per Minute"]),
        (codec.decode_training_status, "", ["Training Status", "Flags"]),
        (codec.decode_training_status, "01", ["Training Status", "truncated at Training Status"]),
        (codec.decode_speed_range, "32 00 d0 07 0a",
         ["Supported Speed Range", "Minimum Increment"]),
        (codec.decode_speed_range, "32", ["Supported Speed Range", "Minimum Speed"]),
        (codec.decode_inclination_range, "e2 ff",
         ["Supported Inclination Range", "Maximum Inclination"]),
        (codec.decode_control_point, "", ["Fitness Machine Control Point", "Op Code"]),
        (codec.decode_control_point, "02 e6",
         ["Fitness Machine Control Point", "Set Target Speed", "speed_kmh"]),
        (codec.decode_control_point, "08", ["Fitness Machine Control Point", "Stop or Pause",
                                            "action"]),
        (codec.decode_control_point_response, "", ["Control Point Response"]),
        (codec.decode_control_point_response, "80 02",
         ["Control Point Response", "Result Code"]),
        (codec.decode_control_point_response, "80",
         ["Control Point Response", "Request Op Code"]),
        (codec.decode_status, "", ["Fitness Machine Status", "Op Code"]),
    ],
)
def test_truncated_input_names_characteristic_and_field(
    decode: Callable[[bytes], object], wire: str, substrings: list[str]
) -> None:
    with pytest.raises(CodecError) as info:
        decode(h(wire))
    message = str(info.value)
    assert "truncated" in message
    for substring in substrings:
        assert substring in message


@pytest.mark.parametrize("op", [0x15, 0x7F, 0x80, 0xFF])
def test_unknown_control_point_op(op: int) -> None:
    with pytest.raises(UnsupportedOpCodeError) as info:
        codec.decode_control_point(bytes([op, 0x01]))
    assert info.value.op_code == op
    assert f"0x{op:02x}" in str(info.value)
    assert isinstance(info.value, CodecError)


@pytest.mark.parametrize("wire", ["00 00", "07 01", "02 e6 00 00", "03 f1 ff ff", "08 01 00"])
def test_extra_control_point_parameter_bytes(wire: str) -> None:
    with pytest.raises(CodecError, match="unexpected parameter"):
        codec.decode_control_point(h(wire))


@pytest.mark.parametrize("wire", ["08 00", "08 03", "08 ff"])
def test_stop_or_pause_invalid_parameter(wire: str) -> None:
    with pytest.raises(CodecError, match="Stop or Pause"):
        codec.decode_control_point(h(wire))




def test_speed_range_min_above_max() -> None:
    # d0 07 = 20.00 km/h min above 32 00 = 0.50 km/h max
    with pytest.raises(CodecError, match="Supported Speed Range"):
        codec.decode_speed_range(h("d0 07 32 00 0a 00"))


def test_inclination_range_min_above_max() -> None:
    # 96 00 = 15.0 % min above e2 ff = -3.0 % max
    with pytest.raises(CodecError, match="Supported Inclination Range"):
        codec.decode_inclination_range(h("96 00 e2 ff 05 00"))


@pytest.mark.parametrize(
    "encode",
    [
        lambda: codec.encode_control_point(SetTargetSpeed(700.0)),
        lambda: codec.encode_control_point(SetTargetSpeed(-1)),
        lambda: codec.encode_control_point(SetTargetSpeed(-0.01)),
        lambda: codec.encode_control_point(SetTargetSpeed(655.36)),
        lambda: codec.encode_control_point(SetTargetSpeed(math.nan)),
        lambda: codec.encode_control_point(SetTargetSpeed(math.inf)),
        lambda: codec.encode_control_point(SetTargetSpeed(1e308)),
        lambda: codec.encode_control_point(SetTargetSpeed("fast")),  # type: ignore[arg-type]
        lambda: codec.encode_control_point(SetTargetSpeed(None)),  # type: ignore[arg-type]
        lambda: codec.encode_control_point(SetTargetInclination(-3276.9)),
        lambda: codec.encode_control_point(SetTargetInclination(3276.8)),
        lambda: codec.encode_control_point(SetTargetPower(1.5)),  # type: ignore[arg-type]
        lambda: codec.encode_control_point(SetTargetPower(40000)),
        lambda: codec.encode_status(TargetSpeedChanged(-3.0)),
        lambda: codec.encode_status(OtherStatus(0x100)),
        lambda: codec.encode_treadmill_data(TreadmillData(speed_kmh=-1.0)),
        lambda: codec.encode_treadmill_data(TreadmillData(speed_kmh=1.0, heart_rate_bpm=256)),
        lambda: codec.encode_treadmill_data(TreadmillData(speed_kmh=1.0,
                                                          total_distance_m=1 << 24)),
        lambda: codec.encode_treadmill_data(
            TreadmillData(speed_kmh=1.0, instantaneous_pace_km_per_min=25.6), PACE_WIDTH_UINT8),
        lambda: codec.encode_treadmill_data(TreadmillData(speed_kmh=1.0,
                                                          unknown_flags=0x10000)),
        lambda: codec.split_treadmill_data(TreadmillData(speed_kmh=700.0)),
        lambda: codec.encode_training_status(TrainingStatus(256)),
        lambda: codec.encode_training_status(TrainingStatus(1, "\ud800")),  # lone surrogate
        lambda: codec.encode_speed_range(SpeedRange(-0.5, 20.0, 0.1)),
        lambda: codec.encode_inclination_range(InclinationRange(-3.0, 15.0, -0.5)),
        lambda: codec.encode_feature(FitnessMachineFeature(MachineFeature(1 << 32))),
        lambda: codec.encode_control_point_response(ControlPointResponse(0x100, 1)),
        lambda: codec.encode_control_point_response(ControlPointResponse(2, -1)),
    ],
)
def test_encoders_reject_values_that_do_not_fit(encode: Callable[[], bytes]) -> None:
    with pytest.raises(CodecError):
        encode()


# =========================================================================== 4. round trips

# Wire ranges written out independently of the codec.
KIND_RANGES: dict[str, tuple[int, int]] = {
    "u8": (0, 0xFF), "s8": (-0x80, 0x7F), "u16": (0, 0xFFFF), "s16": (-0x8000, 0x7FFF),
    "u24": (0, 0xFF_FFFF), "u32": (0, 0xFFFF_FFFF),
}
KIND_SIZES = {"u8": 1, "s8": 1, "u16": 2, "s16": 2, "u24": 3, "u32": 4}


def field_values(kind: str, scale: int = 1,
                 enum_type: type[enum.IntEnum] | None = None) -> st.SearchStrategy[Any]:
    """Values that fit a wire field exactly: raw ints in range, divided by the scale."""
    if enum_type is not None:
        return st.sampled_from(list(enum_type))
    low, high = KIND_RANGES[kind]
    raws = st.integers(low, high)
    if scale == 1:
        return raws
    return raws.map(lambda raw: raw / scale)


def message_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    return st.builds(cls, **{f.name: field_values(f.kind, f.scale, f.enum)
                             for f in cls._fields})


REQUEST_CLASSES = sorted(codec.REQUEST_TYPES.values(), key=lambda cls: cls.op)
STATUS_CLASSES = sorted(codec.STATUS_TYPES.values(), key=lambda cls: cls.op)


def test_type_tables_are_complete() -> None:
    assert sorted(codec.REQUEST_TYPES) == list(range(0x00, 0x15))
    assert sorted(codec.STATUS_TYPES) == [*range(0x01, 0x16), 0xFF]
    for op, cls in [*codec.REQUEST_TYPES.items(), *codec.STATUS_TYPES.items()]:
        assert cls.op == op
        # every dataclass field is on the wire, in declaration order
        # (a status also carries ``problem``, a diagnostic that is never on the wire)
        assert [f.name for f in cls._fields] == [
            name for name in cls.__dataclass_fields__ if name != "problem"]


@pytest.mark.parametrize("cls", REQUEST_CLASSES, ids=lambda cls: cls.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_control_point_round_trip(cls: type[Any], data: st.DataObject) -> None:
    message = data.draw(message_strategy(cls))
    wire = codec.encode_control_point(message)
    assert wire[0] == cls.op
    assert len(wire) == 1 + sum(KIND_SIZES[f.kind] for f in cls._fields)
    decoded = codec.decode_control_point(wire)
    assert type(decoded) is cls
    assert decoded == message


@pytest.mark.parametrize("cls", STATUS_CLASSES, ids=lambda cls: cls.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_status_round_trip(cls: type[Any], data: st.DataObject) -> None:
    message = data.draw(message_strategy(cls))
    wire = codec.encode_status(message)
    assert wire[0] == cls.op
    decoded = codec.decode_status(wire)
    assert type(decoded) is cls
    assert decoded == message


@given(op=st.integers(0, 0xFF).filter(lambda op: op not in codec.STATUS_TYPES),
       parameter=st.binary(max_size=20))
def test_other_status_round_trip(op: int, parameter: bytes) -> None:
    status = OtherStatus(op, parameter)
    assert codec.decode_status(codec.encode_status(status)) == status


@given(request_op=st.integers(0, 0xFF), result=st.integers(0, 0xFF),
       parameter=st.binary(max_size=17))
def test_control_point_response_round_trip(request_op: int, result: int,
                                           parameter: bytes) -> None:
    allowed = codec.response_parameter_sizes(request_op, result)
    if allowed is not None and len(parameter) not in allowed:
        # a length FTMS does not allow for this op is malformed, never an answer
        with pytest.raises(CodecError, match="malformed"):
            codec.decode_control_point_response(bytes([0x80, request_op, result]) + parameter)
        parameter = parameter[:max(allowed)] if len(parameter) > max(allowed) else b""
    response = ControlPointResponse(request_op, result, parameter)
    wire = codec.encode_control_point_response(response)
    assert wire == bytes([0x80, request_op, result]) + parameter
    decoded = codec.decode_control_point_response(wire)
    assert decoded == response
    assert isinstance(decoded.request_op, ControlPointOp) == (request_op in set(ControlPointOp))
    assert isinstance(decoded.result, ResultCode) == (result in set(ResultCode))
    assert decoded.ok == (result == 1)


@given(machine=st.integers(0, 0xFFFF_FFFF), target=st.integers(0, 0xFFFF_FFFF))
def test_feature_round_trip(machine: int, target: int) -> None:
    feature = FitnessMachineFeature(MachineFeature(machine), TargetSettingFeature(target))
    wire = codec.encode_feature(feature)
    assert wire == machine.to_bytes(4, "little") + target.to_bytes(4, "little")
    assert codec.decode_feature(wire) == feature
    # bytes beyond the two uint32 are ignored
    assert codec.decode_feature(wire + b"\x00") == feature


@given(status=st.one_of(st.sampled_from(list(TrainingStatusCode)), st.integers(0, 0xFF)),
       text=st.none() | st.text(max_size=30), extended=st.booleans())
def test_training_status_round_trip(status: int, text: str | None, extended: bool) -> None:
    value = TrainingStatus(status, text, extended)
    decoded = codec.decode_training_status(codec.encode_training_status(value))
    assert decoded == value
    assert isinstance(decoded.status, TrainingStatusCode) == (
        status in set(TrainingStatusCode))


@given(a=st.integers(0, 0xFFFF), b=st.integers(0, 0xFFFF), step=st.integers(0, 0xFFFF))
def test_speed_range_round_trip(a: int, b: int, step: int) -> None:
    value = SpeedRange(min(a, b) / 100, max(a, b) / 100, step / 100)
    assert codec.decode_speed_range(codec.encode_speed_range(value)) == value


@given(a=st.integers(-0x8000, 0x7FFF), b=st.integers(-0x8000, 0x7FFF),
       step=st.integers(0, 0xFFFF))
def test_inclination_range_round_trip(a: int, b: int, step: int) -> None:
    value = InclinationRange(min(a, b) / 10, max(a, b) / 10, step / 10)
    assert codec.decode_inclination_range(codec.encode_inclination_range(value)) == value


@given(speed=st.floats(0, 655.35))
def test_speed_rounding_is_to_nearest(speed: float) -> None:
    raw = int.from_bytes(codec.encode_control_point(SetTargetSpeed(speed))[1:], "little")
    assert abs(raw - speed * 100) <= 0.5 + 1e-9


# The Treadmill Data groups (flag bit -> fields) written out from the table in ftms.md:
# (name, kind, scale); "pace" is uint8 or uint16 as the pace width says.
TD_GROUPS: dict[int, list[tuple[str, str, int]]] = {
    1: [("average_speed_kmh", "u16", 100)],
    2: [("total_distance_m", "u24", 1)],
    3: [("inclination_pct", "s16", 10), ("ramp_angle_deg", "s16", 10)],
    4: [("positive_elevation_gain_m", "u16", 10), ("negative_elevation_gain_m", "u16", 10)],
    5: [("instantaneous_pace_km_per_min", "pace", 10)],
    6: [("average_pace_km_per_min", "pace", 10)],
    7: [("total_energy_kcal", "u16", 1), ("energy_per_hour_kcal", "u16", 1),
        ("energy_per_minute_kcal", "u8", 1)],
    8: [("heart_rate_bpm", "u8", 1)],
    9: [("metabolic_equivalent", "u8", 10)],
    10: [("elapsed_time_s", "u16", 1)],
    11: [("remaining_time_s", "u16", 1)],
    12: [("force_on_belt_n", "s16", 1), ("power_output_w", "s16", 1)],
    13: [("step_count", "u24", 1)],
}


def test_treadmill_groups_cover_every_field() -> None:
    names = {name for group in TD_GROUPS.values() for name, _, _ in group}
    assert names | {"more_data", "speed_kmh", "unknown_flags", "extra_bytes", "unavailable",
                    "truncated_flags"} == set(TreadmillData.__dataclass_fields__)


# The "Data Not Available" raw values, from the field descriptions in docs/ftms.md.
TD_NOT_AVAILABLE = {"inclination_pct": 0x7FFF, "ramp_angle_deg": 0x7FFF,
                    "total_energy_kcal": 0xFFFF, "energy_per_hour_kcal": 0xFFFF,
                    "energy_per_minute_kcal": 0xFF, "force_on_belt_n": 0x7FFF,
                    "power_output_w": 0x7FFF}


@st.composite
def treadmill_records(draw: st.DrawFn, pace_width: int, complete: bool = True,
                      diagnostics: bool = False) -> TreadmillData:
    """A record with a random subset of complete groups."""
    values: dict[str, Any] = {}
    unavailable = set()
    bits = draw(st.sets(st.sampled_from(sorted(TD_GROUPS))))
    for bit in bits:
        for name, kind, scale in TD_GROUPS[bit]:
            if kind == "pace":
                kind = "u8" if pace_width == PACE_WIDTH_UINT8 else "u16"
            sentinel = TD_NOT_AVAILABLE.get(name)
            if sentinel is not None and draw(st.booleans()):
                unavailable.add(name)
                continue
            values[name] = draw(field_values(kind, scale).filter(
                lambda v, sentinel=sentinel, scale=scale: sentinel is None
                or round(v * scale) != sentinel))
    values["unavailable"] = frozenset(unavailable)
    if complete:
        values["speed_kmh"] = draw(field_values("u16", 100))
    else:
        values["more_data"] = True
    if diagnostics:
        values["unknown_flags"] = draw(st.sampled_from([0, 0x4000, 0x8000, 0xC000]))
        values["extra_bytes"] = draw(st.binary(max_size=4))
    return TreadmillData(**values)


def expected_length(record: TreadmillData, pace_width: int) -> int:
    length = 2 + (0 if record.more_data else 2)
    for group in TD_GROUPS.values():
        if getattr(record, group[0][0]) is not None or group[0][0] in record.unavailable:
            length += sum(pace_width if kind == "pace" else KIND_SIZES[kind]
                          for _, kind, _ in group)
    return length + len(record.extra_bytes)


PACE_WIDTHS = st.sampled_from([PACE_WIDTH_UINT8, PACE_WIDTH_UINT16])


@given(data=st.data(), pace_width=PACE_WIDTHS, complete=st.booleans())
def test_treadmill_data_round_trip(data: st.DataObject, pace_width: int,
                                   complete: bool) -> None:
    record = data.draw(treadmill_records(pace_width, complete, diagnostics=True))
    wire = codec.encode_treadmill_data(record, pace_width)
    assert len(wire) == expected_length(record, pace_width)
    flags = int.from_bytes(wire[:2], "little")
    assert bool(flags & 0x0001) == record.more_data
    assert codec.decode_treadmill_data(wire, pace_width) == record


def check_split(record: TreadmillData, max_len: int, pace_width: int) -> None:
    packets = codec.split_treadmill_data(record, max_len, pace_width)
    assert packets
    assert packets == treadmill_data._split_field_by_field(record, max_len, pace_width)
    for packet in packets:
        assert len(packet) <= max_len
    for packet in packets[:-1]:
        assert packet[0] & 0x01
    assert not packets[-1][0] & 0x01
    last = codec.decode_treadmill_data(packets[-1], pace_width)
    assert last.speed_kmh == record.speed_kmh
    assembler = TreadmillDataAssembler(pace_width)
    results = [assembler.feed(packet) for packet in packets]
    assert all(result is None for result in results[:-1])
    assert results[-1] == record


@given(data=st.data(), pace_width=PACE_WIDTHS)
def test_split_and_reassemble_at_20_bytes(data: st.DataObject, pace_width: int) -> None:
    check_split(data.draw(treadmill_records(pace_width)), 20, pace_width)


@given(data=st.data(), pace_width=PACE_WIDTHS, max_len=st.integers(7, 40))
def test_split_and_reassemble_any_mtu(data: st.DataObject, pace_width: int,
                                      max_len: int) -> None:
    check_split(data.draw(treadmill_records(pace_width)), max_len, pace_width)


@pytest.mark.parametrize("pace_width", [PACE_WIDTH_UINT8, PACE_WIDTH_UINT16])
@pytest.mark.parametrize("max_len", [7, 8, 20, 23, 40])
def test_split_full_record_any_mtu(pace_width: int, max_len: int) -> None:
    check_split(FULL_RECORD, max_len, pace_width)


def _split_outcome(split: Callable[[], list[bytes]]) -> list[bytes] | str:
    try:
        return split()
    except CodecError as exc:
        return f"CodecError: {exc}"


SPLIT_NAMES = sorted({name for group in TD_GROUPS.values() for name, _, _ in group})
ODD_VALUES = st.one_of(st.none(), st.integers(-70_000, 17_000_000), st.floats(-1e3, 1e5),
                       st.sampled_from([0x7FFF, 0xFFFF, 0xFF, 3276.7, 6553.5, 1.5, True]))


@given(values=st.fixed_dictionaries({}, optional={name: ODD_VALUES for name in SPLIT_NAMES}),
       unavailable=st.sets(st.sampled_from(SPLIT_NAMES)),
       speed=st.one_of(st.floats(0, 655.35), st.floats(-10, 1000), st.integers(0, 700)),
       pace_width=PACE_WIDTHS, max_len=st.integers(7, 40))
def test_split_by_shape_gives_the_field_by_field_bytes_or_error(
        values: dict[str, Any], unavailable: set[str], speed: float, pace_width: int,
        max_len: int) -> None:
    """split_treadmill_data packs a record by a layout worked out once per shape; for any
    record (values that fit, values that do not, groups given in part, values listed as
    unavailable) it gives exactly what the general field-by-field path gives."""
    record = TreadmillData(speed_kmh=speed, unavailable=frozenset(unavailable), **values)
    fast = _split_outcome(lambda: codec.split_treadmill_data(record, max_len, pace_width))
    general = _split_outcome(
        lambda: treadmill_data._split_field_by_field(record, max_len, pace_width))
    assert fast == general


# =========================================================================== 5. fuzz

DECODERS: list[Callable[[bytes], object]] = [
    codec.decode_feature,
    lambda raw: codec.decode_treadmill_data(raw, PACE_WIDTH_UINT8),
    lambda raw: codec.decode_treadmill_data(raw, PACE_WIDTH_UINT16),
    codec.decode_training_status,
    codec.decode_speed_range,
    codec.decode_inclination_range,
    codec.decode_control_point,
    codec.decode_control_point_response,
    codec.decode_status,
]
DECODER_IDS = ["feature", "treadmill_data_u8", "treadmill_data_u16", "training_status",
               "speed_range", "inclination_range", "control_point",
               "control_point_response", "status"]


@pytest.mark.parametrize("decode", DECODERS, ids=DECODER_IDS)
@given(raw=st.binary(max_size=64))
def test_decoders_raise_only_codec_error(decode: Callable[[bytes], object],
                                         raw: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(raw)


@given(op=st.integers(0, 0xFF), parameter=st.binary(max_size=12))
def test_control_point_op_codes_fuzz(op: int, parameter: bytes) -> None:
    # with a valid op code up front, the parameter parsing is what gets fuzzed
    try:
        request = codec.decode_control_point(bytes([op]) + parameter)
    except UnsupportedOpCodeError as exc:
        assert op not in codec.REQUEST_TYPES
        assert exc.op_code == op
    except CodecError:
        assert op in codec.REQUEST_TYPES
    else:
        assert codec.encode_control_point(request) == bytes([op]) + parameter


@given(packets=st.lists(st.binary(max_size=24), max_size=30), pace_width=PACE_WIDTHS)
def test_assembler_fuzz(packets: list[bytes], pace_width: int) -> None:
    assembler = TreadmillDataAssembler(pace_width)
    for packet in packets:
        try:
            record = assembler.feed(packet)
        except CodecError:
            continue
        if record is not None:
            assert not record.more_data
            assert record.speed_kmh is not None


@given(packets=st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=20)),
                        max_size=30))
def test_assembler_fuzz_structured(packets: list[tuple[int, bytes]]) -> None:
    # random flags (often More Data) followed by random bodies: exercises merging
    assembler = TreadmillDataAssembler()
    for flags, body in packets:
        try:
            assembler.feed(flags.to_bytes(2, "little") + body)
        except CodecError:
            continue


@pytest.mark.parametrize("cls", REQUEST_CLASSES + STATUS_CLASSES,
                         ids=lambda cls: f"{cls.__name__}_{cls.op:02x}")
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_encoders_raise_only_codec_error(cls: type[Any], data: st.DataObject) -> None:
    wild = st.one_of(st.floats(), st.integers(-(1 << 40), 1 << 40), st.none(), st.text(max_size=3))
    message = cls(**{f.name: data.draw(wild) for f in cls._fields})
    encode = codec.encode_status if cls in STATUS_CLASSES else codec.encode_control_point
    with contextlib.suppress(CodecError):
        encode(message)


def _outcome(call: Callable[[], object]) -> object:
    """What ``call`` returns, or the type and message of the CodecError it raises."""
    try:
        return call()
    except CodecError as exc:
        return (type(exc), str(exc))


@pytest.mark.parametrize("cls", REQUEST_CLASSES + STATUS_CLASSES,
                         ids=lambda cls: f"{cls.__name__}_{cls.op:02x}")
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_messages_encode_to_stable_bytes_or_a_codec_error(cls: type[Any],
                                                          data: st.DataObject) -> None:
    """For any values and any bytes (good, reserved, short, long), requests and statuses
    either go through or raise a CodecError; what encodes decodes to the same bytes again
    (the wire form is stable), and what decodes is of its class."""
    wild = st.one_of(st.floats(), st.integers(-(1 << 40), 1 << 40), st.none(),
                     st.text(max_size=3))
    values = st.one_of(message_strategy(cls), st.builds(
        cls, **{f.name: wild for f in cls._fields}))
    message = data.draw(values)
    encoded = _outcome(lambda: control_point._encode_message(message))
    decode = codec.decode_status if cls in STATUS_CLASSES else codec.decode_control_point
    if isinstance(encoded, bytes):
        again = decode(encoded)
        assert type(again) is cls
        assert control_point._encode_message(again) == encoded
    size = 1 + sum(KIND_SIZES[f.kind] for f in cls._fields)
    wire = bytes([cls.op]) + data.draw(st.binary(min_size=max(0, size - 2), max_size=size + 1))
    decoded = _outcome(lambda: decode(wire))
    assert type(decoded) is cls or (isinstance(decoded, tuple) and decoded[0] is CodecError)


@given(record=st.builds(TreadmillData, speed_kmh=st.none() | st.floats(),
                        heart_rate_bpm=st.none() | st.integers(-300, 300),
                        instantaneous_pace_km_per_min=st.none() | st.floats(),
                        unknown_flags=st.integers(0, 0x1FFFF)),
       pace_width=PACE_WIDTHS)
def test_treadmill_encoder_raises_only_codec_error(record: TreadmillData,
                                                   pace_width: int) -> None:
    with contextlib.suppress(CodecError):
        codec.encode_treadmill_data(record, pace_width)
    with contextlib.suppress(CodecError):
        codec.split_treadmill_data(record, 20, pace_width)


# =========================================================================== 6. edge cases
# The FTMS facts these rely on are in docs/ftms.md ("Data Not Available", statuses,
# response parameters).


def test_not_available_sentinels_decode_to_none() -> None:
    # 88 00 flags 0x0088: bit 3 (inclination + ramp angle) and bit 7 (expended energy);
    #       bit 0 clear, so the speed is present
    # e8 03 speed 1000 -> 10.00 km/h
    # ff 7f inclination 0x7fff, ff 7f ramp angle 0x7fff: "Data Not Available"
    # ff ff total energy 0xffff, ff ff energy per hour 0xffff, ff energy per minute 0xff
    data = codec.decode_treadmill_data(h("88 00 e8 03 ff 7f ff 7f ff ff ff ff ff"))
    assert data.speed_kmh == 10.0
    for name in ("inclination_pct", "ramp_angle_deg", "total_energy_kcal",
                 "energy_per_hour_kcal", "energy_per_minute_kcal"):
        assert getattr(data, name) is None, name
    assert data.unavailable == {"inclination_pct", "ramp_angle_deg", "total_energy_kcal",
                                "energy_per_hour_kcal", "energy_per_minute_kcal"}
    assert data.extra_bytes == b""
    assert codec.encode_treadmill_data(data) == h("88 00 e8 03 ff 7f ff 7f ff ff ff ff ff")


def test_force_and_power_not_available() -> None:
    # 00 10 flags 0x1000: bit 12 force on belt + power output; 2c 01 speed 3.00 km/h
    # 0a 00 force 10 N; ff 7f power output 0x7fff "Data Not Available"
    data = codec.decode_treadmill_data(h("00 10 2c 01 0a 00 ff 7f"))
    assert (data.force_on_belt_n, data.power_output_w) == (10, None)
    assert data.unavailable == {"power_output_w"}


def test_a_value_next_to_the_sentinel_is_a_number() -> None:
    # 08 00 bit 3; 2c 01 speed; fe 7f inclination 32766 -> 3276.6 %; 00 80 ramp -32768
    data = codec.decode_treadmill_data(h("08 00 2c 01 fe 7f 00 80"))
    assert data.inclination_pct == 3276.6
    assert data.ramp_angle_deg == -3276.8
    assert data.unavailable == frozenset()


def test_encoder_refuses_a_sentinel_as_a_number() -> None:
    with pytest.raises(CodecError, match="Data Not Available"):
        codec.encode_treadmill_data(TreadmillData(
            speed_kmh=1.0, total_energy_kcal=0xFFFF, energy_per_hour_kcal=1,
            energy_per_minute_kcal=1))


def test_unavailable_survives_merging_split_parts() -> None:
    # part 1: 89 00 = More Data + bit 3 + bit 7; inclination 0x7fff, ramp 0x7fff,
    #         energy all not available (ff ff ff ff ff)
    # part 2: 08 00 = bit 3 with real values 05 00 (0.5 %) 00 00 (0.0 degrees), speed 2c 01
    assembler = TreadmillDataAssembler()
    assert assembler.feed(h("89 00 ff 7f ff 7f ff ff ff ff ff")) is None
    record = assembler.feed(h("08 00 2c 01 05 00 00 00"))
    assert record is not None
    assert record.inclination_pct == 0.5
    assert record.unavailable == {"total_energy_kcal", "energy_per_hour_kcal",
                                  "energy_per_minute_kcal"}


@pytest.mark.parametrize("wire", ["00 20 e8 03", "00 20 e8 03 01", "00 20 e8 03 01 02"])
def test_step_count_bit_without_room_keeps_the_record(wire: str) -> None:
    # 00 20 flags 0x2000: bit 13 (vendor step count, 3 bytes); e8 03 speed 10.00 km/h;
    # then 0, 1 or 2 bytes: too few for the step count
    data = codec.decode_treadmill_data(h(wire))
    assert data.speed_kmh == 10.0
    assert data.step_count is None
    assert data.truncated_flags == 0x2000
    assert data.extra_bytes == h(wire)[4:]
    assert codec.encode_treadmill_data(data) == h(wire)


def test_step_count_bit_with_room_is_read() -> None:
    # the same flags with 3 bytes left: 10 00 00 = 16 steps
    data = codec.decode_treadmill_data(h("00 20 e8 03 10 00 00"))
    assert (data.step_count, data.truncated_flags) == (16, 0)


@pytest.mark.parametrize(
    ("wire", "action", "problem"),
    [
        ("02 03", StopPause.STOP, "reserved value 0x03"),  # reserved control information
        ("02 00", StopPause.STOP, "reserved value 0x00"),
        ("02 ff", StopPause.STOP, "reserved value 0xff"),
        ("02", StopPause.STOP, "missing"),  # parameter missing altogether
    ],
)
def test_stopped_or_paused_with_bad_parameter_is_still_a_stop(
        wire: str, action: StopPause, problem: str) -> None:
    status = codec.decode_status(h(wire))
    assert type(status) is StoppedOrPausedByUser
    assert status.action is action  # the safer reading: the belt stopped
    assert status.problem is not None and problem in status.problem
    assert "read as stop" in status.problem


@pytest.mark.parametrize("cls", [c for c in STATUS_CLASSES if c._fields],
                         ids=lambda cls: cls.__name__)
def test_every_status_with_a_parameter_survives_a_short_one(cls: type[Any]) -> None:
    # the op code alone, then the op code with one byte: never an error, always its kind
    for wire in (bytes([cls.op]), bytes([cls.op, 0x01])):
        status = codec.decode_status(wire)
        assert type(status) is cls
        size = sum(KIND_SIZES[f.kind] for f in cls._fields)
        if len(wire) - 1 < size:
            assert status.problem is not None and "missing" in status.problem


def test_a_good_status_has_no_problem() -> None:
    assert codec.decode_status(h("02 02")) == StoppedOrPausedByUser(StopPause.PAUSE)
    assert codec.decode_status(h("02 02")).problem is None


@pytest.mark.parametrize(
    "wire",
    [
        "80 05 01 aa",  # Set Target Power answered "success" with a stray byte
        "80 13 01 02 03",  # Spin Down success needs 0 or 4 parameter bytes, not 2
        "80 02 01 00",  # Set Target Speed answers carry no parameter
        "80 08 03 01",
    ],
)
def test_response_with_a_wrong_length_is_malformed(wire: str) -> None:
    with pytest.raises(CodecError, match="malformed"):
        codec.decode_control_point_response(h(wire))


def test_spin_down_response_with_target_speeds() -> None:
    # 80, 13 Spin Down Control, 01 success, 2c 01 / 90 01 target speed low/high
    response = codec.decode_control_point_response(h("80 13 01 2c 01 90 01"))
    assert response.parameter == h("2c 01 90 01")
