"""ClientProtocol, the FTMS client without I/O: bytes and times in, typed events out.

Wire bytes here are the codec's own encodings, or the odd bytes of docs/ftms.md.
"""

from __future__ import annotations

import pytest

from retrotread import gatt
from retrotread.errors import GattError, LinkClosedError, TreadmillError
from retrotread.ftms import codec
from retrotread.ftms.client import (
    BUSY_RETRY_S,
    ClientProtocol,
    CommandOutcome,
    CommandStatus,
    DecodeProblem,
    StatusEvent,
    Telemetry,
)

CP = gatt.FITNESS_MACHINE_CONTROL_POINT
SPEED = codec.SetTargetSpeed(speed_kmh=2.5)
BUSY = GattError("busy", gatt.ATT_PROCEDURE_ALREADY_IN_PROGRESS)


def answer(op: codec.ControlPointOp, result: codec.ResultCode = codec.ResultCode.SUCCESS) -> bytes:
    return codec.encode_control_point_response(codec.ControlPointResponse(op, result))


def test_a_command_is_answered_and_its_outcome_carries_the_response() -> None:
    client = ClientProtocol(reply_timeout_s=2.0)
    assert client.send(codec.RequestControl(), 1.0) == codec.encode_control_point(
        codec.RequestControl())
    client.written(1.0)
    assert client.next_due_s() == 3.0
    [outcome] = client.receive(CP, answer(codec.ControlPointOp.REQUEST_CONTROL), 1.05)
    assert isinstance(outcome, CommandOutcome)
    assert (outcome.time_s, outcome.status, outcome.response) == (
        1.05, CommandStatus.ANSWERED,
        codec.ControlPointResponse(codec.ControlPointOp.REQUEST_CONTROL,
                                   codec.ResultCode.SUCCESS))
    assert client.has_control and client.pending is None and client.next_due_s() is None


def test_one_command_at_a_time() -> None:
    client = ClientProtocol()
    client.send(SPEED, 0.0)
    with pytest.raises(TreadmillError, match="one command at a time"):
        client.send(codec.StartOrResume(), 0.0)


def test_no_answer_by_the_deadline_is_a_time_out_and_a_late_answer_is_ignored() -> None:
    client = ClientProtocol(reply_timeout_s=2.0)
    client.send(SPEED, 5.0)
    client.written(5.0)
    assert client.check_timeout(6.999) is None
    timed_out = client.check_timeout(7.0)
    assert timed_out is not None
    assert (timed_out.status, timed_out.time_s, timed_out.delivered) == (
        CommandStatus.TIMED_OUT, 7.0, True)
    assert timed_out.detail == "SetTargetSpeed 2.50 km/h: no reply from the treadmill within 2.0 s"
    client.send(codec.StartOrResume(), 7.0)
    client.written(7.0)
    assert client.receive(CP, answer(codec.ControlPointOp.SET_TARGET_SPEED), 7.5) == ()
    assert client.pending is not None  # still waiting for its own answer


def test_a_refusal_names_the_result() -> None:
    client = ClientProtocol()
    client.send(SPEED, 0.0)
    client.written(0.0)
    [refused] = client.receive(
        CP, answer(codec.ControlPointOp.SET_TARGET_SPEED, codec.ResultCode.INVALID_PARAMETER),
        0.05)
    assert isinstance(refused, CommandOutcome)
    assert refused.status is CommandStatus.REFUSED
    assert refused.result_code == codec.ResultCode.INVALID_PARAMETER
    assert "outside what the machine accepts" in refused.detail


def test_a_malformed_answer_is_a_problem_and_not_the_answer() -> None:
    client = ClientProtocol()
    client.send(codec.StopOrPause(action=codec.StopPause.STOP), 0.0)
    client.written(0.0)
    [problem] = client.receive(CP, bytes.fromhex("80 08 01 00"), 0.05)
    assert isinstance(problem, DecodeProblem) and problem.dropped
    assert "malformed" in problem.message and client.decode_errors == 1
    assert client.pending is not None


def test_a_busy_machine_is_asked_again_until_the_reply_timeout_and_its_late_answer_is_not_ours(
) -> None:
    client = ClientProtocol(reply_timeout_s=0.25)
    data = client.send(SPEED, 10.0)
    assert client.write_refused(10.0, BUSY) == pytest.approx(10.0 + BUSY_RETRY_S)
    # the earlier request's answer, same op code, while ours is not on the wire
    assert client.receive(CP, answer(codec.ControlPointOp.SET_TARGET_SPEED), 10.05) == ()
    assert client.rewrite() == data
    assert client.write_refused(10.1, BUSY) == pytest.approx(10.2)
    assert client.write_refused(10.2, BUSY) is None  # 10.3 is past 10.25: give up
    failed = client.fail(10.2, BUSY)
    assert failed is not None
    assert (failed.status, failed.delivered) == (CommandStatus.FAILED, False)
    assert client.write_refused(10.2, GattError("no", gatt.ATT_WRITE_NOT_PERMITTED)) is None


def test_a_lost_link_ends_the_command_and_control() -> None:
    client = ClientProtocol()
    client.send(codec.RequestControl(), 0.0)
    client.written(0.0)
    client.receive(CP, answer(codec.ControlPointOp.REQUEST_CONTROL), 0.05)
    client.send(SPEED, 1.0)
    client.written(1.0)
    lost = client.link_lost(1.5)
    assert lost is not None
    assert (lost.status, lost.delivered, lost.time_s) == (CommandStatus.LINK_CLOSED, True, 1.5)
    assert not client.has_control and client.link_lost(2.0) is None
    client.send(SPEED, 3.0)
    not_sent = client.fail(3.0, LinkClosedError("down"))
    assert not_sent is not None and not_sent.status is CommandStatus.LINK_CLOSED


def test_split_treadmill_data_makes_one_telemetry_event() -> None:
    client = ClientProtocol()
    record = codec.TreadmillData(speed_kmh=3.2, average_speed_kmh=3.0, total_distance_m=1234,
                                 inclination_pct=0.0, ramp_angle_deg=0.0,
                                 positive_elevation_gain_m=0.0, negative_elevation_gain_m=0.0,
                                 total_energy_kcal=70, heart_rate_bpm=101, elapsed_time_s=600,
                                 unavailable=frozenset({"energy_per_hour_kcal",
                                                        "energy_per_minute_kcal"}))
    first, last = codec.split_treadmill_data(record, max_len=20)
    assert client.receive(gatt.TREADMILL_DATA, first, 9.0) == ()
    [sample] = client.receive(gatt.TREADMILL_DATA, last, 9.0)
    assert sample == Telemetry(9.0, record) and client.latest is sample


def test_a_status_with_an_unreadable_parameter_still_arrives_as_its_kind() -> None:
    client = ClientProtocol()
    problem, event = client.receive(gatt.FITNESS_MACHINE_STATUS, bytes.fromhex("02 03"), 4.0)
    assert isinstance(problem, DecodeProblem) and not problem.dropped
    assert isinstance(event, StatusEvent) and client.last_status is event
    assert isinstance(event.status, codec.StoppedOrPausedByUser)
    assert event.status.action is codec.StopPause.STOP
