"""The session log: one JSON object per line (JSON Lines), written as the workout runs.

The first line is a ``log_header`` record; every later line is an event's
:meth:`~retrotread.events.Event.to_record`. The format of every record is documented in
``docs/session-log.md``.

Writing is split in two so the control loop never waits for a disk: the recorder, an
event subscriber, only appends the encoded line to a list in memory; ``flush_loop``
writes that list out at least once a second (and at once for the records that matter
most after a crash: watchdog actions, link changes, the end of the session). Leaving the
``with`` block, normally or by an exception, writes everything that is left and closes
the file.

Reading is :mod:`retrotread.log_reader` (typed events; a truncated last line from a crash
is skipped with a warning); :func:`summarize` and :func:`format_summary` are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import logging
import os
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import platformdirs

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the pid decides
    fcntl = None  # type: ignore[assignment]

from retrotread.clock import Clock
from retrotread.envelope import Direction
from retrotread.events import (
    CommandSent,
    Event,
    SegmentStarted,
    SessionFinished,
    SessionStarted,
    TelemetrySample,
    WatchdogAction,
)
from retrotread.formatting import (
    clock_text,
    distance_text,
    heart_rate_text,
    kmh_text,
    minutes_text,
    speed_text,
)
from retrotread.log_reader import (
    LOG_FORMAT,
    LOG_MINOR,
    LOG_VERSION,
    LogHeader,
    Record,
    SessionLogError,
    as_events,
    first,
    last,
    of,
    read_events,
    read_session,
    times,
)

__all__ = ["LOG_FORMAT", "LOG_MINOR", "LOG_VERSION", "SessionLogError", "read_events",
           "read_session"]  # the reader's names, where callers have always found them

log = logging.getLogger(__name__)

LOG_DIR_ENV = "RETROTREAD_LOG_DIR"
MAX_FLUSH_INTERVAL_S = 1.0
"""The log on disk is never more than this far behind the session."""

_FLUSH_AT_ONCE = frozenset({"watchdog", "link", "session_finished"})
_STOPPED_KMH = 0.1


# --------------------------------------------------------------------------- paths
def default_log_dir() -> Path:
    """Where session logs go: ``$RETROTREAD_LOG_DIR`` if set, else the user data dir."""
    override = os.environ.get(LOG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("retrotread", appauthor=False)) / "sessions"


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:60].strip("-") or "session"


def new_log_path(profile_name: str, started: datetime.datetime) -> Path:
    """``<default_log_dir>/<YYYYmmdd-HHMMSS>-<slug>.jsonl`` for a session started then."""
    return default_log_dir() / f"{started:%Y%m%d-%H%M%S}-{_slug(profile_name)}.jsonl"


def _encode(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), default=str) + "\n"


# --------------------------------------------------------------------------- writing
class SessionRecorder:
    """Writes a session's events to ``path`` (appending). Use it as a context manager,
    subscribe it to the event bus, and run :meth:`flush_loop` as a task."""

    def __init__(self, path: Path, clock: Clock, *, flush_interval_s: float = 0.5,
                 speedup: float | None = None) -> None:
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        self.path = Path(path)
        self.clock = clock
        self.speedup = float(speedup if speedup is not None
                             else getattr(clock, "speedup", 1.0))
        """How much faster than real time the log's clock ran (a sped-up simulator demo);
        written into the ``session_started`` record."""
        self.lock = SessionLock(self.path)
        self.flush_interval_s = min(flush_interval_s, MAX_FLUSH_INTERVAL_S)
        self.records_written = 0
        self.dropped_records = 0
        self._buffer: list[str] = []
        self._file: TextIO | None = None
        self._closed = False
        self._error_logged = False

    # --- context manager --------------------------------------------------------------
    def __enter__(self) -> SessionRecorder:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            self._file = open(self.path, "a", encoding="utf-8")
        except BaseException:
            self.lock.release()
            raise
        header = LogHeader(
            self.clock.now(), LOG_FORMAT, LOG_VERSION, LOG_MINOR,
            datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"))
        self._buffer.append(_encode(header.to_record()))
        self.flush()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write what is left, fsync and close, then release the lock. Safe to call twice."""
        try:
            self._close_file()
        finally:
            self.lock.release()

    def _close_file(self) -> None:
        if self._file is None:
            self._closed = True
            return
        self.flush()
        # A log that cannot be synced is still flushed; nothing more to do.
        with contextlib.suppress(OSError, ValueError):
            os.fsync(self._file.fileno())
        try:
            self._file.close()
        except OSError as exc:
            self._report(exc)
        self._file = None
        self._closed = True
        if self.dropped_records:
            log.warning("session log %s: %d record(s) could not be written",
                        self.path, self.dropped_records)

    # --- subscriber -------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        """Queue one event's record. Fast, and never raises into the caller."""
        try:
            if self._closed:
                self.dropped_records += 1
                return
            record = event.to_record()
            if event.kind == "session_started" and record.get("speedup") is None:
                record["speedup"] = self.speedup
            self._buffer.append(_encode(record))
            if event.kind in _FLUSH_AT_ONCE:
                self.flush()
        except Exception as exc:  # the control loop must never see a log failure
            self.dropped_records += 1
            self._report(exc)

    # --- flushing ---------------------------------------------------------------------
    def flush(self) -> None:
        """Write the queued lines to the file and flush it. Never raises."""
        if not self._buffer or self._file is None:
            return
        lines, self._buffer = self._buffer, []
        try:
            self._file.write("".join(lines))
            self._file.flush()
        except (OSError, ValueError) as exc:
            self.dropped_records += len(lines)
            self._report(exc)
        else:
            self.records_written += len(lines)

    async def flush_loop(self) -> None:
        """Flush every ``flush_interval_s`` (at most 1 s) until cancelled."""
        while True:
            await asyncio.sleep(self.flush_interval_s)
            self.flush()

    @property
    def pending(self) -> int:
        """Lines queued in memory, not yet written."""
        return len(self._buffer)

    def _report(self, exc: BaseException) -> None:
        if not self._error_logged:
            self._error_logged = True
            log.error("cannot write the session log %s: %s (the workout goes on; "
                      "dropped records are counted)", self.path, exc)


