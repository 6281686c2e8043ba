"""Past sessions, read back from the session logs (``retrotread history``).

A log directory holds one JSON Lines file per session (``docs/session-log.md``); a file
written twice (``--log PATH`` given again) holds several sessions, each starting with its
own ``log_header``. Every session gets an *id*: the file name without ``.jsonl``, with
``:2``, ``:3``... for the later sessions of a file. ``retrotread export`` and ``plot``
accept an id, a unique start of one, ``last``, or a path.

Pure reading: nothing here writes a file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrotread.envelope import Direction
from retrotread.errors import SessionNotFoundError
from retrotread.events import Event, SegmentStarted, SessionStarted, WatchdogAction
from retrotread.formatting import clock_text, distance_text, minutes_text
from retrotread.log_reader import (
    LogHeader,
    Record,
    SessionLogError,
    as_events,
    first,
    of,
    read_events,
    split_sessions,
)
from retrotread.recorder import default_log_dir, lock_state, summarize

__all__ = ["Record", "split_sessions"]  # found here by export, plot and older callers

log = logging.getLogger(__name__)

HR_TRIGGER_PREFIXES = ("heart_rate", "hr_")
"""Watchdog triggers that mean a heart-rate limit acted (the live limit is planned)."""
NOT_A_FAULT_TRIGGERS = frozenset({"user_stop", "interrupted"})
"""Watchdog stops that the person asked for (the outcome already says so)."""
_STEM_TIME = re.compile(r"^(\d{8}-\d{6})")


RUNNING = "running"
"""The outcome of a session whose process is still writing its log."""


@dataclass(frozen=True)
class HistoryEntry:
    """One past session, as the history, export and progression need it."""

    id: str
    path: Path | None
    started: datetime.datetime | None  # aware (UTC) when known
    profile_name: str
    profile_path: str | None = None
    outcome: str = "completed"
    reason: str = ""
    elapsed_s: float = 0.0
    backward_s: float = 0.0
    distance_m: float = 0.0
    planned_s: float | None = None
    planned_backward_s: float | None = None
    """The plan's time facing backward (ramps included), from ``session_started``."""
    prescribed_backward_s: float | None = None
    """Sum of the backward segments' durations, for the segments that started."""
    profile_backward_s: float | None = None
    """The profile's backward time, when its file still loads under the same name."""
    backward_speed_kmh: float | None = None
    """The fastest backward segment target (after the envelope)."""
    segments_started: int = 0
    watchdog_stop: bool = False
    stop_sent: bool | None = None
    """A Stop reached the machine at the end (None: the log does not say)."""
    heart_rate_limited: bool = False
    max_heart_rate_bpm: int | None = None
    simulated: bool | None = None
    device: str | None = None
    session_index: int = 1  # 1-based position in its file
    speedup: float | None = None
    """How much faster than real time it ran (None: not recorded, an older log)."""
    last_belt: str | None = None
    """Running or incomplete: the last known belt state, in words."""
    pid: int | None = None
    """Running: the process writing it (from its log's lock)."""

    @property
    def completed(self) -> bool:
        return self.outcome == "completed"

    @property
    def running(self) -> bool:
        """Still being written by a live process (its lock is held)."""
        return self.outcome == RUNNING

    @property
    def machine(self) -> str:
        """``real``, ``sim``, ``sim 20x`` (sped up), or ``?`` (an older log)."""
        if self.simulated is None:
            return "?"
        if not self.simulated:
            return "real"
        if self.speedup is not None and abs(self.speedup - 1.0) > 1e-9:
            return f"sim {self.speedup:g}x"
        return "sim"

    @property
    def date(self) -> datetime.date | None:
        return self.started.astimezone().date() if self.started else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path) if self.path else None
        data["started"] = self.started.isoformat() if self.started else None
        data["completed"] = self.completed
        data["running"] = self.running
        data["machine"] = self.machine
        return data


# --------------------------------------------------------------------------- parsing
def parse_wall_time(text: object) -> datetime.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def session_start(records: Sequence[Event | Record],
                  path: Path | None = None) -> datetime.datetime | None:
    """When the session started: the header's wall time (shifted to ``session_started``),
    else the time in the file name (written in UTC), else None."""
    events = as_events(records)
    header = first(events, LogHeader)
    started = first(events, SessionStarted)
    wall = parse_wall_time(header.wall_time) if header else None
    if header is not None and wall is not None:
        offset = 0.0
        if started is not None and math.isfinite(header.time_s):
            offset = started.time_s - header.time_s
        return wall + datetime.timedelta(seconds=offset)
    if path is not None and (match := _STEM_TIME.match(path.stem)):
        return datetime.datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(
            tzinfo=datetime.UTC)
    return None


def _is_hr_trigger(trigger: str) -> bool:
    return trigger.startswith(HR_TRIGGER_PREFIXES)


def entry_from_records(records: Sequence[Event | Record], *, id: str, path: Path | None = None,
                       session_index: int = 1, running: bool = False,
                       pid: int | None = None) -> HistoryEntry:
    """Summarize one session's events (or raw records) into a :class:`HistoryEntry`.
    ``running``: the session is still being written by a live process (``pid``; its log's
    lock is held)."""
    events = as_events(records)
    summary = summarize(events)
    outcome, reason = summary.outcome, summary.reason
    running = running and not summary.complete
    if running:
        outcome = RUNNING
        reason = (f"in progress{f' (pid {pid})' if pid else ''}; last known: "
                  f"{summary.last_belt}")
    started = first(events, SessionStarted)
    watchdog = of(events, WatchdogAction)
    heart_rate_limited = any(_is_hr_trigger(w.trigger) for w in watchdog)
    watchdog_stop = summary.outcome in ("watchdog", "safety_key") or any(
        w.action == "stop" and w.trigger not in NOT_A_FAULT_TRIGGERS
        and not _is_hr_trigger(w.trigger)
        for w in watchdog)
    segments: dict[int, SegmentStarted] = {}
    for segment in of(events, SegmentStarted):
        segments.setdefault(segment.index, segment)
    backward = [s for s in segments.values() if s.direction is Direction.BACKWARD]
    speeds = [s.speed_kmh for s in backward]
    profile_path = started.profile_path if started else None
    return HistoryEntry(
        id=id,
        path=path,
        started=session_start(events, path),
        profile_name=summary.profile_name or "unknown workout",
        profile_path=profile_path,
        outcome=outcome,
        reason=reason,
        elapsed_s=summary.elapsed_s,
        backward_s=summary.backward_s,
        distance_m=summary.distance_m,
        planned_s=summary.planned_s,
        planned_backward_s=started.backward_s if started else None,
        prescribed_backward_s=sum(s.duration_s for s in backward) if segments else None,
        profile_backward_s=_profile_backward_s(profile_path, summary.profile_name),
        backward_speed_kmh=max(speeds) if speeds else None,
        segments_started=len(segments),
        watchdog_stop=watchdog_stop,
        stop_sent=summary.stop_sent,
        heart_rate_limited=heart_rate_limited,
        max_heart_rate_bpm=summary.max_heart_rate_bpm,
        simulated=summary.simulated,
        device=summary.device,
        session_index=session_index,
        speedup=summary.speedup,
        last_belt=summary.last_belt,
        pid=pid if running else None,
    )


def _profile_backward_s(path: object, name: str | None) -> float | None:
    """The backward time of the profile a session ran, if its file is unchanged enough
    to still carry the same name (profiles written by ``retrotread next`` put the
    amount in the name)."""
    if not isinstance(path, str) or not name or not Path(path).is_file():
        return None
    from retrotread.errors import ProfileError
    from retrotread.profile import load_profile

    try:
        profile = load_profile(path)
    except ProfileError:
        return None
    return profile.backward_seconds() if profile.name == name else None


def session_id(path: Path, index: int) -> str:
    return path.stem if index == 1 else f"{path.stem}:{index}"


def read_log(path: Path) -> list[tuple[str, list[Event]]]:
    """``(id, events)`` for every session in one log file (see
    :func:`retrotread.log_reader.read_events`)."""
    return [(session_id(path, i), events)
            for i, events in enumerate(split_sessions(read_events(path)), start=1)]


def load_history(log_dir: Path | None = None) -> list[HistoryEntry]:
    """Every session in ``log_dir`` (default: :func:`default_log_dir`), oldest first.

    A damaged log is skipped with a warning: one bad file must not hide the others.
    """
    log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
    if not log_dir.is_dir():
        return []
    entries: list[HistoryEntry] = []
    for path in sorted(log_dir.glob("*.jsonl")):
        try:
            sessions = read_log(path)
        except SessionLogError as exc:
            log.warning("skipping %s", exc)
            continue
        state, pid = lock_state(path)
        for index, (sid, records) in enumerate(sessions, start=1):
            live = state == "running" and index == len(sessions)  # the last one is written
            entries.append(entry_from_records(records, id=sid, path=path, session_index=index,
                                              running=live, pid=pid))
    return sort_entries(entries)


