"""The simulated treadmill and its FTMS client driven by a plain loop (no asyncio).

SteppedTreadmill joins the real simulator, an in-process connection and the sans-I/O
client: the bytes are the simulator's wire bytes, decoded as over a real link. The last
test runs one command script both ways (asyncio + LoopbackLink + Treadmill on looptime,
and SteppedTreadmill) and compares what the client saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

import pytest

from retrotread.clock import LoopClock
from retrotread.ftms import codec
from retrotread.ftms.client import (
    CommandOutcome,
    CommandStatus,
    Event,
    LinkLost,
    StatusEvent,
    Telemetry,
)
from retrotread.links.loopback import LoopbackLink
from retrotread.sim.belt import Belt
from retrotread.sim.presets import PRESETS
from retrotread.sim.stepped import SteppedTreadmill
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.treadmill import CommandReply, Treadmill

OK = codec.ResultCode.SUCCESS
STOP = codec.StopOrPause(action=codec.StopPause.STOP)


def run_until(stepped: SteppedTreadmill, end_s: float) -> list[Event]:
    """The lead's loop without a session: step from one due time to the next."""
    events: list[Event] = []
    while stepped.next_due_s() <= end_s:
        events += stepped.advance(stepped.next_due_s())
    events += stepped.advance(end_s)
    return events


def outcomes(events: Sequence[Event]) -> list[CommandOutcome]:
    return [e for e in events if isinstance(e, CommandOutcome)]


def telemetry(events: Sequence[Event]) -> list[Telemetry]:
    return [e for e in events if isinstance(e, Telemetry)]


def statuses(events: Sequence[Event]) -> list[codec.MachineStatus]:
    return [e.status for e in events if isinstance(e, StatusEvent)]


def running_at(speed_kmh: float, **options: float) -> tuple[SteppedTreadmill, list[Event]]:
    """A stepped treadmill in control, started, at ``speed_kmh`` after 10 s."""
    stepped = SteppedTreadmill(**options)  # type: ignore[arg-type]
    for request in (codec.RequestControl(), codec.StartOrResume(),
                    codec.SetTargetSpeed(speed_kmh=speed_kmh)):
        stepped.write(0.0, request)
    events = run_until(stepped, 10.0)
    assert [o.status for o in outcomes(events)] == [CommandStatus.ANSWERED] * 3
    return stepped, events


# ---------------------------------------------------------------- a whole workout
def test_a_whole_workout_runs_as_a_plain_loop_without_an_event_loop() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # nothing here runs on one
    accel = PRESETS["generic"].acceleration_kmh_per_s
    decel = PRESETS["generic"].deceleration_kmh_per_s
    stepped = SteppedTreadmill("generic")
    script = [(0.0, codec.RequestControl()), (0.0, codec.StartOrResume())]
    script += [(10.0 * k, codec.SetTargetSpeed(speed_kmh=1.0 + k)) for k in range(1, 5)]
    script.append((60.0, STOP))
    events: list[Event] = []
    for at_s, request in script:
        events += run_until(stepped, at_s)
        stepped.write(at_s, request)
    events += run_until(stepped, 75.0)

    answered = outcomes(events)
    assert [o.request for o in answered] == [request for _, request in script]
    assert all(o.status is CommandStatus.ANSWERED for o in answered)
    assert [o.time_s for o in answered] == pytest.approx(
        [0.05, 0.1] + [at_s + 0.05 for at_s, _ in script[2:]])
    assert stepped.has_control
    assert [type(s) for s in statuses(events)][:2] == [codec.StartedOrResumedByUser,
                                                       codec.TargetSpeedChanged]
    assert codec.StoppedOrPausedByUser(action=codec.StopPause.STOP) in statuses(events)

    samples = telemetry(events)
    assert [s.time_s for s in samples] == pytest.approx([float(k) for k in range(76)])
    speeds = [s.data.speed_kmh for s in samples]
    assert speeds[0] == 0.0
    # 10 s: 2.0 km/h set on a belt at 0.5 (the start speed); it ramps at 1 km/h/s
    assert speeds[10] == 0.5
    assert speeds[11] == pytest.approx(0.5 + accel)
    assert speeds[12] == 2.0
    for earlier, later in itertools.pairwise(speeds[:61]):
        assert 0.0 <= later - earlier <= accel + 1e-9
    assert speeds[55] == 5.0
    assert speeds[61] == pytest.approx(5.0 - decel)
    assert speeds[-1] == 0.0  # Stop at 60 s: 5 km/h at 1.5 km/h/s, stopped by 63.4 s
    assert stepped.latest is samples[-1]
    assert stepped.sim.belt.speed_kmh == 0.0
    final = samples[-1].data
    assert final.total_distance_m == int(stepped.sim.belt.distance_m)
    assert final.heart_rate_bpm is not None
    assert final.elapsed_time_s == 59  # running from 0.05 s (Start) to 60 s (Stop)


