"""Who may do what (retrotread.authority), table-driven, and in a running session: only
the person at the machine can put a stopped belt in motion (issue 12: a remote restarted a
paused belt)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from retrotread.authority import Gate, Verdict, decide
from retrotread.events import CommandSource, UserAction, UserCommand
from retrotread.ftms import codec
from retrotread.profile import load_profile
from retrotread.session import Session, SessionSettings, State
from retrotread.sim.treadmill import SimulatedTreadmill
from tests.test_faults import until
from tests.workout_harness import check_invariants, run_on_sim

C, S, G, V = UserCommand, CommandSource, Gate, Verdict
MOVES = (C.RESUME, C.READY, C.START)
PROFILES = Path(__file__).parent.parent / "profiles"


@pytest.mark.parametrize("source", list(S))
@pytest.mark.parametrize("gate", list(G))
def test_every_source_may_stop_and_pause(source: CommandSource, gate: Gate) -> None:
    for command in (C.STOP, C.PAUSE):
        assert decide(command, source, gate).verdict is V.ALLOW


@pytest.mark.parametrize("source", [S.REMOTE, S.SIGNAL, S.VOICE, "mqtt", "web", ""])
@pytest.mark.parametrize("gate", list(G))
@pytest.mark.parametrize("command", MOVES)
def test_no_remote_source_ever_starts_a_belt(command: UserCommand, gate: Gate,
                                             source: str) -> None:
    assert decide(command, source, gate).verdict in (V.REFUSE, V.TO_GATE)


@pytest.mark.parametrize("source", [s for s in S if s is not S.KEY])
@pytest.mark.parametrize("command", [C.SPEED_UP, C.SPEED_DOWN])
def test_only_the_keyboard_changes_speed(source: CommandSource, command: UserCommand) -> None:
    assert decide(command, source, G.NONE).verdict is V.REFUSE
    assert decide(command, S.KEY, G.NONE).verdict is V.ALLOW


@pytest.mark.parametrize(("command", "gate", "verdict"), [
    (C.READY, G.TURNAROUND, V.ALLOW),  # a tap confirms a turnaround already under way
    (C.READY, G.START, V.REFUSE),  # ... never starts the workout
    (C.READY, G.RESUME, V.REFUSE),  # ... nor ends a pause
    (C.RESUME, G.RESUME, V.TO_GATE),  # the page's resume waits for the hold
    (C.START, G.START, V.ALLOW),  # the 2-second hold
    (C.START, G.RESUME, V.ALLOW),
    (C.START, G.TURNAROUND, V.ALLOW),
])
def test_the_companion_page(command: UserCommand, gate: Gate, verdict: Verdict) -> None:
    assert decide(command, S.COMPANION, gate).verdict is verdict


def test_voice_can_only_stop_or_pause() -> None:
    allowed = {c for c in C if c is not C.TOGGLE_PAUSE
               and decide(c, S.VOICE, G.RESUME).verdict is V.ALLOW}
    assert allowed == {C.STOP, C.PAUSE}


# --------------------------------------------------------------------------- in a session

VIRTUAL = pytest.mark.looptime(noop_cycles=1)


async def paused_then(source: str, commands: list[UserCommand], seen: dict[str, object]):
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await until(lambda: session.state is State.RUNNING and sim.belt.speed_kmh > 1.0)
        session.request(C.PAUSE, "key")
        await until(lambda: sim.belt.speed_kmh == 0)
        seen["paused_at"] = len(sim.requests)
        for command in commands:
            seen[command.value] = session.request(command, source)
        await asyncio.sleep(30.0)  # nobody at the machine does anything
        seen["state_after_30s"] = session.state
        seen["moved"] = any(isinstance(r, codec.StartOrResume | codec.SetTargetSpeed)
                            for r in sim.requests[int(seen["paused_at"]):])
        session.request(C.STOP, "key")
    return scenario


@VIRTUAL
@pytest.mark.parametrize("source", ["remote", "companion", "voice", "signal", "mqtt"])
async def test_a_remote_resume_waits_at_the_ready_gate(source: str) -> None:
    profile = load_profile(PROFILES / "first-session.yaml")
    seen: dict[str, object] = {}
    run = await run_on_sim(profile, scenario=await paused_then(
        source, [C.RESUME, C.READY, C.TOGGLE_PAUSE], seen),
        settings=SessionSettings(ready_gate="key"))
    assert seen["moved"] is False, "the belt was restarted without the person"
    assert seen["state_after_30s"] in (State.PAUSED, State.WAITING_READY)
    assert seen["ready"] is False
    check_invariants(run)
    refused = [e for e in run.of(UserAction) if e.source == source and not e.accepted]
    assert refused  # the refusals are on record


@VIRTUAL
@pytest.mark.parametrize(("source", "then"), [("remote", ("key", C.READY)),
                                              ("companion", ("companion", C.START))])
async def test_after_a_remote_resume_the_person_at_the_machine_starts_the_belt(
        source: str, then: tuple[str, UserCommand]) -> None:
    profile = load_profile(PROFILES / "first-session.yaml")
    seen: dict[str, object] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await until(lambda: session.state is State.RUNNING and sim.belt.speed_kmh > 1.0)
        session.request(C.PAUSE, "key")
        await until(lambda: sim.belt.speed_kmh == 0)
        assert session.request(C.RESUME, source)  # accepted, as far as the gate
        await asyncio.sleep(10.0)
        assert session.state is State.WAITING_READY
        starts = sum(isinstance(r, codec.StartOrResume) for r in sim.requests)
        assert session.request(then[1], then[0])
        await asyncio.sleep(10.0)
        seen["started"] = sum(isinstance(r, codec.StartOrResume) for r in sim.requests) - starts
        session.request(C.STOP, "key")

    run = await run_on_sim(profile, scenario=scenario)
    assert run.scenario_error is None, run.scenario_error
    assert seen["started"] == 1
    check_invariants(run)
