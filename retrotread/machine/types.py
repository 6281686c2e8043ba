"""The session core's states and the values it is given (settings, setup, segments)
and gives back (the result)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from retrotread.envelope import START_COUNTDOWN_S, TURNAROUND_ANNOUNCE_S, Direction
from retrotread.events import Outcome
from retrotread.formatting import Units

FIRST_TELEMETRY_WAIT_S = 3.0
"""At the start: how long to wait for a first sample (to see the belt standing)."""
STOP_REPEAT_S = 1.0
"""In STOPPING, an unanswered Stop is sent again this often."""


class State(enum.StrEnum):
    """Each name is its value. ``TURN_STOPPING`` and ``SAFE_STOP`` are older names of
    ``TURNAROUND`` and ``STOPPING`` (aliases, the same members)."""

    STARTING = "starting"
    RUNNING = "running"
    TURNAROUND = "turnaround"  # ramped down, Pause sent, waiting for the belt to stop
    WAITING_READY = "waiting_ready"
    HOLD = "hold"
    COUNTDOWN = "countdown"
    PAUSED = "paused"
    FINISHING = "finishing"
    STOPPING = "stopping"  # the safe stop: Stop until the belt is known stopped
    RECONNECTING = "reconnecting"
    FINISHED = "finished"
    TURN_STOPPING = "turnaround"
    SAFE_STOP = "stopping"


TURNING = frozenset({State.TURNAROUND, State.WAITING_READY, State.HOLD, State.COUNTDOWN})
STANDING = frozenset({State.WAITING_READY, State.HOLD, State.COUNTDOWN, State.PAUSED})
"""States in which the belt stands still once it has stopped."""
ENDING = frozenset({State.FINISHED, State.STOPPING, State.FINISHING, State.RECONNECTING})


class Prep(enum.Enum):
    """The start, before the first countdown."""

    CONTROL = "control"  # Request Control sent, waiting for its answer
    FIRST_SAMPLE = "first_sample"  # waiting (3 s at most) to see the belt standing
    READY = "ready"  # a real machine: waiting for the person's READY
    DONE = "done"


class Closing(enum.Enum):
    """After the loop: a bounded wait for the link, then a last Stop."""

    NO = "no"
    LINK = "link"
    LAST_STOP = "last_stop"


class ReadyGate(enum.StrEnum):
    """What restarts the belt after a turnaround's stop."""

    HOLD = "hold"  # a timed hold (r goes sooner)
    KEY = "key"  # the person's READY (r, or START held on the page)


@dataclass(frozen=True)
class SegmentInfo:
    index: int
    label: str
    direction: Direction
    speed_kmh: float
    duration_s: float
    cue: str | None = None


@dataclass(frozen=True)
class SessionSettings:
    tick_hz: float = 10.0
    ready_gate: ReadyGate = ReadyGate.HOLD
    hold_s: float = 10.0
    countdown_s: float = 3.0
    announce_s: float = TURNAROUND_ANNOUNCE_S
    start_countdown_s: float = START_COUNTDOWN_S
    wait_for_ready_at_start: bool = False  # real machines: an explicit user action first
    stop_confirm_timeout_s: float = 15.0
    reconnect_backoff_s: float = 0.5  # first wait after a failed reconnect, then doubled ...
    reconnect_backoff_max_s: float = 5.0  # ... up to this; the attempts never give up
    reconnect_timeout_s: float = 15.0  # one connection attempt that hangs this long failed
    unreachable_alarm_every_s: float = 10.0  # "pull the safety key" while unreachable
    interrupt_grace_s: float = 3.0  # Ctrl-C/SIGTERM: at most this long for the last Stop
    telemetry_event_every: int = 1
    user_step_kmh: float = 0.16  # 0.1 mph per +/- press
    max_idle_s: float = 600.0  # paused (or waiting for ready) this long ends the workout
    heart_rate_max_bpm: int | None = None  # the profile's ceiling (watchdog.HeartRateRule)
    units: Units = Units.MPH  # the units announcements speak speeds in

    def __post_init__(self) -> None:
        # Closed sets are enums; their text ("key", "km/h") is accepted and converted.
        object.__setattr__(self, "ready_gate", ReadyGate(self.ready_gate))
        object.__setattr__(self, "units", Units(self.units))


@dataclass(frozen=True)
class SessionResult:
    outcome: Outcome
    reason: str
    stop_sent: bool
    stop_confirmed: bool
    elapsed_s: float
    backward_s: float
    distance_m: float


@dataclass(frozen=True)
class MachineSetup:
    """What the machine is told once, at the start (besides the plan and envelope)."""

    profile_name: str = "workout"
    profile_path: str | None = None
    link_description: str = ""
    simulated: bool = False
    can_reconnect: bool = True
    reply_timeout_s: float = 2.0


