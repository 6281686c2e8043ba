"""The pure session core (retrotread.machine), table-driven: state x observation -> state
and what goes on the wire. No event loop, no link: a tiny ideal belt answers every write
at once, and its speed follows the last Set Target Speed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from retrotread.envelope import Envelope
from retrotread.events import (
    Announcement,
    CommandSource,
    Event,
    Outcome,
    SessionFinished,
    SessionStarted,
    UserAction,
    UserCommand,
)
from retrotread.formatting import Units
from retrotread.ftms import codec
from retrotread.machine import SessionMachine, SessionSettings, State
from retrotread.observations import (
    CommandFinished,
    Interrupted,
    LinkLost,
    LinkUp,
    Observation,
    StatusObserved,
    TelemetryObserved,
    Tick,
    UserRequest,
)
from retrotread.plan import compile_plan
from retrotread.profile import load_profile
from retrotread.quirks import Quirks
from retrotread.runner import segment_infos
from retrotread.treadmill import CommandOutcome, CommandStatus, StatusEvent, Telemetry

PROFILES = Path(__file__).parent.parent / "profiles"
C, S = UserCommand, CommandSource
STOP = codec.StopOrPause(action=codec.StopPause.STOP)
PAUSE = codec.StopOrPause(action=codec.StopPause.PAUSE)


@dataclass
class Rig:
    """A machine and an ideal belt, stepped at 10 Hz."""

    machine: SessionMachine
    now: float = 0.0
    speed_kmh: float = 0.0
    running: bool = False
    link_up: bool = True
    events: list[Event] = field(default_factory=list)
    wire: list[codec.ControlPointRequest] = field(default_factory=list)

    def feed(self, observation: Observation) -> list[Event]:
        events = self.machine.step(self.now, observation)
        self.events += events
        self._serve()
        return events

    def _serve(self) -> None:
        while self.link_up:
            request = self.machine.take_write(self.now)
            self.events += self.machine.drain()
            if request is None:
                return
            self.wire.append(request)
            if isinstance(request, codec.StartOrResume):
                self.running = True
            elif isinstance(request, codec.StopOrPause):
                self.running, self.speed_kmh = False, 0.0
            elif isinstance(request, codec.SetTargetSpeed) and self.running:
                self.speed_kmh = request.speed_kmh
            self.events += self.machine.step(self.now, CommandFinished(
                CommandOutcome(self.now, request, CommandStatus.ANSWERED)))

    def tick(self) -> None:
        self.now = round(self.now + 0.1, 6)
        if self.link_up:
            self.feed(TelemetryObserved(Telemetry(self.now, codec.TreadmillData(
                speed_kmh=self.speed_kmh, total_distance_m=0))))
        self.feed(Tick())

    def until(self, done: Callable[[], bool], within_s: float = 120.0) -> None:
        end = self.now + within_s
        while not done():
            assert self.now < end, f"not reached within {within_s} s: {self.machine.state}"
            self.tick()

    def wrote_since(self, mark: int) -> list[codec.ControlPointRequest]:
        return self.wire[mark:]


def rig(profile: str = "intervals.yaml", **settings: object) -> Rig:
    loaded = load_profile(PROFILES / profile)
    envelope = Envelope.build()
    machine = SessionMachine(plan=compile_plan(loaded, envelope),
                             segments=segment_infos(loaded), envelope=envelope,
                             settings=SessionSettings(**settings),  # type: ignore[arg-type]
                             quirks=Quirks())
    made = Rig(machine)
    made.feed(Tick())
    return made


def walking(r: Rig) -> Rig:
    r.until(lambda: r.machine.state is State.RUNNING and r.speed_kmh > 1.0)
    return r


def at(state: State) -> Rig:
    """A rig brought to ``state`` the way a workout gets there."""
    r = rig(ready_gate="key" if state is State.WAITING_READY else "hold")
    walking(r)
    if state is State.PAUSED:
        r.feed(UserRequest(C.PAUSE, S.KEY))
    elif state in (State.TURN_STOPPING, State.HOLD, State.WAITING_READY, State.COUNTDOWN):
        r.until(lambda: r.machine.state is state, 600.0)
    elif state is State.SAFE_STOP:
        r.feed(UserRequest(C.STOP, S.KEY))
    elif state is State.RECONNECTING:
        r.link_up = False
        r.feed(LinkLost("test link"))
    assert r.machine.state is state
    return r


def status(r: Rig, value: codec.MachineStatus) -> Observation:
    return StatusObserved(StatusEvent(r.now, value))


def test_the_start_takes_control_sees_the_belt_standing_and_counts_down() -> None:
    r = rig()
    assert isinstance(r.events[0], SessionStarted)
    assert r.wire == [codec.RequestControl()]
    r.until(lambda: r.machine.state is State.COUNTDOWN)
    assert not any(isinstance(w, codec.StartOrResume) for w in r.wire)
    r.until(lambda: r.machine.state is State.RUNNING)
    start = r.wire.index(codec.StartOrResume())
    assert isinstance(r.wire[start + 1], codec.SetTargetSpeed)
    assert r.wire[start + 1].speed_kmh <= 0.5 + 1e-9  # the start speed


def test_a_belt_already_moving_at_the_start_is_an_error_before_anything_moves() -> None:
    r = rig()
    r.speed_kmh = 2.0
    r.until(lambda: r.machine.finished, 10.0)
    assert r.machine.result is not None
    assert r.machine.result.outcome is Outcome.ERROR
    assert codec.StartOrResume() not in r.wire
    assert r.wire[-1] == STOP  # every way out ends with Stop


# (state, observation, state after, Stop written, Start written)
TABLE: list[tuple[State, Callable[[Rig], Observation], State, bool]] = [
    (State.RUNNING, lambda r: status(r, codec.StoppedBySafetyKey()), State.SAFE_STOP, True),
    (State.RUNNING, lambda r: status(r, codec.StoppedOrPausedByUser(codec.StopPause.STOP)),
     State.SAFE_STOP, True),
    (State.RUNNING, lambda r: status(r, codec.StoppedOrPausedByUser(codec.StopPause.PAUSE)),
     State.PAUSED, False),
    (State.RUNNING, lambda r: UserRequest(C.STOP, S.REMOTE), State.SAFE_STOP, True),
    (State.RUNNING, lambda r: UserRequest(C.STOP, S.VOICE), State.SAFE_STOP, True),
    (State.RUNNING, lambda r: UserRequest(C.PAUSE, S.VOICE), State.PAUSED, False),
    (State.RUNNING, lambda r: UserRequest(C.SPEED_UP, S.REMOTE), State.RUNNING, False),
    (State.RUNNING, lambda r: Interrupted("SIGTERM"), State.SAFE_STOP, True),
    (State.RUNNING, lambda r: LinkLost("test link"), State.RECONNECTING, False),
    (State.PAUSED, lambda r: UserRequest(C.RESUME, S.REMOTE), State.WAITING_READY, False),
    (State.PAUSED, lambda r: UserRequest(C.RESUME, S.VOICE), State.PAUSED, False),
    (State.PAUSED, lambda r: UserRequest(C.RESUME, S.KEY), State.COUNTDOWN, False),
    (State.PAUSED, lambda r: UserRequest(C.START, S.COMPANION), State.COUNTDOWN, False),
    (State.PAUSED, lambda r: status(r, codec.StartedOrResumedByUser()), State.SAFE_STOP, True),
    (State.HOLD, lambda r: UserRequest(C.READY, S.VOICE), State.HOLD, False),
    (State.HOLD, lambda r: UserRequest(C.STOP, S.COMPANION), State.SAFE_STOP, True),
    (State.WAITING_READY, lambda r: UserRequest(C.READY, S.REMOTE), State.WAITING_READY, False),
    (State.WAITING_READY, lambda r: status(r, codec.StartedOrResumedByUser()), State.SAFE_STOP,
     True),
    (State.COUNTDOWN, lambda r: UserRequest(C.PAUSE, S.KEY), State.COUNTDOWN, False),
    (State.COUNTDOWN, lambda r: status(r, codec.StoppedBySafetyKey()), State.SAFE_STOP, True),
    (State.TURN_STOPPING, lambda r: UserRequest(C.SKIP, S.KEY), State.TURN_STOPPING, False),
    (State.SAFE_STOP, lambda r: UserRequest(C.RESUME, S.KEY), State.SAFE_STOP, False),
    (State.SAFE_STOP, lambda r: UserRequest(C.STOP, S.KEY), State.SAFE_STOP, False),
    (State.RECONNECTING, lambda r: UserRequest(C.START, S.COMPANION), State.RECONNECTING, False),
]


@pytest.mark.parametrize(("before", "make", "after", "stops"), TABLE,
                         ids=[f"{b.value}-{i}" for i, (b, *_rest) in enumerate(TABLE)])
def test_state_by_observation(before: State, make: Callable[[Rig], Observation], after: State,
                              stops: bool) -> None:
    r = at(before)
    mark = len(r.wire)
    r.feed(make(r))
    assert r.machine.state is after
    written = r.wrote_since(mark)
    assert (STOP in written) is stops, written
    assert codec.StartOrResume() not in written  # no observation starts a belt at once
    assert not any(isinstance(w, codec.SetTargetSpeed) and w.speed_kmh > r.speed_kmh + 0.11
                   for w in written)  # ... nor speeds it up


def test_a_refused_command_is_recorded_with_its_reason() -> None:
    r = at(State.RUNNING)
    events = r.feed(UserRequest(C.SPEED_UP, S.VOICE))
    actions = [e for e in events if isinstance(e, UserAction)]
    assert len(actions) == 1 and not actions[0].accepted
    assert "stop or pause" in actions[0].detail


def test_the_link_back_after_a_drop_gets_stop_never_a_resume() -> None:
    r = at(State.RECONNECTING)
    mark = len(r.wire)
    r.link_up = True
    r.feed(LinkUp("test link", Quirks()))
    assert r.machine.state is State.SAFE_STOP
    written = r.wrote_since(mark)
    assert written[-1] == STOP and codec.StartOrResume() not in written
    r.until(lambda: r.machine.finished, 30.0)
    assert r.machine.result is not None and r.machine.result.stop_sent


@pytest.mark.parametrize("before", [State.RUNNING, State.PAUSED, State.HOLD, State.COUNTDOWN,
                                    State.SAFE_STOP])
def test_every_way_out_ends_finished_with_stop_acknowledged(before: State) -> None:
    r = at(before)
    r.feed(Interrupted("SIGINT"))
    r.until(lambda: r.machine.finished, 10.0)
    finished = [e for e in r.events if isinstance(e, SessionFinished)]
    assert len(finished) == 1
    assert finished[0].stop_sent and finished[0].stop_acknowledged
    mark = len(r.wire)
    for _ in range(20):  # nothing after the end
        r.tick()
        r.feed(UserRequest(C.START, S.KEY))
    assert r.wrote_since(mark) == []


def test_a_whole_workout_completes_as_a_plain_loop() -> None:
    r = rig("first-session.yaml")
    r.until(lambda: r.machine.finished, 3600.0)
    assert r.machine.result is not None
    assert r.machine.result.outcome is Outcome.COMPLETED
    assert r.wire[-1] == STOP
    turns = sum(1 for w in r.wire if w == PAUSE)
    assert turns == r.wire.count(codec.StartOrResume()) - 1  # each turnaround: pause, start


@pytest.mark.parametrize("before", [State.HOLD, State.WAITING_READY, State.PAUSED])
def test_a_belt_that_moves_after_it_stood_still_is_stopped(before: State) -> None:
    """A creeping or runaway belt (no status from the machine) at a turnaround or in a
    pause: stopped on the first sample that shows it (watchdog.check_standing)."""
    r = at(before)
    r.until(lambda: r.machine._standing, 20.0)
    mark = len(r.wire)
    r.speed_kmh = 0.6  # moving on its own
    r.tick()
    assert r.machine.state is State.SAFE_STOP
    assert STOP in r.wrote_since(mark)


def test_a_pause_cancels_a_start_whose_request_control_is_still_in_flight() -> None:
    """Pause pressed as the countdown ends, on a machine that wants Request Control before
    every command: the Start must not follow the Request Control."""
    loaded = load_profile(PROFILES / "intervals.yaml")
    envelope = Envelope.build()
    machine = SessionMachine(plan=compile_plan(loaded, envelope),
                             segments=segment_infos(loaded), envelope=envelope,
                             quirks=Quirks(request_control_before_every_command=True))
    machine.step(0.0, Tick())
    rc = machine.take_write(0.0)
    machine.step(0.1, CommandFinished(CommandOutcome(0.1, rc, CommandStatus.ANSWERED)))
    t = 0.1
    while machine.state is not State.RUNNING:
        t = round(t + 0.1, 6)
        machine.step(t, TelemetryObserved(Telemetry(t, codec.TreadmillData(speed_kmh=0.0))))
        machine.step(t, Tick())
    first = machine.take_write(t)
    assert isinstance(first, codec.RequestControl)  # the quirk's, before the Start
    machine.step(t, UserRequest(C.PAUSE, S.KEY))
    machine.step(t + 0.5, CommandFinished(CommandOutcome(t + 0.5, first,
                                                         CommandStatus.ANSWERED)))
    written = []
    while (request := machine.take_write(t + 0.5)) is not None:
        written.append(request)
        machine.step(t + 0.5, CommandFinished(CommandOutcome(t + 0.5, request,
                                                             CommandStatus.ANSWERED)))
    assert codec.StartOrResume() not in written
    assert PAUSE in written


@pytest.mark.parametrize(("units", "said", "not_said"),
                         [(Units.MPH, " mph", "km/h"), (Units.KMH, " km/h", "mph")])
def test_speed_changes_are_announced_in_the_persons_units(units: Units, said: str,
                                                          not_said: str) -> None:
    r = rig("intervals.yaml", units=units)
    r.until(lambda: r.machine.finished, 3600.0)
    changes = [e.text for e in r.events if isinstance(e, Announcement)
               and e.text.startswith(("Speeding up to", "Slowing down to"))
               and "finish" not in e.text]
    assert changes
    assert all(said in text and not_said not in text for text in changes), changes
