"""Every watchdog trigger and user command, on the simulator in virtual time.

Each test runs a real workout (a bundled profile) on the simulated treadmill, injects one
fault or action while the person walks backward, and checks what reached the machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from retrotread.envelope import Direction
from retrotread.events import (
    Announcement,
    CommandSent,
    Outcome,
    TurnaroundPhase,
    UserCommand,
    WatchdogAction,
)
from retrotread.ftms import codec
from retrotread.profile import Profile, load_profile
from retrotread.session import Session, State
from retrotread.sim.treadmill import MachineState, SimulatedTreadmill
from retrotread.units import quantize_down
from tests.workout_harness import WorkoutRun, check_invariants, run_on_sim

PROFILES = Path(__file__).parent.parent / "profiles"
VIRTUAL = pytest.mark.looptime(noop_cycles=1)


@pytest.fixture(scope="module")
def first_session() -> Profile:
    return load_profile(PROFILES / "first-session.yaml")


async def until(predicate: Callable[[], bool], timeout_s: float = 3600.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def walking_backward(session: Session, min_kmh: float = 1.2) -> None:
    def ready() -> bool:
        latest = session.treadmill.latest
        return (session.state is State.RUNNING and session.facing is Direction.BACKWARD
                and latest is not None and (latest.data.speed_kmh or 0) >= min_kmh)

    await until(ready)


def stops_after(run: WorkoutRun, time_s: float) -> list[float]:
    sim = run.sim
    return [t for t, r in zip(sim.request_times, sim.requests, strict=True)
            if t >= time_s and isinstance(r, codec.StopOrPause)
            and r.action is codec.StopPause.STOP]


def motion_after(run: WorkoutRun, time_s: float) -> list[codec.ControlPointRequest]:
    sim = run.sim
    return [r for t, r in zip(sim.request_times, sim.requests, strict=True)
            if t > time_s and isinstance(r, codec.StartOrResume | codec.SetTargetSpeed)]


# ------------------------------------------------------------------ watchdog triggers


@VIRTUAL
async def test_stale_telemetry_stops_the_belt_within_the_limit(first_session: Profile) -> None:
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        marks["fault"] = sim.clock.now()
        sim.faults.telemetry_stopped = True

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.WATCHDOG
    assert "telemetry_stale" in run.watchdog_triggers()
    stops = stops_after(run, marks["fault"])
    assert stops, "no Stop after the telemetry went quiet"
    # 3 s without telemetry, counted from the last sample (up to 1 s before the fault).
    assert stops[0] - marks["fault"] <= 3.0 + 0.3
    assert run.sim.belt.speed_kmh == 0.0
    check_invariants(run)


@VIRTUAL
async def test_link_loss_reconnects_and_sends_stop_never_start(first_session: Profile) -> None:
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        marks["fault"] = sim.clock.now()
        sim.drop_links()

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.WATCHDOG
    assert "link_lost" in run.watchdog_triggers()
    assert stops_after(run, marks["fault"]), "no Stop after the reconnect"
    assert motion_after(run, marks["fault"]) == [], "the belt was restarted after a reconnect"
    assert run.sim.state is MachineState.STOPPED
    assert len(run.sim.connections) == 0  # the session closed its new link at the end
    check_invariants(run)


@VIRTUAL
async def test_lost_replies_retry_once_then_stop(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        sim.faults.replies_lost = True

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.WATCHDOG
    assert run.result.stop_sent
    # Lost replies: the belt keeps its target until the machine gets a Stop.
    last = run.sim.requests[-1]
    assert isinstance(last, codec.StopOrPause) and last.action is codec.StopPause.STOP


@VIRTUAL
async def test_refused_commands_stop_the_workout(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        sim.faults.refuse_commands = codec.ResultCode.OPERATION_FAILED

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.WATCHDOG
    assert "command_refused" in run.watchdog_triggers()
    assert run.result.stop_sent


@VIRTUAL
async def test_a_runaway_belt_is_stopped(first_session: Profile) -> None:
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        marks["fault"] = sim.clock.now()
        sim.start_runaway(6.0)
        await until(lambda: session.state is not State.RUNNING)
        sim.faults.runaway_kmh = None  # the machine obeys Stop again

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.WATCHDOG
    assert "overspeed" in run.watchdog_triggers()
    stops = stops_after(run, marks["fault"])
    assert stops and stops[0] - marks["fault"] < 5.0
    check_invariants(run)


@VIRTUAL
async def test_kmh_read_as_mph_is_caught_as_overspeed(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        sim.faults.kmh_read_as_mph = True
        sim.console_speed_up(0.0)  # nothing; the next speed command is misread

    run = await run_on_sim(first_session, scenario=scenario)
    # The first misread command comes at the next speed change (a ramp); the watchdog
    # re-commands once and then stops, or the workout ends while the belt is too fast.
    triggers = run.watchdog_triggers()
    assert "overspeed" in triggers or run.result.outcome is Outcome.COMPLETED
    check_invariants(run)


@VIRTUAL
async def test_ignored_speed_commands_stop_after_the_grace(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await until(lambda: session.state is State.RUNNING)
        sim.faults.ignore_speed_commands = True

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.WATCHDOG
    assert "speed_not_reached" in run.watchdog_triggers()
    check_invariants(run)


@VIRTUAL
async def test_safety_key_ends_the_workout_and_nothing_but_stop_follows(
        first_session: Profile) -> None:
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        marks["fault"] = sim.clock.now()
        sim.pull_safety_key()

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.SAFETY_KEY
    assert motion_after(run, marks["fault"]) == []
    assert any(a.level == "alarm" for a in run.of(Announcement))
    check_invariants(run)


@VIRTUAL
async def test_console_speed_up_while_backward_is_clamped_then_stopped(
        first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        for _ in range(3):
            sim.console_speed_up(1.0)
            await asyncio.sleep(4.0)

    run = await run_on_sim(first_session, scenario=scenario)
    actions = [(e.trigger, e.action) for e in run.of(WatchdogAction)]
    assert ("console_speed_change", "stop") in actions, actions
    assert run.result.outcome is Outcome.WATCHDOG
    check_invariants(run)


@VIRTUAL
async def test_console_stop_ends_the_workout(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        sim.console_stop()

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.STOPPED_BY_USER
    check_invariants(run)


@VIRTUAL
async def test_a_stalled_control_loop_is_stopped_by_the_guard(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        original = session._tick

        def stuck(now: float, dt: float) -> None:
            original(now, dt)
            session.watchdog.last_tick_s = now - 10.0  # as if no tick had run for 10 s

        session._tick = stuck  # type: ignore[method-assign]

    run = await run_on_sim(first_session, scenario=scenario)
    assert "loop_stalled" in run.watchdog_triggers()
    assert run.result.stop_sent


# ------------------------------------------------------------------ the person's commands


@VIRTUAL
async def test_pause_and_resume_go_through_a_stop_and_a_countdown(first_session: Profile) -> None:
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        assert session.request(UserCommand.PAUSE)
        marks["paused"] = sim.clock.now()
        await until(lambda: sim.belt.speed_kmh == 0.0)
        await asyncio.sleep(5)
        assert session.request(UserCommand.RESUME)
        marks["resumed"] = sim.clock.now()

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.COMPLETED
    starts = [t for t, r in zip(run.sim.request_times, run.sim.requests, strict=True)
              if isinstance(r, codec.StartOrResume) and t > marks["paused"]]
    assert starts and starts[0] >= marks["resumed"] + 2.9  # the countdown came first
    check_invariants(run)


@VIRTUAL
async def test_skip_goes_through_a_turnaround(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        assert session.request(UserCommand.SKIP)

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.COMPLETED
    phases = [p.phase for p in run.of(TurnaroundPhase)]
    assert "ramp_down" in phases
    check_invariants(run)


@VIRTUAL
async def test_user_stop_and_interrupt(first_session: Profile) -> None:
    async def stop(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        assert session.request(UserCommand.STOP)

    async def interrupt(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        session.interrupt("received SIGINT")

    stopped = await run_on_sim(first_session, scenario=stop)
    assert stopped.result.outcome is Outcome.STOPPED_BY_USER
    check_invariants(stopped)
    interrupted = await run_on_sim(first_session, scenario=interrupt)
    assert interrupted.result.outcome is Outcome.INTERRUPTED
    check_invariants(interrupted)


@VIRTUAL
async def test_speed_keys_stay_inside_the_backward_ceiling(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        for _ in range(30):
            session.request(UserCommand.SPEED_UP, "key")
            await asyncio.sleep(0.2)
        assert not session.request(UserCommand.SPEED_UP, "remote")  # never from a remote

    run = await run_on_sim(first_session, scenario=scenario)
    check_invariants(run)
    ceiling = run.session.envelope.ceiling_kmh(Direction.BACKWARD)
    backward = [c.speed_kmh for c in run.of(CommandSent)
                if c.op == "SetTargetSpeed" and c.facing is Direction.BACKWARD]
    # The presses took the person up to the ceiling, and not one step beyond it.
    assert max(backward) == pytest.approx(
        quantize_down(ceiling, run.session.envelope.machine.increment_kmh))


@VIRTUAL
async def test_a_stop_is_never_queued_behind_a_retried_speed(first_session: Profile) -> None:
    """With replies lost, a speed command in flight times out; it is not retried once
    the person has pressed Stop: the Stop is the next thing on the wire."""
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session, min_kmh=0.6)
        sim.faults.replies_lost = True
        await until(lambda: not session.control.idle())  # a command is in flight
        marks["stop"] = sim.clock.now()
        session.request(UserCommand.STOP)

    run = await run_on_sim(first_session, scenario=scenario)
    after = [r for t, r in zip(run.sim.request_times, run.sim.requests, strict=True)
             if t >= marks["stop"]]
    assert after, "nothing reached the machine after Stop"
    assert not any(isinstance(r, codec.SetTargetSpeed | codec.StartOrResume) for r in after)
    first = next(r for r in after if not isinstance(r, codec.RequestControl))
    assert isinstance(first, codec.StopOrPause) and first.action is codec.StopPause.STOP


@VIRTUAL
async def test_a_pause_left_alone_ends_the_workout_with_stop(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        assert session.request(UserCommand.PAUSE)  # and nobody comes back

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.STOPPED_BY_USER
    assert "idle" in run.watchdog_triggers()
    finished = run.result.elapsed_s
    assert finished > run.session.settings.max_idle_s
    check_invariants(run)


@VIRTUAL
async def test_a_belt_that_will_not_stop_for_a_turnaround_is_stopped(
        first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await until(lambda: session.state is State.TURN_STOPPING)
        # (after the Pause has reached the machine: the new driver writes it in the same
        # instant the state changes, so a fault started before it would be undone by it)
        await until(lambda: any(isinstance(r, codec.StopOrPause) for r in sim.requests[-3:]))
        sim.start_runaway(1.0)  # the belt keeps creeping along, ignoring Pause
        await until(lambda: session.state is State.SAFE_STOP)
        sim.faults.runaway_kmh = None  # the machine obeys Stop again

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.WATCHDOG
    assert "belt_not_stopping" in run.watchdog_triggers()
    assert run.sim.belt.speed_kmh == 0.0
    check_invariants(run)


@VIRTUAL
async def test_writes_refused_as_busy_end_in_stop(first_session: Profile) -> None:
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        sim.faults.reply_delay_s = 2.5  # replies come after our time-out: the next write
        # finds a procedure still in progress (ATT 0xFE)

    run = await run_on_sim(first_session, scenario=scenario)
    assert run.result.outcome is Outcome.WATCHDOG
    assert run.result.stop_sent
    # The Stop reached the machine and the belt stopped, although no reply ever came in
    # time to acknowledge it (the session then tells the person to pull the safety key).
    assert run.sim.belt.speed_kmh == 0.0
    check_invariants(run)
