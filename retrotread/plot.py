"""Planned versus measured speed over time, as a picture (``retrotread plot``).

For a profile, the plan alone (compiled for a machine with default limits). For a
session, the measured belt speed from its telemetry, over the plan as the session
actually followed it: the plan comes from the profile file named in the log when it
still loads and still has the same name (or the bundled profile of that file name, when
the workout was run from another folder), else from the segments the log recorded. The
session's plan clock runs only while the belt runs as planned, so the planned line is
replayed from the log: it stops at a pause (a gap, the pause shaded), jumps at a skip,
stands at zero while the belt stood for a turnaround, and ends where the session ended.

Backward walking is shaded, the backward ceiling drawn only over it; turnarounds are
dotted lines; the stop is drawn by who or what made it (you, a remote, the watchdog, the
safety key); other watchdog actions are red dotted lines, a lost link is hatched. The
extension of ``-o`` picks the format (PNG, SVG, PDF, or JPEG through Pillow). Rendering
uses matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrotread.envelope import Direction, Envelope, MachineLimits
from retrotread.errors import ProfileError, RetrotreadError, UsageError
from retrotread.events import (
    CommandSource,
    Event,
    LinkStateChanged,
    Outcome,
    SegmentStarted,
    SessionFinished,
    SessionStarted,
    TelemetrySample,
    TurnaroundPhase,
    UserAction,
    UserCommand,
    WatchdogAction,
)
from retrotread.formatting import minutes_text
from retrotread.history import resolve_session
from retrotread.log_reader import Record, as_events, first, last, of
from retrotread.plan import COUNTDOWN, MOVING_KINDS, TURNAROUND_HOLD, TURNAROUND_STOP, Plan
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
    pauses: list[tuple[float, float]] = field(default_factory=list)
    skips: list[tuple[float, float, float]] = field(default_factory=list)  # t, plan from, to
    stop: tuple[float, StopBy, str] | None = None  # t, by whom, label
    link_losses: list[tuple[float, float]] = field(default_factory=list)
    end_s: float | None = None


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
class StopBy(enum.StrEnum):
    """Who or what ended a session early, as the plot labels it."""

    PERSON = "person"  # the key, the companion page, or voice at the machine
    REMOTE = "remote"  # MQTT or another network remote
    SIGNAL = "signal"  # Ctrl-C or SIGTERM
    WATCHDOG = "watchdog"
    SAFETY_KEY = "safety key"
    ERROR = "error"


_PERSON_SOURCES = frozenset({CommandSource.KEY, CommandSource.COMPANION, CommandSource.VOICE})
PERSON_TRIGGERS = frozenset({"user_stop", "interrupted"})
"""Watchdog records of a stop someone asked for: the ``user`` record names who."""
_PAUSE_COMMANDS = frozenset({UserCommand.PAUSE, UserCommand.TOGGLE_PAUSE})


def _machine_of(started: SessionStarted) -> MachineLimits:
    """The simulator preset's limits for a simulated session, else the defaults."""
    from retrotread.sim.presets import PRESETS

    preset = PRESETS.get(started.device.rpartition(":")[2]) if started.simulated else None
    if preset is None:
        return MachineLimits()
    return MachineLimits(preset.min_kmh, preset.max_kmh, preset.increment_kmh)


def _session_plan(events: Sequence[Event], started: SessionStarted
                  ) -> tuple[Plan | None, str]:
    """The plan of a logged session, and where it came from: the profile file the log
    names, else the bundled profile of that file name (the same workout run from another
    folder), else the segments the log recorded."""
    from retrotread.plan import compile_plan, compile_segments
    from retrotread.profile import load_profile
    from retrotread.resources import bundled_profiles

    ceiling = started.backward_ceiling_kmh
    machine = _machine_of(started)

    def envelope_for(base: Envelope) -> Envelope:
        if ceiling < base.backward_ceiling_kmh:
            return dataclasses.replace(base, backward_ceiling_kmh=ceiling)
        return base

    path = started.profile_path
    name = started.profile_name
    why = "the log names no profile file"
    if isinstance(path, str):
        candidates = [(Path(path), f"plan from {path}")]
        bundled = bundled_profiles().get(Path(path).stem)
        if bundled is not None and bundled != Path(path):
            candidates.append((bundled, f"plan from the bundled profile {Path(path).stem}"))
        why = f"{path} is not there"
        for candidate, source in candidates:
            if not candidate.is_file():
                continue
            try:
                profile = load_profile(candidate)
            except ProfileError:
                why = f"{candidate} no longer loads"
                continue
            if profile.name != name:
                why = f"{candidate} is now another workout ({profile.name!r})"
                continue
            return compile_plan(profile, envelope_for(profile.envelope(machine))), source
    seen: dict[int, SegmentStarted] = {}
    for segment in of(events, SegmentStarted):
        seen.setdefault(segment.index, segment)
    if not seen:
        return None, "no plan: the log has no segments"
    plan = compile_segments(list(seen.values()), envelope_for(Envelope.build(machine)))
    return plan, (f"plan from the segments in the log ({why}; only the segments that "
                  "started are known)")


