"""`retrotread history`: past sessions from real session logs made on the simulator.

``record_session`` runs a profile on the simulator in virtual time with a
``SessionRecorder`` subscribed, the way ``retrotread run`` does; the export, plot and
progression tests use it too.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import looptime
import pytest

from retrotread.cli import main
from retrotread.clock import LoopClock, ScaledClock
from retrotread.devices import DeviceSpec
from retrotread.events import EventBus
from retrotread.history import (
    HistoryEntry,
    SessionNotFoundError,
    entry_from_records,
    format_history_table,
    load_history,
    resolve_session,
    split_sessions,
)
from retrotread.profile import load_profile
from retrotread.recorder import SessionRecorder, read_session
from retrotread.runner import LinkFactory, run_profile, running_simulator
from retrotread.session import Session
from retrotread.sim.treadmill import SimulatedTreadmill

PROFILES = Path(__file__).parent.parent / "profiles"
FIRST_SESSION = PROFILES / "first-session.yaml"

Scenario = Callable[[SimulatedTreadmill, Session], Awaitable[None]]


async def record_session(profile_path: Path, log_path: Path, *,
                         scenario: Scenario | None = None, noise_kmh: float = 0.03,
                         speedup: float = 1.0) -> None:
    """Run ``profile_path`` on the simulator and write its session log to ``log_path``
    (``speedup``: a sped-up demo, as ``run --speedup`` plays it)."""
    profile = load_profile(profile_path)
    clock: LoopClock | ScaledClock = ScaledClock(speedup) if speedup != 1.0 else LoopClock()
    bus = EventBus()
    tasks: list[asyncio.Future[None]] = []
    with SessionRecorder(log_path, clock) as recorder:
        bus.subscribe(recorder)
        async with running_simulator(clock, "generic", noise_kmh) as sim:
            def on_session(session: Session) -> None:
                if scenario is not None:
                    tasks.append(asyncio.ensure_future(scenario(sim, session)))

            await run_profile(profile, link_factory=LinkFactory(DeviceSpec("sim", "generic"), sim),
                              clock=clock, bus=bus, simulated=True,
                              profile_path=str(profile_path), on_session=on_session,
                              speedup=speedup,
                              stall_clock=LoopClock() if speedup != 1.0 else None)
            for task in tasks:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


def record_session_sync(profile_path: Path, log_path: Path, *,
                        scenario: Scenario | None = None, speedup: float = 1.0) -> Path:
    """:func:`record_session` on a fresh event loop in virtual time (for fixtures)."""
    loop = looptime.new_event_loop(noop_cycles=1)
    try:
        loop.run_until_complete(record_session(profile_path, log_path, scenario=scenario,
                                               speedup=speedup))
    finally:
        loop.close()
    return log_path


async def stall_telemetry_while_backward(sim: SimulatedTreadmill, session: Session) -> None:
    """A fault in the first backward bout: the watchdog stops the belt."""
    await asyncio.sleep(225)  # first-session.yaml walks backward from about 201 s to 251 s
    sim.faults.telemetry_stopped = True


def retime(path: Path, when: datetime.datetime) -> None:
    """Give a log another wall-clock start (logs made in one test all start 'now')."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    header["wall_time"] = when.isoformat(timespec="milliseconds")
    lines[0] = json.dumps(header, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def real_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two completed sessions and one stopped by the watchdog, made once per test run."""
    folder = tmp_path_factory.mktemp("real-logs")
    logs = {
        "first": record_session_sync(FIRST_SESSION, folder / "20250301-080000-first-session.jsonl"),
        "again": record_session_sync(FIRST_SESSION, folder / "20250303-080000-first-session.jsonl"),
        "fault": record_session_sync(FIRST_SESSION, folder / "20250305-080000-first-session.jsonl",
                                     scenario=stall_telemetry_while_backward),
    }
    for day, path in zip((1, 3, 5), logs.values(), strict=True):
        retime(path, datetime.datetime(2025, 3, day, 8, 0, tzinfo=datetime.UTC))
    return logs


@pytest.fixture
def log_dir(real_logs: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh copy of the real logs (tests may add files)."""
    folder = tmp_path / "sessions"
    folder.mkdir()
    for path in real_logs.values():
        shutil.copy(path, folder / path.name)
    return folder


# ------------------------------------------------------------------ reading real logs


def test_history_of_real_simulator_logs(log_dir: Path) -> None:
    entries = load_history(log_dir)
    assert [e.id for e in entries] == ["20250301-080000-first-session",
                                       "20250303-080000-first-session",
                                       "20250305-080000-first-session"]
    first, again, fault = entries
    for done in (first, again):
        assert done.outcome == "completed" and done.completed
        assert done.profile_name == "First session"
        assert done.profile_path == str(FIRST_SESSION)
        assert done.prescribed_backward_s == pytest.approx(150.0)  # 3 x 50 s
        assert done.profile_backward_s == pytest.approx(150.0)
        assert done.backward_s == pytest.approx(150.0, abs=15)
        assert done.planned_backward_s is not None and done.planned_backward_s >= 150.0
        assert 500 < done.distance_m < 700
        assert done.elapsed_s == pytest.approx(done.planned_s, abs=30)
        assert not done.watchdog_stop and not done.heart_rate_limited
        assert done.backward_speed_kmh == pytest.approx(1.6093, abs=0.01)  # 1.0 mph
    assert first.started == datetime.datetime(2025, 3, 1, 8, 0, tzinfo=datetime.UTC)
    assert fault.outcome == "watchdog"
    assert fault.watchdog_stop
    assert "telemetry" in fault.reason.lower() or "treadmill data" in fault.reason.lower()
    assert fault.backward_s < 60
    assert fault.elapsed_s < 300


def test_table_lists_every_session_with_how_it_ended(log_dir: Path) -> None:
    table = format_history_table(load_history(log_dir), units="km/h")
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["id", "date", "profile"]
    assert "20250301-080000-first-session" in lines[2]
    assert "completed" in lines[2]
    assert "2.5 min" in lines[2] or "2.6 min" in lines[2]
    assert "km" in lines[2]
    assert "watchdog stop" in lines[4]
    assert lines[-1].startswith("3 session(s)")
    assert format_history_table([]) == "no sessions yet"


def test_cli_history_json(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--dir", str(log_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["outcome"] for d in data] == ["completed", "completed", "watchdog"]
    assert data[0]["started"].startswith("2025-03-01T08:00:00")
    assert data[0]["completed"] is True
    assert data[2]["watchdog_stop"] is True
    assert data[0]["path"].endswith("20250301-080000-first-session.jsonl")


def test_cli_history_uses_the_log_dir_env(log_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RETROTREAD_LOG_DIR", str(log_dir))
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert out.count("first-session ") == 3


def test_empty_or_missing_log_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert load_history(tmp_path / "nowhere") == []
    assert main(["history", "--dir", str(tmp_path)]) == 0
    assert "no sessions yet" in capsys.readouterr().out


# ------------------------------------------------------------------ ids and resolving


def test_resolve_by_id_prefix_last_and_path(log_dir: Path) -> None:
    sid, records = resolve_session("20250303-080000-first-session", log_dir)
    assert sid == "20250303-080000-first-session"
    assert records[0].kind == "log_header"  # typed events now (log_reader)
    assert resolve_session("20250305", log_dir)[0] == "20250305-080000-first-session"
    assert resolve_session("last", log_dir)[0] == "20250305-080000-first-session"
    path = log_dir / "20250301-080000-first-session.jsonl"
    assert resolve_session(path, log_dir)[0] == "20250301-080000-first-session"
    with pytest.raises(SessionNotFoundError, match="matches 3 sessions"):
        resolve_session("2025", log_dir)
    with pytest.raises(SessionNotFoundError, match="no session"):
        resolve_session("1999", log_dir)
    with pytest.raises(SessionNotFoundError, match="no sessions"):
        resolve_session("last", log_dir / "empty")


def test_a_file_with_two_sessions_has_two_ids(log_dir: Path) -> None:
    first = log_dir / "20250301-080000-first-session.jsonl"
    second = log_dir / "20250303-080000-first-session.jsonl"
    twice = log_dir / "20250310-080000-twice.jsonl"
    twice.write_text(first.read_text() + second.read_text())
    first.unlink()
    second.unlink()
    assert len(split_sessions(read_session(twice))) == 2
    ids = [e.id for e in load_history(log_dir)]
    assert "20250310-080000-twice" in ids and "20250310-080000-twice:2" in ids
    sid, records = resolve_session("20250310-080000-twice:2", log_dir)
    assert sid == "20250310-080000-twice:2"
    assert sum(r.kind == "log_header" for r in records) == 1
    assert resolve_session(f"{twice}:2", log_dir)[0] == sid
    with pytest.raises(SessionNotFoundError, match="holds 2 session"):
        resolve_session(f"{twice}:3", log_dir)


def test_a_damaged_log_is_skipped_not_fatal(log_dir: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    (log_dir / "20250302-080000-broken.jsonl").write_text('{"type":"log_header"\nnot json\n{}\n')
    with caplog.at_level(logging.WARNING):
        entries = load_history(log_dir)
    assert len(entries) == 3
    assert "broken" in caplog.text


def test_cli_reports_an_unknown_session(log_dir: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    assert main(["export", "nope", "--dir", str(log_dir), "-o", "-"]) == 2
    assert "no session 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------------ flags from records


def _synthetic(*extra: dict[str, object], outcome: str = "completed") -> list[dict[str, object]]:
    return [
        {"type": "log_header", "format": "retrotread-session", "version": 1, "t": 10.0,
         "wall_time": "2025-04-01T07:00:00.000+00:00"},
        {"type": "session_started", "t": 10.0, "profile_name": "P", "profile_path": None,
         "device": "sim:generic", "simulated": True, "backward_ceiling_kmh": 3.21,
         "total_s": 600.0, "backward_s": 240.0, "distance_m": 300.0},
        {"type": "segment_started", "t": 11.0, "index": 0, "label": "B",
         "direction": "backward", "speed_kmh": 1.8, "duration_s": 120.0, "next_label": None},
        *extra,
        {"type": "session_finished", "t": 400.0, "outcome": outcome, "reason": "r",
         "elapsed_s": 390.0, "backward_s": 100.0, "distance_m": 200.0, "stop_sent": True},
    ]


def test_heart_rate_and_watchdog_flags() -> None:
    hr = entry_from_records(_synthetic(
        {"type": "watchdog", "t": 50.0, "trigger": "heart_rate_high", "action": "stop",
         "detail": "above 150 bpm for 60 s"}, outcome="watchdog"), id="hr")
    assert hr.heart_rate_limited
    assert hr.started == datetime.datetime(2025, 4, 1, 7, 0, tzinfo=datetime.UTC)
    user = entry_from_records(_synthetic(
        {"type": "watchdog", "t": 50.0, "trigger": "user_stop", "action": "stop",
         "detail": "you pressed s"}, outcome="stopped_by_user"), id="user")
    assert not user.watchdog_stop and not user.heart_rate_limited
    clamp = entry_from_records(_synthetic(
        {"type": "watchdog", "t": 50.0, "trigger": "console_speed_change", "action": "clamp",
         "detail": "clamped"}), id="clamp")
    assert not clamp.watchdog_stop
    stale = entry_from_records(_synthetic(
        {"type": "watchdog", "t": 50.0, "trigger": "telemetry_stale", "action": "stop",
         "detail": "quiet"}, outcome="watchdog"), id="stale")
    assert stale.watchdog_stop
    assert stale.prescribed_backward_s == 120.0 and stale.backward_speed_kmh == 1.8
    assert isinstance(stale, HistoryEntry) and stale.to_json()["id"] == "stale"


def test_start_time_from_the_file_name_when_the_header_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "20250102-030405-x.jsonl"
    records = _synthetic()[1:]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (entry,) = load_history(tmp_path)
    assert entry.started == datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
