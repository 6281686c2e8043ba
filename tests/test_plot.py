"""`retrotread plot`: PNGs are written, non-empty, and shade the backward segments."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from retrotread.cli import main
from retrotread.envelope import Direction, MachineLimits
from retrotread.events import CommandSource, UserCommand
from retrotread.plan import HOLD, compile_plan
from retrotread.plot import (
    WATCHDOG_COLOUR,
    PlotResult,
    StopBy,
    backward_spans_of_plan,
    plot,
    sparkline,
)
from retrotread.profile import load_profile
from retrotread.session import Session
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.units import kmh_to_mph
from tests.test_history import (  # noqa: F401
    FIRST_SESSION,
    PROFILES,
    log_dir,
    real_logs,
    record_session_sync,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def shaded_spans(result: PlotResult) -> list[tuple[float, float]]:
    """The shaded vertical bands on the axes, in seconds."""
    spans = []
    for patch in result.axes.patches:
        if isinstance(patch, Rectangle) and patch.get_gid() == "backward":
            x, width = patch.get_x(), patch.get_width()
            spans.append((x * 60, (x + width) * 60))
    return spans


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # a real picture, not an empty canvas


@pytest.mark.parametrize("name", ["first-session", "intervals", "build-up-week4"])
def test_profile_plot_shades_every_backward_segment(name: str, tmp_path: Path) -> None:
    path = PROFILES / f"{name}.yaml"
    out = tmp_path / "plan.png"
    result = plot(path, out)
    assert_png(out)
    profile = load_profile(path)
    plan = compile_plan(profile, profile.envelope(MachineLimits()))
    backward_holds = [s for s in plan.steps
                      if s.kind == HOLD and s.direction is Direction.BACKWARD]
    spans = shaded_spans(result)
    assert len(spans) == len(backward_holds)  # bundled profiles alternate directions
    for (a, b), hold in zip(spans, backward_holds, strict=True):
        assert a <= hold.start_s and hold.end_s <= b
        assert b - a == pytest.approx(hold.duration_s, abs=15)  # plus the ramps
    expected = backward_spans_of_plan(plan)
    assert np.allclose(np.array(spans), np.array(expected))
    # No forward hold lies inside a shaded span.
    for step in plan.steps:
        if step.kind == HOLD and step.direction is Direction.FORWARD:
            assert all(step.end_s <= a or step.start_s >= b for a, b in spans)
    assert len(result.data.turnarounds) == plan.turnarounds


def test_profile_plot_in_both_units(tmp_path: Path) -> None:
    mph = plot(FIRST_SESSION, None, units="mph")
    kmh = plot(FIRST_SESSION, None, units="km/h")
    (line_mph,) = [ln for ln in mph.axes.get_lines() if ln.get_label() == "planned"]
    (line_kmh,) = [ln for ln in kmh.axes.get_lines() if ln.get_label() == "planned"]
    peak_kmh = float(np.max(line_kmh.get_ydata()))
    assert float(np.max(line_mph.get_ydata())) == pytest.approx(kmh_to_mph(peak_kmh))
    assert mph.axes.get_ylabel() == "speed (mph)" and kmh.axes.get_ylabel() == "speed (km/h)"


def _rel(records: list[dict[str, Any]], kind: str, **match: object) -> list[float]:
    t0 = next(r["t"] for r in records if r["type"] == "session_started")
    return [r["t"] - t0 for r in records
            if r["type"] == kind and all(r.get(k) == v for k, v in match.items())]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_session_plot_planned_vs_measured(real_logs: dict[str, Path],  # noqa: F811
                                          tmp_path: Path) -> None:
    path = real_logs["first"]
    out = tmp_path / "session.png"
    result = plot(path, out, units="km/h")
    assert_png(out)
    records = _records(path)
    labels = {ln.get_label() for ln in result.axes.get_lines()}
    assert {"planned", "measured"} <= labels
    assert result.data.notes == [f"plan from {FIRST_SESSION}"]
    # Shaded: from each belt start facing backward to the belt stopping for the turnaround.
    starts = _rel(records, "turnaround", phase="start", to_direction="backward")
    stops = _rel(records, "turnaround", phase="stopped")
    spans = shaded_spans(result)
    assert len(spans) == len(starts) == 3
    for (a, b), start in zip(spans, starts, strict=True):
        assert a == pytest.approx(start)
        assert b == pytest.approx(min(t for t in stops if t > start))
        assert b - a == pytest.approx(50, abs=6)  # 50 s bouts, ramps included
    # Every measured sample inside a span was taken facing backward.
    telemetry = [r for r in records if r["type"] == "telemetry"]
    t0 = next(r["t"] for r in records if r["type"] == "session_started")
    for sample in telemetry:
        t = sample["t"] - t0
        if any(a + 1 < t < b - 1 for a, b in spans):
            assert sample["facing"] == "backward", t
    # The plan, placed on the session clock, agrees with the measured speed mid-bout.
    planned = np.interp([a + 25 for a, _ in spans], result.data.planned_t,
                        result.data.planned_kmh)
    assert planned == pytest.approx([1.6] * 3, abs=0.05)
    assert result.data.turnarounds == pytest.approx(stops)


def test_session_plot_without_its_profile_uses_the_logged_segments(
        real_logs: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    records = _records(real_logs["first"])
    records[1]["profile_path"] = str(tmp_path / "gone.yaml")
    moved = tmp_path / "moved.jsonl"
    moved.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = plot(moved, None)
    assert "segments in the log" in result.data.notes[0]
    assert result.data.planned_t.size > 100
    assert len(shaded_spans(result)) == 3


def test_cli_plot(log_dir: Path, tmp_path: Path,  # noqa: F811
                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "last.png"
    assert main(["plot", "last", "--dir", str(log_dir), "-o", str(out), "--units", "km/h"]) == 0
    assert_png(out)
    profile_copy = tmp_path / "p.yaml"
    shutil.copy(FIRST_SESSION, profile_copy)
    assert main(["plot", str(profile_copy), "-o", str(tmp_path / "p.png")]) == 0
    assert_png(tmp_path / "p.png")
    assert "wrote" in capsys.readouterr().out


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 1, 2, 3]) == "▁▃▆█"
    assert sparkline([0, 0]) == "▁▁"
    assert len(sparkline([1.0] * 30, high=3.21)) == 30


# ------------------------------------------------------------------ what happened (issue 15)


async def pause_skip_stop(sim: SimulatedTreadmill, session: Session) -> None:
    """Pause in the warm-up, resume, skip the rest of it, stop in the backward bout."""
    await asyncio.sleep(60)
    assert session.request(UserCommand.PAUSE, CommandSource.KEY)
    await asyncio.sleep(20)
    assert session.request(UserCommand.RESUME, CommandSource.KEY)
    await asyncio.sleep(40)
    assert session.request(UserCommand.SKIP, CommandSource.KEY)
    await asyncio.sleep(50)
    assert session.request(UserCommand.STOP, CommandSource.KEY)


async def remote_stop(sim: SimulatedTreadmill, session: Session) -> None:
    await asyncio.sleep(225)  # in the first backward bout (about 201 s to 251 s)
    assert session.request(UserCommand.STOP, CommandSource.REMOTE)


async def link_loss(sim: SimulatedTreadmill, session: Session) -> None:
    await asyncio.sleep(225)
    sim.drop_links()


@pytest.fixture(scope="module")
def what_happened(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("what-happened")
    return {name: record_session_sync(FIRST_SESSION, folder / f"20250320-080000-{name}.jsonl",
                                      scenario=scenario)
            for name, scenario in (("pause-skip-stop", pause_skip_stop),
                                   ("remote", remote_stop), ("link", link_loss))}


def _lines(result: PlotResult, gid: str) -> list[Any]:
    return [ln for ln in result.axes.get_lines() if ln.get_gid() == gid]


def _patches(result: PlotResult, gid: str) -> list[tuple[float, float]]:
    return [(p.get_x() * 60, (p.get_x() + p.get_width()) * 60)
            for p in result.axes.patches if isinstance(p, Rectangle) and p.get_gid() == gid]


def _user(records: list[dict[str, Any]], command: str) -> float:
    (t,) = _rel(records, "user", command=command, accepted=True)
    return t


def _check_planned_line(result: PlotResult, end_s: float) -> None:
    """One planned line, drawn from the data, never running backward in time (no
    overlapping copies of the plan) nor past the end of the session."""
    (line,) = _lines(result, "planned")
    x, y = np.asarray(line.get_xdata()) * 60, np.asarray(line.get_ydata())
    assert np.allclose(x, result.data.planned_t)
    finite = np.isfinite(y)
    assert np.all(np.diff(x) >= -1e-9)
    assert x[finite].max() <= end_s + 1e-6


def _check_ceiling_only_backward(result: PlotResult) -> None:
    ceilings = _lines(result, "ceiling")
    assert len(ceilings) == len(result.data.backward_spans)
    for line, (a, b) in zip(ceilings, result.data.backward_spans, strict=True):
        assert np.allclose(np.asarray(line.get_xdata()) * 60, [a, b])
    assert result.axes.get_xlim()[1] * 60 == pytest.approx(result.data.end_s)


def test_pause_skip_and_stop_are_drawn_as_they_happened(what_happened: dict[str, Path],
                                                        tmp_path: Path) -> None:
    path = what_happened["pause-skip-stop"]
    records = _records(path)
    result = plot(path, tmp_path / "psk.png", units="km/h")
    assert_png(tmp_path / "psk.png")
    data = result.data
    paused, skipped, stopped = (_user(records, c) for c in ("pause", "skip", "stop"))
    resumed = min(t for t in _rel(records, "turnaround", phase="start") if t > paused)
    # The pause: a shaded band, and a gap in the planned line (the plan did not run).
    assert data.pauses == [pytest.approx((paused, resumed))]
    assert _patches(result, "paused") == [pytest.approx((paused, resumed))]
    inside = (data.planned_t > paused + 1e-6) & (data.planned_t < resumed - 1e-6)
    assert not np.any(np.isfinite(data.planned_kmh[inside]))
    assert np.isnan(data.planned_kmh[np.isclose(data.planned_t, paused)]).any()
    # The plan stood still while paused: after the pause it resumes where it stopped,
    # the warm-up's 3.2 km/h, and 40 s later the skip jumps (same instant, two speeds).
    assert np.interp(resumed + 20, data.planned_t, data.planned_kmh) == pytest.approx(3.2)
    ((t_skip, plan_from, plan_to),) = data.skips
    assert t_skip == pytest.approx(skipped)
    assert plan_from == pytest.approx(57 + (skipped - resumed), abs=3)  # ran ~57 s before
    assert plan_to == pytest.approx(183.2, abs=1)  # the next segment: its turnaround first
    at_skip = data.planned_kmh[np.isclose(data.planned_t, skipped)]
    assert max(at_skip) == pytest.approx(3.2) and min(at_skip) <= 0.5
    assert len(_lines(result, "skip")) == 1
    # The stop: by the person (the key), not a red watchdog line.
    assert data.stop is not None
    t_stop, by, label = data.stop
    assert (by, label) == (StopBy.PERSON, "stopped by you (key)")
    assert t_stop == pytest.approx(stopped)
    (stop_line,) = _lines(result, "stop")
    assert stop_line.get_label() == "stopped by you (key)"
    assert stop_line.get_color() != WATCHDOG_COLOUR
    assert _lines(result, "watchdog") == [] and data.watchdog == []
    _check_planned_line(result, stopped)
    # The backward bout after the skip: planned 1.6 km/h, as measured, under the ceiling.
    (span,) = data.backward_spans
    assert span[1] == pytest.approx(stopped)
    mid = (span[0] + span[1]) / 2 + 5
    assert np.interp(mid, data.planned_t, data.planned_kmh) == pytest.approx(1.6)
    assert np.interp(mid, data.measured_t, data.measured_kmh) == pytest.approx(1.6, abs=0.1)
    _check_ceiling_only_backward(result)


def test_a_remote_stop_is_the_remote(what_happened: dict[str, Path]) -> None:
    records = _records(what_happened["remote"])
    result = plot(what_happened["remote"], None)
    assert result.data.stop is not None
    t, by, label = result.data.stop
    assert (by, label) == (StopBy.REMOTE, "stopped by the remote")
    assert t == pytest.approx(_user(records, "stop"))
    assert [ln.get_label() for ln in _lines(result, "stop")] == ["stopped by the remote"]
    _check_planned_line(result, t)


def test_a_watchdog_stop_is_the_watchdog(real_logs: dict[str, Path]) -> None:  # noqa: F811
    records = _records(real_logs["fault"])
    result = plot(real_logs["fault"], None)
    assert result.data.stop is not None
    t, by, label = result.data.stop
    assert (by, label) == (StopBy.WATCHDOG, "watchdog stop: telemetry_stale")
    assert t == pytest.approx(_rel(records, "watchdog", trigger="telemetry_stale")[0])
    (line,) = _lines(result, "stop")
    assert line.get_color() == WATCHDOG_COLOUR
    _check_planned_line(result, t)
    _check_ceiling_only_backward(result)
    (span,) = shaded_spans(result)  # cut short in the first backward bout
    assert span == pytest.approx((_rel(records, "turnaround", phase="start",
                                       to_direction="backward")[0], t))


def test_a_lost_link_is_hatched_and_ends_the_plan(what_happened: dict[str, Path]) -> None:
    records = _records(what_happened["link"])
    result = plot(what_happened["link"], None)
    (lost,) = _rel(records, "link", connected=False)
    assert result.data.link_losses
    assert result.data.link_losses[0][0] == pytest.approx(lost)
    assert _patches(result, "link_lost")[0][0] == pytest.approx(lost)
    assert result.data.stop is not None and result.data.stop[1] is StopBy.WATCHDOG
    assert "link_lost" in result.data.stop[2]
    _check_planned_line(result, lost)


def test_a_profile_run_from_another_folder_is_found_by_name(
        real_logs: dict[str, Path], tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    records = _records(real_logs["first"])
    records[1]["profile_path"] = "profiles/first-session.yaml"  # relative to another folder
    moved = tmp_path / "moved.jsonl"
    moved.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    monkeypatch.chdir(tmp_path)
    result = plot(moved, None)
    assert result.data.notes == ["plan from the bundled profile first-session"]
    assert "gone" not in " ".join(result.data.notes)


MAGIC = {"png": PNG_MAGIC, "svg": b"<?xml", "pdf": b"%PDF", "jpg": b"\xff\xd8\xff",
         "jpeg": b"\xff\xd8\xff"}


@pytest.mark.parametrize("extension", sorted(MAGIC))
def test_the_extension_picks_the_format(extension: str, tmp_path: Path) -> None:
    out = tmp_path / f"plan.{extension.upper() if extension == 'jpg' else extension}"
    assert main(["plot", "first-session", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(MAGIC[extension])


@pytest.mark.parametrize("name", ["plan.gif", "plan"])
def test_an_unknown_extension_is_refused(name: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", "first-session", "-o", str(tmp_path / name)]) == 2
    assert "end the name with one of .png, .svg, .pdf, .jpg, .jpeg" in capsys.readouterr().err
    assert not (tmp_path / name).exists()