def _resume_after_turn(plan: Plan, plan_s: float, to: Direction) -> float:
    """Where the session resumes the plan after a turnaround (as the session does): the
    first step facing ``to`` at or after ``plan_s`` that is not part of the turnaround."""
    for step in plan.steps:
        if step.start_s >= plan_s - 1e-9 and step.direction is to and step.kind not in (
                TURNAROUND_STOP, TURNAROUND_HOLD, COUNTDOWN):
            return step.start_s
    return plan_s


def _after_skip(plan: Plan, plan_s: float) -> float:
    """Where a skip lands (as the session does): the next segment's first step."""
    current = plan.step_at(plan_s).segment_index
    for step in plan.steps:
        if step.segment_index > current and step.start_s > plan_s:
            return step.start_s
    return plan_s


@dataclass
class _Follow:
    """The plan as the session followed it: pieces of (session t, plan t) that ran 1:1."""

    pieces: list[tuple[float, float, float]] = field(default_factory=list)  # t0, t1, plan t0
    joins: list[str] = field(default_factory=list)  # how each piece meets the next
    pauses: list[tuple[float, float]] = field(default_factory=list)
    skips: list[tuple[float, float, float]] = field(default_factory=list)  # t, from, to


def follow_plan(records: Sequence[Event | Record], plan: Plan, t0: float, end: float
                ) -> _Follow:
    """Replay the log's belt starts, pauses, skips, turnarounds and stops over the plan.

    The session advances plan time only while the belt runs as planned: from a belt start
    (``turnaround`` phase ``start``) until a pause, a turnaround's ramp down, a stop, a
    lost link or the end; a skip jumps to the next segment's first step."""
    follow = _Follow()
    running_since: tuple[float, float] | None = None  # (session t, plan t)
    plan_s = 0.0
    paused_at: float | None = None
    over = False

    def close(t: float, join: str) -> float:
        nonlocal running_since
        assert running_since is not None
        s0, p0 = running_since
        t_end = min(t, s0 + (plan.total_s - p0))
        follow.pieces.append((s0, max(s0, t_end), p0))
        follow.joins.append(join)
        running_since = None
        return p0 + max(0.0, t_end - s0)

    for r in as_events(records):
        if over:
            break
        t = r.time_s - t0
        if isinstance(r, TurnaroundPhase) and r.phase == "start" and running_since is None:
            if paused_at is not None:
                follow.pauses.append((paused_at, t))
                paused_at = None
            running_since = (t, plan_s)
        elif isinstance(r, TurnaroundPhase) and r.phase == "ramp_down" and running_since:
            plan_s = _resume_after_turn(plan, close(t, "turn"), r.to_direction)
        elif isinstance(r, UserAction) and r.accepted and running_since is not None:
            if r.command in _PAUSE_COMMANDS:
                plan_s = close(t, "gap")
                paused_at = t
            elif r.command is UserCommand.SKIP:
                before = close(t, "jump")
                plan_s = _after_skip(plan, before)
                follow.skips.append((t, before, plan_s))
                running_since = (t, plan_s)
            elif r.command is UserCommand.STOP:
                plan_s = close(t, "gap")
                over = True
        elif (isinstance(r, WatchdogAction) and r.action == "stop"
              and running_since is not None and r.trigger not in PERSON_TRIGGERS):
            plan_s = close(t, "gap")
            over = True
        elif isinstance(r, LinkStateChanged) and not r.connected and running_since is not None:
            plan_s = close(t, "gap")
        elif isinstance(r, SessionFinished):
            over = True
    if running_since is not None:
        close(end, "gap")
    if paused_at is not None:
        follow.pauses.append((paused_at, end))
    return follow


