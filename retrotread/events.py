"""Typed events a session emits, and the bus that fans them out.

The display, the session log (recorder) and the MQTT bridge subscribe. Subscribers are
plain callables that must return quickly; an exception in one is logged and never
reaches the control loop. Every event has ``time_s`` (the session clock's monotonic
seconds) and a ``kind`` used as the ``type`` of its JSON record.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from retrotread.envelope import Direction

log = logging.getLogger(__name__)


class UserCommand(enum.StrEnum):
    """What a person (key press) or a remote (MQTT) may ask of a running session."""

    PAUSE = "pause"
    RESUME = "resume"
    TOGGLE_PAUSE = "toggle_pause"
    READY = "ready"
    STOP = "stop"
    SKIP = "skip"
    SPEED_UP = "speed_up"
    SPEED_DOWN = "speed_down"
    START = "start"
    """A deliberate start (the companion's hold-to-start, or the key at the machine): puts
    a stopped belt in motion at a start gate or after a pause. Only a local source may."""


class CommandSource(enum.StrEnum):
    """Where a command came from. Only the person at the machine (``LOCAL_SOURCES``) can
    put a stopped belt in motion; every source can stop it."""

    KEY = "key"  # the keyboard (or a pipe) of the computer at the treadmill
    COMPANION = "companion"  # the paired phone/tablet page
    VOICE = "voice"  # the offline keyword spotter: stop or pause only
    REMOTE = "remote"  # MQTT and any other network remote
    SIGNAL = "signal"  # SIGINT/SIGTERM


LOCAL_SOURCES = frozenset({CommandSource.KEY, CommandSource.COMPANION})
"""Sources that may start or resume a belt (the companion only by hold-to-start)."""


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    STOPPED_BY_USER = "stopped_by_user"
    WATCHDOG = "watchdog"
    SAFETY_KEY = "safety_key"
    INTERRUPTED = "interrupted"
    ERROR = "error"


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    time_s: float

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"type": kind, "t": time_s, ...fields}``."""
        record: dict[str, Any] = {"type": self.kind, "t": round(self.time_s, 4)}
        for field in dataclasses.fields(self):
            if field.name == "time_s":
                continue
            value = getattr(self, field.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, float):
                value = round(value, 4)
            record[field.name] = value
        return record


@dataclass(frozen=True)
class SessionStarted(Event):
    kind: ClassVar[str] = "session_started"
    profile_name: str
    profile_path: str | None
    device: str
    simulated: bool
    backward_ceiling_kmh: float
    total_s: float
    backward_s: float
    distance_m: float
    speedup: float | None = None
    """How many times faster than real time the session clock ran (1.0, or N for a
    ``--speedup N`` simulator demo). Filled in by the recorder from its clock when None;
    None read back: an older log that did not record it."""


@dataclass(frozen=True)
class SegmentStarted(Event):
    kind: ClassVar[str] = "segment_started"
    index: int
    label: str
    direction: Direction
    speed_kmh: float
    duration_s: float
    next_label: str | None
    cue: str | None = None


@dataclass(frozen=True)
class Announcement(Event):
    """Something to say to the person (screen, bell, voice)."""

    kind: ClassVar[str] = "announcement"
    text: str
    level: str = "info"  # info | warning | alarm


@dataclass(frozen=True)
class TurnaroundPhase(Event):
    kind: ClassVar[str] = "turnaround"
    phase: str  # announce | ramp_down | stopped | ready_wait | countdown | start
    to_direction: Direction
    seconds_left: float | None = None


@dataclass(frozen=True)
class CommandSent(Event):
    kind: ClassVar[str] = "command"
    op_code: int
    op: str
    speed_kmh: float | None
    facing: Direction
    reason: str = ""


@dataclass(frozen=True)
class CommandReplied(Event):
    kind: ClassVar[str] = "reply"
    op_code: int
    op: str
    result: str | None  # e.g. "SUCCESS"; None when there was no reply
    error: str | None = None


@dataclass(frozen=True)
class TelemetrySample(Event):
    kind: ClassVar[str] = "telemetry"
    speed_kmh: float | None
    distance_m: int | None
    elapsed_s: int | None
    heart_rate_bpm: int | None
    target_kmh: float
    facing: Direction
    step_count: int | None = None  # the machine's step counter, when it has one


@dataclass(frozen=True)
class MachineStatusChanged(Event):
    kind: ClassVar[str] = "status"
    status: str
    detail: str = ""


@dataclass(frozen=True)
class UserAction(Event):
    kind: ClassVar[str] = "user"
    command: UserCommand
    source: str  # a CommandSource value
    accepted: bool
    detail: str = ""
    confidence: float | None = None  # the voice spotter's, for a spoken command
    latency_s: float | None = None  # end of the audio that held the word -> the command


@dataclass(frozen=True)
class VoiceHeard(Event):
    """The voice stop heard a command word (retrotread.voice). The session's own ``user``
    record (source ``voice``) comes just before it; this one adds how sure the
    recognizer was and how long the command took from the end of the audio block."""

    kind: ClassVar[str] = "voice"
    word: str
    command: UserCommand
    confidence: float
    latency_s: float  # end of the audio block that completed the word -> the command
    accepted: bool


@dataclass(frozen=True)
class WatchdogAction(Event):
    kind: ClassVar[str] = "watchdog"
    trigger: str
    action: str  # stop | clamp | retarget | re_request_control | alarm | reconnect
    detail: str


@dataclass(frozen=True)
class LinkStateChanged(Event):
    kind: ClassVar[str] = "link"
    connected: bool
    detail: str = ""


@dataclass(frozen=True)
class SessionFinished(Event):
    kind: ClassVar[str] = "session_finished"
    outcome: Outcome
    reason: str
    elapsed_s: float
    backward_s: float
    distance_m: float
    stop_sent: bool
    """A Stop reached the machine's control point (its write was accepted) after the last
    Start; False means "Stop not delivered": nothing says the machine was told to stop."""
    stop_acknowledged: bool = False
    """The machine answered that Stop with "success"."""


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a subscriber must never break the control loop
                log.exception("event subscriber %r failed on %s", subscriber, event.kind)


@dataclass(frozen=True)
class SessionSnapshot:
    """The live state of a session, polled by the display (not an event)."""

    time_s: float
    state: str  # starting | running | turnaround | paused | waiting_ready | stopping | finished
    facing: Direction
    segment_index: int
    segment_label: str
    segment_elapsed_s: float
    segment_duration_s: float
    next_label: str | None
    next_change_in_s: float | None
    plan_elapsed_s: float
    plan_total_s: float
    target_kmh: float
    measured_kmh: float | None
    distance_m: float
    heart_rate_bpm: int | None
    backward_ceiling_kmh: float
    banner: str  # e.g. "SIMULATED TREADMILL" or the device description
    last_announcement: str | None
    countdown_s: float | None
    link_ok: bool
    # For the presentation (retrotread.presentation): what the person must know now.
    turn_to: Direction | None = None
    """The way the person must face once the belt has stopped (a turnaround, the start
    gate, the countdown); None when nothing is being turned to."""
    next_direction: Direction | None = None
    """The way the next segment faces (None after the last one)."""
    segment_target_kmh: float | None = None
    """The current segment's speed as planned (with the person's +/- offset, inside the
    envelope), not the quantized and ramp-limited setpoint on the wire."""
    turn_started_s: float | None = None
    """Session time the current turnaround began (the belt was told to stop)."""
    resume_plan_s: float | None = None
    """Plan time the workout resumes at after the turnaround (its hold and countdown are
    budgeted in the plan but timed by the session)."""
    simulated: bool = False
    companion_required: bool = False
