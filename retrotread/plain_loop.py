"""A whole workout as a plain loop: the pure session core against the stepped simulator.

No event loop and no clock: time is a number this loop moves from one thing to the next
(a tick, a telemetry record, a reply, a reply's time-out, a scheduled fault or key press,
a reconnect attempt). The machine (``retrotread.machine``) and the simulated treadmill
with its FTMS client (``retrotread.sim.stepped``) are the same code the program runs;
only the asyncio driver (``retrotread.session``) is left out. That is what makes thousands
of random workouts affordable (``tests/test_machine_properties.py``,
``benchmarks/plain_loop.py``).

One liberty, used only here: while the person walks steadily (the setpoint reached and
constant, nothing queued, no watchdog timer running, no announcement due), the loop jumps
its next tick to :meth:`SessionMachine.quiet_until`. A tick there would change nothing but
the plan's clock; telemetry, replies and faults still arrive at their own times.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from retrotread.envelope import Direction, Envelope
from retrotread.events import Event, TurnaroundPhase
from retrotread.ftms import codec
from retrotread.ftms.client import LinkLost as ClientLinkLost
from retrotread.machine import MachineSetup, SessionMachine, SessionSettings
from retrotread.observations import (
    CommandFinished,
    LinkLost,
    LinkUp,
    Observation,
    ReconnectFailed,
    StatusObserved,
    TelemetryObserved,
    Tick,
)
from retrotread.plan import compile_plan
from retrotread.quirks import Quirks, match_quirks
from retrotread.runner import build_envelope, limits_of, segment_infos
from retrotread.sim.stepped import SteppedTreadmill
from retrotread.treadmill import CommandOutcome, StatusEvent, Telemetry
from retrotread.units import TIME_TOLERANCE_S

Action = Callable[["PlainRun"], None]
"""Something that happens at a time: a console press, a fault, a person's command."""

_NEVER = float("inf")

_TICK = Tick()
"""Every tick is the same observation (its time is the step's)."""


@dataclass
class WireRecord:
    """One request the core handed out, with the way the person faced then."""

    time_s: float
    request: codec.ControlPointRequest
    facing: Direction


@dataclass
class PlainRun:
    machine: SessionMachine
    stepped: SteppedTreadmill
    envelope: Envelope
    now: float = 0.0
    events: list[Event] = field(default_factory=list)
    wire: list[WireRecord] = field(default_factory=list)
    schedule: list[tuple[float, int, Action]] = field(default_factory=list)
    steps: int = 0
    keep_events: bool = True
    on_write: Callable[[WireRecord], None] | None = None
    """Called with every request as it is written (a checker's hook)."""
    _reconnect_at: float = _NEVER
    _backoff_s: float = 0.0
    _attempt: int = 0

    # ------------------------------------------------------------------ the caller's side
    def at(self, time_s: float, action: Action) -> None:
        """Do ``action`` (given this run) at ``time_s``."""
        self.schedule.append((time_s, len(self.schedule), action))
        self.schedule.sort()

    def feed(self, observation: Observation, time_s: float | None = None) -> None:
        """Hand the machine one observation now (a person's command from an action)."""
        self._take(self.machine.step(self.now if time_s is None else time_s, observation))

    def run(self, limit_s: float = 4 * 3600.0) -> None:
        """Until the machine is FINISHED (or ``limit_s`` of workout time: a hang)."""
        machine, stepped = self.machine, self.stepped
        period = machine.period_s
        self.feed(_TICK)
        self._write()
        next_tick = period
        while not machine.finished:
            stepped_due = stepped.next_due_s()
            due = min(next_tick, stepped_due, self._reconnect_at)
            if self.schedule:
                due = min(due, self.schedule[0][0])
            write_due = machine.next_due_s()
            if write_due is not None:
                due = min(due, max(write_due, self.now))
            if due > limit_s:
                raise TimeoutError(f"the session did not end within {limit_s:.0f} s "
                                   f"(state {machine.state.value})")
            now = self.now = max(self.now, due)
            observed = False
            if stepped_due <= now + TIME_TOLERANCE_S:
                for happened in stepped.advance(now):
                    observed = self._observe(happened) or observed
            else:
                stepped.idle_to(now)
            if machine.finished:
                break  # (nothing scheduled for later happens to this session)
            while self.schedule and self.schedule[0][0] <= now:
                _, _, action = self.schedule.pop(0)
                action(self)
                observed = True
            if now >= self._reconnect_at:
                self._try_reconnect()
                observed = True
            if now >= next_tick - 1e-9 and not machine.finished:
                self.feed(_TICK)
                self.steps += 1
                next_tick = self._next_tick(now, period)
            elif observed and next_tick > round(now + period, 9):
                # something happened: the next tick may be needed sooner (never sooner
                # than one period from now, so a tick already that close stays)
                next_tick = min(next_tick, self._next_tick(now, period))
            if self._may_write() and self._write():
                next_tick = min(next_tick, self._next_tick(self.now, period))

    # ------------------------------------------------------------------ inside
    def _next_tick(self, now: float, period: float) -> float:
        if self.machine.finished:
            return _NEVER
        quiet = self.machine.quiet_until(now)
        if quiet <= now + period:
            return round(now + period, 9)
        return round(now + period * int((quiet - now) / period), 9)

    def _may_write(self) -> bool:
        """Whether asking the machine for a request could give one: not while its control
        point is idle (nothing queued) or has a request in flight (one at a time: the
        answer comes first). Most iterations (a tick, a sample) are one of those, and
        asking would only be told "nothing"."""
        control = self.machine.control
        return control.in_flight is None and not control.idle()

    def _take(self, events: list[Event]) -> None:
        if events:
            for event in events:
                if isinstance(event, TurnaroundPhase) and event.phase == "start":
                    self.stepped.sim.person_faces(event.to_direction)
            if self.keep_events:
                self.events += events
        machine = self.machine
        if self._reconnect_at == _NEVER and not machine.link_ok and machine.wants_reconnect:
            self._backoff_s = self.machine.settings.reconnect_backoff_s
            self._reconnect_at = self.now  # the keeper tries at once

    def _observe(self, happened: Any) -> bool:
        if isinstance(happened, Telemetry):
            self.feed(TelemetryObserved(happened), happened.time_s)
        elif isinstance(happened, StatusEvent):
            self.feed(StatusObserved(happened), happened.time_s)
        elif isinstance(happened, CommandOutcome):
            self.feed(CommandFinished(happened), happened.time_s)
        elif isinstance(happened, ClientLinkLost):
            self.feed(LinkLost(self.stepped.sim.preset.name))
        else:
            return False
        return True

    def _try_reconnect(self) -> None:
        if not self.machine.wants_reconnect:
            self._reconnect_at = _NEVER
            return
        self._attempt += 1
        if self.stepped.reconnect(self.now):
            self._reconnect_at = _NEVER
            self.feed(LinkUp(self.stepped.sim.preset.name, self.machine.control.quirks))
            return
        self.feed(ReconnectFailed(self._attempt, "the machine refused the connection"))
        self._reconnect_at = self.now + self._backoff_s
        self._backoff_s = min(2 * self._backoff_s, self.machine.settings.reconnect_backoff_max_s)

    def _write(self) -> bool:
        """Hand the stepped treadmill what the machine wants written; whether anything
        was (its answers may already be in)."""
        machine = self.machine
        wrote = False
        while True:
            request = machine.take_write(self.now)
            self._take(machine.drain())
            if request is None:
                return wrote
            wrote = True
            record = WireRecord(self.now, request, machine.facing)
            self.wire.append(record)
            if self.on_write is not None:
                self.on_write(record)
            self.stepped.write(self.now, request)
            for happened in self.stepped.advance(self.now):
                self._observe(happened)
            if not self._may_write():
                return True  # (asking would be told "nothing", and change nothing)