def planned_line(plan: Plan, follow: _Follow, period_s: float
                 ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Planned speed on the session clock: each piece sampled, NaN between pieces that do
    not meet (a pause, a stop, a lost link: a gap), the same instant twice at a skip (a
    jump), zero while the belt stood for a turnaround."""
    times: list[float] = []
    speeds: list[float] = []
    for i, (s0, s1, p0) in enumerate(follow.pieces):
        ts = np.append(np.arange(s0, s1, period_s), s1)
        times.extend(ts.tolist())
        speeds.extend(plan.setpoint_at(float(p0 + (t - s0)))[0] for t in ts)
        join = follow.joins[i]
        following = follow.pieces[i + 1][0] if i + 1 < len(follow.pieces) else None
        if join == "turn" and following is not None:
            times.extend([s1, following])  # stood still as planned, as long as it took
            speeds.extend([0.0, 0.0])
        elif join == "gap":
            times.append(s1)
            speeds.append(float("nan"))
    return np.array(times), np.array(speeds)


def _stop_of(events: Sequence[Event], t0: float) -> tuple[float, StopBy, str] | None:
    """When and by whom a session was stopped before its end (None: it completed, or the
    log has no end)."""
    finished = last(events, SessionFinished)
    if finished is None or finished.outcome is Outcome.COMPLETED:
        return None
    outcome = finished.outcome.value
    at = finished.time_s - t0
    if finished.outcome in (Outcome.STOPPED_BY_USER, Outcome.INTERRUPTED):
        user = next((r for r in reversed(events) if isinstance(r, UserAction)
                     and r.command is UserCommand.STOP and r.accepted), None)
        if user is not None:
            source = user.source
            t = user.time_s - t0
            if source in _PERSON_SOURCES:
                return t, StopBy.PERSON, f"stopped by you ({source})"
            if source == CommandSource.SIGNAL:
                return t, StopBy.SIGNAL, "interrupted (signal)"
            return t, StopBy.REMOTE, f"stopped by the {source}"
        return at, StopBy.SIGNAL, f"{outcome.replace('_', ' ')}: {finished.reason}"
    stops = [r for r in of(events, WatchdogAction)
             if r.action == "stop" and r.trigger not in PERSON_TRIGGERS]
    if finished.outcome is Outcome.SAFETY_KEY:
        return at, StopBy.SAFETY_KEY, "safety key"
    if finished.outcome is Outcome.WATCHDOG and stops:
        return stops[0].time_s - t0, StopBy.WATCHDOG, f"watchdog stop: {stops[0].trigger}"
    return at, StopBy.ERROR, f"{outcome.replace('_', ' ')}: {finished.reason}"


def _link_losses(events: Sequence[Event], t0: float, end: float) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    lost: float | None = None
    for r in of(events, LinkStateChanged):
        if not r.connected and lost is None:
            lost = r.time_s - t0
        elif r.connected and lost is not None:
            spans.append((lost, r.time_s - t0))
            lost = None
    if lost is not None:
        spans.append((lost, end))
    return spans


def _with_gaps(times: np.ndarray[Any, Any], values: np.ndarray[Any, Any]
               ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Break a sampled line where samples are missing (more than 3 usual periods apart)."""
    if times.size < 3:
        return times, values
    steps = np.diff(times)
    usual = float(np.median(steps))
    breaks = np.nonzero(steps > max(3 * usual, 2.0))[0]
    if not breaks.size:
        return times, values
    at = breaks + 1
    return (np.insert(times, at, times[breaks] + steps[breaks] / 2),
            np.insert(values.astype(float), at, np.nan))


def plot_data_for_session(records: Sequence[Event | Record], period_s: float = 0.5
                          ) -> PlotData:
    events = as_events(records)
    started = first(events, SessionStarted)
    if started is None:
        raise RetrotreadError("the session log has no session_started record: nothing to plot")
    t0 = started.time_s
    finished = last(events, SessionFinished)
    last_t = max((e.time_s for e in events if math.isfinite(e.time_s)), default=t0)
    end = (finished.time_s if finished else last_t) - t0

    telemetry = [r for r in of(events, TelemetrySample) if r.speed_kmh is not None]
    phases = of(events, TurnaroundPhase)
    stopped = [r.time_s - t0 for r in phases if r.phase == "stopped"]
    stop = _stop_of(events, t0)
    # Facing backward on a moving belt: from a start facing backward to the next stop.
    spans: list[tuple[float, float]] = []
    for r in phases:
        if r.phase != "start" or r.to_direction is not Direction.BACKWARD:
            continue
        begin = r.time_s - t0
        ends = [t for t in stopped if t > begin] + ([stop[0]] if stop and stop[0] > begin
                                                    else [])
        spans.append((begin, min([end, *ends])))

    measured_t, measured_kmh = _with_gaps(
        np.array([r.time_s - t0 for r in telemetry]),
        np.array([r.speed_kmh for r in telemetry], dtype=float))
    data = PlotData(
        title=f"{started.profile_name}: planned vs measured",
        measured_t=measured_t,
        measured_kmh=measured_kmh,
        backward_spans=spans,
        turnarounds=stopped,
        watchdog=[(r.time_s - t0, r.trigger, r.action) for r in of(events, WatchdogAction)
                  if r.trigger not in PERSON_TRIGGERS
                  and not (stop and stop[1] is StopBy.WATCHDOG and r.action == "stop")],
        backward_ceiling_kmh=started.backward_ceiling_kmh,
        stop=stop,
        link_losses=_link_losses(events, t0, end),
        end_s=end,
    )
    if started.simulated:
        speedup = started.speedup
        data.title += (f" (simulated, {speedup:g}x)" if speedup and speedup != 1
                       else " (simulated)")
    plan, source = _session_plan(events, started)
    data.notes.append(source)
    if plan is not None:
        follow = follow_plan(events, plan, t0, end)
        data.planned_t, data.planned_kmh = planned_line(plan, follow, period_s)
        data.pauses = follow.pauses
        data.skips = follow.skips
    return data


# --------------------------------------------------------------------------- drawing
STOP_COLOURS = {StopBy.PERSON: "#1d3557", StopBy.REMOTE: "#6a4c93", StopBy.SIGNAL: "#495057",
                StopBy.WATCHDOG: WATCHDOG_COLOUR, StopBy.SAFETY_KEY: WATCHDOG_COLOUR,
                StopBy.ERROR: "#000000"}
PAUSE_COLOUR = "#adb5bd"
SKIP_COLOUR = "#7b2cbf"


def draw(data: PlotData, units: str = "mph") -> tuple[Figure, Axes]:
    """A figure of ``data`` (Agg; not shown). Speeds in ``units`` (mph or km/h).

    Every artist carries a gid saying what it shows (``backward``, ``paused``,
    ``link_lost``, ``planned``, ``measured``, ``turnaround``, ``skip``, ``stop``,
    ``watchdog``, ``ceiling``), so the figure can be checked by its data."""
    from matplotlib.figure import Figure  # the OO API: no pyplot, no global state

    scale = kmh_to_mph(1.0) if units == "mph" else 1.0
    figure = Figure(figsize=(11, 4.8), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    minutes = 1 / 60
    top_of = axes.get_xaxis_transform()  # x in data, y in axes fraction

    def label(text: str, i: int) -> str | None:
        return text if i == 0 else None

    def mark(t: float, text: str, colour: str) -> None:
        axes.text(t * minutes, 0.98, text, transform=top_of, rotation=90, va="top",
                  ha="right", fontsize=7, color=colour, clip_on=True,
                  bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1})

    for i, (a, b) in enumerate(data.backward_spans):
        axes.axvspan(a * minutes, b * minutes, color=BACKWARD_COLOUR, alpha=0.25, lw=0,
                     label=label("facing backward", i), gid="backward")
    for i, (a, b) in enumerate(data.pauses):
        axes.axvspan(a * minutes, b * minutes, color=PAUSE_COLOUR, alpha=0.35, lw=0,
                     label=label("paused", i), gid="paused")
    for i, (a, b) in enumerate(data.link_losses):
        axes.axvspan(a * minutes, b * minutes, facecolor="none", edgecolor=WATCHDOG_COLOUR,
                     hatch="//", lw=0, label=label("link lost", i), gid="link_lost")
    if data.backward_ceiling_kmh is not None:
        for i, (a, b) in enumerate(data.backward_spans):  # it applies facing backward only
            axes.plot([a * minutes, b * minutes], [data.backward_ceiling_kmh * scale] * 2,
                      color=BACKWARD_COLOUR, ls="-.", lw=1.2,
                      label=label("backward ceiling", i), gid="ceiling")
    if data.planned_t.size:
        axes.plot(data.planned_t * minutes, data.planned_kmh * scale, color="#264653",
                  lw=1.5, ls="--", label="planned", gid="planned")
    if data.measured_t.size:
        axes.plot(data.measured_t * minutes, data.measured_kmh * scale, color="#2a9d8f",
                  lw=1.2, label="measured", gid="measured")
    for i, t in enumerate(data.turnarounds):
        axes.axvline(t * minutes, color="grey", ls=":", lw=1,
                     label=label("turnaround (belt stopped)", i), gid="turnaround")
    for i, (t, _from_s, to_s) in enumerate(data.skips):
        axes.axvline(t * minutes, color=SKIP_COLOUR, ls=(0, (1, 2)), lw=1.2,
                     label=label("skipped ahead", i), gid="skip")
        mark(t, f"skip to {minutes_text(to_s)} of the plan", SKIP_COLOUR)
    for i, (t, trigger, action) in enumerate(data.watchdog):
        axes.axvline(t * minutes, color=WATCHDOG_COLOUR, ls=":", lw=1.2,
                     label=label("watchdog", i), gid="watchdog")
        mark(t, f"{trigger}: {action}", WATCHDOG_COLOUR)
    if data.stop is not None:
        t, by, text = data.stop
        axes.axvline(t * minutes, color=STOP_COLOURS[by], lw=2, label=text, gid="stop")
    axes.set_xlabel("time (min)")
    axes.set_ylabel(f"speed ({units})")
    axes.set_title(data.title)
    values = [a[np.isfinite(a)] for a in (data.planned_kmh, data.measured_kmh) if a.size]
    top = max([float(np.max(a)) for a in values if a.size]
              + [data.backward_ceiling_kmh or 0.0, 0.1])
    axes.set_ylim(0, top * scale * 1.3)  # room for the marks' labels at the top
    right = data.end_s if data.end_s is not None else (
        float(data.planned_t[-1]) if data.planned_t.size else None)
    axes.set_xlim(0, right * minutes if right else None)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=5, fontsize=8,
                frameon=False)
    return figure, axes


