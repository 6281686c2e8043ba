"""Property test for link faults: random profiles under random bursts of link drops.

A flaky radio drops several times in a row, and it does so at the worst moments: during a
turnaround, while the Stop is on its way, while the session is reconnecting to send it.
Each example draws a short random profile and one or two bursts of 2-5 drops within 0-3 s,
each burst anchored to a moment (a time into the workout, the first turnaround, the first
Stop on the wire, the first reconnect), sometimes with the machine out of reach for a
while, sometimes with a Ctrl-C in the middle. Every run must:

* keep the safety invariants of ``workout_harness.check_invariants``;
* end by itself (the test's virtual-time limit) with the belt stopped, and with a Stop
  acknowledged on the wire after the last drop whenever the belt had been started;
* claim "Stop sent" exactly when a Stop reached the machine after the last Start;
* after a Ctrl-C, end within the interrupt grace time (plus one tick).

``LINK_FAULT_EXAMPLES`` sets the depth (1,000 in the normal suite, a fixed seed so CI
runs the same examples every time); ``python -m benchmarks.link_faults`` runs 10,000 with
fresh randomness.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from dataclasses import dataclass

import looptime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrotread.events import SessionFinished
from retrotread.ftms import codec
from retrotread.profile import load_profile_text
from retrotread.session import Session, SessionSettings, State
from retrotread.sim.treadmill import SimulatedTreadmill
from tests.workout_harness import check_invariants, run_on_sim

EXAMPLES = int(os.environ.get("LINK_FAULT_EXAMPLES", "1000"))
DERANDOMIZE = os.environ.get("LINK_FAULT_RANDOM", "") == ""
SURVEY = os.environ.get("LINK_FAULT_SURVEY")
"""A file: record every failing example (its number and the first line of the failure)
there instead of failing, to count how many examples each distinct bug takes to show
(``benchmarks/link_faults.py``)."""
_example_number = itertools.count(1)
ANCHORS = ("time", "turnaround", "stop", "reconnect")


@st.composite
def short_profiles(draw: st.DrawFn) -> str:
    """A valid, short profile (so a thousand of them run in about a minute)."""
    lines = ["name: Random short workout", "units: mph", "segments:"]
    direction = draw(st.sampled_from(["forward", "backward"]))
    for _ in range(draw(st.integers(1, 3))):
        mph = draw(st.integers(5, 20 if direction == "backward" else 30)) / 10
        lines.append(f"  - {direction}: {draw(st.integers(5, 40))}s")
        lines.append(f"    speed: {mph} mph")
        direction = "backward" if direction == "forward" else "forward"
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Burst:
    anchor: str  # one of ANCHORS
    at_s: float  # for "time": seconds into the run; otherwise a delay after the anchor
    offsets_s: tuple[float, ...]  # the drops, relative to the burst's start (0-3 s)
    unreachable_s: float  # after the last drop, new connections are refused this long


@st.composite
def bursts(draw: st.DrawFn) -> Burst:
    count = draw(st.integers(2, 5))
    offsets = sorted(draw(st.lists(st.floats(0.0, 3.0), min_size=count - 1,
                                   max_size=count - 1)))
    return Burst(
        anchor=draw(st.sampled_from(ANCHORS)),
        at_s=draw(st.floats(0.0, 60.0)),
        offsets_s=(0.0, *offsets),
        unreachable_s=draw(st.sampled_from([0.0, 0.0, 0.5, 4.0, 20.0])),
    )


@dataclass
class Marks:
    drops: list[float]
    interrupt_s: float | None = None
    first_stop_s: float | None = None
    reconnects: int = 0


def scenario_for(burst_list: list[Burst], interrupt_after_s: float | None, marks: Marks):
    async def scenario(sim: SimulatedTreadmill, session: Session) -> None:
        clock = sim.clock
        start = clock.now()
        connected = len(sim.connections)

        def on_request(_t: float, request: codec.ControlPointRequest) -> None:
            if marks.first_stop_s is None and isinstance(request, codec.StopOrPause) and (
                    request.action is codec.StopPause.STOP):
                marks.first_stop_s = clock.now()

        sim.request_listeners.append(on_request)

        async def anchor(burst: Burst) -> bool:
            """Wait for the burst's moment; False if it never comes (the run ended)."""
            nonlocal connected
            while session.state is not State.FINISHED:
                if burst.anchor == "time" and clock.now() - start >= burst.at_s:
                    return True
                if burst.anchor == "turnaround" and session.state in (
                        State.TURN_STOPPING, State.HOLD, State.WAITING_READY, State.COUNTDOWN):
                    return True
                if burst.anchor == "stop" and marks.first_stop_s is not None:
                    return True
                if burst.anchor == "reconnect" and session.treadmills[1:] and (
                        session.link_ok):
                    return True
                await asyncio.sleep(0.01)
            return False

        for burst in burst_list:
            if not await anchor(burst):
                return
            if burst.anchor != "time":
                await asyncio.sleep(min(burst.at_s, 1.0) * 0.5)
            origin = clock.now()
            for offset in burst.offsets_s:
                await asyncio.sleep(max(0.0, origin + offset - clock.now()))
                sim.drop_links()
                marks.drops.append(clock.now())
                if interrupt_after_s is not None and marks.interrupt_s is None and (
                        clock.now() - origin >= interrupt_after_s):
                    marks.interrupt_s = clock.now()
                    session.interrupt("test interrupt")
            if burst.unreachable_s > 0:
                sim.faults.refuse_connections = True
                await asyncio.sleep(burst.unreachable_s)
                sim.faults.refuse_connections = False

    return scenario


