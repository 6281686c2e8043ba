"""Planned versus measured speed over time, as a PNG (``retrotread plot``).

For a profile, the plan alone (compiled for a machine with default limits). For a
session, the measured belt speed from its telemetry, over the plan: the plan is compiled
from the profile file named in the log when it still loads and still has the same name,
else from the segments the log recorded. The plan's clock only runs while the belt runs
as planned, so the plan is re-aligned at every belt start the log recorded.

Backward walking is shaded (from the belt starting with the person facing backward until
it stopped for the next turnaround, or the end), turnarounds are marked with dotted lines,
watchdog actions with red ones. Rendering uses matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrotread.envelope import Direction, Envelope, MachineLimits
from retrotread.errors import ProfileError, RetrotreadError
from retrotread.history import Record, resolve_session
from retrotread.plan import COUNTDOWN, MOVING_KINDS, TURNAROUND_HOLD, Plan
from retrotread.units import kmh_to_mph

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PROFILE_SUFFIXES = (".yaml", ".yml")
IMAGE_FORMATS = {"png": "png", "svg": "svg", "pdf": "pdf", "jpg": "jpeg", "jpeg": "jpeg"}
"""``-o`` extension -> matplotlib format (JPEG is written through Pillow)."""
BACKWARD_COLOUR = "#f4a261"
WATCHDOG_COLOUR = "#d62828"


@dataclass
class PlotData:
    """Everything drawn, in km/h and seconds (session time, or plan time for a profile)."""

    title: str
    planned_t: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0))
    planned_kmh: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0))
    measured_t: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0))
    measured_kmh: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0))
    backward_spans: list[tuple[float, float]] = field(default_factory=list)
    turnarounds: list[float] = field(default_factory=list)
    watchdog: list[tuple[float, str, str]] = field(default_factory=list)  # t, trigger, action
    backward_ceiling_kmh: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class PlotResult:
    figure: Figure
    axes: Axes
    data: PlotData


# --------------------------------------------------------------------------- profiles
def backward_spans_of_plan(plan: Plan) -> list[tuple[float, float]]:
    """Runs of consecutive moving steps facing backward (ramp up to the stop ramp)."""
    spans: list[tuple[float, float]] = []
    current: list[float] | None = None
    for step in plan.steps:
        backward = step.direction is Direction.BACKWARD and step.kind in MOVING_KINDS
        if backward and step.duration_s > 0:
            if current is None:
                current = [step.start_s, step.end_s]
            else:
                current[1] = step.end_s
        elif current is not None and step.duration_s > 0:
            spans.append((current[0], current[1]))
            current = None
    if current is not None:
        spans.append((current[0], current[1]))
    return spans


def plot_data_for_plan(plan: Plan, title: str, period_s: float = 0.5) -> PlotData:
    times, speeds = plan.sample(period_s)
    if times.size and times[-1] < plan.total_s:  # end on the final standstill
        times = np.append(times, plan.total_s)
        speeds = np.append(speeds, plan.steps[-1].end_kmh)
    return PlotData(
        title=title,
        planned_t=times,
        planned_kmh=speeds,
        backward_spans=backward_spans_of_plan(plan),
        turnarounds=[s.start_s for s in plan.steps if s.kind == TURNAROUND_HOLD],
        backward_ceiling_kmh=plan.envelope.ceiling_kmh(Direction.BACKWARD),
        notes=list(plan.notes),
    )


def plot_data_for_profile(profile: Any, machine: MachineLimits | None = None) -> PlotData:
    from retrotread.plan import compile_plan

    plan = compile_plan(profile, profile.envelope(machine or MachineLimits()))
    return plot_data_for_plan(plan, f"{profile.name} (planned)")


# --------------------------------------------------------------------------- sessions
@dataclass
class _LoggedSegment:
    index: int
    label: str
    direction: Direction
    duration_s: float
    speed_kmh: float


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _session_plan(records: Sequence[Record], started: Record) -> tuple[Plan | None, str]:
    """The plan of a logged session, and where it came from."""
    from retrotread.plan import compile_plan, compile_segments
    from retrotread.profile import load_profile

    ceiling = _num(started.get("backward_ceiling_kmh"))

    def envelope_for(base: Envelope) -> Envelope:
        if ceiling is not None and ceiling < base.backward_ceiling_kmh:
            return dataclasses.replace(base, backward_ceiling_kmh=ceiling)
        return base

    path = started.get("profile_path")
    if isinstance(path, str) and Path(path).is_file():
        try:
            profile = load_profile(path)
        except ProfileError:
            profile = None
        if profile is not None and profile.name == started.get("profile_name"):
            plan = compile_plan(profile, envelope_for(profile.envelope(MachineLimits())))
            return plan, f"plan from {path}"
    seen: dict[int, _LoggedSegment] = {}
    for r in records:
        if r.get("type") != "segment_started" or not isinstance(r.get("index"), int):
            continue
        speed, duration = _num(r.get("speed_kmh")), _num(r.get("duration_s"))
        if speed is None or duration is None or r["index"] in seen:
            continue
        seen[r["index"]] = _LoggedSegment(r["index"], str(r.get("label", "")),
                                          Direction(r.get("direction", "forward")),
                                          duration, speed)
    if not seen:
        return None, "no plan: the log has no segments"
    plan = compile_segments(list(seen.values()), envelope_for(Envelope.build(MachineLimits())))
    return plan, "plan from the segments in the log (the profile file is gone or changed)"


def _belt_starts(plan: Plan) -> list[float]:
    """Plan times at which the belt starts: the beginning, and after every countdown."""
    starts = [plan.steps[0].start_s]
    starts += [s.end_s for s in plan.steps if s.kind == COUNTDOWN]
    return starts


def _place_plan(plan: Plan, session_starts: Sequence[float],
                period_s: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Planned speeds on the session clock: the k-th belt start of the plan is placed at
    the k-th belt start of the session (turnaround holds last as long as they last)."""
    anchors = list(zip(_belt_starts(plan), session_starts, strict=False))
    times, speeds = plan.sample(period_s)
    if not anchors:
        return times, speeds
    anchor_times = np.array([a[0] for a in anchors])
    shifts = np.array([b - a for a, b in anchors])
    which = np.clip(np.searchsorted(anchor_times, times, side="right") - 1, 0, len(anchors) - 1)
    return times + shifts[which], speeds