def image_format(output: Path) -> str:
    """The matplotlib format for ``-o``'s extension, or :class:`UsageError`."""
    extension = Path(output).suffix.lower().lstrip(".")
    if extension not in IMAGE_FORMATS:
        known = ", ".join(f".{e}" for e in IMAGE_FORMATS)
        what = f"a .{extension} picture" if extension else "a picture without an extension"
        raise UsageError(f"{output}: cannot write {what}; end the name with one of {known}")
    return IMAGE_FORMATS[extension]


def is_profile_path(source: str | Path) -> bool:
    return Path(source).suffix.lower() in PROFILE_SUFFIXES


def plot(source: str | Path, output: Path | None = None, *, units: str = "mph",
         log_dir: Path | None = None) -> PlotResult:
    """Plot a profile (a file, or a bundled profile's name) or a session (path or id),
    and save a PNG if ``output``."""
    from retrotread.resources import bundled_profiles, find_profile

    fmt = image_format(output) if output is not None else None
    if is_profile_path(source) or str(source) in bundled_profiles():
        from retrotread.profile import load_profile

        data = plot_data_for_profile(load_profile(find_profile(source)))
    else:
        _sid, records = resolve_session(source, log_dir)
        data = plot_data_for_session(records)
    figure, axes = draw(data, units)
    if output is not None:
        figure.savefig(output, format=fmt)
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

    image_format(args.output)  # an unknown extension is refused before any work
    require("matplotlib", "plot", "retrotread plot")
    result = plot(args.source, args.output, units=args.units, log_dir=args.dir)
    for note in result.data.notes:
        print(f"note: {note}")
    print(f"wrote {args.output}")
    return 0