# ---------------------------------------------------------------- replies
def test_a_late_reply_times_out_at_the_deadline_and_is_ignored_when_it_comes() -> None:
    stepped = SteppedTreadmill(reply_timeout_s=2.0)
    stepped.sim.faults.reply_delay_s = 3.0
    stepped.write(10.0, codec.RequestControl())
    assert stepped.next_due_s() == 10.0  # the first Treadmill Data is due at once
    events = run_until(stepped, 12.0 - 1e-3)
    assert outcomes(events) == []
    [timed_out] = outcomes(run_until(stepped, 12.0))
    assert timed_out.status is CommandStatus.TIMED_OUT
    assert timed_out.time_s == 12.0 and timed_out.delivered
    assert "no reply from the treadmill within 2.0 s" in timed_out.detail
    # The machine is still busy with it until 13.0 (ATT "procedure already in
    # progress"): the next command is written every 0.1 s until it goes through.
    stepped.sim.faults.reply_delay_s = None
    stepped.write(12.0, codec.RequestControl())
    events = run_until(stepped, 20.0)
    [answered] = outcomes(events)  # the late answer at 13.0 answered nothing
    assert answered.status is CommandStatus.ANSWERED
    assert answered.time_s == pytest.approx(13.05)
    assert stepped.sim.request_times == pytest.approx([10.0, 13.0])
    assert stepped.has_control


def test_lost_replies_time_out_after_the_reply_timeout() -> None:
    stepped, _ = running_at(3.0, reply_timeout_s=1.5)
    stepped.sim.faults.replies_lost = True
    stepped.write(20.0, STOP)
    [timed_out] = outcomes(run_until(stepped, 30.0))
    assert (timed_out.request, timed_out.status) == (STOP, CommandStatus.TIMED_OUT)
    assert timed_out.time_s == 21.5
    assert stepped.sim.belt.speed_kmh == 0.0  # the Stop acted; only its answer was lost


def test_a_refused_command_carries_the_result_code() -> None:
    stepped = SteppedTreadmill()
    stepped.write(0.0, codec.SetTargetSpeed(speed_kmh=2.0))  # no control requested
    [refused] = outcomes(run_until(stepped, 1.0))
    assert refused.status is CommandStatus.REFUSED
    assert refused.result_code == codec.ResultCode.CONTROL_NOT_PERMITTED
    assert "control not permitted" in refused.detail

    stepped.write(1.0, codec.RequestControl())
    stepped.sim.faults.refuse_commands = codec.ResultCode.OPERATION_FAILED
    stepped.write(1.0, codec.StartOrResume())
    answered, refused = outcomes(run_until(stepped, 2.0))
    assert answered.status is CommandStatus.ANSWERED
    assert refused.status is CommandStatus.REFUSED
    assert refused.result_code == codec.ResultCode.OPERATION_FAILED
    assert refused.response == codec.ControlPointResponse(codec.ControlPointOp.START_OR_RESUME,
                                                          codec.ResultCode.OPERATION_FAILED)


# ---------------------------------------------------------------- telemetry and status
@pytest.mark.parametrize("max_bytes", [20, 8])
def test_split_treadmill_data_is_reassembled(max_bytes: int) -> None:
    stepped, events = running_at(2.0, max_notification_bytes=max_bytes)
    parts = len(codec.split_treadmill_data(stepped.sim.treadmill_data(), max_len=max_bytes))
    assert parts >= 2  # every record goes out in several notifications
    samples = telemetry(events)
    assert len(samples) == 11  # one record per second, whatever the parts
    last = samples[-1].data
    assert not last.more_data
    assert last.speed_kmh == 2.0
    assert last.total_distance_m == int(stepped.sim.belt.distance_m)
    assert last.elapsed_time_s == 9  # started at 0.1 s
    assert last.heart_rate_bpm is not None and last.average_speed_kmh is not None
    assert stepped.client.decode_errors == 0


