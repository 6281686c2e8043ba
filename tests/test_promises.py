"""The rules envelope.py and the quirk files state, each enforced (issue 12, item 1).

Each test runs on a simulator preset that behaves the way the rule is about.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from retrotread.envelope import START_SPEED_MAX_KMH, Envelope, MachineLimits
from retrotread.errors import SafetyError
from retrotread.events import CommandSent, WatchdogAction
from retrotread.ftms import codec
from retrotread.profile import load_profile
from retrotread.session import Session
from retrotread.sim.treadmill import SimulatedTreadmill
from tests.test_faults import until, walking_backward
from tests.workout_harness import check_invariants, run_on_sim

PROFILES = Path(__file__).parent.parent / "profiles"
VIRTUAL = pytest.mark.looptime(noop_cycles=1)


def test_a_machine_that_cannot_start_at_1_mph_is_refused() -> None:
    with pytest.raises(SafetyError, match="lowest speed"):
        Envelope.build(MachineLimits(min_kmh=2.0, max_kmh=16.0, increment_kmh=0.1))
    ok = Envelope.build(MachineLimits(min_kmh=1.6, max_kmh=16.0, increment_kmh=0.1))
    assert ok.start_speed_kmh() <= START_SPEED_MAX_KMH


def test_the_cli_refuses_such_a_machine_before_the_belt_moves(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "retrotread", "run", str(PROFILES / "first-session.yaml"),
         "--device", "sim:fast-minimum", "--no-ui", "--log", str(tmp_path / "s.jsonl")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "lowest speed" in result.stderr and "Traceback" not in result.stderr


@VIRTUAL
async def test_no_start_is_followed_by_a_setpoint_above_the_start_speed() -> None:
    run = await run_on_sim(load_profile(PROFILES / "intervals.yaml"))
    commands = run.of(CommandSent)
    for i, command in enumerate(commands):
        if command.op != "StartOrResume":
            continue
        following = next((c for c in commands[i + 1:] if c.op == "SetTargetSpeed"), None)
        if following is not None:
            assert following.speed_kmh <= START_SPEED_MAX_KMH + 1e-9, following


@VIRTUAL
async def test_a_machine_that_ignores_pause_gets_stop_at_turnarounds() -> None:
    run = await run_on_sim(load_profile(PROFILES / "first-session.yaml"), preset="coarse")
    assert run.session.treadmill.quirks.ignores_pause
    halts = [r for r in run.sim.requests if isinstance(r, codec.StopOrPause)]
    assert halts and all(r.action is codec.StopPause.STOP for r in halts)
    assert run.result.outcome.value == "completed"
    check_invariants(run)


@VIRTUAL
async def test_a_machine_that_needs_start_before_speed_gets_them_in_that_order() -> None:
    run = await run_on_sim(load_profile(PROFILES / "first-session.yaml"),
                           preset="home-treadmill")
    assert run.session.treadmill.quirks.must_start_before_speed
    running = False
    for request in run.sim.requests:
        if isinstance(request, codec.StartOrResume):
            running = True
        elif isinstance(request, codec.StopOrPause):
            running = False
        elif isinstance(request, codec.SetTargetSpeed):
            assert running, "a speed was sent to a machine that was not started"
    assert run.result.outcome.value == "completed"
    assert not run.watchdog_triggers()
    check_invariants(run)


@VIRTUAL
async def test_two_unanswered_commands_of_any_kind_stop_the_belt() -> None:
    """Replies swallowed from the walk on: the second unanswered command (whatever it
    was) leads to Stop, not a third."""
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await walking_backward(session)
        marks["lost"] = sim.clock.now()
        sim.faults.replies_lost = True
        await until(lambda: any(
            t >= marks["lost"] and isinstance(r, codec.StopOrPause)
            for t, r in zip(sim.request_times, sim.requests, strict=True)))
        sim.faults.replies_lost = False

    run = await run_on_sim(load_profile(PROFILES / "intervals.yaml"), scenario=scenario)
    assert "no_reply" in run.watchdog_triggers()
    after = [(t, r) for t, r in zip(run.sim.request_times, run.sim.requests, strict=True)
             if t >= marks["lost"]]
    first_stop = next(i for i, (_, r) in enumerate(after) if isinstance(r, codec.StopOrPause))
    assert first_stop <= 2, after[:4]  # at most two unanswered commands before the Stop
    stop_actions = [e for e in run.of(WatchdogAction) if e.trigger == "no_reply"]
    assert stop_actions


@VIRTUAL
async def test_automatic_speed_changes_above_half_a_kmh_are_announced_ahead() -> None:
    from retrotread.envelope import ANNOUNCE_SPEED_CHANGE_KMH
    from retrotread.events import Announcement
    from retrotread.plan import RAMP

    run = await run_on_sim(load_profile(PROFILES / "intervals.yaml"))
    plan = run.session.plan
    said = [a for a in run.of(Announcement)
            if a.text.startswith(("Speeding up", "Slowing down"))]
    big = [s for s in plan.steps if s.kind == RAMP
           and abs(s.end_kmh - s.start_kmh) > ANNOUNCE_SPEED_CHANGE_KMH]
    assert big and len([a for a in said if "finish" not in a.text]) == len(big)
    # A change during a walk (after a hold) is said 5 s before it starts.
    mid_walk = [a for a in said if "in 5 seconds" in a.text]
    assert mid_walk, said
    # Nothing else: changes of 0.5 km/h or less go unannounced (one finish notice at most).
    finish = [a for a in said if "finish" in a.text]
    assert len(finish) <= 1
    assert len(said) == len(big) + len(finish)


def test_a_sample_without_a_speed_is_never_a_stopped_belt() -> None:
    """Treadmill Data without the speed field (a part with More Data set, as a machine
    that misreads the inverted bit sends): the turnaround's "belt stopped" needs a real
    measurement; there is no timed fallback, by choice (docs/safety.md).

    Fed straight to the pure session core (no event loop, no link)."""
    from retrotread.envelope import Envelope
    from retrotread.machine import SessionMachine
    from retrotread.observations import TelemetryObserved
    from retrotread.plan import compile_plan
    from retrotread.runner import segment_infos
    from retrotread.treadmill import Telemetry

    profile = load_profile(PROFILES / "first-session.yaml")
    envelope = Envelope.build()
    machine = SessionMachine(plan=compile_plan(profile, envelope),
                             segments=segment_infos(profile), envelope=envelope)
    no_speed = codec.TreadmillData(more_data=True, speed_kmh=None, total_distance_m=3)
    for t in range(5):
        machine.step(float(t), TelemetryObserved(Telemetry(float(t), no_speed)))
    assert not machine._confirmed_stopped()
    assert machine.belt_moving()  # unknown: never taken for stopped


@VIRTUAL
async def test_a_long_stop_at_a_turnaround_warns_that_consoles_may_end_the_workout() -> None:
    """TURNAROUND_MAX_STOPPED_S: many consoles end a paused workout after 30-60 s."""
    from retrotread.envelope import TURNAROUND_MAX_STOPPED_S
    from retrotread.events import Announcement, UserCommand
    from retrotread.session import SessionSettings, State

    said_at: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await until(lambda: session.state is State.WAITING_READY
                    and session.segment_index >= 0)
        said_at["gate"] = sim.clock.now()
        await until(lambda: any("some consoles" in a for a in [session.last_announcement or ""]))
        said_at["warned"] = sim.clock.now()
        session.request(UserCommand.STOP, "key")

    run = await run_on_sim(load_profile(PROFILES / "first-session.yaml"), scenario=scenario,
                           settings=SessionSettings(ready_gate="key"))
    waited = said_at["warned"] - said_at["gate"]
    assert TURNAROUND_MAX_STOPPED_S <= waited <= TURNAROUND_MAX_STOPPED_S + 2.0
    assert [a for a in run.of(Announcement) if "some consoles" in a.text]