def run_virtual(coro):
    loop = looptime.new_event_loop(noop_cycles=1)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.mark.timeout(1800)  # the whole property (1,000 examples), not one example
@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=short_profiles(), burst_list=st.lists(bursts(), min_size=1, max_size=2),
       interrupt_after_s=st.one_of(st.none(), st.floats(0.0, 3.0)))
def test_bursts_of_link_drops_always_end_with_the_belt_stopped(
        text: str, burst_list: list[Burst], interrupt_after_s: float | None) -> None:
    profile = load_profile_text(text, "random.yaml")
    marks = Marks(drops=[])
    session_settings = SessionSettings(wait_for_ready_at_start=False)

    async def main() -> None:
        run = await run_on_sim(profile, scenario=scenario_for(burst_list, interrupt_after_s,
                                                              marks),
                               settings=session_settings)
        sim = run.sim
        finished = run.of(SessionFinished)[-1]
        requests = sim.requests
        starts = [i for i, r in enumerate(requests) if isinstance(r, codec.StartOrResume)]
        stops_after_start = [
            i for i, r in enumerate(requests)
            if isinstance(r, codec.StopOrPause) and r.action is codec.StopPause.STOP
            and (not starts or i > starts[-1])]
        # "Stop sent" claims exactly what reached the machine.
        if starts:
            assert run.result.stop_sent == bool(stops_after_start), (run.result, marks)
        else:
            assert not run.result.stop_sent or stops_after_start, (run.result, marks)
        assert finished.stop_sent == run.result.stop_sent
        if marks.interrupt_s is not None:
            grace = session_settings.interrupt_grace_s
            assert finished.time_s - marks.interrupt_s <= grace + 0.2, (finished, marks)
            return  # with the link down, nothing more can be promised
        check_invariants(run)
        # The belt ends stopped, with a Stop answered after the last drop if it had run.
        assert sim.belt.speed_kmh == 0.0, (sim.belt, marks)
        if starts and marks.drops:
            assert sim.stop_acknowledged_after(marks.drops[-1]), marks
        if marks.drops:
            assert run.result.stop_confirmed, (run.result, marks)

    # Virtual time: a session that never ends fails here instead of hanging the suite.
    limit_s = profile.total_seconds() + 600.0
    number = next(_example_number)
    try:
        run_virtual(asyncio.wait_for(main(), timeout=limit_s))
    except (AssertionError, TimeoutError) as exc:
        if not SURVEY:
            raise
        kind = "the session never ended" if isinstance(exc, TimeoutError) else (
            _first_failed_check(exc))
        with open(SURVEY, "a", encoding="utf-8") as out:
            out.write(json.dumps({"example": number, "kind": kind}) + "\n")


def _first_failed_check(exc: AssertionError) -> str:
    """The assertion's source line: which property failed (not the values)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return (frames[-1].line or str(exc)).strip() if frames else str(exc)
