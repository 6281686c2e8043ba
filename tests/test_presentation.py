"""The presentation model: what the person must know now, the same on every screen.

Each bug found by trying the terminal as a new user has a test here, on the model the
terminal and the companion page both read; the end-to-end ones sample a real workout
(first-session.yaml on the simulator, in virtual time).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from retrotread.display import KEY_HELP, render
from retrotread.envelope import Direction
from retrotread.events import Announcement, Event, SessionSnapshot, TurnaroundPhase
from retrotread.presentation import Alert, Level, Narrator, Phase, Speed, present
from retrotread.profile import load_profile
from retrotread.session import Session
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.units import mph_to_kmh
from retrotread.watchdog import CompanionRule
from tests.workout_harness import run_on_sim

FIRST_SESSION = Path(__file__).parent.parent / "profiles" / "first-session.yaml"

RUNNING = SessionSnapshot(
    time_s=500.0, state="running", facing=Direction.FORWARD, segment_index=0,
    segment_label="Warm-up walk", segment_elapsed_s=100.0, segment_duration_s=180.0,
    next_label="Backward", next_change_in_s=80.0, plan_elapsed_s=100.0, plan_total_s=900.0,
    target_kmh=3.2, measured_kmh=3.18, distance_m=100.0, heart_rate_bpm=None,
    backward_ceiling_kmh=3.21, banner="x", last_announcement=None, countdown_s=None,
    link_ok=True, next_direction=Direction.BACKWARD, segment_target_kmh=mph_to_kmh(2.0),
)


def screen(renderable: object) -> str:
    console = Console(record=True, width=110, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# --------------------------------------------------------------------------- pure model
def test_stopped_for_a_turnaround_the_banner_shows_the_new_way() -> None:
    """Bug: belt stopped, text says "turn around to face backward", banner FACE FORWARD."""
    hold = dataclasses.replace(RUNNING, state="hold", turn_to=Direction.BACKWARD,
                               countdown_s=6.2)
    view = present(hold)
    assert view.phase is Phase.TURN_AROUND
    assert view.face is Direction.BACKWARD and view.turning
    assert view.face_hint == "facing away from the console"
    text = screen(render(hold))
    assert "TURN AROUND: FACE BACKWARD" in text
    assert "FACE FORWARD" not in text and "facing the console" not in text
    # While the belt is still slowing, the person still faces the old way.
    slowing = present(dataclasses.replace(hold, state="turnaround", countdown_s=None))
    assert slowing.phase is Phase.SLOWING
    assert slowing.face is Direction.FORWARD and slowing.face_next is Direction.BACKWARD
    countdown = present(dataclasses.replace(hold, state="countdown", countdown_s=2.4))
    assert countdown.face is Direction.BACKWARD and countdown.countdown == 3


def test_clocks_run_through_the_turnaround_and_never_jump() -> None:
    """Bug: the segment and workout clocks froze for the hold and countdown, then jumped."""
    frozen = dict(plan_elapsed_s=183.2, segment_elapsed_s=0.0, segment_duration_s=63.0,
                  next_change_in_s=63.0, turn_started_s=1000.0, resume_plan_s=196.2,
                  turn_to=Direction.BACKWARD, segment_index=1)
    shown = [present(dataclasses.replace(RUNNING, state=state, time_s=1000.0 + dt,
                                         **frozen)).plan_elapsed_s  # type: ignore[arg-type]
             for state, dt in (("turnaround", 0.0), ("turnaround", 2.0), ("hold", 5.0),
                               ("hold", 11.0), ("countdown", 13.0), ("countdown", 20.0))]
    assert shown == sorted(shown) and shown[0] == pytest.approx(183.2)
    assert shown[3] == pytest.approx(194.2)
    assert shown[-1] == pytest.approx(196.2)  # never past where the plan resumes
    view = present(dataclasses.replace(RUNNING, state="hold", time_s=1005.0,
                                       **frozen))  # type: ignore[arg-type]
    assert view.segment_left_s == pytest.approx(58.0)
    assert view.next_in_s == pytest.approx(58.0)


def test_the_target_is_the_planned_speed_in_both_units_from_one_value() -> None:
    """Bug: a 1.8 mph cool-down showed "target 1.7 mph" (the quantized setpoint), and
    after `-` the km/h figure changed while the mph one did not."""
    cool = dataclasses.replace(RUNNING, target_kmh=2.8, segment_target_kmh=mph_to_kmh(1.8))
    view = present(cool)
    assert view.target == Speed("1.8 mph", "2.9 km/h")
    assert "target 1.8 mph (2.9 km/h)" in screen(render(cool))
    slower = present(dataclasses.replace(cool, segment_target_kmh=mph_to_kmh(1.8) - 0.16))
    assert slower.target is not None and view.target is not None
    assert slower.target.mph != view.target.mph and slower.target.kmh != view.target.kmh


def test_heart_rate_unknown_is_never_zero() -> None:
    assert present(RUNNING).heart_rate == "unknown"
    assert present(dataclasses.replace(RUNNING, heart_rate_bpm=0)).heart_rate == "unknown"
    assert present(dataclasses.replace(RUNNING, heart_rate_bpm=118)).heart_rate == "118 bpm"


def test_the_key_bar_lists_every_key() -> None:
    for key in ("space", "r ready", "s/q stop", "+/-", "n next"):
        assert key in KEY_HELP
    assert KEY_HELP in screen(render(RUNNING))


def test_the_start_gate_before_a_forward_warm_up_does_not_say_turn_around() -> None:
    """Bug: over a real machine, the start gate said "turn around" before a forward
    warm-up."""
    gate = dataclasses.replace(RUNNING, state="waiting_ready", segment_index=-1,
                               turn_to=Direction.FORWARD, simulated=False)
    view = present(gate)
    assert view.phase is Phase.START_GATE
    assert view.face is Direction.FORWARD and not view.turning
    assert "turn around" not in view.phase_text.lower()
    assert "facing FORWARD" in view.phase_text and "hold START" in view.phase_text
    assert "turn around" not in screen(render(gate)).lower()


def test_warnings_and_stops_take_over_link_lost_is_an_alarm() -> None:
    warned = present(RUNNING, Announcement(498.0, "Turning around soon", "warning"))
    assert warned.alert is not None and warned.alert.level is Level.WARNING
    assert present(RUNNING, Announcement(480.0, "Turning around soon", "warning")).alert is None
    stopping = present(dataclasses.replace(RUNNING, state="stopping"),
                       Announcement(400.0, "Stopping the belt: stop requested", "alarm"))
    assert stopping.alert == Alert(Level.ALARM, "Stopping the belt: stop requested")
    lost = present(dataclasses.replace(RUNNING, link_ok=False))
    assert lost.phase is Phase.LINK_LOST and not lost.link_ok
    assert lost.alert is not None and lost.alert.level is Level.ALARM
    assert "may still be running" in lost.alert.text


def test_narrator_holds_a_backward_cue_until_the_person_faces_backward() -> None:
    from retrotread.events import SegmentStarted

    narrator = Narrator()
    said: list[str] = []

    def feed(event: Event) -> None:
        said.extend(a.text for a in narrator(event))

    feed(TurnaroundPhase(0.0, "start", Direction.FORWARD))
    feed(SegmentStarted(1.0, 0, "Warm-up", Direction.FORWARD, 3.2, 180, "Back", "Easy pace."))
    feed(Announcement(1.0, "Easy pace."))
    assert said == ["Easy pace."]
    feed(SegmentStarted(183.0, 1, "Back", Direction.BACKWARD, 1.6, 50, None, "Short steps."))
    feed(Announcement(183.0, "Short steps."))
    assert said == ["Easy pace."]  # still facing forward: held back
    feed(Announcement(190.0, "Backward in 1"))
    assert narrator.said is not None and narrator.said.text == "Backward in 1"
    feed(TurnaroundPhase(191.0, "start", Direction.BACKWARD))
    assert said[-1] == "Short steps."
    assert narrator.said is not None and narrator.said.text == "Short steps."


# --------------------------------------------------------------------------- end to end
@pytest.mark.looptime(noop_cycles=1)
async def test_a_real_workout_presents_each_turnaround_right() -> None:
    """first-session.yaml in virtual time: sample the presentation twice a second."""
    narrator = Narrator()
    samples: list[tuple[Any, ...]] = []
    spoken: list[tuple[float, str, Direction | None]] = []

    async def watch(sim: SimulatedTreadmill, session: Session) -> None:
        session.bus.subscribe(lambda e: [spoken.append((a.time_s, a.text, narrator.facing))
                                         for a in narrator(e)])
        while True:
            view = present(session.snapshot(), narrator.said)
            samples.append((view.time_s, view.phase, view.face, view.plan_elapsed_s,
                            view.said, view.countdown))
            await asyncio.sleep(0.5)

    run = await run_on_sim(load_profile(FIRST_SESSION), scenario=watch)
    assert run.result.outcome.value == "completed"
    # The facing word is the new way whenever the belt is stopped for a turnaround.
    turning = [s for s in samples if s[1] in (Phase.TURN_AROUND, Phase.COUNTDOWN)]
    assert turning and {s[2] for s in turning} == {Direction.FORWARD, Direction.BACKWARD}
    for s in samples:
        if s[1] is Phase.TURN_AROUND:
            previous = [p for p in samples if p[0] < s[0] and p[1] is Phase.RUNNING][-1]
            assert s[2] is not previous[2]
    assert {s[5] for s in samples if s[5] is not None} == {1, 2, 3}
    # The workout clock never jumps (at most 0.5 s of plan per 0.5 s sample, plus slack).
    for before, after in itertools.pairwise(samples):
        assert after[3] - before[3] <= 0.5 + 0.11, (before, after)
    # The backward form cue is said only once the person faces backward.
    cues = [s for s in spoken if s[1].startswith("Hold the rails. Short steps")]
    assert len(cues) == 3 and all(facing is Direction.BACKWARD for _, _, facing in cues)
    # "Backward in 1" does not stay on the screen once the belt has started.
    running_backward = [s for s in samples if s[1] is Phase.RUNNING
                        and s[2] is Direction.BACKWARD]
    assert running_backward and not any(s[4] and " in 1" in s[4] for s in running_backward)


def test_companion_rule_pauses_only_while_the_belt_moves() -> None:
    rule = CompanionRule()
    rule.observe(0.0, 1)
    assert rule.check(1.0, belt_moving=True) is None
    rule.observe(2.0, 0)
    assert rule.check(4.9, belt_moving=True) is None
    trigger = rule.check(5.1, belt_moving=True)
    assert trigger is not None and trigger.action == "pause"
    assert rule.check(5.2, belt_moving=True) is None  # one trigger per loss
    assert rule.check(20.0, belt_moving=False) is None  # standing still: no trigger
    assert rule.check(21.0, belt_moving=True) is None  # the 3 s start again on moving
    rule.observe(22.0, 2)
    assert rule.check(30.0, belt_moving=True) is None


def test_the_page_buttons_a_stopped_belt_starts_only_by_a_hold_on_a_real_machine() -> None:
    real_gate = present(dataclasses.replace(RUNNING, state="waiting_ready", segment_index=-1,
                                            turn_to=Direction.FORWARD, simulated=False))
    assert real_gate.controls == {"stop": True, "pause": False, "ready": False,
                                  "hold_start": True}
    paused = present(dataclasses.replace(RUNNING, state="paused", simulated=True))
    assert paused.controls["hold_start"] and not paused.controls["ready"]
    real_ready_gate = present(dataclasses.replace(RUNNING, state="waiting_ready",
                                                  turn_to=Direction.BACKWARD))
    assert real_ready_gate.controls["hold_start"] and not real_ready_gate.controls["ready"]
    timed_hold = present(dataclasses.replace(RUNNING, state="hold", countdown_s=4.0,
                                             turn_to=Direction.BACKWARD))
    assert timed_hold.controls["ready"] and not timed_hold.controls["hold_start"]
    running = present(RUNNING)
    assert running.controls == {"stop": True, "pause": True, "ready": False,
                                "hold_start": False}
    assert not present(dataclasses.replace(RUNNING, state="finished")).controls["stop"]
