"""Random workouts for the pure session core: random profiles x random faults x random
commands, each run as a plain loop (retrotread.plain_loop) with the safety invariants
checked on every write and at the end.

A scenario is drawn from one integer seed (``random.Random(seed)``), so a failure names
the seed that reproduces it: ``python -m benchmarks.plain_loop --seed N``.

Invariants (an ``InvariantBroken`` names the first one broken):

1. ceiling: no Set Target Speed above the ceiling of the way the person faces (2.0 mph
   backward, or the lower cap);
2. ramp: between two speeds on the wire (with no Start/Stop/Pause between), no step
   steeper than the ramp limit (one increment of slack for quantization); the first
   speed after a Start is the start speed (or the machine's floor);
3. no Start on a moving belt: the latest sample the session has when the Start is
   written shows the belt standing (a belt that starts moving on its own after that
   sample cannot be known; the countdown's own check and the standing rule catch it on
   the next sample);
4. once the machine has reported the safety key pulled, no Start and no speed is written
   (a Pause or Stop already queued may still go: both stop);
5. no Start after a pause the person asked for unless the person at the machine (key or
   companion) resumed it: no remote, voice or signal source ever restarts a belt;
6. the session ends by itself (virtual-time limit), FINISHED, with one SessionFinished;
7. every way out ends with the belt commanded to stop: if a Start reached the machine
   and the link is up at the end, a Stop reached the machine after the last Start, and
   "Stop sent" is claimed exactly when one did;
8. after the end, the belt coasts to a standstill when the Stop was answered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from retrotread.authority import LOCAL_SOURCES
from retrotread.envelope import STOPPED_SPEED_KMH, Direction
from retrotread.events import CommandSource, SessionFinished, UserAction, UserCommand
from retrotread.ftms import codec
from retrotread.machine import SessionSettings
from retrotread.observations import Interrupted, UserRequest
from retrotread.plain_loop import PlainRun, WireRecord, plain_run
from retrotread.profile import load_profile_text
from retrotread.sim.presets import PRESETS

PRESET_NAMES = sorted(set(PRESETS) - {"fast-minimum"})
FAULTS = ("safety_key", "console_stop", "console_start", "console_up", "console_down",
          "drop", "drop_burst", "unreachable", "replies_lost", "slow_replies",
          "telemetry_gap", "runaway", "mph_bug", "ignore_speed", "refuse", "not_permitted")
COMMANDS = tuple(UserCommand)
SOURCES = tuple(CommandSource)
RESTARTING = (UserCommand.RESUME, UserCommand.START, UserCommand.READY,
              UserCommand.TOGGLE_PAUSE)
LIMIT_S = 2 * 3600.0


class InvariantBroken(AssertionError):
    pass


@dataclass(frozen=True)
class Scenario:
    seed: int
    profile_text: str
    preset: str
    ready_gate: str
    faults: tuple[tuple[float, str, float], ...]  # (time, kind, parameter)
    commands: tuple[tuple[float, UserCommand, str], ...]
    interrupt_s: float | None

    def describe(self) -> str:
        return (f"seed {self.seed}: preset {self.preset}, gate {self.ready_gate}, "
                f"faults {list(self.faults)}, commands "
                f"{[(round(t, 2), c.value, s) for t, c, s in self.commands]}, "
                f"interrupt {self.interrupt_s}\n{self.profile_text}")


def random_scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    lines = ["name: Random workout", "units: mph"]
    cap_tenths = 20
    if rng.random() < 0.3:
        cap_tenths = rng.choice([10, 12, 15, 20])
        lines += ["safety:", f"  backward_max: {cap_tenths / 10} mph"]
    lines.append("segments:")
    direction = rng.choice(["forward", "backward"])
    total = 0
    for _ in range(rng.randint(1, 4)):
        mph = rng.randint(5, cap_tenths if direction == "backward" else 30) / 10
        seconds = rng.randint(5, 60)
        total += seconds
        lines += [f"  - {direction}: {seconds}s", f"    speed: {mph} mph"]
        direction = "backward" if direction == "forward" else "forward"
    span = total + 40.0
    faults = tuple(sorted(
        (rng.uniform(0.0, span), rng.choice(FAULTS), rng.uniform(0.0, 1.0))
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4]))))
    commands = tuple(sorted(
        (rng.uniform(0.0, span), rng.choice(COMMANDS), rng.choice(SOURCES).value)
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8]))))
    interrupt_s = rng.uniform(0.0, span) if rng.random() < 0.15 else None
    return Scenario(seed, "\n".join(lines) + "\n", rng.choice(PRESET_NAMES),
                    rng.choice(["hold", "hold", "key"]), faults, commands, interrupt_s)


@dataclass
class Checker:
    """Checks every request as it is written (invariants 1-5)."""

    run: PlainRun
    last_speed: WireRecord | None = None
    key_pulled: bool = False
    user_paused: bool = False
    seen_events: int = 0
    checked: int = 0
    broken: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        raise InvariantBroken(message)

    def _follow_events(self) -> None:
        events = self.run.events
        for event in events[self.seen_events:]:
            if isinstance(event, UserAction) and event.accepted:
                if event.command is UserCommand.PAUSE:
                    self.user_paused = True
                elif event.command in RESTARTING and event.source in LOCAL_SOURCES:
                    self.user_paused = False
        self.seen_events = len(events)

    def on_write(self, record: WireRecord) -> None:
        self.checked += 1
        self._follow_events()
        run = self.run
        request, envelope = record.request, run.envelope
        if run.machine.safety_key_stopped:
            self.key_pulled = True
        if self.key_pulled and isinstance(request, codec.StartOrResume | codec.SetTargetSpeed):
            self.fail(f"4. {request} written after the machine reported the safety key "
                      "pulled")
        if isinstance(request, codec.StartOrResume):
            latest = run.machine.latest
            known = latest.data.speed_kmh if latest is not None else None
            if latest is None or known is None or known > STOPPED_SPEED_KMH:
                self.fail(f"3. Start at {record.time_s:.2f} s while the latest sample shows "
                          f"the belt at {known} km/h")
            if self.user_paused:
                self.fail(f"5. Start at {record.time_s:.2f} s after a pause nobody at the "
                          "machine resumed")
            self.last_speed = None
        elif isinstance(request, codec.StopOrPause):
            self.last_speed = None
        elif isinstance(request, codec.SetTargetSpeed):
            speed = request.speed_kmh
            if speed > envelope.ceiling_kmh(record.facing) + 1e-9:
                self.fail(f"1. {speed:.2f} km/h facing {record.facing.value} above the "
                          f"ceiling {envelope.ceiling_kmh(record.facing):.2f}")
            if record.facing is Direction.BACKWARD and (
                    speed > envelope.ceiling_kmh(Direction.BACKWARD) + 1e-9):
                self.fail("1. backward ceiling")
            last = self.last_speed
            increment = envelope.machine.increment_kmh
            if last is None:
                first = max(run.machine.floor_kmh, envelope.start_speed_kmh())
                if speed > first + 1e-9 and not (
                        record.facing is Direction.FORWARD and speed <= 1.61):
                    self.fail(f"2. first speed after a Start {speed:.2f} km/h above "
                              f"{first:.2f}")
            else:
                assert isinstance(last.request, codec.SetTargetSpeed)
                rate = max(envelope.ramp_kmh_per_s(record.facing), envelope.ramp_stop_kmh_per_s)
                step = abs(speed - last.request.speed_kmh)
                allowed = rate * (record.time_s - last.time_s) + increment + 0.011
                if step > allowed:
                    self.fail(f"2. ramp: {last.request.speed_kmh:.2f} -> {speed:.2f} km/h in "
                              f"{record.time_s - last.time_s:.2f} s")
            self.last_speed = record


def _fault(run: PlainRun, kind: str, parameter: float) -> None:
    sim = run.stepped.sim
    faults = sim.faults
    if kind == "safety_key":
        sim.pull_safety_key()
    elif kind == "console_stop":
        sim.console_stop()
    elif kind == "console_start":
        sim.console_start()
    elif kind == "console_up":
        sim.console_speed_up()
    elif kind == "console_down":
        sim.console_speed_down()
    elif kind == "drop":
        sim.drop_links()
    elif kind == "drop_burst":
        sim.drop_links()
        for k in range(1, 2 + int(parameter * 4)):
            run.at(run.now + k * (0.05 + parameter), lambda r: r.stepped.sim.drop_links())
    elif kind == "unreachable":
        faults.refuse_connections = True
        sim.drop_links()
        run.at(run.now + 1.0 + 30.0 * parameter,
               lambda r: setattr(r.stepped.sim.faults, "refuse_connections", False))
    elif kind == "replies_lost":
        faults.replies_lost = True
        run.at(run.now + 1.0 + 10.0 * parameter,
               lambda r: setattr(r.stepped.sim.faults, "replies_lost", False))
    elif kind == "slow_replies":
        faults.reply_delay_s = 0.5 + 2.5 * parameter
        run.at(run.now + 20.0, lambda r: setattr(r.stepped.sim.faults, "reply_delay_s", None))
    elif kind == "telemetry_gap":
        faults.telemetry_stopped = True
        run.at(run.now + 0.5 + 6.0 * parameter,
               lambda r: setattr(r.stepped.sim.faults, "telemetry_stopped", False))
    elif kind == "runaway":
        sim.start_runaway(4.0 + 10.0 * parameter)
    elif kind == "mph_bug":
        faults.kmh_read_as_mph = True
    elif kind == "ignore_speed":
        faults.ignore_speed_commands = True
    elif kind == "refuse":
        faults.refuse_commands = codec.ResultCode.OPERATION_FAILED
        run.at(run.now + 0.5 + 5 * parameter,
               lambda r: setattr(r.stepped.sim.faults, "refuse_commands", None))
    elif kind == "not_permitted":
        faults.refuse_commands = codec.ResultCode.CONTROL_NOT_PERMITTED
        run.at(run.now + 0.2 + 3 * parameter,
               lambda r: setattr(r.stepped.sim.faults, "refuse_commands", None))


def run_scenario(scenario: Scenario, *, telemetry_as_bytes: bool = False) -> PlainRun:
    """Run ``scenario``; raise :class:`InvariantBroken` (with the seed) if a rule breaks."""
    profile = load_profile_text(scenario.profile_text)
    run = plain_run(profile, preset=scenario.preset,
                    settings=SessionSettings(ready_gate=scenario.ready_gate),
                    telemetry_as_bytes=telemetry_as_bytes, seed=scenario.seed)
    checker = Checker(run)
    run.on_write = checker.on_write
    for time_s, kind, parameter in scenario.faults:
        run.at(time_s, lambda r, k=kind, p=parameter: _fault(r, k, p))  # type: ignore[misc]
    for time_s, command, source in scenario.commands:
        run.at(time_s, lambda r, c=command, s=source: r.feed(UserRequest(c, s)))  # type: ignore[misc]
    if scenario.interrupt_s is not None:
        run.at(scenario.interrupt_s, lambda r: r.feed(Interrupted("SIGINT")))
    try:
        run.run(LIMIT_S)
        check_end(run)
    except (InvariantBroken, TimeoutError, AssertionError) as exc:
        raise InvariantBroken(f"{exc}\n{scenario.describe()}") from exc
    return run


def check_end(run: PlainRun) -> None:
    """Invariants 6-8."""
    machine = run.machine
    finished = [e for e in run.events if isinstance(e, SessionFinished)]
    if not machine.finished or len(finished) != 1:
        raise InvariantBroken(f"6. the session did not end cleanly ({len(finished)} ends)")
    sim = run.stepped.sim
    requests = sim.requests
    starts = [i for i, r in enumerate(requests) if isinstance(r, codec.StartOrResume)]
    stops_after = [i for i, r in enumerate(requests)
                   if isinstance(r, codec.StopOrPause) and r.action is codec.StopPause.STOP
                   and (not starts or i > starts[-1])]
    result = machine.result
    assert result is not None
    if starts and machine.link_ok and not stops_after:
        raise InvariantBroken("7. the belt was started and no Stop reached it after the "
                              "last Start, with the link up at the end")
    if result.stop_sent and starts and not stops_after:
        raise InvariantBroken("7. 'Stop sent' claimed with no Stop after the last Start")
    if stops_after and not result.stop_sent and machine.link_ok and (
            machine.control.in_flight is None):
        # (a Stop still waiting for its answer when the session ends is not known to have
        # arrived: not claiming it errs on the safe side)
        raise InvariantBroken("7. a Stop reached the machine but 'Stop sent' is not claimed")
    if machine.control.stop_acked:
        end = run.now + 30.0
        sim.belt.advance_to(end)
        if sim.belt.speed_kmh > STOPPED_SPEED_KMH and sim.faults.runaway_kmh is None:
            raise InvariantBroken(f"8. the belt still runs at {sim.belt.speed_kmh:.2f} km/h "
                                  "30 s after an acknowledged Stop")


def summary(runs: list[PlainRun]) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for run in runs:
        assert run.machine.result is not None
        key = run.machine.result.outcome.value
        outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes
