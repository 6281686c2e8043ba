"""What a person sees and presses during a workout.

* :class:`LiveDisplay`: a full-screen panel (rich) redrawn a few times a second from the
  session's :class:`~retrotread.events.SessionSnapshot`. Built for someone glancing over
  a shoulder: the direction to face is the biggest thing on the screen.
* :func:`render`: the pure function behind it (snapshot in, renderable out), testable
  without a terminal.
* :class:`EventPrinter`: one plain line per event, for ``--no-ui``, pipes and logs.
* :class:`KeyReader`: single-key commands (space, r, s, q, +, -, n) from a terminal,
  read by the asyncio loop without blocking it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import os
import re
import stat
import sys
from collections.abc import Callable
from typing import Any, TextIO

from rich.align import Align
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from retrotread.envelope import Direction
from retrotread.events import (
    Announcement,
    CommandReplied,
    CommandSent,
    Event,
    LinkStateChanged,
    MachineStatusChanged,
    SegmentStarted,
    SessionFinished,
    SessionSnapshot,
    SessionStarted,
    TelemetrySample,
    TurnaroundPhase,
    UserAction,
    UserCommand,
    WatchdogAction,
)
from retrotread.formatting import (
    Rounding,
    clock_text,
    distance_parts,
    distance_text,
    heart_rate_text,
    kmh_text,
    mph_text,
    speed_text,
)
from retrotread.presentation import (
    KEY_HELP,
    Level,
    Narrator,
    Phase,
    Presentation,
    present,
)

try:  # POSIX only; on Windows the key reader does nothing
    import termios
    import tty
except ImportError:  # pragma: no cover - exercised on Windows only
    termios = None  # type: ignore[assignment]
    tty = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TELEMETRY_PRINT_EVERY_S = 30.0


# --------------------------------------------------------------------------- formatting
def words(name: str) -> str:
    """``SetTargetSpeed`` -> ``Set Target Speed``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)


def _dual(primary: str, secondary: str, style: str = "bold") -> Text:
    text = Text(primary, style=style)
    text.append(f" ({secondary})", style="dim")
    return text


# --------------------------------------------------------------------------- rendering
_ALARM_WORDS = ("stopping the belt", "safety key", "lost", "alarm", "reconnect", "could not",
                "watchdog", "emergency")
_WARNING_WORDS = ("turn", "stop", "hold the rails", "slow", "speed", "ready", "countdown",
                  "starting")


def guess_level(text: str) -> str:
    """A best guess at an announcement's level from its words, for when the display only
    has the snapshot's text (subscribe the display to the bus to know it exactly)."""
    lowered = text.lower()
    if any(word in lowered for word in _ALARM_WORDS):
        return "alarm"
    if any(word in lowered for word in _WARNING_WORDS):
        return "warning"
    return "info"


_PHASE_STYLE: dict[Phase, str] = {
    Phase.RUNNING: "green",
    Phase.SLOWING: "bold black on yellow",
    Phase.TURN_AROUND: "bold black on yellow",
    Phase.START_GATE: "bold black on yellow",
    Phase.COUNTDOWN: "bold black on yellow",
    Phase.PAUSED: "bold black on yellow",
    Phase.STOPPING: "bold white on red",
    Phase.LINK_LOST: "bold white on red",
}


def _direction_panel(view: Presentation, units: str) -> Panel:
    backward = view.face is Direction.BACKWARD
    arrow = "▼▼" if backward else "▲▲"
    word = view.face_word
    style = "bold yellow" if backward else "bold green"
    border = "bold red" if backward else "green"
    heading = "TURN AROUND: FACE" if view.turning else "FACE"
    text = Text(f"{arrow}   {word}   {arrow}", style=style, justify="center")
    if view.target is not None:
        primary, secondary = view.target.ordered(units)
        text.append(f"\ntarget {primary}", style="bold")
        text.append(f" ({secondary})", style="dim")
    return Panel(Align.center(text), border_style=border, padding=(1, 2),
                 title=f"{heading} {word}", subtitle=view.face_hint)


def _bar(done: float, total: float, width: int = 40) -> ProgressBar:
    total = total if total > 0 else 1.0
    return ProgressBar(total=total, completed=min(max(done, 0.0), total), width=width)


def render(snapshot: SessionSnapshot | None, units: str = "mph", *,
           announcement_level: str | None = None,
           said: Announcement | None = None) -> RenderableType:
    """The whole screen for one snapshot (pure: no I/O, no clock). What it shows comes
    from :func:`retrotread.presentation.present`, as on the companion page."""
    if snapshot is None:
        return Panel(Text("Connecting to the treadmill…", style="bold"),
                     subtitle=KEY_HELP, border_style="dim")
    if said is None and snapshot.last_announcement:
        said = Announcement(snapshot.time_s, snapshot.last_announcement,
                            announcement_level or guess_level(snapshot.last_announcement))
    view = present(snapshot, said)
    parts: list[RenderableType] = []

    # Banner and link.
    banner = Text(view.banner or "", style=(
        "bold black on cyan" if "SIMULATED" in view.banner.upper() else "bold"))
    top = Table.grid(expand=True)
    top.add_column(ratio=1)
    top.add_column(justify="right")
    top.add_row(banner, Text("link ok", style="green") if view.link_ok else
                Text("LINK LOST", style="bold white on red"))
    parts.append(top)
    if view.alert is not None and view.alert.level is Level.ALARM:
        parts.append(Text(f" {view.alert.text} ", style="bold white on red"))

    # The direction, biggest of all.
    parts.append(_direction_panel(view, units))

    # The phase (turnaround, countdown, paused...).
    state = Text(view.phase_text, style=_PHASE_STYLE.get(view.phase, "bold"))
    if view.countdown is not None:
        state.append(f"   STARTING IN {view.countdown}", style="bold white on red")
    parts.append(Align.center(state))

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", justify="right")
    grid.add_column()

    # Segment and what comes next.
    number = f"{view.segment_number}" if view.segment_number is not None else "-"
    segment = Text(f"{number}: {view.segment_label}", style="bold")
    if view.next_label is not None:
        segment.append("   next: ", style="dim")
        segment.append(view.next_label, style="bold")
        if view.face_next is not None and view.face_next is not view.face:
            segment.append(f" ({view.face_next.value})", style="bold")
        if view.next_in_s is not None:
            segment.append(" in ", style="dim")
            segment.append(clock_text(view.next_in_s), style="bold cyan")
    elif view.next_in_s is not None:
        segment.append("   last segment, ends in ", style="dim")
        segment.append(clock_text(view.next_in_s), style="bold cyan")
    grid.add_row("Segment", segment)

    seg_row = Table.grid(padding=(0, 1))
    seg_row.add_row(_bar(view.segment_elapsed_s, view.segment_duration_s),
                    Text(f"{clock_text(view.segment_elapsed_s)} / "
                         f"{clock_text(view.segment_duration_s)}"))
    grid.add_row("", seg_row)

    plan_row = Table.grid(padding=(0, 1))
    plan_row.add_row(_bar(view.plan_elapsed_s, view.plan_total_s),
                     Text(f"elapsed {clock_text(view.plan_elapsed_s)} · "
                          f"remaining {clock_text(view.plan_left_s)}"))
    grid.add_row("Workout", plan_row)

    # Speeds, distance, heart rate, the backward ceiling.
    speeds = Text("target ")
    if view.target is None:
        speeds.append("--", style="dim")
    else:
        speeds.append_text(_dual(*view.target.ordered(units)))
    speeds.append("   measured ")
    if view.current is None:
        speeds.append("--", style="dim")
    else:
        speeds.append_text(_dual(*view.current.ordered(units)))
    grid.add_row("Speed", speeds)
    grid.add_row("Distance", _dual(*distance_parts(view.distance_m, units)))
    grid.add_row("Heart rate", Text(view.heart_rate, style="bold magenta"
                                    if view.heart_rate != "unknown" else "dim"))
    grid.add_row("Backward limit", _dual(*view.backward_limit.ordered(units), style=""))
    parts.append(grid)

    # The last thing said.
    if view.said:
        level = view.said_level
        ann_style = {Level.ALARM: "bold white on red",
                     Level.WARNING: "bold black on yellow"}.get(level, "bold")
        parts.append(Panel(Text(view.said, style=ann_style),
                           border_style="red" if level is Level.ALARM else "yellow"
                           if level is Level.WARNING else "dim", title="said"))

    parts.append(Text(KEY_HELP, style="dim"))
    return Group(*parts)