def test_the_safety_key_stops_the_belt_and_the_machine_says_so() -> None:
    stepped, _ = running_at(4.0, telemetry_interval_s=0.25)
    stepped.sim.pull_safety_key()
    assert stepped.next_due_s() == 10.0  # what it caused waits to be taken now
    events = run_until(stepped, 11.0)
    assert [e for e in events if isinstance(e, StatusEvent)] == [
        StatusEvent(10.0, codec.StoppedBySafetyKey())]
    # an emergency stop: 4 km/h/s, not the 1.5 km/h/s of a Stop
    assert [s.data.speed_kmh for s in telemetry(events)] == [3.0, 2.0, 1.0, 0.0]
    stepped.write(12.0, codec.StartOrResume())
    [refused] = outcomes(run_until(stepped, 13.0))
    assert refused.result_code == codec.ResultCode.OPERATION_FAILED


# ---------------------------------------------------------------- time steps
def test_a_jump_of_a_second_gives_the_same_as_ten_steps_of_a_tenth() -> None:
    def run(step_s: float) -> tuple[list[Event], SteppedTreadmill]:
        stepped = SteppedTreadmill(telemetry_interval_s=0.1)
        script = {0: [codec.RequestControl(), codec.StartOrResume()],
                  3: [codec.SetTargetSpeed(speed_kmh=4.0)], 8: [STOP]}
        events: list[Event] = []
        steps = round(12 / step_s)
        for k in range(steps + 1):
            now = k * step_s
            events += stepped.advance(now)
            for request in script.get(round(now, 6), []):
                stepped.write(now, request)
        return events, stepped

    (jumped, a), (stepped_events, b) = run(1.0), run(0.1)
    assert len(telemetry(jumped)) == 121
    assert jumped == stepped_events  # the same events at the same times, exactly
    assert a.sim.belt.speed_kmh == pytest.approx(b.sim.belt.speed_kmh)
    assert a.sim.belt.distance_m == pytest.approx(b.sim.belt.distance_m)
    assert max(s.data.speed_kmh or 0.0 for s in telemetry(jumped)) == 4.0


def test_the_belt_is_the_same_after_one_jump_or_ten_steps_across_a_target_change() -> None:
    jump, steps = Belt(), Belt()
    for belt in (jump, steps):
        belt.set_target(2.0)
        belt.advance_to(1.25)  # ramping, 0.75 km/h short of the target
    jump.advance_to(2.25)
    for k in range(1, 11):
        steps.advance_to(1.25 + k * 0.1)
    assert jump.speed_kmh == pytest.approx(steps.speed_kmh) == 2.0
    assert jump.distance_m == pytest.approx(steps.distance_m)
    assert jump.moving_time_s == pytest.approx(steps.moving_time_s)


def test_records_without_the_wire_are_what_the_wire_would_have_given() -> None:
    """telemetry_as_bytes=False skips encoding and decoding Treadmill Data: only right
    because the simulator's records survive the wire unchanged, as here (a noisy belt, a
    heart rate that comes and goes, long enough for every field to change)."""
    def run(as_bytes: bool) -> list[Event]:
        stepped = SteppedTreadmill("walking-pad", telemetry_interval_s=0.5, speed_noise_kmh=0.3,
                                   seed=3, telemetry_as_bytes=as_bytes)
        events: list[Event] = []
        for at_s, request in [(0.0, codec.RequestControl()), (0.0, codec.StartOrResume()),
                              (5.0, codec.SetTargetSpeed(speed_kmh=4.3)),
                              (200.0, codec.SetTargetSpeed(speed_kmh=2.1)), (400.0, STOP)]:
            events += run_until(stepped, at_s)
            stepped.write(at_s, request)
            stepped.sim.faults.heart_rate_lost = not stepped.sim.faults.heart_rate_lost
        return events + run_until(stepped, 420.0)

    as_bytes, as_values = run(True), run(False)
    assert len(telemetry(as_bytes)) == 841
    assert as_values == as_bytes