def plot_data_for_session(records: Sequence[Record], period_s: float = 0.5) -> PlotData:
    started = next((r for r in records if r.get("type") == "session_started"), None)
    if started is None:
        raise RetrotreadError("the session log has no session_started record: nothing to plot")
    t0 = _num(started.get("t")) or 0.0
    finished = next((r for r in reversed(records) if r.get("type") == "session_finished"), None)
    last_t = max((t for r in records if (t := _num(r.get("t"))) is not None), default=t0)
    end = ((_num(finished.get("t")) if finished else None) or last_t) - t0

    def rel(r: Record) -> float:
        return (_num(r.get("t")) or t0) - t0

    telemetry = [r for r in records if r.get("type") == "telemetry"
                 and _num(r.get("speed_kmh")) is not None]
    phases = [r for r in records if r.get("type") == "turnaround"]
    belt_starts = [r for r in phases if r.get("phase") == "start"]
    stopped = [rel(r) for r in phases if r.get("phase") == "stopped"]
    # Facing backward on a moving belt: from a start facing backward to the next stop.
    spans: list[tuple[float, float]] = []
    for r in belt_starts:
        if r.get("to_direction") != "backward":
            continue
        begin = rel(r)
        spans.append((begin, min([end, *(t for t in stopped if t > begin)])))

    data = PlotData(
        title=f"{started.get('profile_name', 'session')}: planned vs measured",
        measured_t=np.array([rel(r) for r in telemetry]),
        measured_kmh=np.array([float(r["speed_kmh"]) for r in telemetry]),
        backward_spans=spans,
        turnarounds=stopped,
        watchdog=[(rel(r), str(r.get("trigger", "?")), str(r.get("action", "?")))
                  for r in records if r.get("type") == "watchdog"],
        backward_ceiling_kmh=_num(started.get("backward_ceiling_kmh")),
    )
    plan, source = _session_plan(records, started)
    data.notes.append(source)
    if plan is not None:
        data.planned_t, data.planned_kmh = _place_plan(
            plan, [rel(r) for r in belt_starts], period_s)
    return data


