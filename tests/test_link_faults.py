"""Link faults, named after the reports that found them (issue 9), in virtual time.

A flaky radio drops twice in a row, and several real treadmills keep the belt running when
the controlling link drops: the session must reconnect after every drop, keep trying until
a Stop is acknowledged or telemetry shows the belt stopped, end by itself once it is, and
never claim a Stop that did not reach the machine.
"""

from __future__ import annotations

import asyncio

import pytest

from retrotread.events import Announcement, LinkStateChanged, SessionFinished
from retrotread.ftms import codec
from retrotread.profile import Profile, load_profile_text
from retrotread.session import Session, State
from retrotread.sim.treadmill import SimulatedTreadmill
from tests.workout_harness import WorkoutRun, check_invariants, run_on_sim

VIRTUAL = pytest.mark.looptime(noop_cycles=1)

FORWARD_THEN_BACKWARD = """\
name: Forward then backward
units: mph
segments:
  - forward: 60s
    speed: 2.0 mph
  - backward: 60s
    speed: 1.5 mph
"""


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile_text(FORWARD_THEN_BACKWARD, "two-segments.yaml")


def drops_at(*times_s: float):
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        start = sim.clock.now()
        for at in times_s:
            await asyncio.sleep(max(0.0, start + at - sim.clock.now()))
            sim.drop_links()
    return scenario


async def finished_within(profile: Profile, scenario, limit_s: float) -> WorkoutRun:
    """The run, which must end by itself within ``limit_s`` of virtual time."""
    return await asyncio.wait_for(run_on_sim(profile, scenario=scenario), limit_s)


@VIRTUAL
@pytest.mark.parametrize("second_s", [20.1, 20.2, 20.5, 21.0, 23.0])
async def test_a_second_drop_during_the_reconnect_still_stops_the_belt(
        profile: Profile, second_s: float) -> None:
    run = await finished_within(profile, drops_at(20.0, second_s), 120.0)
    check_invariants(run)
    sim = run.sim
    assert sim.belt.speed_kmh == 0.0
    assert sim.stop_acknowledged_after(0.0), "no Stop was acknowledged by the machine"
    assert run.result.stop_sent and run.result.stop_confirmed
    assert run.result.outcome.value == "watchdog"
    lost = [e for e in run.of(LinkStateChanged) if not e.connected]
    assert len(lost) == 2


@VIRTUAL
@pytest.mark.parametrize("second_s", [0.0, 0.01, 0.02, 0.03])
async def test_drops_before_any_motion_claim_no_stop_that_was_not_delivered(
        profile: Profile, second_s: float) -> None:
    run = await finished_within(profile, drops_at(0.0, second_s), 120.0)
    sim = run.sim
    assert sim.belt.speed_kmh == 0.0
    assert not any(isinstance(r, codec.StartOrResume) for r in sim.requests)
    stops = [r for r in sim.requests
             if isinstance(r, codec.StopOrPause) and r.action is codec.StopPause.STOP]
    # Either a Stop reached the machine (and the record says so) or none did and none is
    # claimed.
    assert run.result.stop_sent == bool(stops)
    finished = run.of(SessionFinished)[-1]
    assert finished.stop_sent == bool(stops)


@VIRTUAL
async def test_many_drops_in_a_burst_during_a_backward_segment(profile: Profile) -> None:
    times = [70.0 + 0.3 * k for k in range(6)]
    run = await finished_within(profile, drops_at(*times), 200.0)
    check_invariants(run)
    assert run.sim.belt.speed_kmh == 0.0
    assert run.result.stop_sent and run.result.stop_confirmed


@VIRTUAL
async def test_while_unreachable_the_session_keeps_saying_pull_the_safety_key(
        profile: Profile) -> None:
    """The simulator refuses every connection for 60 s after the drop: the session keeps
    trying (with back-off), keeps announcing, and stops the belt once it gets through."""
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await asyncio.sleep(70.0)
        marks["drop"] = sim.clock.now()
        sim.faults.refuse_connections = True
        sim.drop_links()
        await asyncio.sleep(60.0)
        assert session.state is State.RECONNECTING
        sim.faults.refuse_connections = False

    run = await finished_within(profile, scenario, 400.0)
    check_invariants(run)
    alarms = [a for a in run.of(Announcement)
              if a.time_s > marks["drop"] and "safety key" in a.text]
    assert len(alarms) >= 4, alarms
    assert run.sim.belt.speed_kmh == 0.0
    assert run.result.stop_sent and run.result.stop_confirmed


