"""Run a profile on the simulator in virtual time and check the safety invariants."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from retrotread.clock import LoopClock
from retrotread.devices import DeviceSpec
from retrotread.envelope import BACKWARD_CEILING_KMH, Direction
from retrotread.events import CommandSent, Event, EventBus, TelemetrySample
from retrotread.ftms import codec
from retrotread.runner import (
    LinkFactory,
    follow_the_person,
    run_profile,
    running_simulator,
    running_strap,
)
from retrotread.session import Session, SessionResult, SessionSettings
from retrotread.sim.treadmill import SimulatedTreadmill

Scenario = Callable[[SimulatedTreadmill, Session], Awaitable[None]]


@dataclass
class WorkoutRun:
    result: SessionResult
    events: list[Event]
    sim: SimulatedTreadmill
    session: Session
    scenario_error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def watchdog_triggers(self) -> list[str]:
        from retrotread.events import WatchdogAction

        return [e.trigger for e in self.of(WatchdogAction) if e.action == "stop"]


async def run_on_sim(
    profile: Any,
    *,
    preset: str = "generic",
    scenario: Scenario | None = None,
    settings: SessionSettings | None = None,
    backward_max_mph: float | None = None,
    noise_kmh: float = 0.0,
    heart_rate_in_treadmill_data: bool = True,
    hr_strap: bool = False,
) -> WorkoutRun:
    """``hr_strap``: a simulated heart-rate strap on the same person is the heart-rate
    source (``run.extra["strap"]``)."""
    clock = LoopClock()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    holder: list[Session] = []
    scenario_task: list[asyncio.Future[None]] = []
    extra: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(
            running_simulator(clock, preset, noise_kmh, heart_rate=heart_rate_in_treadmill_data))
        bus.subscribe(follow_the_person(sim))
        strap_links: LinkFactory | None = None
        if hr_strap:
            strap = await stack.enter_async_context(running_strap(clock, sim))
            bus.subscribe(follow_the_person(strap))
            strap_links = LinkFactory(DeviceSpec("sim", "strap"), strap)
            extra["strap"] = strap
        def on_session(session: Session) -> None:
            holder.append(session)
            if scenario is not None:
                scenario_task.append(asyncio.ensure_future(scenario(sim, session)))

        result = await run_profile(
            profile,
            link_factory=LinkFactory(DeviceSpec("sim", preset), sim),
            clock=clock,
            bus=bus,
            simulated=True,
            backward_max_mph=backward_max_mph,
            settings=settings,
            on_session=on_session,
            heart_rate_link_factory=strap_links,
        )
        error: BaseException | None = None
        for task in scenario_task:
            if not task.done():
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # reported, not swallowed
                error = exc
        await asyncio.sleep(5)  # let the belt coast to a stop in the simulator
        sim.belt.advance_to(clock.now())  # (its physics advance lazily, on each event)
    return WorkoutRun(result, events, sim, holder[0], error, extra)


def check_invariants(run: WorkoutRun, *, ramp_tolerance_kmh: float | None = None) -> None:
    """The safety properties every run must have, whatever happened in it."""
    session = run.session
    envelope = session.envelope
    increment = envelope.machine.increment_kmh
    tolerance = ramp_tolerance_kmh if ramp_tolerance_kmh is not None else increment + 0.011
    commands = run.of(CommandSent)
    speeds = [c for c in commands if c.op == "SetTargetSpeed"]
    # 1. Never above the backward ceiling while the person faces backward.
    ceiling = envelope.ceiling_kmh(Direction.BACKWARD)
    assert ceiling <= BACKWARD_CEILING_KMH
    for command in speeds:
        assert command.speed_kmh is not None
        if command.facing is Direction.BACKWARD:
            assert command.speed_kmh <= ceiling + 1e-9, command
        assert command.speed_kmh <= envelope.ceiling_kmh(command.facing) + 1e-9, command
    # 2. No setpoint step beyond the ramp limit (between starts; one increment of slack
    #    for quantization), except the first setpoint after a Start, at the start speed.
    last: CommandSent | None = None
    for command in commands:
        if command.op in ("StartOrResume", "StopOrPause"):
            last = None
            continue
        if command.op != "SetTargetSpeed":
            continue
        assert command.speed_kmh is not None
        if last is None:
            assert command.speed_kmh <= max(session.floor_kmh, envelope.start_speed_kmh()) + 1e-9 \
                or (command.facing is Direction.FORWARD and command.speed_kmh <= 1.61), command
        else:
            assert last.speed_kmh is not None
            dt = command.time_s - last.time_s
            rate = max(envelope.ramp_kmh_per_s(command.facing), envelope.ramp_stop_kmh_per_s)
            assert abs(command.speed_kmh - last.speed_kmh) <= rate * dt + tolerance, (last, command)
        last = command
    # 3. No Start on a moving belt: the last telemetry before every Start shows it stopped.
    telemetry = run.of(TelemetrySample)
    for command in commands:
        if command.op != "StartOrResume":
            continue
        before = [t for t in telemetry if t.time_s <= command.time_s and t.speed_kmh is not None]
        if before:
            assert before[-1].speed_kmh <= 0.1 + 1e-9, (before[-1], command)
    # 4. Every run ends with Stop on the wire, after the last speed or start command.
    requests = run.sim.requests
    assert requests, "nothing reached the machine"
    stops = [i for i, r in enumerate(requests)
             if isinstance(r, codec.StopOrPause) and r.action is codec.StopPause.STOP]
    assert stops, f"no Stop sent; outcome {run.result}"
    motion = [i for i, r in enumerate(requests)
              if isinstance(r, codec.SetTargetSpeed | codec.StartOrResume)]
    if motion:
        assert stops[-1] > motion[-1], "a speed or start command followed the last Stop"
    assert run.result.stop_sent
    assert run.scenario_error is None, run.scenario_error
