"""The typed session-log reader (retrotread.log_reader): versions, damage, unknowns."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from retrotread.cli import main
from retrotread.envelope import Direction
from retrotread.errors import UsageError
from retrotread.events import (
    Announcement,
    CommandSource,
    Event,
    Outcome,
    SessionFinished,
    SessionStarted,
    TelemetrySample,
    TurnaroundPhase,
    UserAction,
    UserCommand,
    VoiceHeard,
)
from retrotread.history import entry_from_records, read_log
from retrotread.log_reader import (
    LOG_MINOR,
    LOG_VERSION,
    LogHeader,
    SessionLogError,
    UnknownRecord,
    parse_record,
    read_events,
    split_sessions,
)
from retrotread.recorder import format_summary, summarize
from tests.test_recorder import workout_events, write_log

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
OLD_LOG = FIXTURES / "v1.0-first-release.jsonl"


def _events_with_every_kind() -> list[Event]:
    events = workout_events()
    events[0] = SessionStarted(0.0, "Beginner retro", "p.yaml", "sim:generic", True, 3.21,
                               300.0, 120.0, 250.0, speedup=1.0)  # the recorder's rate
    events[6:6] = [
        TurnaroundPhase(3.0, "countdown", Direction.BACKWARD, 3.0),
        UserAction(4.0, UserCommand.PAUSE, CommandSource.COMPANION, True, "",
                   confidence=None, latency_s=None),
        UserAction(5.0, UserCommand.STOP, CommandSource.VOICE, False, "not now", 0.8, 0.25),
        VoiceHeard(5.0, "stop", UserCommand.STOP, 0.8, 0.25, False),
        TelemetrySample(6.0, None, None, None, None, 3.2, Direction.FORWARD, step_count=12),
    ]
    return events


def test_round_trip_through_the_real_recorder(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    events = _events_with_every_kind()
    write_log(path, events)
    header, *read = read_events(path)
    assert read == events
    assert isinstance(header, LogHeader)
    assert (header.format, header.version, header.minor) == ("retrotread-session",
                                                              LOG_VERSION, LOG_MINOR)
    assert header.time_s == 100.0 and header.wall_time is not None
    # Typed: enums for closed sets, floats for times.
    finished = read[-1]
    assert isinstance(finished, SessionFinished) and finished.outcome is Outcome.COMPLETED
    user = next(e for e in read if isinstance(e, UserAction))
    assert user.command is UserCommand.PAUSE and user.source is CommandSource.COMPANION
    assert all(type(e.time_s) is float for e in read)
    telemetry = next(e for e in read if isinstance(e, TelemetrySample))
    assert telemetry.facing is Direction.FORWARD


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, [Announcement(1.0, "hello")])
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record.update(colour="green", nested={"a": [1, 2]})
    path.write_text("\n".join([lines[0], json.dumps(record)]) + "\n")
    _header, event = read_events(path)
    assert event == Announcement(1.0, "hello", "info")


def test_unknown_kinds_are_kept_in_place_and_ignored_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events())
    lines = path.read_text().splitlines()
    lines.insert(3, json.dumps({"type": "belt_temperature", "t": 1.0, "celsius": 41.5}))
    path.write_text("\n".join(lines) + "\n")
    events = read_events(path)
    unknown = events[3]
    assert isinstance(unknown, UnknownRecord)
    assert unknown.record_kind == "belt_temperature" and unknown.time_s == 1.0
    assert unknown.fields == {"t": 1.0, "celsius": 41.5}
    assert unknown.to_record() == json.loads(lines[3])
    # The summary is the same as without it.
    without = [e for e in events if not isinstance(e, UnknownRecord)]
    assert summarize(events) == summarize(without)


@pytest.mark.parametrize(("record", "problem"), [
    ({"type": "session_finished", "t": 9.0, "outcome": "teleported", "reason": "",
      "elapsed_s": 1.0, "backward_s": 0.0, "distance_m": 0.0, "stop_sent": True},
     "outcome: 'teleported' is not a known Outcome"),
    ({"type": "segment_started", "t": 9.0, "index": 0, "label": "B",
      "direction": "sideways", "speed_kmh": 1.0, "duration_s": 60.0, "next_label": None},
     "direction"),
    ({"type": "announcement", "t": "soon", "text": "hi"}, "no usable time"),
    ({"type": "announcement", "t": 1.0}, "no 'text'"),
    ({"type": "telemetry", "t": 1.0, "speed_kmh": 1.0, "distance_m": 1, "elapsed_s": 1,
      "heart_rate_bpm": 90, "target_kmh": float("nan"), "facing": "forward"},
     "target_kmh"),
])
def test_a_record_that_does_not_fit_its_kind_is_unknown(record: dict[str, object],
                                                        problem: str) -> None:
    event = parse_record(record)
    assert isinstance(event, UnknownRecord)
    assert event.record_kind == record["type"]
    assert problem in event.problem


def test_damaged_optional_values_read_as_unknown() -> None:
    event = parse_record({"type": "telemetry", "t": 3, "speed_kmh": "fast",
                          "distance_m": 1e400, "elapsed_s": 2.0, "heart_rate_bpm": True,
                          "target_kmh": 2, "facing": "backward", "step_count": 7.5})
    assert event == TelemetrySample(3.0, None, None, 2, None, 2.0, Direction.BACKWARD, None)
    assert isinstance(event, TelemetrySample) and type(event.target_kmh) is float
    # A field with a default keeps it when damaged; an unknown command source stays text.
    user = parse_record({"type": "user", "t": 1, "command": "stop", "source": "pager",
                         "accepted": True, "detail": 5})
    assert user == UserAction(1.0, UserCommand.STOP, "pager", True, "")


def test_a_truncated_last_line_keeps_the_rest(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events(finished=False))
    whole = read_events(path)
    with path.open("a", encoding="utf-8") as f:
        f.write('{"type":"telemetry","t":31')  # died mid-write
    with caplog.at_level(logging.WARNING):
        events = read_events(path)
    assert events == whole and len(events) == 1 + len(workout_events(finished=False))
    assert any("s.jsonl:" in r.getMessage() and "truncated last line" in r.getMessage()
               for r in caplog.records)
    assert summarize(events).outcome == "incomplete"


def test_a_broken_line_before_the_end_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events())
    lines = path.read_text().splitlines()
    lines[4] = lines[4][:-3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SessionLogError, match=r"s\.jsonl, line 5: not a valid session record"):
        read_events(path)


def _with_header(tmp_path: Path, **header: object) -> Path:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events())
    lines = path.read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), **header})
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_newer_major_version_is_refused(tmp_path: Path) -> None:
    path = _with_header(tmp_path, version=LOG_VERSION + 1, minor=0)
    with pytest.raises(SessionLogError, match=rf"s\.jsonl, line 1: session log version "
                       rf"{LOG_VERSION + 1} is newer") as caught:
        read_events(path)
    assert isinstance(caught.value, UsageError)  # exit status 2 at the command line
    assert "\n" not in str(caught.value)


def test_a_newer_minor_version_is_read(tmp_path: Path) -> None:
    path = _with_header(tmp_path, minor=LOG_MINOR + 7)
    header, *events = read_events(path)
    assert isinstance(header, LogHeader) and header.minor == LOG_MINOR + 7
    assert summarize(events).outcome == "completed"


def test_a_newer_version_in_a_later_session_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events())
    write_log(path, workout_events())
    lines = path.read_text().splitlines()
    second = next(i for i, line in enumerate(lines) if i and '"log_header"' in line)
    lines[second] = lines[second].replace('"version":1', '"version":2')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SessionLogError, match=rf"line {second + 1}: session log version 2"):
        read_events(path)


def test_cli_refuses_a_newer_log_with_status_2(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = _with_header(tmp_path, version=LOG_VERSION + 1)
    assert main(["export", str(path), "-f", "csv", "-o", "-", "--allow-simulated"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("retrotread: ") and "s.jsonl, line 1" in err
    assert len(err.splitlines()) == 1


def test_a_log_of_the_first_release_still_reads() -> None:
    """A log as the first release wrote it: no ``minor`` in the header, no ``speedup``,
    ``stop_acknowledged``, ``step_count``, ``cue``, nor a voice command's confidence."""
    events = read_events(OLD_LOG)
    assert not any(isinstance(e, UnknownRecord) for e in events)
    header = events[0]
    assert isinstance(header, LogHeader) and header.minor == 0
    started = events[1]
    assert isinstance(started, SessionStarted) and started.speedup is None
    finished = events[-1]
    assert isinstance(finished, SessionFinished) and finished.stop_acknowledged is False
    pause = next(e for e in events if isinstance(e, UserAction))
    assert pause.source is CommandSource.KEY and pause.confidence is None
    summary = summarize(events)
    assert (summary.outcome, summary.segments_done, summary.max_heart_rate_bpm) == (
        "completed", 2, 110)
    assert summary.wall_time == "2025-03-04T05:06:07.123+00:00"
    assert "Beginner retro" in format_summary(summary)
    ((sid, session),) = read_log(OLD_LOG)
    entry = entry_from_records(session, id=sid, path=OLD_LOG)
    assert entry.machine == "sim"  # simulated, and no speed-up recorded
    assert entry.started is not None and entry.started.isoformat().startswith(
        "2025-03-04T05:06:07.221")  # the header's wall time + 0.0988 s to session_started


def test_a_log_without_a_header_is_read_as_version_1(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("".join(line + "\n" for line in OLD_LOG.read_text().splitlines()[1:]))
    events = read_events(path)
    assert not any(isinstance(e, LogHeader) for e in events)
    assert summarize(events).outcome == "completed"


def test_sessions_of_one_file_split_at_each_header(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events())
    write_log(path, [Announcement(1.0, "only a note")])
    write_log(path, [])  # a header alone: no session
    sessions = split_sessions(read_events(path))
    assert [len(s) for s in sessions] == [1 + len(workout_events()), 2]
    assert all(isinstance(s[0], LogHeader) for s in sessions)


def test_a_header_without_its_time_reads_with_nan() -> None:
    header = parse_record({"type": "log_header", "format": "retrotread-session",
                           "version": 1})
    assert isinstance(header, LogHeader) and math.isnan(header.time_s)
