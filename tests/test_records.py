"""Records a person can trust (issue 15): simulated sessions are marked and kept apart
from training, a running session is "running" (not a failure), and a session whose
process died is "incomplete" with the last known belt state."""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from retrotread.cli import main
from retrotread.export import build_activity, export_csv, export_fit, export_tcx
from retrotread.history import format_history_table, load_history, read_log
from retrotread.progression import sessions_that_count
from retrotread.recorder import lock_path, lock_state, read_session, summarize
from tests.test_export import decode_fit
from tests.test_history import FIRST_SESSION, real_logs, record_session_sync, retime  # noqa: F401
from tests.test_recorder import FakeClock

ROOT = Path(__file__).parent.parent
SPEEDUP = 20.0
HOUR_AGO = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """first-session played at --speedup 20 on the simulator (in virtual time)."""
    folder = tmp_path_factory.mktemp("demo")
    path = record_session_sync(FIRST_SESSION, folder / "20250306-080000-demo.jsonl",
                               speedup=SPEEDUP)
    retime(path, HOUR_AGO)
    return path


def _only(path: Path) -> list[dict[str, Any]]:
    # The raw JSON records (read_log now gives typed events); summarize and
    # build_activity take either.
    ((_sid, _events),) = read_log(path)
    return read_session(path)


# ------------------------------------------------------------------ simulated, and how fast


def test_the_log_says_simulated_and_at_what_speedup(demo_log: Path,
                                                    real_logs: dict[str, Path]) -> None:  # noqa: F811
    started = next(r for r in _only(demo_log) if r["type"] == "session_started")
    assert started["simulated"] is True and started["speedup"] == SPEEDUP
    normal = next(r for r in _only(real_logs["first"]) if r["type"] == "session_started")
    assert normal["simulated"] is True and normal["speedup"] == 1.0
    summary = summarize(_only(demo_log))
    assert summary.speedup == SPEEDUP and summary.simulated
    # The session clock is the workout's: a whole first-session, not 1/20 of one.
    assert summary.elapsed_s == pytest.approx(summary.planned_s, abs=30)


def test_history_shows_the_machine(demo_log: Path, real_logs: dict[str, Path],  # noqa: F811
                                   tmp_path: Path) -> None:
    shutil.copy(demo_log, tmp_path)
    shutil.copy(real_logs["first"], tmp_path)
    real = tmp_path / "20250307-080000-real.jsonl"
    real.write_text(real_logs["again"].read_text().replace('"simulated":true',
                                                           '"simulated":false'))
    entries = load_history(tmp_path)
    assert [e.machine for e in entries] == ["sim", "real", "sim 20x"]  # oldest first
    lines = format_history_table(entries).splitlines()
    assert lines[0].split()[:4] == ["id", "date", "profile", "machine"]
    assert "sim 20x" in lines[4] and " real " in lines[3]
    assert lines[-1].endswith("(not counting 2 simulated)")


