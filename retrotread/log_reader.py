"""The one reader of session logs: JSON lines in, typed events out.

:func:`read_events` turns a session log (``docs/session-log.md``) into the event
dataclasses of :mod:`retrotread.events` (plus :class:`LogHeader` and
:class:`UnknownRecord`), so history, export, plot and the summary work with typed fields
(enums for closed sets, floats for times) instead of walking dicts.

Rules, in one place:

- **Versions.** The header's ``version`` is the log's *major* version; ``minor`` counts
  additions (new fields, new record kinds) that a reader of the same major can ignore.
  Every minor of the majors in :data:`KNOWN_VERSIONS` is read, and so are logs written
  before ``minor`` existed and logs without a header at all (version 1). A newer major is
  refused with :class:`SessionLogError` (a :class:`~retrotread.errors.UsageError`: exit
  status 2) naming the file and line.
- **Damage.** A line that is not a JSON object with a ``type`` is refused the same way,
  except a damaged *last* line (the program died mid-write): it is skipped with a
  warning, and the rest of the session is kept.
- **Unknown fields** are ignored. **Fields an older log lacks** take the dataclass's
  default.
- **Unknown record kinds** are kept as :class:`UnknownRecord` (with every field), in
  their place, so a reader can count or show them; every consumer here ignores them.
  So does a record of a known kind whose fields do not fit it (a required field missing,
  a value of the wrong type, a direction or outcome this version does not know): it
  becomes an ``UnknownRecord`` whose ``problem`` says why. An optional field (one that
  may be null) with a damaged value reads as ``None``: unknown stays unknown.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from retrotread.errors import SessionLogError
from retrotread.events import (
    Announcement,
    CommandReplied,
    CommandSent,
    CommandSource,
    Event,
    LinkStateChanged,
    MachineStatusChanged,
    SegmentStarted,
    SessionFinished,
    SessionStarted,
    TelemetrySample,
    TurnaroundPhase,
    UserAction,
    VoiceHeard,
    WatchdogAction,
)

log = logging.getLogger(__name__)

LOG_FORMAT = "retrotread-session"
LOG_VERSION = 1
"""The major version this program writes."""
LOG_MINOR = 1
"""Additions within :data:`LOG_VERSION` (0, or absent: logs before the typed reader;
1: ``minor`` in the header)."""
KNOWN_VERSIONS = frozenset({1})
"""Major versions this program reads."""

Record = dict[str, Any]
"""One raw JSON record of a log, as written."""


@dataclass(frozen=True)
class LogHeader(Event):
    """The first line of every session in a log (written by the recorder)."""

    kind: ClassVar[str] = "log_header"
    format: str = LOG_FORMAT
    version: int = LOG_VERSION
    minor: int = 0
    wall_time: str | None = None
    """ISO 8601 wall-clock time the log was opened (the only wall time in the log)."""


@dataclass(frozen=True)
class UnknownRecord(Event):
    """A record this version cannot type: an unknown kind (from a newer minor version) or
    a known kind whose fields do not fit. ``time_s`` is NaN when it has no usable ``t``."""

    kind: ClassVar[str] = "unknown"
    record_kind: str
    fields: dict[str, Any] = field(default_factory=dict, compare=False)
    problem: str = ""

    def to_record(self) -> dict[str, Any]:
        return {"type": self.record_kind, **self.fields}


EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in (
    LogHeader, SessionStarted, SegmentStarted, Announcement, TurnaroundPhase, CommandSent,
    CommandReplied, TelemetrySample, MachineStatusChanged, UserAction, VoiceHeard,
    WatchdogAction, LinkStateChanged, SessionFinished)}
"""Every record kind this version reads, by its ``type``."""

_REFINED: dict[tuple[type[Event], str], type[enum.Enum]] = {
    (UserAction, "source"): CommandSource,
}
"""String fields that hold a closed set: read as the enum when the value is known
(``UserAction.source`` is a ``str`` in the event, a :class:`CommandSource` value)."""


# --------------------------------------------------------------------------- one record
class _Unfit(ValueError):
    """A field's value does not fit its type."""


_MISSING = object()
E = TypeVar("E", bound=Event)


_FIELD_TYPES: dict[type[Event], tuple[tuple[dataclasses.Field[Any], Any], ...]] = {}


def _field_types(cls: type[Event]) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    """The fields of a kind but ``time_s``, with their resolved types (cached)."""
    if cls not in _FIELD_TYPES:
        hints = typing.get_type_hints(cls)
        _FIELD_TYPES[cls] = tuple((f, hints[f.name]) for f in dataclasses.fields(cls)
                                  if f.name != "time_s")
    return _FIELD_TYPES[cls]


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (float, int, bool, str, an enum, ``X | None``), or _Unfit."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        for option in options:
            try:
                return _coerce(value, option)
            except _Unfit:
                continue
        return None  # a damaged optional value: unknown
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Unfit(f"{_show(value)} is not a number")
        try:
            number = float(value)
        except OverflowError:
            raise _Unfit("a number too large") from None
        if not math.isfinite(number):
            raise _Unfit(f"{_show(value)} is not a finite number")
        return number
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Unfit(f"{_show(value)} is not a whole number")
        return value
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise _Unfit(f"{_show(value)} is not a {hint.__name__}")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except (ValueError, TypeError):
            raise _Unfit(f"{_show(value)} is not a known {hint.__name__}") from None
    raise _Unfit(f"cannot read a {hint}")  # pragma: no cover - a new field type


