"""The control point (retrotread.control_point), pure: what goes on the wire, and what each
outcome means, without a session, a link or an event loop."""

from __future__ import annotations

import pytest

from retrotread.control_point import (
    BUSY_RETRY_AFTER_S,
    ControlPoint,
    Intent,
    IntentKind,
    ReportKind,
    WireContext,
)
from retrotread.envelope import Direction, Envelope
from retrotread.ftms import codec
from retrotread.quirks import Quirks
from retrotread.treadmill import CommandOutcome, CommandStatus

K = IntentKind
FWD = WireContext(Direction.FORWARD, floor_kmh=0.5, safety_key_stopped=False,
                  belt_moving=False)
MOVING = WireContext(Direction.FORWARD, floor_kmh=0.5, safety_key_stopped=False,
                     belt_moving=True)
STOP = codec.StopOrPause(action=codec.StopPause.STOP)


def cp(quirks: Quirks | None = None, *, control: bool = True) -> ControlPoint:
    point = ControlPoint(Envelope.build(), quirks)
    point.has_control = control
    return point


def outcome(request: codec.ControlPointRequest, status: CommandStatus, now: float = 0.0, *,
            code: int | None = None, delivered: bool = True) -> CommandOutcome:
    return CommandOutcome(now, request, status, code, delivered, f"{status.value}")


def write(point: ControlPoint, now: float = 0.0,
          ctx: WireContext = FWD) -> codec.ControlPointRequest | None:
    request, _ = point.take_write(now, ctx)
    return request


def answer(point: ControlPoint, now: float = 0.0, ctx: WireContext = FWD) -> None:
    assert point.in_flight is not None
    assert point.finished(outcome(point.in_flight, CommandStatus.ANSWERED, now), ctx) == []


def started(point: ControlPoint, speed_kmh: float | None = None) -> None:
    """Start answered and (optionally) a speed on the wire."""
    point.submit(0.0, Intent(K.START))
    assert isinstance(write(point), codec.StartOrResume)
    answer(point)
    if speed_kmh is not None:
        point.wire_kmh, point.wire_s = speed_kmh, 0.0


def test_speeds_coalesce_to_the_latest_and_one_procedure_is_in_flight() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.SPEED, 1.2))
    point.submit(1.0, Intent(K.SPEED, 1.3))
    request = write(point, 1.0)
    assert request == codec.SetTargetSpeed(speed_kmh=1.3)
    point.submit(1.1, Intent(K.SPEED, 1.4))
    assert write(point, 1.1) is None  # the first is not answered yet
    answer(point, 1.2)
    assert write(point, 1.2) == codec.SetTargetSpeed(speed_kmh=1.4)


def test_a_stop_clears_the_queue() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.SPEED, 1.2))
    point.submit(1.0, Intent(K.PAUSE))
    point.submit(1.0, Intent(K.STOP))
    assert write(point, 1.0) == STOP
    answer(point, 1.1)
    assert write(point, 1.1) is None
    assert point.stop_sent and point.stop_acked and point.idle()


@pytest.mark.parametrize(("wire_kmh", "dt_s", "wanted_kmh", "expected_kmh"), [
    (None, 0.0, 3.0, 0.5),  # the first speed after a Start is the start speed
    (1.0, 1.0, 5.0, 2.0),  # forward ramp 1.0 km/h/s
    (1.0, 0.05, 5.0, 1.0),  # no step of 0.1 km/h allowed yet: nothing is written
    (3.0, 1.0, 0.5, 2.0),  # slowing down: the stop ramp (1.0 km/h/s)
])
def test_the_ramp_limit_on_the_wire(wire_kmh: float | None, dt_s: float, wanted_kmh: float,
                                    expected_kmh: float) -> None:
    point = cp()
    started(point, wire_kmh)
    point.submit(dt_s, Intent(K.SPEED, wanted_kmh))
    request = write(point, dt_s)
    if wire_kmh is not None and expected_kmh == wire_kmh:
        assert request is None
        return
    assert isinstance(request, codec.SetTargetSpeed)
    env = Envelope.build()
    assert request.speed_kmh == pytest.approx(expected_kmh, abs=env.machine.increment_kmh)
    if wire_kmh is not None:
        assert abs(request.speed_kmh - wire_kmh) <= max(
            env.ramp_kmh_per_s(Direction.FORWARD), env.ramp_stop_kmh_per_s) * (dt_s + 0.001)