# ---------------------------------------------------------------- the link
def test_a_dropped_link_is_an_event_and_a_reconnect_resubscribes() -> None:
    stepped, _ = running_at(3.0)
    stepped.write(10.0, codec.SetTargetSpeed(speed_kmh=2.5))
    stepped.sim.drop_links()
    events = stepped.advance(10.0)
    assert statuses(events) == [codec.TargetSpeedChanged(speed_kmh=2.5)]  # sent before
    assert events[1] == LinkLost(10.0)
    [lost] = outcomes(events)
    assert lost.status is CommandStatus.LINK_CLOSED and lost.delivered
    assert not stepped.connected and not stepped.has_control
    stepped.write(11.0, STOP)
    [not_sent] = outcomes(run_until(stepped, 11.0))
    assert not_sent.status is CommandStatus.LINK_CLOSED and not not_sent.delivered
    assert telemetry(run_until(stepped, 13.0)) == []  # nothing comes while down

    stepped.sim.faults.refuse_connections = True
    assert not stepped.reconnect(13.0)
    stepped.sim.faults.refuse_connections = False
    assert stepped.reconnect(14.0)
    stepped.write(14.0, codec.RequestControl())
    stepped.write(14.0, STOP)
    events = run_until(stepped, 16.0)
    assert [o.status for o in outcomes(events)] == [CommandStatus.ANSWERED] * 2
    assert [s.time_s for s in telemetry(events)] == [15.0, 16.0]
    assert stepped.has_control


# ---------------------------------------------------------------- the same as asyncio
SCRIPT: list[tuple[float, codec.ControlPointRequest]] = [
    (0.5, codec.RequestControl()),
    (0.5, codec.StartOrResume()),
    (2.0, codec.SetTargetSpeed(speed_kmh=2.0)),
    (6.3, codec.SetTargetSpeed(speed_kmh=3.7)),
    (9.0, codec.SetTargetInclination(inclination_pct=2.0)),
    (12.0, codec.SetTargetSpeed(speed_kmh=25.0)),  # refused: above the machine's range
    (14.2, STOP),
]
END_S = 20.0


def stepped_run() -> tuple[list[tuple[float, float | None]], list[tuple[float, object]]]:
    stepped = SteppedTreadmill("generic", telemetry_interval_s=0.5)
    events: list[Event] = []
    for at_s, request in SCRIPT:
        events += run_until(stepped, at_s)
        stepped.write(at_s, request)
    events += run_until(stepped, END_S)
    speeds = [(round(s.time_s, 6), s.data.speed_kmh) for s in telemetry(events)]
    replies = [(round(o.time_s, 6), o.response) for o in outcomes(events)]
    return speeds, replies


async def async_run() -> tuple[list[tuple[float, float | None]], list[tuple[float, object]]]:
    clock = LoopClock()
    sim = SimulatedTreadmill(clock, "generic", telemetry_interval_s=0.5)
    treadmill = Treadmill(LoopbackLink(sim), clock)
    await treadmill.connect()
    t0 = clock.now()
    samples: list[Telemetry] = []
    replies: list[CommandReply] = []
    treadmill.on_telemetry(samples.append)
    treadmill.on_command(replies.append)
    task = asyncio.ensure_future(sim.run())
    try:
        for at_s, request in SCRIPT:
            await clock.sleep_until(t0 + at_s)
            with contextlib.suppress(Exception):
                await treadmill.command(request)
        await clock.sleep_until(t0 + END_S + 1e-3)
    finally:
        sim.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    speeds = [(round(s.time_s - t0, 6), s.data.speed_kmh) for s in samples
              if s.time_s - t0 <= END_S]
    return speeds, [(round(r.time_s - t0, 6), r.response) for r in replies]


@pytest.mark.looptime
async def test_the_stepped_path_sees_what_the_asyncio_path_sees() -> None:
    speeds, replies = await async_run()
    assert len(speeds) == 41 and len(replies) == len(SCRIPT)
    assert any(r is not None and r.result == codec.ResultCode.INVALID_PARAMETER
               for _, r in replies)
    assert stepped_run() == (speeds, replies)
