"""The session log: write, read back, survive crashes, summarize."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
from pathlib import Path

import pytest

from retrotread.envelope import Direction
from retrotread.errors import RetrotreadError
from retrotread.events import (
    Announcement,
    CommandReplied,
    CommandSent,
    Event,
    LinkStateChanged,
    Outcome,
    SegmentStarted,
    SessionFinished,
    SessionStarted,
    TelemetrySample,
    WatchdogAction,
)
from retrotread.formatting import clock_text as format_clock  # moved from the recorder
from retrotread.recorder import (
    SessionRecorder,
    SessionSummary,
    default_log_dir,
    format_summary,
    new_log_path,
    read_session,
    summarize,
)

SET_SPEED = 0x02
STOP_OR_PAUSE = 0x08


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        self.t = max(self.t, deadline)


def workout_events(*, finished: bool = True) -> list[Event]:
    """A short synthetic session: forward warm-up, backward interval, end."""
    events: list[Event] = [
        SessionStarted(0.0, "Beginner retro", "p.yaml", "sim:generic", True, 3.21,
                       300.0, 120.0, 250.0),
        SegmentStarted(0.5, 0, "Warm-up", Direction.FORWARD, 3.2, 180.0, "Backward"),
        CommandSent(0.6, SET_SPEED, "SetTargetSpeed", 1.6, Direction.FORWARD),
        CommandReplied(0.7, SET_SPEED, "SetTargetSpeed", "SUCCESS"),
        CommandSent(2.0, SET_SPEED, "SetTargetSpeed", 3.2, Direction.FORWARD),
        Announcement(170.0, "Turning around soon, the belt will stop", "warning"),
    ]
    # Telemetry every 10 s: forward at 3.2 km/h for 180 s, then backward at 1.6 km/h.
    for i in range(0, 19):
        events.append(TelemetrySample(float(i * 10), 3.2, i * 9, i * 10, 95 + i,
                                      3.2, Direction.FORWARD))
    events += [
        SegmentStarted(190.0, 1, "Backward", Direction.BACKWARD, 1.61, 120.0, None),
        CommandSent(191.0, SET_SPEED, "SetTargetSpeed", 1.3, Direction.BACKWARD),
        CommandSent(192.0, SET_SPEED, "SetTargetSpeed", 1.61, Direction.BACKWARD),
    ]
    for i in range(19, 31):
        events.append(TelemetrySample(float(i * 10), 1.61, 162 + (i - 19) * 4, i * 10, 110,
                                      1.61, Direction.BACKWARD))
    events.append(WatchdogAction(305.0, "overspeed", "retarget", "measured 2.0 km/h"))
    events.append(LinkStateChanged(306.0, True, "ok"))
    if finished:
        events += [
            CommandSent(310.0, STOP_OR_PAUSE, "StopOrPause", None, Direction.BACKWARD),
            SessionFinished(312.0, Outcome.COMPLETED, "all segments done", 312.0,
                            120.0, 250.0, True),
        ]
    return events


def write_log(path: Path, events: list[Event]) -> None:
    with SessionRecorder(path, FakeClock()) as recorder:
        for event in events:
            recorder(event)


def test_default_log_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETROTREAD_LOG_DIR", str(tmp_path / "logs"))
    assert default_log_dir() == tmp_path / "logs"
    started = datetime.datetime(2025, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
    path = new_log_path("Beginner: Retro / 2.0 mph!", started)
    assert path.parent == tmp_path / "logs"
    assert path.name == "20250304-050607-beginner-retro-2-0-mph.jsonl"
    assert new_log_path("***", started).name == "20250304-050607-session.jsonl"


def test_default_log_dir_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETROTREAD_LOG_DIR", raising=False)
    path = default_log_dir()
    assert path.name == "sessions"
    assert "retrotread" in path.parts


def test_round_trip_with_header(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    events = workout_events()
    write_log(path, events)
    records = read_session(path)
    header = records[0]
    assert header["type"] == "log_header"
    assert header["format"] == "retrotread-session"
    assert header["version"] == 1
    assert header["t"] == 100.0
    assert datetime.datetime.fromisoformat(header["wall_time"]).tzinfo is not None
    expected = [event.to_record() for event in events]
    expected[0]["speedup"] = 1.0  # the recorder adds its clock's rate to session_started
    assert records[1:] == expected
    assert not (tmp_path / "s.jsonl.lock").exists()  # released when the session ended
    # compact separators, one record per line
    first_event_line = path.read_text().splitlines()[1]
    assert '", "' not in first_event_line and '": ' not in first_event_line


def test_records_wait_in_memory_until_flush(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with SessionRecorder(path, FakeClock()) as recorder:
        recorder(Announcement(1.0, "hello"))
        assert recorder.pending == 1
        assert len(read_session(path)) == 1  # only the header so far
        recorder.flush()
        assert recorder.pending == 0
        assert [r["type"] for r in read_session(path)] == ["log_header", "announcement"]


def test_watchdog_and_finish_are_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with SessionRecorder(path, FakeClock()) as recorder:
        recorder(Announcement(1.0, "hello"))
        recorder(WatchdogAction(2.0, "stale_telemetry", "stop", "no data for 3 s"))
        assert [r["type"] for r in read_session(path)] == ["log_header", "announcement",
                                                           "watchdog"]


def test_no_data_lost_when_the_with_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with pytest.raises(RuntimeError, match="boom"), SessionRecorder(path,
                                                                    FakeClock()) as recorder:
        for event in workout_events(finished=False):
            recorder(event)
        raise RuntimeError("boom")
    records = read_session(path)
    assert len(records) == 1 + len(workout_events(finished=False))


def test_appends_to_an_existing_log(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, [Announcement(1.0, "one")])
    write_log(path, [Announcement(2.0, "two")])
    assert [r.get("text") for r in read_session(path)] == [None, "one", None, "two"]


class FullDisk(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError(28, "No space left on device")


def test_subscriber_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.jsonl"
    recorder = SessionRecorder(path, FakeClock())
    with recorder:
        assert recorder._file is not None
        recorder._file.close()
        recorder._file = FullDisk()
        with caplog.at_level(logging.ERROR, logger="retrotread.recorder"):
            recorder(Announcement(1.0, "lost"))
            recorder(WatchdogAction(2.0, "x", "stop", "lost too"))  # flushes at once
            assert recorder.dropped_records == 2
            recorder(Announcement(3.0, "lost three"))
            assert recorder.dropped_records == 2  # still in memory
    assert recorder.dropped_records == 3  # the final flush failed too
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # logged once, then counted
    recorder(Announcement(4.0, "after close"))  # after closing: counted, not raised
    assert recorder.dropped_records == 4
    assert len(read_session(path)) == 1  # the header made it


def test_flush_interval_is_capped_at_one_second(tmp_path: Path) -> None:
    recorder = SessionRecorder(tmp_path / "s.jsonl", FakeClock(), flush_interval_s=5.0)
    assert recorder.flush_interval_s == 1.0
    with pytest.raises(ValueError):
        SessionRecorder(tmp_path / "s.jsonl", FakeClock(), flush_interval_s=0)


@pytest.mark.looptime
async def test_flush_loop_writes_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with SessionRecorder(path, FakeClock(), flush_interval_s=0.5) as recorder:
        task = asyncio.ensure_future(recorder.flush_loop())
        try:
            await asyncio.sleep(0.1)
            recorder(Announcement(1.0, "hello"))
            assert len(read_session(path)) == 1
            await asyncio.sleep(1.0)
            assert [r["type"] for r in read_session(path)] == ["log_header", "announcement"]
            recorder(Announcement(2.0, "again"))
            await asyncio.sleep(1.0)
            assert len(read_session(path)) == 3
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


def test_truncated_last_line_is_skipped(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events(finished=False))
    whole = read_session(path)
    with path.open("a", encoding="utf-8") as f:
        f.write('{"type":"telemetry","t":31')  # died mid-write
    with caplog.at_level(logging.WARNING, logger="retrotread.recorder"):
        records = read_session(path)
    assert records == whole
    assert any("truncated" in r.getMessage() for r in caplog.records)


def test_truncated_multibyte_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, [Announcement(1.0, "ok")])
    with path.open("ab") as f:
        f.write('{"type":"announcement","t":2,"text":"caf\u00e9'.encode()[:-1])
    assert len(read_session(path)) == 2


def test_damage_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, [Announcement(1.0, "one"), Announcement(2.0, "two")])
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:-5]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RetrotreadError, match=r"s\.jsonl, line 2"):
        read_session(path)


def test_missing_file_is_our_error(tmp_path: Path) -> None:
    with pytest.raises(RetrotreadError, match="cannot read"):
        read_session(tmp_path / "nope.jsonl")


def test_not_a_session_log(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"type": "log_header", "format": "something-else"}) + "\n")
    with pytest.raises(RetrotreadError, match="not a retrotread session log"):
        read_session(path)


def test_summarize_a_completed_session(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events())
    summary = summarize(read_session(path))
    assert summary.profile_name == "Beginner retro"
    assert summary.device == "sim:generic"
    assert summary.simulated is True
    assert summary.outcome == "completed"
    assert summary.reason == "all segments done"
    assert summary.elapsed_s == 312.0
    assert summary.backward_s == 120.0
    assert summary.distance_m == 250.0
    assert summary.commands_sent == 5
    assert summary.stop_sent is True
    assert summary.watchdog_actions == ["overspeed: retarget (measured 2.0 km/h)"]
    assert summary.segments_done == 2
    assert summary.max_backward_command_kmh == 1.61  # the forward 3.2 does not count
    assert summary.mean_speed_kmh is not None
    assert 1.61 < summary.mean_speed_kmh < 3.2
    assert summary.max_heart_rate_bpm == 113
    assert summary.planned_s == 300.0
    assert summary.complete


def test_summarize_a_crashed_session(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_log(path, workout_events(finished=False))
    with path.open("a") as f:
        f.write('{"type":"tele')
    summary = summarize(read_session(path))
    assert summary.outcome == "incomplete"
    assert not summary.complete
    assert summary.stop_sent is None
    assert summary.elapsed_s == pytest.approx(306.0)
    # backward telemetry from t=190 to t=300 while moving
    assert summary.backward_s == pytest.approx(110.0)
    assert summary.distance_m == pytest.approx(162 + 11 * 4)
    assert summary.segments_done == 1  # the backward one never finished
    assert summary.max_backward_command_kmh == 1.61
    text = format_summary(summary)
    assert "INCOMPLETE" in text
    assert "unknown" in text


def test_summarize_an_empty_log() -> None:
    summary = summarize([])
    assert summary.outcome == "incomplete"
    assert summary.elapsed_s == 0.0
    assert summary.commands_sent == 0
    assert summary.max_backward_command_kmh is None
    assert summary.mean_speed_kmh is None
    format_summary(summary)  # still printable
    assert "Session summary: unknown workout" in format_summary(summary)


def test_format_summary_in_both_units() -> None:
    summary = SessionSummary(
        profile_name="Beginner retro", device="sim:generic", simulated=True,
        outcome="watchdog", reason="no telemetry for 3 s", elapsed_s=754.4,
        backward_s=300.0, distance_m=1609.344, commands_sent=42, stop_sent=True,
        watchdog_actions=["stale_telemetry: stop (no Treadmill Data for 3 s)"],
        segments_done=4, segments_started=5, max_backward_command_kmh=3.21,
        mean_speed_kmh=4.828032,
    )
    text = format_summary(summary)
    assert "Beginner retro on sim:generic (simulated)" in text
    assert "12:34" in text
    assert "5:00 (5.0 min)" in text
    assert "1.00 mi" in text
    assert "3.0 mph" in text  # mean speed
    assert "2.0 mph" in text  # fastest backward command
    assert "stopped by the watchdog: no telemetry for 3 s" in text
    assert "stale_telemetry: stop (no Treadmill Data for 3 s)" in text
    assert "Stop sent: yes" in text
    metric = format_summary(summary, units="km/h")
    assert "1.61 km" in metric
    assert "4.8 km/h" in metric
    assert "mph" not in metric


def test_format_summary_warns_when_no_stop_was_sent() -> None:
    summary = summarize([
        SessionFinished(5.0, Outcome.ERROR, "crashed", 5.0, 0.0, 0.0, False).to_record(),
    ])
    assert "Stop not delivered" in format_summary(summary)
    assert "Watchdog" not in format_summary(summary)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (59.4, "0:59"), (59.6, "1:00"),
                                               (90, "1:30"), (3725, "62:05"), (-3, "0:00")])
def test_format_clock(seconds: float, text: str) -> None:
    assert format_clock(seconds) == text


def test_the_persons_own_stop_is_not_listed_as_a_watchdog_action() -> None:
    records = [
        WatchdogAction(10.0, "user_stop", "stop", "stop requested (key)").to_record(),
        WatchdogAction(11.0, "overspeed", "retarget", "belt at 3.9 km/h").to_record(),
        SessionFinished(12.0, Outcome.STOPPED_BY_USER, "stop requested (key)", 12.0, 0.0,
                        0.0, True, True).to_record(),
    ]
    text = format_summary(summarize(records))
    assert "Stopped on request: user_stop" in text
    assert "Watchdog actions (1)" in text and "overspeed" in text