# --------------------------------------------------------------------------- the lock
LOCK_SUFFIX = ".lock"


def lock_path(log_path: Path | str) -> Path:
    """The lock next to a session log: ``<log>.jsonl.lock``."""
    log_path = Path(log_path)
    return log_path.with_name(log_path.name + LOCK_SUFFIX)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


class SessionLock:
    """Held by a running session beside its log: a file with the pid (JSON), locked with
    ``flock`` where the platform has it, removed when the session ends.

    A lock whose process died is *stale*: the kernel released the ``flock``, the pid is
    gone. :func:`lock_state` tells the two apart. A lock that cannot be written (a read-only
    folder) is a warning, never a reason not to run."""

    def __init__(self, log_path: Path) -> None:
        self.path = lock_path(log_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("cannot write the session lock %s: %s", self.path, exc)
            return
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                owner = read_lock(self.path).get("pid", "?")
                raise SessionLogError(
                    f"{self.path.with_suffix('')} is being written by a session that is "
                    f"still running (pid {owner}); give another --log") from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(owner).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None


def read_lock(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_state(log_path: Path | str) -> tuple[str, int | None]:
    """``("none" | "running" | "stale", pid)`` for the lock beside ``log_path``."""
    path = lock_path(log_path)
    if not path.exists():
        return "none", None
    owner = read_lock(path)
    pid = owner.get("pid") if isinstance(owner.get("pid"), int) else None
    if fcntl is not None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return "none", pid
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return "running", pid  # held: its process is alive
        finally:
            os.close(fd)
        return "stale", pid
    if pid is not None and owner.get("host") in (None, socket.gethostname()) \
            and _pid_alive(pid):
        return "running", pid
    return "stale", pid


# --------------------------------------------------------------------------- summary
@dataclass
class SessionSummary:
    """What a session amounted to, recovered from its log alone."""

    profile_name: str | None
    device: str | None
    simulated: bool | None
    outcome: str  # an Outcome value, or "incomplete" when the log has no end
    reason: str
    elapsed_s: float
    backward_s: float
    distance_m: float
    commands_sent: int
    stop_sent: bool | None  # None: unknown (the log has no end)
    stop_acknowledged: bool | None = None
    watchdog_actions: list[str] = field(default_factory=list)
    person_actions: list[str] = field(default_factory=list)
    """Stops the person (or a signal) asked for: listed apart from the watchdog's."""
    segments_done: int = 0
    segments_started: int = 0
    max_backward_command_kmh: float | None = None
    mean_speed_kmh: float | None = None
    max_heart_rate_bpm: int | None = None
    planned_s: float | None = None
    wall_time: str | None = None
    speedup: float | None = None
    """How much faster than real time the session ran (None: a log from before this was
    recorded; 1.0 unless it was a sped-up simulator demo)."""
    last_belt: str | None = None
    """For a log without an end: the last known belt state, in words."""

    @property
    def complete(self) -> bool:
        return self.outcome != "incomplete"


PERSON_TRIGGERS = frozenset({"user_stop", "interrupted"})
"""Session "watchdog" records that are a person's (or a signal's) request, not a fault."""


def describe_stop(summary: SessionSummary) -> str:
    """Whether the machine was told to stop, in words that claim no more than the log."""
    if summary.stop_sent is None:
        return "Stop sent: unknown (the log is incomplete)"
    if not summary.stop_sent:
        return "Stop not delivered - check the treadmill has stopped"
    if summary.stop_acknowledged:
        return "Stop sent: yes (acknowledged by the machine)"
    return "Stop sent: yes (delivered, not acknowledged)"


def _action_text(action: WatchdogAction) -> str:
    return f"{action.trigger}: {action.action}" + (f" ({action.detail})" if action.detail
                                                     else "")


def summarize(records: Iterable[Event | Record]) -> SessionSummary:
    """Summarize a session's events (see :func:`retrotread.log_reader.read_events`; raw
    records are read as events first).

    Works on a log that has no ``session_finished`` record (a crash): the outcome is then
    ``"incomplete"`` and time, backward time and distance are estimated from the records.
    """
    events = as_events(records)
    started = first(events, SessionStarted)
    finished = last(events, SessionFinished)
    header = first(events, LogHeader)

    commands = of(events, CommandSent)
    backward_speeds = [c.speed_kmh for c in commands
                       if c.op == "SetTargetSpeed" and c.facing is Direction.BACKWARD
                       and c.speed_kmh is not None]
    # A stop the person (or a signal) asked for is theirs, not the watchdog's.
    actions = of(events, WatchdogAction)
    watchdog = [_action_text(a) for a in actions if a.trigger not in PERSON_TRIGGERS]
    asked = [_action_text(a) for a in actions if a.trigger in PERSON_TRIGGERS]
    segment_indices = {s.index for s in of(events, SegmentStarted)}

    telemetry = of(events, TelemetrySample)
    moving_time = 0.0
    moving_km = 0.0
    backward_est = 0.0
    for a, b in itertools.pairwise(telemetry):
        if a.speed_kmh is None or b.time_s <= a.time_s or a.speed_kmh <= _STOPPED_KMH:
            continue
        dt = b.time_s - a.time_s
        moving_time += dt
        moving_km += a.speed_kmh * dt / 3600.0
        if a.facing is Direction.BACKWARD:
            backward_est += dt
    mean_speed = moving_km / (moving_time / 3600.0) if moving_time > 0 else None
    # 0 bpm is a machine without a sensor (real machines send it), not a reading
    heart_rates = [s.heart_rate_bpm for s in telemetry
                   if s.heart_rate_bpm is not None and s.heart_rate_bpm > 0]

    known_times = times(events)
    t_start = started.time_s if started else (known_times[0] if known_times else None)

    last_belt: str | None = None
    if finished is not None:
        outcome = finished.outcome.value
        reason = finished.reason
        elapsed = finished.elapsed_s
        backward = finished.backward_s
        distance = finished.distance_m
        stop_sent: bool | None = finished.stop_sent
        stop_acknowledged: bool | None = finished.stop_acknowledged
    else:
        outcome = "incomplete"
        last_belt = describe_last_belt(events, t_start)
        reason = ("the program stopped without finishing the log; last known: "
                  f"{last_belt}; the log does not say the belt was told to stop")
        elapsed = (max(0.0, known_times[-1] - t_start)
                   if known_times and t_start is not None else 0.0)
        backward = backward_est
        distances = [s.distance_m for s in telemetry if s.distance_m is not None]
        distance = (float(max(0, distances[-1] - distances[0])) if distances
                    else moving_km * 1000)
        stop_sent = None
        stop_acknowledged = None

    segments_started = len(segment_indices)
    segments_done = max(0, segments_started - 1)
    if segments_started and outcome == "completed":
        segments_done = segments_started

    return SessionSummary(
        profile_name=started.profile_name if started else None,
        device=started.device if started else None,
        simulated=started.simulated if started else None,
        outcome=outcome,
        reason=reason,
        elapsed_s=elapsed,
        backward_s=backward,
        distance_m=distance,
        commands_sent=len(commands),
        stop_sent=stop_sent,
        stop_acknowledged=stop_acknowledged,
        watchdog_actions=watchdog,
        person_actions=asked,
        segments_done=segments_done,
        segments_started=segments_started,
        max_backward_command_kmh=max(backward_speeds) if backward_speeds else None,
        mean_speed_kmh=mean_speed,
        max_heart_rate_bpm=max(heart_rates) if heart_rates else None,
        planned_s=started.total_s if started else None,
        wall_time=header.wall_time if header else None,
        speedup=started.speedup if started else None,
        last_belt=last_belt,
    )


_OP_TEXT = {"StopOrPause": "Stop or pause", "StartOrResume": "Start"}


def describe_last_belt(records: Sequence[Event | Record], t_start: float | None) -> str:
    """The last thing the log knows about the belt: its last reading and the last command
    (a log cut off by a crash), e.g. ``belt at 1.6 km/h (1.0 mph) facing backward at 3:12;
    last command: Stop at 3:13``."""
    events = as_events(records)
    t0 = t_start or 0.0
    reading = next((s for s in reversed(events) if isinstance(s, TelemetrySample)
                    and s.speed_kmh is not None), None)
    command = last(events, CommandSent)
    parts = []
    if reading is not None and reading.speed_kmh is not None:
        at = clock_text(reading.time_s - t0)
        if reading.speed_kmh <= _STOPPED_KMH:
            parts.append(f"belt stopped at {at}")
        else:
            parts.append(f"belt at {speed_text(reading.speed_kmh, 'km/h', both=True)} "
                         f"facing {reading.facing.value} at {at}")
    else:
        parts.append("no belt reading")
    if command is not None:
        what = _OP_TEXT.get(command.op, command.op)
        if command.op == "SetTargetSpeed" and command.speed_kmh is not None:
            what = f"speed {kmh_text(command.speed_kmh)}"
        parts.append(f"last command: {what} at {clock_text(command.time_s - t0)}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- formatting
_OUTCOME_TEXT = {
    "completed": "completed",
    "stopped_by_user": "stopped by you",
    "watchdog": "stopped by the watchdog",
    "safety_key": "stopped by the safety key",
    "interrupted": "interrupted",
    "error": "ended by an error",
    "incomplete": "INCOMPLETE LOG",
}


def describe_simulated(speedup: float | None) -> str:
    """`` (simulated)`` or `` (simulated, 20x faster)``."""
    if speedup is not None and abs(speedup - 1.0) > 1e-9:
        return f" (simulated, {speedup:g}x faster)"
    return " (simulated)"


def format_summary(summary: SessionSummary, units: str = "mph") -> str:
    """A few lines for a person: what was done and how it ended."""
    name = summary.profile_name or "unknown workout"
    where = summary.device or "unknown device"
    if summary.simulated:
        where += describe_simulated(summary.speedup)
    outcome = _OUTCOME_TEXT.get(summary.outcome, summary.outcome)
    lines = [f"Session summary: {name} on {where}"]
    lines.append(f"  Outcome:   {outcome}" + (f": {summary.reason}" if summary.reason else ""))
    time_line = f"  Time:      {clock_text(summary.elapsed_s)}"
    if summary.planned_s:
        time_line += f" of {clock_text(summary.planned_s)} planned"
    lines.append(time_line)
    lines.append(f"  Backward:  {clock_text(summary.backward_s)} "
                 f"({minutes_text(summary.backward_s)})")
    distance_line = f"  Distance:  {distance_text(summary.distance_m, units)}"
    if summary.mean_speed_kmh is not None:
        distance_line += f" · mean moving speed {speed_text(summary.mean_speed_kmh, units)}"
    lines.append(distance_line)
    if summary.segments_started:
        lines.append(f"  Segments:  {summary.segments_done} done")
    if summary.max_backward_command_kmh is not None:
        lines.append("  Fastest backward command: "
                     f"{speed_text(summary.max_backward_command_kmh, units)}")
    if summary.max_heart_rate_bpm is not None:
        lines.append(f"  Peak heart rate: {heart_rate_text(summary.max_heart_rate_bpm)}")
    lines.append(f"  Commands:  {summary.commands_sent} sent · {describe_stop(summary)}")
    for action in summary.person_actions:
        lines.append(f"  Stopped on request: {action}")
    if summary.watchdog_actions:
        lines.append(f"  Watchdog actions ({len(summary.watchdog_actions)}):")
        lines.extend(f"    - {action}" for action in summary.watchdog_actions)
    return "\n".join(lines)