def _show(value: Any) -> str:
    return repr(value)[:40]


def _time(value: Any) -> float:
    try:
        return float(_coerce(value, float))
    except _Unfit:
        return math.nan


def parse_record(record: Record) -> Event:
    """One raw record as its typed event (see the module's rules); never raises."""
    kind = record.get("type")
    time_s = _time(record.get("t"))
    rest = {k: v for k, v in record.items() if k != "type"}
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return UnknownRecord(time_s, str(kind), rest, "a record kind this version does not know")
    if math.isnan(time_s) and cls is not LogHeader:
        return UnknownRecord(time_s, str(kind), rest, "no usable time ('t')")
    values: dict[str, Any] = {}
    for f, hint in _field_types(cls):
        value = record.get(f.name, _MISSING)
        has_default = (f.default is not dataclasses.MISSING
                       or f.default_factory is not dataclasses.MISSING)
        if value is _MISSING:
            if has_default:
                continue
            return UnknownRecord(time_s, str(kind), rest, f"no {f.name!r}")
        try:
            values[f.name] = _coerce(value, hint)
        except _Unfit as exc:
            if has_default:
                continue
            return UnknownRecord(time_s, str(kind), rest, f"{f.name}: {exc}")
        refined = _REFINED.get((cls, f.name))
        if refined is not None and values[f.name] in refined._value2member_map_:
            values[f.name] = refined(values[f.name])
    return cls(time_s, **values)


def as_events(records: Iterable[Event | Record]) -> list[Event]:
    """Typed events from events or raw records (a test's synthetic log, a JSON file read
    by hand): every consumer of a log accepts both."""
    return [r if isinstance(r, Event) else parse_record(r) for r in records]


# --------------------------------------------------------------------------- a file
def read_session(path: Path | str) -> list[Record]:
    """Every raw record of a session log, in order (JSON objects with a ``type``).

    A damaged *last* line (the program died mid-write) is skipped with a warning; a
    damaged line anywhere else, a log of another format, or a newer major version raises
    :class:`SessionLogError` naming file and line. Most readers want :func:`read_events`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SessionLogError(f"cannot read the session log {path}: {exc}") from exc
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    records: list[Record] = []
    for position, (lineno, line) in enumerate(numbered):
        last = position == len(numbered) - 1
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "type" not in record:
                raise ValueError("not a record (a JSON object with a 'type')")
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep JSON
            if last:
                log.warning("%s:%d: skipping a truncated last line (the session probably "
                            "ended abruptly)", path, lineno)
                break
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
            raise SessionLogError(
                f"{path}, line {lineno}: not a valid session record ({why}); "
                "the log is damaged"
            ) from None
        if record.get("type") == "log_header":
            _check_header(record, path, lineno)
        records.append(record)
    return records


def _check_header(header: Record, path: Path, lineno: int) -> None:
    if header.get("format") != LOG_FORMAT:
        raise SessionLogError(f"{path}, line {lineno}: not a retrotread session log "
                              f"(format {str(header.get('format'))[:40]!r})")
    version = header.get("version", LOG_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise SessionLogError(f"{path}, line {lineno}: the log version {_show(version)} is "
                              "not a whole number; the log is damaged")
    if version not in KNOWN_VERSIONS:
        newer = version > max(KNOWN_VERSIONS)
        raise SessionLogError(
            f"{path}, line {lineno}: session log version {version} "
            + ("is newer than this retrotread reads (up to version "
               f"{max(KNOWN_VERSIONS)}); update retrotread to read it" if newer
               else "is not one this retrotread reads"))


def read_events(path: Path | str) -> list[Event]:
    """Every record of a session log as a typed event, in order: a :class:`LogHeader`
    where each session begins, the events of :mod:`retrotread.events`, and
    :class:`UnknownRecord` for what this version cannot type. Raises
    :class:`SessionLogError` as :func:`read_session` does."""
    events = as_events(read_session(path))
    unfit = [e for e in events if isinstance(e, UnknownRecord) and e.record_kind in EVENT_TYPES]
    if unfit:
        log.warning("%s: %d record(s) did not fit their kind and were ignored (first: %s: "
                    "%s)", path, len(unfit), unfit[0].record_kind, unfit[0].problem)
    return events


# --------------------------------------------------------------------------- finding
def first(events: Iterable[Event], cls: type[E]) -> E | None:
    """The first event of type ``cls``, or None."""
    return next((e for e in events if isinstance(e, cls)), None)


def last(events: Sequence[Event], cls: type[E]) -> E | None:
    """The last event of type ``cls``, or None."""
    return next((e for e in reversed(events) if isinstance(e, cls)), None)


def of(events: Iterable[Event], cls: type[E]) -> list[E]:
    """Every event of type ``cls``, in order."""
    return [e for e in events if isinstance(e, cls)]


def times(events: Iterable[Event]) -> list[float]:
    """The known times of every record but the headers, in log order."""
    return [e.time_s for e in events
            if not isinstance(e, LogHeader) and math.isfinite(e.time_s)]


def split_sessions(events: Sequence[Event | Record]) -> list[list[Event]]:
    """The sessions of one file: a new one starts at every header after the first. A
    session with nothing but its header is left out."""
    sessions: list[list[Event]] = []
    for event in as_events(events):
        if isinstance(event, LogHeader) or not sessions:
            sessions.append([])
        sessions[-1].append(event)
    return [s for s in sessions if any(not isinstance(e, LogHeader) for e in s)]