class LiveDisplay:
    """Redraws :func:`render` ``refresh_hz`` times a second until cancelled.

    What was said comes from a :class:`~retrotread.presentation.Narrator`: pass the one
    the runner shares with speech and the companion page, or subscribe the display to
    the event bus and it keeps its own.
    """

    def __init__(
        self,
        snapshot_source: Callable[[], SessionSnapshot | None],
        units: str = "mph",
        *,
        console: Console | None = None,
        refresh_hz: float = 2,
        narrator: Narrator | None = None,
    ) -> None:
        if refresh_hz <= 0:
            raise ValueError("refresh_hz must be positive")
        self.snapshot_source = snapshot_source
        self.units = units
        self.console = console or Console()
        self.refresh_hz = refresh_hz
        self._own_narrator = narrator is None
        self.narrator = narrator or Narrator()
        self._source_failed = False

    def __call__(self, event: Event) -> None:
        if self._own_narrator:
            self.narrator(event)

    def render(self, snapshot: SessionSnapshot | None) -> RenderableType:
        if snapshot is None:
            return render(None, self.units)
        # What was said is the narrator's (never the snapshot's raw last announcement).
        return render(dataclasses.replace(snapshot, last_announcement=None), self.units,
                      said=self.narrator.said)

    def _snapshot(self) -> SessionSnapshot | None:
        try:
            return self.snapshot_source()
        except Exception:  # the screen must not take the session down
            if not self._source_failed:
                self._source_failed = True
                log.exception("the display could not read the session state")
            return None

    async def run(self) -> None:
        period = 1.0 / self.refresh_hz
        with Live(self.render(self._snapshot()), console=self.console, auto_refresh=False,
                  redirect_stdout=False, redirect_stderr=False) as live:
            while True:
                live.update(self.render(self._snapshot()), refresh=True)
                await asyncio.sleep(period)


# --------------------------------------------------------------------------- line printer
class EventPrinter:
    """One line per event: telemetry at most every 30 s of session time (or when the way
    the person faces changes), a ramp's speed commands as its first and last step (the
    last printed, with its own time, before the next line), and no echo of our own target
    from the machine."""

    def __init__(self, out: TextIO, units: str = "mph", *,
                 segment_count: int | None = None,
                 telemetry_every_s: float = TELEMETRY_PRINT_EVERY_S) -> None:
        self.out = out
        self.units = units
        self.segment_count = segment_count
        self.telemetry_every_s = telemetry_every_s
        self._last_telemetry_s: float | None = None
        self._last_facing: object = None
        self._in_ramp = False
        self._held: CommandSent | None = None
        self._origin_s: float | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, SessionStarted):  # times are printed from the session's start
            self._origin_s = event.time_s
        if isinstance(event, CommandSent) and event.op == "SetTargetSpeed":
            if self._in_ramp:
                self._held = event  # a step of a ramp: only its last one is printed
                return
            self._in_ramp = True
        elif isinstance(event, CommandSent):
            self._in_ramp = False
        line = self.format(event)
        if line is None:
            return
        held, self._held = self._held, None
        if held is not None and not isinstance(event, CommandSent):
            self._write(held, self.format(held) or "")
        self._write(event, line)

    def _write(self, event: Event, line: str) -> None:
        self.out.write(f"[{event.time_s - (self._origin_s or 0.0):6.1f}s] {line}\n")
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.out.flush()

    def _speed(self, speed_kmh: float | None, rounding: Rounding = Rounding.NEAREST) -> str:
        return speed_text(speed_kmh, self.units, rounding=rounding, unknown="--")

    def format(self, event: Event) -> str | None:
        """The line for ``event`` without its time prefix; None to print nothing."""
        if isinstance(event, SessionStarted):
            sim = " (SIMULATED)" if event.simulated else ""
            limit = self._speed(event.backward_ceiling_kmh, Rounding.DOWN)
            return (f"START {event.profile_name} on {event.device}{sim}: "
                    f"{clock_text(event.total_s)} planned, {clock_text(event.backward_s)} "
                    f"backward; backward limit {limit}")
        if isinstance(event, SegmentStarted):
            number = f"{event.index + 1}"
            if self.segment_count:
                number += f"/{self.segment_count}"
            facing = ("" if event.label.strip().lower() == event.direction.value
                      else f" facing {event.direction.value}")
            line = (f"SEGMENT {number} {event.label}{facing} {self._speed(event.speed_kmh)} "
                    f"for {clock_text(event.duration_s)}")
            line += f" (next: {event.next_label})" if event.next_label else " (last)"
            if event.cue:
                line += f": {event.cue}"
            return line
        if isinstance(event, Announcement):
            prefix = {"warning": "! ", "alarm": "!!! "}.get(event.level, "")
            return f"{prefix}{event.text}"
        if isinstance(event, TurnaroundPhase):
            line = f"TURNAROUND to {event.to_direction.value}: {event.phase.replace('_', ' ')}"
            if event.seconds_left is not None:
                line += f" ({event.seconds_left:.0f} s)"
            return line
        if isinstance(event, CommandSent):
            line = f"-> {words(event.op)}"
            if event.speed_kmh is not None:
                line += f" {kmh_text(event.speed_kmh, 2)} ({mph_text(event.speed_kmh)})"
            line += f" facing {event.facing.value}"
            if event.reason:
                line += f" ({event.reason})"
            return line
        if isinstance(event, CommandReplied):
            if event.result == "SUCCESS" and not event.error:
                return None  # success is the normal case; failures are worth a line
            what = event.result or "no reply"
            return f"<- {words(event.op)}: {what}" + (f" ({event.error})" if event.error else "")
        if isinstance(event, TelemetrySample):
            if (self._last_telemetry_s is not None and event.facing == self._last_facing
                    and event.time_s - self._last_telemetry_s < self.telemetry_every_s):
                return None
            self._last_telemetry_s = event.time_s
            self._last_facing = event.facing
            line = (f"   speed {self._speed(event.speed_kmh)} "
                    f"(target {self._speed(event.target_kmh)}) facing {event.facing.value}")
            if event.distance_m is not None:
                line += f", {distance_text(event.distance_m, self.units)} on the console"
            if event.heart_rate_bpm:  # 0: a machine without a sensor, not a reading
                line += f", HR {heart_rate_text(event.heart_rate_bpm)}"
            return line
        if isinstance(event, MachineStatusChanged):
            if event.status == "TargetSpeedChanged":
                return None  # mostly the echo of our own command; a console press is a
                # watchdog line of its own
            return f"machine: {words(event.status)}" + (f" ({event.detail})"
                                                        if event.detail else "")
        if isinstance(event, UserAction):
            verdict = "ok" if event.accepted else "refused"
            line = f"{event.source}: {event.command.value.replace('_', ' ')} {verdict}"
            return line + (f" ({event.detail})" if event.detail else "")
        if isinstance(event, WatchdogAction):
            return f"!! WATCHDOG {event.trigger}: {event.action} ({event.detail})"
        if isinstance(event, LinkStateChanged):
            if event.connected:
                return "LINK connected" + (f" ({event.detail})" if event.detail else "")
            return ("!! LINK LOST" + (f" ({event.detail})" if event.detail else "")
                    + ": the belt may still be running")
        if isinstance(event, SessionFinished):
            stop = "Stop sent" if event.stop_sent else "Stop not delivered: check the belt"
            return (f"FINISHED {event.outcome.value.replace('_', ' ')}: {event.reason} · "
                    f"{clock_text(event.elapsed_s)} total, {clock_text(event.backward_s)} "
                    f"backward, {distance_text(event.distance_m, self.units)} · {stop}")
        return f"{event.kind}"


# --------------------------------------------------------------------------- keys
_KEYS: dict[str, UserCommand] = {
    " ": UserCommand.TOGGLE_PAUSE,
    "p": UserCommand.TOGGLE_PAUSE,
    "r": UserCommand.READY,
    "s": UserCommand.STOP,
    "q": UserCommand.STOP,
    "+": UserCommand.SPEED_UP,
    "=": UserCommand.SPEED_UP,
    "-": UserCommand.SPEED_DOWN,
    "_": UserCommand.SPEED_DOWN,
    "n": UserCommand.SKIP,
}
_ESCAPES = {"\x1b[A": "+", "\x1bOA": "+", "\x1b[B": "-", "\x1bOB": "-"}


def key_to_command(ch: str) -> UserCommand | None:
    """The command for one key (case-insensitive), or None for any other key."""
    if len(ch) != 1:
        return None
    return _KEYS.get(ch.lower())


def keys_to_commands(data: str) -> list[UserCommand]:
    """Every command in a chunk of terminal input (arrow up/down = speed up/down)."""
    for sequence, key in _ESCAPES.items():
        data = data.replace(sequence, key)
    return [command for ch in data if (command := key_to_command(ch)) is not None]


class KeyReader:
    """Reads single keys from a terminal without blocking the event loop.

    On entering, a TTY ``stream`` is put in cbreak mode (keys arrive at once, Ctrl-C still
    works) and watched by the running loop; on leaving (or at exit) the terminal is
    restored. Not a TTY, no running loop, or no termios (Windows): it does nothing.
    """

    def __init__(self, handler: Callable[[UserCommand, str], bool], *,
                 stream: Any = None, accept_pipes: bool = False) -> None:
        self.handler = handler
        self.accept_pipes = accept_pipes  # also read commands from a pipe (--no-ui)
        self.stream = stream if stream is not None else sys.stdin
        self.active = False
        self._fd: int | None = None
        self._saved: list[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> KeyReader:
        if termios is None or tty is None:
            return self
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self
        try:
            fd = self.stream.fileno()
            if os.isatty(fd):
                self._saved = termios.tcgetattr(fd)
                tty.setcbreak(fd, termios.TCSANOW)
            elif not (self.accept_pipes and stat.S_ISFIFO(os.fstat(fd).st_mode)):
                return self
        except (AttributeError, OSError, ValueError, termios.error) as exc:
            log.debug("keys not available: %s", exc)
            self._saved = None
            return self
        self._fd = fd
        atexit.register(self._restore)
        try:
            loop.add_reader(fd, self._on_readable)
        except (NotImplementedError, OSError, ValueError) as exc:
            log.warning("cannot read keys on this event loop: %s", exc)
            self._restore()
            return self
        self._loop = loop
        self.active = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None and self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        self._loop = None
        self.active = False
        self._restore()
        self._fd = None

    def _restore(self) -> None:
        if self._fd is not None and self._saved is not None and termios is not None:
            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        self._saved = None
        with contextlib.suppress(Exception):
            atexit.unregister(self._restore)

    def _on_readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 64)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("stopped reading keys: %s", exc)
            self.close()
            return
        if not data:  # end of input
            self.close()
            return
        for command in keys_to_commands(data.decode("utf-8", errors="ignore")):
            try:
                self.handler(command, "key")
            except Exception:  # a key must never break the loop
                log.exception("key handler failed on %s", command)