def test_next_ignores_simulated_sessions_unless_asked(demo_log: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    shutil.copy(demo_log, tmp_path)
    today = (HOUR_AGO + datetime.timedelta(days=1)).date().isoformat()
    assert main(["next", "--dir", str(tmp_path), "--today", today]) == 0
    err = capsys.readouterr().err
    assert "left out 1 simulated session(s)" in err
    assert "first session: start with 2 min backward" in err
    assert main(["next", "--dir", str(tmp_path), "--today", today, "--include-simulated"]) == 0
    err = capsys.readouterr().err
    assert "left out" not in err and "went well: 2.5 min -> 3.5 min" in err


def test_export_refuses_a_simulated_session_unless_asked(demo_log: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    out = tmp_path / "demo.fit"
    assert main(["export", str(demo_log), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "simulator at 20x speed" in err and "--allow-simulated" in err
    assert not out.exists()
    assert main(["export", str(demo_log), "-o", str(out), "--allow-simulated"]) == 0
    assert out.stat().st_size > 1000


def test_a_demo_exports_its_own_time_ending_when_it_really_ended(demo_log: Path) -> None:
    records = _only(demo_log)
    summary = summarize(records)
    activity = build_activity(records)
    real_start = HOUR_AGO + datetime.timedelta(
        seconds=next(r["t"] for r in records if r["type"] == "session_started")
        - records[0]["t"])
    real_end = real_start + datetime.timedelta(seconds=activity.elapsed_s / SPEEDUP)
    # The workout's own elapsed time (about 10 min), not the 30 s the demo took...
    assert activity.elapsed_s == pytest.approx(summary.elapsed_s, abs=2)
    assert activity.elapsed_s > 500
    # ...laid out to end when the demo ended: nothing after the real end, nor in the future.
    end = activity.at(activity.elapsed_s)
    assert end == real_end
    assert end <= datetime.datetime.now(datetime.UTC)
    assert activity.marker == "SIMULATED 20x"
    fit = decode_fit(export_fit(activity))
    (session,) = fit["session"]
    assert session["total_elapsed_time"] == pytest.approx(activity.elapsed_s, abs=1)
    assert session["start_time"] + datetime.timedelta(
        seconds=session["total_elapsed_time"]) <= real_end + datetime.timedelta(seconds=1)
    assert max(r["timestamp"] for r in fit["record"]) <= real_end
    assert fit["sport"][0]["name"] == "First session (SIMULATED 20x)"
    assert any(d.get("descriptor") == "SIMULATED 20x treadmill" for d in fit["device_info"])
    assert "(SIMULATED 20x)" in export_tcx(activity)
    rows = list(csv.DictReader(io.StringIO(export_csv(activity))))
    assert {r["simulated"] for r in rows} == {"SIMULATED 20x"}


def test_a_normal_speed_session_keeps_its_wall_clock(real_logs: dict[str, Path]  # noqa: F811
                                                     ) -> None:
    activity = build_activity(_only(real_logs["first"]))
    assert activity.start == datetime.datetime(2025, 3, 1, 8, 0, tzinfo=datetime.UTC)
    assert activity.marker == "SIMULATED"


# ------------------------------------------------------------------ running, or dead

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from retrotread.envelope import Direction
    from retrotread.events import CommandSent, SessionStarted, TelemetrySample
    from retrotread.recorder import SessionRecorder

    class Clock:
        def now(self):
            return 50.0

    with SessionRecorder(Path(sys.argv[1]), Clock()) as recorder:
        recorder(SessionStarted(0.0, "Demo", None, "sim:generic", False, 3.21, 300.0,
                                120.0, 250.0))
        recorder(CommandSent(40.0, 2, "SetTargetSpeed", 1.6, Direction.BACKWARD))
        recorder(TelemetrySample(192.0, 1.6, 80, 192, None, 1.6, Direction.BACKWARD))
        recorder.flush()
        print("ready", flush=True)
        sys.stdin.readline()  # the workout goes on until told
""")


@pytest.fixture
def writer(tmp_path: Path) -> Any:
    """A real process writing a session log, still running."""
    log = tmp_path / "20250310-080000-demo.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(log)], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_a_running_session_is_running_not_incomplete(writer: Any, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    process, log = writer
    assert lock_state(log) == ("running", process.pid)
    assert json.loads(lock_path(log).read_text())["pid"] == process.pid
    (entry,) = load_history(tmp_path)
    assert entry.outcome == "running" and entry.running and not entry.completed
    assert f"pid {process.pid}" in entry.reason
    table = format_history_table([entry])
    assert f"running (pid {process.pid})" in table
    assert "INCOMPLETE" not in table and "told to stop" not in table
    assert main(["history", "--dir", str(tmp_path), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["outcome"] == "running" and listed["running"] is True
    assert listed["machine"] == "real" and listed["pid"] == process.pid
    # next leaves it out (it has not ended: it is no failed session).
    kept, left_out = sessions_that_count([entry])
    assert kept == [] and "1 session(s) still running" in left_out[0]
    assert main(["next", "--dir", str(tmp_path), "--include-simulated"]) == 0
    err = capsys.readouterr().err
    assert "still running" in err and "first session" in err
    # When it ends normally, the lock goes with it.
    process.communicate("\n", timeout=30)
    assert process.returncode == 0
    assert not lock_path(log).exists()
    assert lock_state(log) == ("none", None)


def test_a_session_whose_process_died_is_incomplete_with_the_last_belt_state(
        writer: Any, tmp_path: Path) -> None:
    process, log = writer
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert lock_path(log).exists()  # left behind...
    assert lock_state(log) == ("stale", process.pid)  # ...and known to be stale
    (entry,) = load_history(tmp_path)
    assert entry.outcome == "incomplete" and not entry.running
    assert entry.last_belt == ("belt at 1.6 km/h (1.0 mph) facing backward at 3:12; "
                               "last command: speed 1.6 km/h at 0:40")
    assert entry.last_belt in entry.reason
    assert "INCOMPLETE" in format_history_table([entry])
    kept, left_out = sessions_that_count([entry])
    assert kept == [entry] and left_out == []  # a real failed session counts


def test_a_second_writer_of_a_running_log_is_refused(writer: Any) -> None:
    from retrotread.errors import SessionLogError
    from retrotread.recorder import SessionRecorder

    process, log = writer
    with pytest.raises(SessionLogError, match=f"still running \\(pid {process.pid}\\)"), \
            SessionRecorder(log, FakeClock()):
        pass
    assert lock_state(log) == ("running", process.pid)
    assert len(read_session(log)) == 4  # nothing was added