def test_the_envelope_clamps_a_backward_speed_and_says_so() -> None:
    point = cp()
    back = WireContext(Direction.BACKWARD, 0.5, False, True)
    started(point, 3.2)
    point.submit(10.0, Intent(K.SPEED, 3.2))
    point.force_resend()
    request, reports = point.take_write(10.0, back)
    assert isinstance(request, codec.SetTargetSpeed)
    assert request.speed_kmh <= Envelope.build().ceiling_kmh(Direction.BACKWARD)
    point.wire_kmh = 6.0  # as if something faster had been sent before
    point.in_flight = None
    point._job = None
    point.submit(20.0, Intent(K.SPEED, 6.0))
    request, reports = point.take_write(20.0, back)
    assert isinstance(request, codec.SetTargetSpeed)
    assert request.speed_kmh <= Envelope.build().ceiling_kmh(Direction.BACKWARD)
    assert [r.trigger.name for r in reports if r.trigger] == ["envelope"]


def test_a_time_out_is_retried_once_then_stops() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.SPEED, 1.4))
    first = write(point, 1.0)
    assert point.finished(outcome(first, CommandStatus.TIMED_OUT, 3.0), FWD) == []
    assert write(point, 3.0) == first  # the retry
    reports = point.finished(outcome(first, CommandStatus.TIMED_OUT, 5.0), FWD)
    assert [(r.kind, r.trigger.name) for r in reports if r.trigger] == [
        (ReportKind.STOP, "no_reply")]


def test_two_unanswered_commands_of_any_kind_stop() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.CONTROL))
    request = write(point, 1.0)
    assert point.finished(outcome(request, CommandStatus.TIMED_OUT, 3.0), FWD) == []
    point.submit(3.0, Intent(K.PAUSE))  # a pause comes while the retry waits
    retry = write(point, 3.0)
    reports = point.finished(outcome(retry, CommandStatus.TIMED_OUT, 5.0), FWD)
    assert reports[0].kind is ReportKind.STOP


def test_a_retry_never_goes_before_a_queued_stop() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.SPEED, 1.4))
    first = write(point, 1.0)
    point.submit(2.0, Intent(K.STOP))
    point.finished(outcome(first, CommandStatus.TIMED_OUT, 3.0), FWD)
    assert write(point, 3.0) == STOP


def test_control_not_permitted_gets_one_request_control_then_the_command() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.SPEED, 1.4))
    speed = write(point, 1.0)
    reports = point.finished(outcome(speed, CommandStatus.REFUSED, 1.1,
                                     code=codec.ResultCode.CONTROL_NOT_PERMITTED), FWD)
    assert [r.trigger.action for r in reports if r.trigger] == ["re_request_control"]
    assert isinstance(write(point, 1.1), codec.RequestControl)
    answer(point, 1.2)
    assert write(point, 1.2) == speed
    # A second refusal of the Request Control itself is a stop.
    point.finished(outcome(speed, CommandStatus.REFUSED, 1.3,
                           code=codec.ResultCode.CONTROL_NOT_PERMITTED), FWD)
    assert point.idle()


def test_a_refused_request_control_after_not_permitted_stops() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.PAUSE))
    pause = write(point, 1.0)
    point.finished(outcome(pause, CommandStatus.REFUSED, 1.1,
                           code=codec.ResultCode.CONTROL_NOT_PERMITTED), FWD)
    rc = write(point, 1.1)
    reports = point.finished(outcome(rc, CommandStatus.REFUSED, 1.2,
                                     code=codec.ResultCode.CONTROL_NOT_PERMITTED), FWD)
    assert [(r.kind, r.trigger.name) for r in reports if r.trigger] == [
        (ReportKind.STOP, "control_lost")]


@pytest.mark.parametrize(("kind", "code", "report", "name"), [
    (K.SPEED, codec.ResultCode.INVALID_PARAMETER, ReportKind.FLOOR_REFUSED, "command_refused"),
    (K.SPEED, codec.ResultCode.OPERATION_FAILED, ReportKind.STOP, "command_refused"),
    (K.START, codec.ResultCode.OPERATION_FAILED, ReportKind.STOP, "command_refused"),
    (K.STOP, codec.ResultCode.OPERATION_FAILED, ReportKind.NOTICE, "stop_refused"),
])
def test_refusals(kind: IntentKind, code: int, report: ReportKind, name: str) -> None:
    point = cp()
    started(point, 1.0)
    point.submit(2.0, Intent(kind, 1.4))
    request = write(point, 2.0)
    reports = point.finished(outcome(request, CommandStatus.REFUSED, 2.1, code=code), FWD)
    assert [(r.kind, r.trigger.name) for r in reports if r.trigger] == [(report, name)]
    assert point.unanswered == 0  # refused is an answer


