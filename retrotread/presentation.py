"""What the person must know now: the one account shared by every screen and voice.

The person walking backward faces away from the console. The terminal display, the
companion page and the speech all read the same :class:`Presentation`, built by the pure
function :func:`present` from the session's :class:`~retrotread.events.SessionSnapshot`
and from what was last said (:class:`Narrator`). Nothing here does I/O or reads a clock:
the snapshot carries the session time.

* :func:`present`: snapshot (+ the last thing said) in, presentation out.
* :class:`Narrator`: the session's events in, what is said and when out. It holds back a
  segment's form cue until the person faces that segment's way (a backward cue is not
  said while they still face forward), and forgets the countdown once the belt starts.
* :class:`Narration`: one narrator on the bus, fanning each utterance out to the voices
  (host speech, companion pages).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from retrotread.envelope import Direction
from retrotread.events import (
    Announcement,
    Event,
    SegmentStarted,
    SessionSnapshot,
    TurnaroundPhase,
)
from retrotread.formatting import Rounding, clock_text, heart_rate_text, speed_texts

KEY_HELP = "space pause/resume · r ready · s/q stop · +/- speed · n next segment"
WARNING_SHOWN_S = 8.0
"""A warning takes over the screen this long after it was said (session seconds)."""
ALARM_SHOWN_S = 30.0


class Phase(enum.StrEnum):
    """Where the workout is, as the person lives it."""

    CONNECTING = "connecting"
    START_GATE = "start_gate"  # standing on the rails before the first start
    COUNTDOWN = "countdown"  # 3, 2, 1 before the belt starts
    RUNNING = "running"
    SLOWING = "slowing"  # turnaround: the belt is slowing to a stop
    TURN_AROUND = "turn_around"  # turnaround: the belt is stopped, turn around now
    PAUSED = "paused"
    FINISHING = "finishing"
    STOPPING = "stopping"  # a watchdog or user stop
    LINK_LOST = "link_lost"
    FINISHED = "finished"


class Level(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ALARM = "alarm"


@dataclass(frozen=True)
class Speed:
    mph: str
    kmh: str

    @classmethod
    def of(cls, speed_kmh: float, rounding: Rounding = Rounding.NEAREST) -> Speed:
        """Both texts of a speed; a limit rounds toward safety (``Rounding.DOWN`` for a
        ceiling)."""
        return cls(*speed_texts(speed_kmh, rounding=rounding))

    def ordered(self, units: str = "mph") -> tuple[str, str]:
        """(first, second) in the person's chosen units."""
        return (self.kmh, self.mph) if units != "mph" else (self.mph, self.kmh)


@dataclass(frozen=True)
class Alert:
    level: Level
    text: str