def sort_entries(entries: Iterable[HistoryEntry]) -> list[HistoryEntry]:
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return sorted(entries, key=lambda e: (e.started or epoch, e.id))


# --------------------------------------------------------------------------- resolving
def resolve_session(spec: str | Path, log_dir: Path | None = None) -> tuple[str, list[Event]]:
    """The events of the session that ``spec`` names: a log path (optionally ``:N``), an
    id from ``retrotread history``, a unique start of one, or ``last``."""
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return _nth_session(path, 1)
    base, _, number = text.rpartition(":")
    if base and number.isdigit() and Path(base).is_file():
        return _nth_session(Path(base), int(number))
    entries = load_history(log_dir)
    if text == "last":
        if not entries:
            raise SessionNotFoundError(
                f"no sessions in {log_dir or default_log_dir()}; run a workout first")
        chosen = entries[-1]
    else:
        exact = [e for e in entries if e.id == text]
        matches = exact or [e for e in entries if e.id.startswith(text)]
        if not matches:
            raise SessionNotFoundError(
                f"no session {text!r}: not a file, and no id in "
                f"{log_dir or default_log_dir()} starts with it (see `retrotread history`)")
        if len(matches) > 1:
            ids = ", ".join(e.id for e in matches[:5])
            raise SessionNotFoundError(
                f"{text!r} matches {len(matches)} sessions ({ids}...); give more of the id")
        chosen = matches[0]
    assert chosen.path is not None
    return _nth_session(chosen.path, chosen.session_index)


def _nth_session(path: Path, index: int) -> tuple[str, list[Event]]:
    sessions = read_log(path)
    if not 1 <= index <= len(sessions):
        raise SessionNotFoundError(f"{path} holds {len(sessions)} session(s), not {index}")
    return sessions[index - 1]


# --------------------------------------------------------------------------- output
_OUTCOME_SHORT = {
    "completed": "completed",
    "stopped_by_user": "stopped by you",
    "watchdog": "watchdog stop",
    "safety_key": "safety key",
    "interrupted": "interrupted",
    "error": "error",
    "incomplete": "INCOMPLETE",
    RUNNING: "running",
}


def describe_outcome(entry: HistoryEntry) -> str:
    text = _OUTCOME_SHORT.get(entry.outcome, entry.outcome)
    if entry.running:
        text += f" (pid {entry.pid})" if entry.pid else ""
    elif not entry.completed and entry.reason:
        text += f": {entry.reason}"
    flags = []
    if entry.heart_rate_limited:
        flags.append("heart-rate limit")
    if entry.watchdog_stop and entry.outcome not in ("watchdog", "safety_key"):
        flags.append("watchdog stop")
    if entry.stop_sent is False:
        flags.append("Stop not delivered")
    if flags:
        text += f" ({', '.join(flags)})"
    return text


def format_history_table(entries: Sequence[HistoryEntry], units: str = "mph") -> str:
    """The ``retrotread history`` table, oldest first."""
    if not entries:
        return "no sessions yet"
    rows = [("id", "date", "profile", "machine", "time", "backward", "distance", "outcome")]
    for e in entries:
        when = e.started.astimezone().strftime("%Y-%m-%d %H:%M") if e.started else "?"
        rows.append((e.id, when, e.profile_name, e.machine, clock_text(e.elapsed_s),
                     minutes_text(e.backward_s), distance_text(e.distance_m, units),
                     describe_outcome(e)))
    columns = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:columns], widths, strict=True))
             + "  " + row[columns] for row in rows]
    lines.insert(1, "-" * min(120, sum(widths) + 2 * columns + 10))
    real = [e for e in entries if e.simulated is not True]
    lines.append("")
    summary = (f"{len(entries)} session(s), {minutes_text(sum(e.backward_s for e in real))} "
               "backward in all")
    if len(real) < len(entries):
        summary += f" (not counting {len(entries) - len(real)} simulated)"
    lines.append(summary)
    return "\n".join(line.rstrip() for line in lines)


# --------------------------------------------------------------------------- CLI
def add_history_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, default=None, metavar="DIR",
                   help="log directory (default: $RETROTREAD_LOG_DIR or the user data dir)")
    p.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    p.add_argument("--units", choices=["mph", "km/h"], default="mph",
                   help="units for distances (default mph)")


def run_history(args: argparse.Namespace) -> int:
    entries = load_history(args.dir)
    if args.json:
        json.dump([e.to_json() for e in entries], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_history_table(entries, units=args.units))
    return 0