def test_a_link_failure_is_retried_after_a_pause_then_reported() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.STOP))
    stop = write(point, 1.0)
    assert point.finished(outcome(stop, CommandStatus.FAILED, 1.0, delivered=False), FWD) == []
    assert write(point, 1.0 + BUSY_RETRY_AFTER_S / 2) is None
    assert point.next_due_s() == pytest.approx(1.0 + BUSY_RETRY_AFTER_S)
    assert write(point, 1.0 + BUSY_RETRY_AFTER_S) == stop
    reports = point.finished(outcome(stop, CommandStatus.FAILED, 2.0, delivered=False), FWD)
    assert [(r.kind, r.trigger.name) for r in reports if r.trigger] == [
        (ReportKind.NOTICE, "stop_failed")]
    assert not point.stop_sent  # never delivered: never called sent


def test_a_delivered_stop_that_timed_out_counts_as_sent_not_acknowledged() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.STOP))
    stop = write(point, 1.0)
    point.finished(outcome(stop, CommandStatus.TIMED_OUT, 3.0), FWD)
    assert point.stop_sent and not point.stop_acked
    # A later Start that reached the machine makes that Stop history.
    point._job = None
    point.submit(4.0, Intent(K.START))
    start = write(point, 4.0)
    point.finished(outcome(start, CommandStatus.LINK_CLOSED, 4.1, delivered=True), FWD)
    assert not point.stop_sent


def test_after_the_safety_key_only_stop_is_ever_written() -> None:
    point = cp()
    keyed = WireContext(Direction.FORWARD, 0.5, safety_key_stopped=True, belt_moving=False)
    for kind in (K.SPEED, K.START, K.PAUSE, K.CONTROL):
        point.submit(0.0, Intent(kind, 1.0))
        assert point.take_write(0.0, keyed)[0] is None
    point.submit(0.0, Intent(K.STOP))
    assert point.take_write(0.0, keyed)[0] == STOP


def test_must_start_before_speed_holds_the_speed_until_started() -> None:
    point = cp(Quirks(must_start_before_speed=True))
    point.submit(0.0, Intent(K.SPEED, 0.5))
    assert write(point) is None
    assert point.last_sent_kmh is None  # asked for again on the next tick
    started(point)
    point.submit(0.1, Intent(K.SPEED, 0.5))
    assert write(point, 0.1) == codec.SetTargetSpeed(speed_kmh=0.5)


def test_request_control_before_every_command() -> None:
    point = cp(Quirks(request_control_before_every_command=True))
    point.submit(0.0, Intent(K.START))
    assert isinstance(write(point), codec.RequestControl)
    answer(point)
    assert write(point) == codec.StartOrResume()


@pytest.mark.parametrize("status", [CommandStatus.ANSWERED, CommandStatus.REFUSED,
                                    CommandStatus.TIMED_OUT])
def test_a_stop_without_control_takes_it_first_whatever_the_answer(
        status: CommandStatus) -> None:
    point = cp(control=False)
    point.submit(0.0, Intent(K.STOP))
    rc = write(point)
    assert isinstance(rc, codec.RequestControl)
    assert point.finished(outcome(rc, status, 0.1, code=codec.ResultCode.OPERATION_FAILED),
                          FWD) == []
    assert write(point, 0.1) == STOP


def test_a_start_that_timed_out_on_a_moving_belt_is_not_sent_again() -> None:
    point = cp()
    point.submit(0.0, Intent(K.START))
    start = write(point)
    assert point.finished(outcome(start, CommandStatus.TIMED_OUT, 2.0), MOVING) == []
    assert point.started and point.idle()


def test_a_strict_intent_reports_instead_of_handling() -> None:
    point = cp(control=False)
    point.submit(0.0, Intent(K.CONTROL, strict=True))
    rc = write(point)
    reports = point.finished(outcome(rc, CommandStatus.TIMED_OUT, 2.0), FWD)
    assert [r.kind for r in reports] == [ReportKind.STRICT_DONE]
    assert reports[0].outcome is not None
    assert reports[0].outcome.status is CommandStatus.TIMED_OUT
    assert point.idle() and point.unanswered == 0


def test_a_start_is_checked_against_the_belt_again_as_it_is_written() -> None:
    point = cp(Quirks(request_control_before_every_command=True))
    point.submit(0.0, Intent(K.START))
    rc = write(point)
    assert isinstance(rc, codec.RequestControl)
    point.finished(outcome(rc, CommandStatus.ANSWERED, 0.8), FWD)
    request, reports = point.take_write(0.8, MOVING)  # the belt began to move meanwhile
    assert request is None
    assert [(r.kind, r.trigger.name) for r in reports if r.trigger] == [
        (ReportKind.STOP, "start_on_moving_belt")]


