"""What the session core is told: one dataclass per kind of observation.

The async driver (``retrotread.session``) and the plain loop (``retrotread.stepped``)
turn what happens (a tick, a notification, a command's end, a key press, a lost link)
into these and hand them to :meth:`retrotread.machine.SessionMachine.step` with the time.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrotread.events import CommandSource, Outcome, UserCommand
from retrotread.ftms.client import CommandOutcome, StatusEvent, Telemetry
from retrotread.quirks import Quirks
from retrotread.watchdog import Trigger


@dataclass(frozen=True)
class Tick:
    """The control loop's period came round."""


@dataclass(frozen=True)
class TelemetryObserved:
    sample: Telemetry


@dataclass(frozen=True)
class StatusObserved:
    event: StatusEvent


@dataclass(frozen=True)
class CommandFinished:
    """The request the core last handed out ended (answered, refused, timed out ...)."""

    outcome: CommandOutcome


@dataclass(frozen=True)
class LinkLost:
    description: str


@dataclass(frozen=True)
class LinkUp:
    """A new connection to the machine (after a drop). ``connected`` is False when it
    dropped again before anyone listened."""

    description: str
    quirks: Quirks
    connected: bool = True


@dataclass(frozen=True)
class ReconnectFailed:
    attempt: int
    detail: str


@dataclass(frozen=True)
class ReconnectImpossible:
    """There is no way to reconnect (no factory)."""


@dataclass(frozen=True)
class UserRequest:
    command: UserCommand
    source: CommandSource | str
    confidence: float | None = None
    latency_s: float | None = None


@dataclass(frozen=True)
class Interrupted:
    """Ctrl-C, SIGTERM."""

    reason: str


@dataclass(frozen=True)
class HeartRateObserved:
    """A reading from a strap (Treadmill Data's own comes with telemetry)."""

    bpm: int | None


@dataclass(frozen=True)
class Stalled:
    """The driver's stall guard saw no tick for too long (real time)."""

    trigger: Trigger


@dataclass(frozen=True)
class Failed:
    """The driver failed (an exception, a cancel): end the session, Stop first."""

    outcome: Outcome
    detail: str


Observation = (Tick | TelemetryObserved | StatusObserved | CommandFinished | LinkLost | LinkUp
               | ReconnectFailed | ReconnectImpossible | UserRequest | Interrupted
               | HeartRateObserved | Stalled | Failed)
