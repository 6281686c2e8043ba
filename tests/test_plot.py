"""`retrotread plot`: PNGs are written, non-empty, and shade the backward segments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from retrotread.cli import main
from retrotread.envelope import Direction, MachineLimits
from retrotread.plan import HOLD, compile_plan
from retrotread.plot import PlotResult, backward_spans_of_plan, plot, sparkline
from retrotread.profile import load_profile
from retrotread.units import kmh_to_mph
from tests.test_history import FIRST_SESSION, PROFILES, log_dir, real_logs  # noqa: F401

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def shaded_spans(result: PlotResult) -> list[tuple[float, float]]:
    """The shaded vertical bands on the axes, in seconds."""
    spans = []
    for patch in result.axes.patches:
        if isinstance(patch, Rectangle):
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


def test_session_plot_marks_watchdog_actions(real_logs: dict[str, Path],  # noqa: F811
                                             tmp_path: Path) -> None:
    path = real_logs["fault"]
    result = plot(path, tmp_path / "fault.png")
    assert_png(tmp_path / "fault.png")
    records = _records(path)
    watchdog = _rel(records, "watchdog")
    assert watchdog
    assert [t for t, _, _ in result.data.watchdog] == pytest.approx(watchdog)
    assert any("telemetry_stale" in text.get_text() for text in result.axes.texts)
    red = [ln for ln in result.axes.get_lines() if ln.get_label() == "watchdog"]
    assert len(red) == 1
    # Cut short in the first backward bout: one span, ending when the session ended.
    (span,) = shaded_spans(result)
    assert span[0] == pytest.approx(_rel(records, "turnaround", phase="start",
                                         to_direction="backward")[0])


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