@pytest.mark.parametrize("halt", [K.STOP, K.PAUSE])
def test_a_halt_cancels_motion_not_yet_written(halt: IntentKind) -> None:
    point = cp(Quirks(request_control_before_every_command=True))
    point.submit(0.0, Intent(K.SPEED, 0.5))
    rc = write(point)
    point.submit(0.1, Intent(halt))
    point.finished(outcome(rc, CommandStatus.ANSWERED, 0.2), FWD)
    written = []
    while (request := write(point, 0.2)) is not None:
        written.append(request)
        answer(point, 0.2)
    assert not any(isinstance(w, codec.SetTargetSpeed | codec.StartOrResume) for w in written)
    assert written[-1] == codec.StopOrPause(action=codec.StopPause.STOP if halt is K.STOP
                                            else codec.StopPause.PAUSE)


def test_after_a_console_start_only_a_stop_written_later_counts_as_acknowledged() -> None:
    point = cp()
    started(point, 1.0)
    point.submit(1.0, Intent(K.STOP))
    first = write(point, 1.0)
    point.require_new_stop()  # the belt was started at the console meanwhile
    point.submit(1.1, Intent(K.STOP))
    point.finished(outcome(first, CommandStatus.ANSWERED, 1.8), FWD)
    assert point.stop_sent and not point.stop_acked  # the answer to the earlier Stop
    second = write(point, 1.8)
    assert second == STOP
    answer(point, 2.6)
    assert point.stop_acked


def test_the_wire_ramp_counts_from_when_a_speed_was_written_not_asked_for() -> None:
    """Found by the random runs (seed 778928): on a machine that needs Request Control
    before every command, a slow answer to that Request Control delays the speed. The
    next speed's step was counted from when the first was asked for, so the two went out
    closer together than the ramp allows."""
    point = cp(Quirks(request_control_before_every_command=True))
    point.started = True
    point.wire_kmh, point.wire_s = 0.5, 0.0  # running at 0.5 km/h since t = 0
    point.submit(1.0, Intent(K.SPEED, 3.0))
    assert isinstance(write(point, 1.0), codec.RequestControl)
    answer(point, 1.8)  # a slow Request Control
    first = write(point, 1.8)
    assert isinstance(first, codec.SetTargetSpeed)
    answer(point, 1.85)
    point.submit(2.0, Intent(K.SPEED, 3.0))
    assert isinstance(write(point, 2.0), codec.RequestControl)
    answer(point, 2.05)
    second = write(point, 2.05)
    assert isinstance(second, codec.SetTargetSpeed)
    ramp = Envelope.build().ramp_kmh_per_s(Direction.FORWARD)
    # on the wire: no faster than the ramp between the two writes (plus one FTMS step and
    # the 1 ms of slack the limiter allows for tick noise)
    assert second.speed_kmh - first.speed_kmh <= ramp * (2.05 - 1.8 + 0.001) + 0.01 + 1e-9


@pytest.mark.parametrize("status", [CommandStatus.TIMED_OUT, CommandStatus.REFUSED])
def test_a_stop_goes_out_even_when_its_request_control_gets_no_answer(
        status: CommandStatus) -> None:
    """Found by the random runs (seed 912902): on a machine that wants Request Control
    before every command, replies lost for ten seconds, and the Stop's Request Control
    timed out again and again; the Stop itself was never written. Now, whatever the
    Request Control's answer (none, or a refusal), the Stop is tried next."""
    point = cp(Quirks(request_control_before_every_command=True))
    point.submit(0.0, Intent(K.STOP))
    request = write(point, 0.0)
    assert isinstance(request, codec.RequestControl)
    code = codec.ResultCode.CONTROL_NOT_PERMITTED if status is CommandStatus.REFUSED else None
    point.finished(outcome(request, status, 3.0, code=code), FWD)
    assert write(point, 3.0) == STOP


def test_after_a_link_drop_nothing_but_a_stop_queued_for_the_old_link_is_written() -> None:
    """Found by the random runs (seed 926704): a speed queued behind a timed-out one was
    still handed out after the link dropped (onto a dead link; on a new one, a stale
    speed). After a drop only Stop goes out."""
    point = cp()
    started(point, 3.5)
    point.submit(1.0, Intent(K.SPEED, 3.0))
    request = write(point, 1.0)
    assert request == codec.SetTargetSpeed(speed_kmh=3.0)
    point.submit(1.5, Intent(K.SPEED, 2.5))
    point.finished(outcome(request, CommandStatus.LINK_CLOSED, 2.0), FWD)
    point.link_lost()
    assert point.idle() and write(point, 2.0) is None
    point.submit(2.0, Intent(K.SPEED, 2.0))
    point.submit(2.0, Intent(K.STOP))
    point.link_lost()  # (a new link comes up: control must be taken again)
    assert isinstance(write(point, 2.1), codec.RequestControl)  # no control: taken first
    answer(point, 2.2)
    assert write(point, 2.2) == STOP