@VIRTUAL
async def test_an_interrupt_while_the_link_is_down_ends_the_session_at_once(
        profile: Profile) -> None:
    marks: dict[str, float] = {}

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await asyncio.sleep(70.0)
        sim.faults.refuse_connections = True
        sim.drop_links()
        await asyncio.sleep(5.0)
        marks["interrupt"] = sim.clock.now()
        session.interrupt("SIGTERM")

    run = await finished_within(profile, scenario, 300.0)
    finished = run.of(SessionFinished)[-1]
    assert finished.time_s - marks["interrupt"] <= 3.0
    # Honest: no Stop went out before the drop, and none could after it.
    assert not finished.stop_sent
    assert finished.outcome.value == "watchdog"


def test_the_summary_and_history_say_stop_not_delivered(tmp_path) -> None:
    """A session whose Stop never reached the machine says so in every record."""
    import json

    from retrotread.history import describe_outcome, entry_from_records
    from retrotread.recorder import format_summary, read_session, summarize

    log = tmp_path / "s.jsonl"
    records = [
        {"type": "session_started", "t": 0.0, "profile_name": "x", "device": "sim",
         "simulated": True},
        {"type": "session_finished", "t": 75.0, "outcome": "watchdog",
         "reason": "the link to the treadmill was lost", "elapsed_s": 75.0,
         "backward_s": 10.0, "distance_m": 50.0, "stop_sent": False,
         "stop_acknowledged": False},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = summarize(read_session(log))
    text = format_summary(summary)
    assert "Stop not delivered" in text and "Stop sent: yes" not in text
    assert "Stop not delivered" in describe_outcome(entry_from_records(records, id="1"))
    records[1].update(stop_sent=True, stop_acknowledged=True)
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert "Stop sent: yes (acknowledged" in format_summary(summarize(read_session(log)))


@VIRTUAL
async def test_a_drop_on_a_machine_that_answers_late_still_gets_its_stop(
        profile: Profile) -> None:
    """Found by the property test: replies 2.5 s late (past the 2 s time-out) and a link
    drop. After the reconnect the Request Control times out, and the machine, still busy
    with it, refused the Stop ("procedure already in progress") again and again: no Stop
    ever reached it. A write refused as busy is now tried again until the machine takes it."""

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await asyncio.sleep(96.0)
        sim.faults.telemetry_stopped = True
        sim.faults.reply_delay_s = 2.5
        sim.drop_links()

    run = await finished_within(profile, scenario, 400.0)
    check_invariants(run)
    assert run.result.stop_sent
    stops = [t for t, r in zip(run.sim.request_times, run.sim.requests, strict=True)
             if isinstance(r, codec.StopOrPause) and r.action is codec.StopPause.STOP]
    assert stops and stops[0] - 96.0 <= 6.0  # RC's 2 s time-out, the busy machine, Stop


@VIRTUAL
async def test_an_error_in_the_loop_while_the_link_is_down_still_ends_with_stop(
        profile: Profile) -> None:
    """Every way out ends with the belt commanded to stop, this one too: the loop fails
    (a bug) while the link is down; the session gives the reconnect a bounded chance and
    sends Stop on the new link before it ends as an error."""

    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        await asyncio.sleep(70.0)

        def broken(now: float) -> None:
            raise RuntimeError("a bug in the loop")

        session._tick_unreachable = broken  # type: ignore[method-assign]
        sim.faults.refuse_connections = True  # the link stays down while the loop fails
        sim.drop_links()
        await asyncio.sleep(5.0)
        sim.faults.refuse_connections = False

    run = await finished_within(profile, scenario, 300.0)
    assert run.result.outcome.value == "watchdog"  # the link loss came first
    assert run.result.stop_sent
    assert run.sim.stop_acknowledged_after(70.0)