@dataclass(frozen=True)
class Presentation:
    time_s: float
    phase: Phase
    phase_text: str
    face: Direction
    """The way to face now (once the belt has stopped for a turnaround: the new way)."""
    turning: bool
    """The person must turn around now (the belt is stopped for it)."""
    face_next: Direction | None
    countdown: int | None
    """The numeral to show and say (3, 2, 1) during a countdown."""
    segment_number: int | None
    segment_label: str
    segment_elapsed_s: float
    segment_duration_s: float
    segment_left_s: float | None
    next_label: str | None
    next_in_s: float | None
    plan_elapsed_s: float
    plan_total_s: float
    target: Speed | None
    current: Speed | None
    heart_rate: str
    """``"112 bpm"``, or ``"unknown"`` (never 0)."""
    distance_m: float
    backward_limit: Speed
    said: str | None
    said_level: Level
    alert: Alert | None
    link_ok: bool
    banner: str
    simulated: bool
    waiting_for_ready: bool = False
    """A gate that waits for the person (never starts by itself)."""

    @property
    def controls(self) -> dict[str, bool]:
        """The page's buttons. STOP whenever a belt may move; whatever puts a stopped
        belt in motion on a real machine (the start gate, a gate that waits for the
        person, a pause) is the 2-second hold (START), never a tap; READY is a tap only
        where the belt starts by itself anyway (a timed hold) or on the simulator."""
        phase = self.phase
        real = not self.simulated
        starts_belt = phase in (Phase.START_GATE, Phase.PAUSED) or (
            phase is Phase.TURN_AROUND and self.waiting_for_ready)
        return {
            "stop": phase is not Phase.FINISHED,
            "pause": phase is Phase.RUNNING,
            "ready": (phase is Phase.TURN_AROUND and not (real and self.waiting_for_ready))
            or (phase is Phase.START_GATE and not real),
            "hold_start": starts_belt and (real or phase is Phase.PAUSED),
        }

    @property
    def face_word(self) -> str:
        return self.face.value.upper()

    @property
    def face_hint(self) -> str:
        return ("facing away from the console" if self.face is Direction.BACKWARD
                else "facing the console")

    @property
    def plan_left_s(self) -> float:
        return max(0.0, self.plan_total_s - self.plan_elapsed_s)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for the companion page (and anything else that wants it)."""

        def speed(value: Speed | None) -> dict[str, str] | None:
            return None if value is None else {"mph": value.mph, "kmh": value.kmh}

        return {
            "t": round(self.time_s, 3),
            "phase": self.phase.value,
            "phase_text": self.phase_text,
            "face": self.face.value,
            "face_word": self.face_word,
            "face_hint": self.face_hint,
            "turning": self.turning,
            "face_next": self.face_next.value if self.face_next else None,
            "countdown": self.countdown,
            "segment_number": self.segment_number,
            "segment_label": self.segment_label,
            "segment_left": clock_text(self.segment_left_s),
            "segment_fraction": (min(1.0, self.segment_elapsed_s / self.segment_duration_s)
                                 if self.segment_duration_s > 0 else 0.0),
            "next_label": self.next_label,
            "next_in": clock_text(self.next_in_s) if self.next_in_s is not None else None,
            "plan_elapsed": clock_text(self.plan_elapsed_s),
            "plan_left": clock_text(self.plan_left_s),
            "target": speed(self.target),
            "current": speed(self.current),
            "heart_rate": self.heart_rate,
            "said": self.said,
            "said_level": self.said_level.value,
            "alert": ({"level": self.alert.level.value, "text": self.alert.text}
                      if self.alert else None),
            "link_ok": self.link_ok,
            "banner": self.banner,
            "simulated": self.simulated,
            "controls": self.controls,
        }


_TURN_STATES = frozenset({"turnaround", "waiting_ready", "hold", "countdown"})


def _phase(snapshot: SessionSnapshot) -> Phase:
    state = snapshot.state
    if not snapshot.link_ok or state == "reconnecting":
        return Phase.LINK_LOST
    if state == "waiting_ready":
        return Phase.START_GATE if snapshot.segment_index < 0 else Phase.TURN_AROUND
    return {
        "starting": Phase.CONNECTING,
        "running": Phase.RUNNING,
        "turnaround": Phase.SLOWING,
        "hold": Phase.TURN_AROUND,
        "countdown": Phase.COUNTDOWN,
        "paused": Phase.PAUSED,
        "finishing": Phase.FINISHING,
        "stopping": Phase.STOPPING,
        "finished": Phase.FINISHED,
    }.get(state, Phase.RUNNING)


def _shown_plan_s(snapshot: SessionSnapshot) -> float:
    """The plan clock as the person should see it. The session holds plan time still
    while the belt stops, the person turns and the countdown runs, then skips the
    budgeted hold and countdown at once; shown, the clock keeps running through the
    turnaround instead, never past where the plan resumes (so it never jumps)."""
    elapsed = snapshot.plan_elapsed_s
    if (snapshot.state in _TURN_STATES and snapshot.turn_started_s is not None
            and snapshot.resume_plan_s is not None and snapshot.resume_plan_s > elapsed):
        moved = max(0.0, snapshot.time_s - snapshot.turn_started_s)
        elapsed = min(snapshot.resume_plan_s, elapsed + moved)
    return elapsed


def _phase_text(phase: Phase, snapshot: SessionSnapshot, to: Direction) -> str:
    way = to.value.upper()
    real = not snapshot.simulated
    if phase is Phase.START_GATE:
        start = ("hold START on the page for 2 s, or press r" if real else "press r")
        return f"Stand on the side rails, facing {way}. When you are ready, {start}."
    if phase is Phase.COUNTDOWN:
        return f"Get ready: the belt starts, facing {way}."
    if phase is Phase.SLOWING:
        return f"Turnaround: the belt is slowing to a stop. Hold the rails. Next: {way}."
    if phase is Phase.TURN_AROUND:
        if snapshot.state == "waiting_ready":
            return f"Stopped: turn around to face {way}. Press READY (r) when you are ready."
        left = (f" Starting again in {math.ceil(snapshot.countdown_s - 1e-9)} s."
                if snapshot.countdown_s is not None else "")
        return f"Stopped: turn around to face {way}.{left} READY (r) to go sooner."
    if phase is Phase.PAUSED:
        resume = "hold START on the page for 2 s, or press space" if real else "press space"
        return f"PAUSED: the belt is stopped. To go on, {resume}."
    if phase is Phase.FINISHING:
        return "Workout complete: the belt is slowing to a stop."
    if phase is Phase.STOPPING:
        return "Stopping the belt. Hold the rails."
    if phase is Phase.LINK_LOST:
        return ("Link to the treadmill lost: the belt may still be running. Stop it at the "
                "console or pull the safety key.")
    if phase is Phase.FINISHED:
        return "Finished."
    if phase is Phase.CONNECTING:
        return "Connecting to the treadmill…"
    return f"Walking {snapshot.facing.value}."


def _alert(phase: Phase, snapshot: SessionSnapshot, said: Announcement | None) -> Alert | None:
    if phase is Phase.LINK_LOST:
        return Alert(Level.ALARM, _phase_text(phase, snapshot, snapshot.facing))
    if said is not None:
        age = snapshot.time_s - said.time_s
        if said.level == Level.ALARM and (age <= ALARM_SHOWN_S or phase is Phase.STOPPING):
            return Alert(Level.ALARM, said.text)
        if said.level == Level.WARNING and age <= WARNING_SHOWN_S:
            return Alert(Level.WARNING, said.text)
    if phase is Phase.STOPPING:
        return Alert(Level.ALARM, _phase_text(phase, snapshot, snapshot.facing))
    return None


def present(snapshot: SessionSnapshot, said: Announcement | None = None) -> Presentation:
    """What the person must know now (pure). ``said``: the last utterance, from the
    :class:`Narrator` (None: nothing is being said)."""
    phase = _phase(snapshot)
    turn_to = snapshot.turn_to or snapshot.facing
    stopped_to_turn = phase in (Phase.TURN_AROUND, Phase.COUNTDOWN, Phase.START_GATE)
    face = turn_to if stopped_to_turn else snapshot.facing
    turning = phase is Phase.TURN_AROUND or (
        phase is Phase.COUNTDOWN and snapshot.turn_to is not None
        and snapshot.turn_to is not snapshot.facing)
    if phase is Phase.SLOWING:
        face_next: Direction | None = turn_to
    elif phase is Phase.RUNNING:
        face_next = snapshot.next_direction
    else:
        face_next = None
    countdown = None
    if phase is Phase.COUNTDOWN and snapshot.countdown_s is not None:
        countdown = max(1, math.ceil(snapshot.countdown_s - 1e-9))
    shown = _shown_plan_s(snapshot)
    extra = shown - snapshot.plan_elapsed_s
    started = snapshot.segment_index >= 0
    segment_elapsed = snapshot.segment_elapsed_s + extra if started else 0.0
    left = (max(0.0, snapshot.segment_duration_s - segment_elapsed) if started else None)
    next_in = (max(0.0, snapshot.next_change_in_s - extra)
               if snapshot.next_change_in_s is not None else None)
    target_kmh = snapshot.segment_target_kmh
    if target_kmh is None and started:
        target_kmh = snapshot.target_kmh
    heart = heart_rate_text(snapshot.heart_rate_bpm)
    return Presentation(
        time_s=snapshot.time_s,
        phase=phase,
        phase_text=_phase_text(phase, snapshot, turn_to),
        face=face,
        turning=turning,
        face_next=face_next,
        countdown=countdown,
        segment_number=snapshot.segment_index + 1 if started else None,
        segment_label=snapshot.segment_label if started else "not started",
        segment_elapsed_s=segment_elapsed,
        segment_duration_s=snapshot.segment_duration_s,
        segment_left_s=left,
        next_label=snapshot.next_label,
        next_in_s=next_in,
        plan_elapsed_s=shown,
        plan_total_s=snapshot.plan_total_s,
        target=Speed.of(target_kmh) if target_kmh is not None else None,
        current=Speed.of(snapshot.measured_kmh) if snapshot.measured_kmh is not None else None,
        heart_rate=heart,
        distance_m=snapshot.distance_m,
        backward_limit=Speed.of(snapshot.backward_ceiling_kmh, Rounding.DOWN),
        said=said.text if said else None,
        said_level=Level(said.level) if said else Level.INFO,
        alert=_alert(phase, snapshot, said),
        link_ok=snapshot.link_ok and phase is not Phase.LINK_LOST,
        banner=snapshot.banner,
        simulated=snapshot.simulated,
        waiting_for_ready=snapshot.state == "waiting_ready",
    )


# --------------------------------------------------------------------------- narration
class Narrator:
    """The session's events in, what is said (and when) out.

    Call it with every event; it returns the announcements to say now (usually the
    event itself, or nothing) and keeps :attr:`said`, the last thing said, for screens.
    A segment's form cue is held back while the person still faces the other way, and
    said when the belt starts in the segment's direction; a countdown ("Backward in 1")
    is forgotten once the belt starts.
    """

    def __init__(self) -> None:
        self.said: Announcement | None = None
        self.facing: Direction | None = None
        self._cue: tuple[str, Direction] | None = None  # the cue the session says next
        self._held: tuple[str, Direction] | None = None

    def __call__(self, event: Event) -> list[Announcement]:
        if isinstance(event, SegmentStarted):
            self._cue = (event.cue, event.direction) if event.cue else None
            if self.facing is None:
                self.facing = event.direction
            return []
        if isinstance(event, TurnaroundPhase) and event.phase == "start":
            self.facing = event.to_direction
            held, self._held = self._held, None
            if held is not None and held[1] is event.to_direction:
                self.said = Announcement(event.time_s, held[0], Level.INFO)
                return [self.said]
            self.said = None
            return []
        if isinstance(event, Announcement):
            cue, self._cue = self._cue, None
            if (cue is not None and event.text == cue[0] and self.facing is not None
                    and cue[1] is not self.facing):
                self._held = cue
                return []
            self.said = event
            return [event]
        return []


Voice = Callable[[Announcement], None]


class Narration:
    """A bus subscriber: one :class:`Narrator`, each utterance to every voice."""

    def __init__(self, narrator: Narrator | None = None) -> None:
        self.narrator = narrator or Narrator()
        self.voices: list[Voice] = []

    def add(self, voice: Voice) -> None:
        self.voices.append(voice)

    @property
    def said(self) -> Announcement | None:
        return self.narrator.said

    def __call__(self, event: Event) -> None:
        for utterance in self.narrator(event):
            for voice in self.voices:
                voice(utterance)