# --------------------------------------------------------------------------- drawing
def draw(data: PlotData, units: str = "mph") -> tuple[Figure, Axes]:
    """A figure of ``data`` (Agg; not shown). Speeds in ``units`` (mph or km/h)."""
    from matplotlib.figure import Figure  # the OO API: no pyplot, no global state

    scale = kmh_to_mph(1.0) if units == "mph" else 1.0
    figure = Figure(figsize=(11, 4.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    minutes = 1 / 60
    for i, (a, b) in enumerate(data.backward_spans):
        axes.axvspan(a * minutes, b * minutes, color=BACKWARD_COLOUR, alpha=0.25, lw=0,
                     label="facing backward" if i == 0 else None)
    if data.planned_t.size:
        axes.plot(data.planned_t * minutes, data.planned_kmh * scale, color="#264653",
                  lw=1.5, ls="--", label="planned")
    if data.measured_t.size:
        axes.plot(data.measured_t * minutes, data.measured_kmh * scale, color="#2a9d8f",
                  lw=1.2, label="measured")
    for i, t in enumerate(data.turnarounds):
        axes.axvline(t * minutes, color="grey", ls=":", lw=1,
                     label="turnaround (belt stopped)" if i == 0 else None)
    for i, (t, trigger, action) in enumerate(data.watchdog):
        axes.axvline(t * minutes, color=WATCHDOG_COLOUR, lw=1.5,
                     label="watchdog" if i == 0 else None)
        axes.annotate(f"{trigger}: {action}", (t * minutes, 1.0),
                      xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                      fontsize=7, color=WATCHDOG_COLOUR)
    if data.backward_ceiling_kmh is not None:
        axes.axhline(data.backward_ceiling_kmh * scale, color=BACKWARD_COLOUR, ls="-.", lw=1,
                     label="backward ceiling")
    axes.set_xlabel("time (min)")
    axes.set_ylabel(f"speed ({units})")
    axes.set_title(data.title)
    top = max([float(np.max(a)) for a in (data.planned_kmh, data.measured_kmh) if a.size]
              + [data.backward_ceiling_kmh or 0.0, 0.1])
    axes.set_ylim(0, top * scale * 1.15)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=6, fontsize=8,
                frameon=False)
    return figure, axes


def is_profile_path(source: str | Path) -> bool:
    return Path(source).suffix.lower() in PROFILE_SUFFIXES


def plot(source: str | Path, output: Path | None = None, *, units: str = "mph",
         log_dir: Path | None = None) -> PlotResult:
    """Plot a profile (a file, or a bundled profile's name) or a session (path or id),
    and save a PNG if ``output``."""
    from retrotread.resources import bundled_profiles, find_profile

    if is_profile_path(source) or str(source) in bundled_profiles():
        from retrotread.profile import load_profile

        data = plot_data_for_profile(load_profile(find_profile(source)))
    else:
        _sid, records = resolve_session(source, log_dir)
        data = plot_data_for_session(records)
    figure, axes = draw(data, units)
    if output is not None:
        figure.savefig(output, format="png")
    return PlotResult(figure, axes, data)


_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], high: float | None = None) -> str:
    """A one-line text chart (for terminals): ``▁▃▅█``; 0 at the bottom."""
    if not values:
        return ""
    top = high if high is not None else max(values)
    if top <= 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[min(len(_SPARKS) - 1, max(0, int(v / top * (len(_SPARKS) - 1)
                                                               + 0.5)))] for v in values)


# --------------------------------------------------------------------------- CLI
def add_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="PROFILE|SESSION",
                   help="a profile (.yaml) to plot its plan, or a session (log path, id from "
                   "`retrotread history`, or `last`) to plot planned vs measured")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                   help="the picture to write; its extension picks the format: "
                   + ", ".join(f".{e}" for e in IMAGE_FORMATS) + " (JPEG through Pillow)")
    p.add_argument("--units", choices=["mph", "km/h"], default="mph",
                   help="units for speeds (default mph)")
    p.add_argument("--dir", type=Path, default=None, metavar="DIR",
                   help="log directory to look session ids up in")


def run_plot(args: argparse.Namespace) -> int:
    from retrotread.extras import require

    require("matplotlib", "plot", "retrotread plot")
    result = plot(args.source, args.output, units=args.units, log_dir=args.dir)
    for note in result.data.notes:
        print(f"note: {note}")
    print(f"wrote {args.output}")
    return 0