def plain_run(profile: Any, *, preset: str = "generic",
              settings: SessionSettings | None = None, telemetry_interval_s: float = 1.0,
              noise_kmh: float = 0.0, seed: int = 0, keep_events: bool = True,
              telemetry_as_bytes: bool = True) -> PlainRun:
    """A :class:`PlainRun` of ``profile`` on a simulated ``preset``, ready to :meth:`run`
    (schedule faults and key presses with :meth:`PlainRun.at` first).
    ``telemetry_as_bytes=False``: Treadmill Data reaches the client as decoded records
    (identical, tests/test_stepped_sim.py), skipping the codec's cost on every sample."""
    stepped = SteppedTreadmill(preset, telemetry_interval_s=telemetry_interval_s,
                               speed_noise_kmh=noise_kmh, seed=seed,
                               telemetry_as_bytes=telemetry_as_bytes)
    sim = stepped.sim
    quirks = _simulator_quirks(sim.preset.manufacturer, sim.preset.model,
                               f"in-process:{sim.preset.name}")
    reply_timeout_s = max(2.0, quirks.reply_timeout_s or 0.0)
    stepped.client.reply_timeout_s = reply_timeout_s
    envelope = build_envelope(profile, limits_of(stepped.speed_range, quirks), None)
    machine = SessionMachine(
        plan=compile_plan(profile, envelope), segments=segment_infos(profile),
        envelope=envelope, settings=settings or SessionSettings(), quirks=quirks,
        setup=MachineSetup(profile_name=getattr(profile, "name", "workout"),
                           link_description=f"in-process:{sim.preset.name}", simulated=True,
                           can_reconnect=True, reply_timeout_s=reply_timeout_s))
    return PlainRun(machine, stepped, envelope, keep_events=keep_events)


@dataclass(frozen=True)
class _DeviceInfo:
    manufacturer: str | None
    model: str | None


@functools.cache
def _simulator_quirks(manufacturer: str | None, model: str | None, name: str) -> Quirks:
    """A simulated preset's quirks, matched once per process. A match reads every quirk
    file (YAML), about 6 ms: as long as a short random run takes. (Quirks are frozen, so
    runs can share them.)"""
    return match_quirks(_DeviceInfo(manufacturer, model), name)
