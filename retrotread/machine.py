"""The session core: one workout's logic as a pure state machine.

:meth:`SessionMachine.step` takes the time and one observation (``retrotread.
observations``: a tick, telemetry, a status, a command's end, a link event, a person's
command) and returns the events it caused. Commands for the machine wait in
:attr:`SessionMachine.control` (``retrotread.control_point``), which the driver asks for
the next write. No asyncio, no clock, no I/O: the async driver (``retrotread.session``)
and the plain loop (``retrotread.stepped``) feed it the same way.

The states and what moves between them (every other observation keeps the state):

| state | leaves on | to |
|---|---|---|
| STARTING | control taken, belt seen standing (and READY, on a real machine) | COUNTDOWN |
| COUNTDOWN | countdown over (belt standing) | RUNNING (Start, start speed) |
| RUNNING | the plan turns around / ends | TURNAROUND / FINISHING |
| RUNNING | pause (person, console, companion lost) | PAUSED |
| TURNAROUND | belt confirmed stopped | HOLD (timed) or WAITING_READY (READY key) |
| HOLD, WAITING_READY | READY / hold over | COUNTDOWN |
| PAUSED | resume from the machine / from afar | COUNTDOWN / WAITING_READY |
| FINISHING | belt confirmed stopped or time-out | FINISHED |
| any | a trigger (watchdog, stop, safety key, link lost, Ctrl-C) | STOPPING / RECONNECTING |
| STOPPING, RECONNECTING | link lost / link back | RECONNECTING / STOPPING |
| STOPPING | belt known stopped (or no answer for 15 s) | FINISHED (after closing) |

Every way out goes through :meth:`SessionMachine._close`: a bounded wait for the link,
then a last Stop if none was answered, then FINISHED with :class:`SessionFinished`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from retrotread import authority
from retrotread.authority import Gate, Verdict
from retrotread.control_point import (
    ControlPoint,
    Intent,
    IntentKind,
    Report,
    ReportKind,
    WireContext,
)
from retrotread.envelope import (
    ANNOUNCE_SPEED_CHANGE_KMH,
    SPEED_CHANGE_NOTICE_S,
    START_COUNTDOWN_S,
    START_SPEED_MAX_KMH,
    STOPPED_CONFIRM_S,
    STOPPED_SPEED_KMH,
    TURNAROUND_ANNOUNCE_S,
    TURNAROUND_MAX_STOPPED_S,
    Direction,
    Envelope,
    describe_kmh,
)
from retrotread.events import (
    Announcement,
    Event,
    LinkStateChanged,
    MachineStatusChanged,
    Outcome,
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
from retrotread.formatting import duration_words, kmh_text, minutes_text, mph_text
from retrotread.ftms import codec
from retrotread.observations import (
    CommandFinished,
    Failed,
    HeartRateObserved,
    Interrupted,
    LinkLost,
    LinkUp,
    Observation,
    ReconnectFailed,
    ReconnectImpossible,
    Stalled,
    StatusObserved,
    TelemetryObserved,
    Tick,
    UserRequest,
)
from retrotread.plan import (
    COUNTDOWN,
    FINISH_RAMP,
    RAMP,
    TURNAROUND_HOLD,
    TURNAROUND_STOP,
    Plan,
    PlanStep,
)
from retrotread.quirks import Quirks
from retrotread.treadmill import CommandStatus, Telemetry
from retrotread.units import quantize_down
from retrotread.watchdog import (
    Act,
    CompanionRule,
    HeartRateRule,
    Trigger,
    Watchdog,
    WatchdogLimits,
)

FIRST_TELEMETRY_WAIT_S = 3.0
"""At the start: how long to wait for a first sample (to see the belt standing)."""
STOP_REPEAT_S = 1.0
"""In STOPPING, an unanswered Stop is sent again this often."""


class State(enum.StrEnum):
    """Each name is its value. ``TURN_STOPPING`` and ``SAFE_STOP`` are older names of
    ``TURNAROUND`` and ``STOPPING`` (aliases, the same members)."""

    STARTING = "starting"
    RUNNING = "running"
    TURNAROUND = "turnaround"  # ramped down, Pause sent, waiting for the belt to stop
    WAITING_READY = "waiting_ready"
    HOLD = "hold"
    COUNTDOWN = "countdown"
    PAUSED = "paused"
    FINISHING = "finishing"
    STOPPING = "stopping"  # the safe stop: Stop until the belt is known stopped
    RECONNECTING = "reconnecting"
    FINISHED = "finished"
    TURN_STOPPING = "turnaround"
    SAFE_STOP = "stopping"


TURNING = frozenset({State.TURNAROUND, State.WAITING_READY, State.HOLD, State.COUNTDOWN})
STANDING = frozenset({State.WAITING_READY, State.HOLD, State.COUNTDOWN, State.PAUSED})
"""States in which the belt stands still once it has stopped."""
ENDING = frozenset({State.FINISHED, State.STOPPING, State.FINISHING, State.RECONNECTING})


class _Prep(enum.Enum):
    """The start, before the first countdown."""

    CONTROL = "control"  # Request Control sent, waiting for its answer
    FIRST_SAMPLE = "first_sample"  # waiting (3 s at most) to see the belt standing
    READY = "ready"  # a real machine: waiting for the person's READY
    DONE = "done"


class _Closing(enum.Enum):
    """After the loop: a bounded wait for the link, then a last Stop."""

    NO = "no"
    LINK = "link"
    LAST_STOP = "last_stop"


@dataclass(frozen=True)
class SegmentInfo:
    index: int
    label: str
    direction: Direction
    speed_kmh: float
    duration_s: float
    cue: str | None = None


@dataclass(frozen=True)
class SessionSettings:
    tick_hz: float = 10.0
    ready_gate: str = "hold"  # "key": wait for READY at each turnaround; "hold": timed
    hold_s: float = 10.0
    countdown_s: float = 3.0
    announce_s: float = TURNAROUND_ANNOUNCE_S
    start_countdown_s: float = START_COUNTDOWN_S
    wait_for_ready_at_start: bool = False  # real machines: an explicit user action first
    stop_confirm_timeout_s: float = 15.0
    reconnect_backoff_s: float = 0.5  # first wait after a failed reconnect, then doubled ...
    reconnect_backoff_max_s: float = 5.0  # ... up to this; the attempts never give up
    reconnect_timeout_s: float = 15.0  # one connection attempt that hangs this long failed
    unreachable_alarm_every_s: float = 10.0  # "pull the safety key" while unreachable
    interrupt_grace_s: float = 3.0  # Ctrl-C/SIGTERM: at most this long for the last Stop
    telemetry_event_every: int = 1
    user_step_kmh: float = 0.16  # 0.1 mph per +/- press
    max_idle_s: float = 600.0  # paused (or waiting for ready) this long ends the workout
    heart_rate_max_bpm: int | None = None  # the profile's ceiling (watchdog.HeartRateRule)


@dataclass(frozen=True)
class SessionResult:
    outcome: Outcome
    reason: str
    stop_sent: bool
    stop_confirmed: bool
    elapsed_s: float
    backward_s: float
    distance_m: float


@dataclass(frozen=True)
class MachineSetup:
    """What the machine is told once, at the start (besides the plan and envelope)."""

    profile_name: str = "workout"
    profile_path: str | None = None
    link_description: str = ""
    simulated: bool = False
    can_reconnect: bool = True
    reply_timeout_s: float = 2.0


class SessionMachine:
    def __init__(self, *, plan: Plan, segments: list[SegmentInfo], envelope: Envelope,
                 settings: SessionSettings | None = None, quirks: Quirks | None = None,
                 setup: MachineSetup | None = None,
                 watchdog_limits: WatchdogLimits | None = None) -> None:
        self.plan = plan
        self.segments = segments
        self.envelope = envelope
        self.settings = settings or SessionSettings()
        self.setup = setup or MachineSetup()
        self.period_s = 1.0 / self.settings.tick_hz
        self.watchdog = Watchdog(
            backward_ceiling_kmh=envelope.ceiling_kmh(Direction.BACKWARD),
            tick_period_s=self.period_s,
            limits=watchdog_limits or WatchdogLimits(reply_timeout_s=self.setup.reply_timeout_s),
        )
        self.control = ControlPoint(envelope, quirks)
        self.state = State.STARTING
        self.facing = Direction.FORWARD
        self.plan_time_s = 0.0
        self.cmd_kmh = 0.0  # the ramp-limited continuous setpoint
        self.user_offset_kmh = 0.0
        self.floor_kmh = envelope.floor_kmh()
        self.safety_key_stopped = False
        self.belt_started_s = 0.0
        self.belt_should_move = False
        self.segment_index = -1
        self.distance_m = 0.0
        self.backward_s = 0.0
        self.heart_rate_bpm: int | None = None
        self.last_announcement: str | None = None
        self.link_ok = True
        self.latest: Telemetry | None = None
        """The latest sample on the current connection (None: none yet)."""
        self.result: SessionResult | None = None
        """Set when the session is FINISHED."""
        self.heart_rule = (HeartRateRule(self.settings.heart_rate_max_bpm)
                           if self.settings.heart_rate_max_bpm is not None else None)
        self.heart_limited = False
        self.external_heart_rate = False
        """True when a strap feeds heart rates (Treadmill Data's is ignored)."""
        self.companion_rule: CompanionRule | None = None
        """``--companion-required``: the page server feeds it (watchdog.CompanionRule)."""
        self.interrupt_by: float | None = None
        """Ctrl-C/SIGTERM: the session ends by this time."""
        self._events: list[Event] = []
        self._started_s: float | None = None
        self._last_tick_s: float | None = None
        self._prep = _Prep.CONTROL
        self._prep_until = 0.0
        self._closing = _Closing.NO
        self._closing_until = 0.0
        self._closing_waits = False
        self._ready = False
        self._gate_kind = Gate.START
        self._gate_until: float | None = None
        self._stopped_since: float | None = None
        self._stopped_at: float | None = None
        self._announced_turn: set[float] = set()
        self._turn_steps = [s for s in plan.steps if s.kind == TURNAROUND_STOP]
        self._speed_changes = [
            s for s in plan.steps if s.kind in (RAMP, FINISH_RAMP)
            and abs(s.end_kmh - s.start_kmh) > ANNOUNCE_SPEED_CHANGE_KMH]
        self._next_speed_change = 0
        self._next_turn = 0
        self._countdown_said: int | None = None
        self._turn_to: Direction = Direction.FORWARD
        self._resume_plan_s: float | None = None
        self._pending_trigger: Trigger | None = None
        self._outcome: tuple[Outcome, str] | None = None
        self._expect_machine_stop = False
        self._expect_machine_start = False
        self._stall_detected = False
        self._standing = False  # the belt was seen standing still in a STANDING state
        self._telemetry_count = 0
        self._distance_origin_m: float | None = None
        self._stop_confirmed = False
        self._idle_since: float | None = None
        self._start_sent_s: float | None = None
        self._unreachable_alarm_s: float | None = None
        self._turn_stop_since: float | None = None
        self._warned_long = False
        self._safe_stop_started: float | None = None
        self._last_stop_repeat = 0.0

    # ------------------------------------------------------------------ the one entry
    def step(self, now: float, observation: Observation) -> list[Event]:
        """Take one observation at ``now``; return the events it caused."""
        if self._started_s is None:
            self._begin(now)
        if self.state is not State.FINISHED:
            match observation:
                case Tick():
                    self._on_tick(now)
                case TelemetryObserved(sample):
                    self._on_telemetry(sample)
                case StatusObserved(event):
                    self._on_status(event.time_s, event.status)
                case CommandFinished(outcome):
                    self._act_on(now, self.control.finished(outcome, self._wire_context()))
                case UserRequest(command, source, confidence, latency_s):
                    accepted, detail = self._handle_user(now, command, str(source))
                    self._emit(UserAction(now, command, str(source), accepted, detail,
                                          confidence, latency_s))
                case LinkLost(description):
                    self._on_link_lost(now, description)
                case LinkUp(description, quirks, connected):
                    self._on_link_up(now, description, quirks, connected)
                case ReconnectFailed(attempt, detail):
                    self.emit_watchdog(now, Trigger("link_lost", Act.RECONNECT,
                                                    f"attempt {attempt} failed: {detail}"))
                case ReconnectImpossible():
                    self.announce(now, "Cannot reconnect to the treadmill: stop the belt at "
                                  "the console or pull the safety key.", "alarm")
                case Interrupted(reason):
                    self._interrupt(now, reason)
                case HeartRateObserved(bpm):
                    self.observe_heart_rate(now, bpm)
                case Stalled(trigger):
                    if not self._stall_detected and self.state not in (
                            State.STOPPING, State.RECONNECTING) and self._closing is _Closing.NO:
                        self._stall_detected = True
                        self.trigger(now, trigger)
                case Failed(outcome, detail):
                    if self._outcome is None:
                        self._outcome = (outcome, detail)
                    self._close(now)
        if self._closing is not _Closing.NO:
            self._check_closing(now)
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ what the driver asks
    def take_write(self, now: float) -> codec.ControlPointRequest | None:
        """The next request for the control point (the driver writes it and reports
        :class:`CommandFinished`)."""
        if self.state is State.FINISHED or self.control.idle():
            return None
        request, reports = self.control.take_write(now, self._wire_context())
        self._act_on(now, reports)
        return request

    def drain(self) -> list[Event]:
        """Events caused outside :meth:`step` (by :meth:`take_write`)."""
        events, self._events = self._events, []
        return events

    @property
    def wants_reconnect(self) -> bool:
        """The link is down and the session still needs it (to send Stop)."""
        return (not self.link_ok and self.state is not State.FINISHED
                and self.interrupt_by is None and self._closing is not _Closing.LAST_STOP)

    def next_due_s(self) -> float | None:
        """The earliest time a write becomes possible that is not possible now."""
        if self.state is State.FINISHED:
            return None
        return self.control.next_due_s()

    def quiet_until(self, now: float) -> float:
        """Until when ticks would change nothing but the clocks, unless an observation
        comes first (a plain loop may jump its next tick there, and ticks again one period
        after any observation; the async driver never jumps). Only where every deadline
        is known: steady walking (the setpoint reached and constant, no watchdog timer
        running, no announcement due), the turnaround's hold and countdown, a pause.
        Never with something queued or a rule that needs every tick (heart rate,
        companion)."""
        last = self._last_tick_s
        if (last is None or self._prep is not _Prep.DONE or self.heart_rule is not None
                or self.companion_rule is not None or not self.control.idle()
                or self.interrupt_by is not None or self._closing is not _Closing.NO
                or self._stall_detected or self._ready):
            return now
        state = self.state
        if state is State.RUNNING:
            return max(now, self._quiet_walking(last))
        if state is State.HOLD and self._gate_until is not None:
            return max(now, min(self._gate_until, self._long_stop_warning_s()))
        if state in (State.WAITING_READY, State.PAUSED):
            idle_end = (self._idle_since + self.settings.max_idle_s
                        if self._idle_since is not None else now)
            if state is State.WAITING_READY:
                idle_end = min(idle_end, self._long_stop_warning_s())
            return max(now, idle_end)
        if state is State.COUNTDOWN and self._gate_until is not None and (
                self._countdown_said is not None):
            return max(now, self._gate_until - (self._countdown_said - 1))
        if state is State.TURNAROUND and self._turn_stop_since is not None and (
                not self._confirmed_stopped()):
            return max(now, self._turn_stop_since + self.settings.stop_confirm_timeout_s)
        return now

    def _long_stop_warning_s(self) -> float:
        if self._warned_long or self._stopped_at is None:
            return float("inf")
        return self._stopped_at + TURNAROUND_MAX_STOPPED_S

    def _quiet_walking(self, last: float) -> float:
        if self.control.last_sent_kmh is None:
            return last
        watchdog = self.watchdog
        if watchdog.timing():
            return last
        step = self.plan.step_at(self.plan_time_s)
        if step.start_kmh != step.end_kmh or step.direction is not self.facing:
            return last
        wanted = step.end_kmh + self.user_offset_kmh
        wanted = self.envelope.clamp(self.facing, wanted) if wanted > 0 else 0.0
        if abs(self.cmd_kmh - wanted) > 1e-9:
            return last
        plan_end = float(step.end_s)
        if self._next_turn < len(self._turn_steps):
            plan_end = min(plan_end, self._turn_steps[self._next_turn].start_s
                           - self.settings.announce_s)
        if self._next_speed_change < len(self._speed_changes):
            plan_end = min(plan_end, self._speed_changes[self._next_speed_change].start_s
                           - SPEED_CHANGE_NOTICE_S)
        quiet = last + (plan_end - self.plan_time_s) - self.period_s
        if watchdog.last_telemetry_s is not None:
            quiet = min(quiet, watchdog.last_telemetry_s + watchdog.limits.telemetry_stale_s)
        return quiet

    @property
    def finished(self) -> bool:
        return self.state is State.FINISHED

    @property
    def stop_sent(self) -> bool:
        return self.control.stop_sent

    def belt_moving(self) -> bool:
        """Whether the belt may be moving, by the latest sample. A sample without a
        speed is never taken for a stopped belt (no sample at all: nothing is known)."""
        latest = self.latest
        if latest is None:
            return False
        speed = latest.data.speed_kmh
        return speed is None or speed > STOPPED_SPEED_KMH

    # ------------------------------------------------------------------ plumbing
    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def emit_watchdog(self, now: float, trigger: Trigger) -> None:
        self._emit(WatchdogAction(now, trigger.name, trigger.action, trigger.detail))

    def announce(self, now: float, text: str, level: str = "info") -> None:
        self.last_announcement = text
        self._emit(Announcement(now, text, level))

    def _submit(self, now: float, kind: IntentKind, reason: str = "", speed_kmh: float = 0.0,
                *, strict: bool = False) -> None:
        self.control.submit(now, Intent(kind, speed_kmh, reason, strict))

    def _wire_context(self) -> WireContext:
        return WireContext(self.facing, self.floor_kmh, self.safety_key_stopped,
                           self.belt_moving())

    def _act_on(self, now: float, reports: list[Report]) -> None:
        for report in reports:
            trigger = report.trigger
            if report.kind is ReportKind.STRICT_DONE:
                assert report.outcome is not None
                self._prep_control_done(now, report.outcome.status is CommandStatus.ANSWERED,
                                        report.outcome.detail)
            elif report.kind is ReportKind.FLOOR_REFUSED:
                assert trigger is not None
                if not self.raise_floor(now, report.speed_kmh):
                    self.trigger(now, trigger)
            elif report.kind is ReportKind.STOP:
                assert trigger is not None
                self.trigger(now, trigger)
            elif trigger is not None:
                self.emit_watchdog(now, trigger)

    def trigger(self, now: float, trigger: Trigger, outcome: Outcome = Outcome.WATCHDOG) -> None:
        """A reason to stop at once (from the watchdog, the control point, a signal). The
        first one decides the outcome; later ones change nothing (the stop is under way)."""
        if self._pending_trigger is not None or self.state is State.FINISHED:
            return
        self._pending_trigger = trigger
        self._prep = _Prep.DONE
        if self._outcome is None:
            self._outcome = (outcome, trigger.detail)
        self.emit_watchdog(now, trigger)
        if trigger.action is Act.STOP:
            self.announce(now, f"Stopping the belt: {trigger.detail}", "alarm")
        self._enter_safe_stop(now)

    def _interrupt(self, now: float, reason: str) -> None:
        """Ctrl-C, SIGTERM: a controlled stop, and the session ends within
        ``interrupt_grace_s`` whatever state the link is in (a second one: at once).
        With the link up, a last Stop goes out; with the link down, nothing can."""
        first = self.interrupt_by is None
        self.interrupt_by = now + self.settings.interrupt_grace_s if first else now
        if self._pending_trigger is None:
            self.trigger(now, Trigger("interrupted", Act.STOP, reason), Outcome.INTERRUPTED)
        else:
            self.emit_watchdog(now, Trigger("interrupted", Act.STOP,
                                            f"{reason}: ending the session"
                                            + ("" if self.link_ok else
                                               " with the link down: no Stop can be sent")))
        if self._closing is _Closing.LINK:
            self._closing = _Closing.NO  # nobody waits for the link any more
            self._close(now)

    # ------------------------------------------------------------------ the start
    def _begin(self, now: float) -> None:
        self._started_s = now
        plan = self.plan
        self._emit(SessionStarted(
            now, self.setup.profile_name, self.setup.profile_path,
            self.setup.link_description, self.setup.simulated,
            self.envelope.ceiling_kmh(Direction.BACKWARD),
            float(plan.total_s), float(plan.backward_s), float(plan.distance_m)))
        self._submit(now, IntentKind.CONTROL, "session start", strict=True)

    def _prep_control_done(self, now: float, ok: bool, detail: str) -> None:
        if self._prep is not _Prep.CONTROL:
            return
        if not ok:
            self._prep = _Prep.DONE
            if self._pending_trigger is None:
                self._fail(now, Outcome.ERROR, detail)
            return
        if not self.setup.simulated:
            self.announce(now, "Clip the safety key to your clothing. It is the only true "
                          "emergency stop.", "warning")
        self._prep = _Prep.FIRST_SAMPLE
        self._prep_until = now + FIRST_TELEMETRY_WAIT_S
        self._tick_prep(now)

    def _tick_prep(self, now: float) -> None:
        if self._prep is _Prep.FIRST_SAMPLE:
            if self.latest is None and now < self._prep_until:
                return
            if self.belt_moving():
                speed = self.latest.data.speed_kmh if self.latest else None
                self._fail(now, Outcome.ERROR, (
                    f"the belt is already moving ({kmh_text(speed, 2)}): stop it at the console, "
                    "then start the workout again" if speed is not None else
                    "the treadmill reports no belt speed, so a stopped belt cannot be "
                    "confirmed before the start"))
                return
            first = self.plan.steps[0]
            self._turn_to = first.direction
            self.facing = first.direction
            if self.settings.wait_for_ready_at_start:
                self._prep = _Prep.READY
                self.state = State.WAITING_READY
                self.announce(now, "Stand on the side rails and press r to begin.")
                return
        elif self._prep is _Prep.READY:
            if not self._ready:
                return
            self._ready = False
        else:
            return
        self._prep = _Prep.DONE
        self.state = State.COUNTDOWN
        self._gate_until = now + self.settings.start_countdown_s
        self._countdown_said = None

    def _fail(self, now: float, outcome: Outcome, detail: str) -> None:
        if self._outcome is None:
            self._outcome = (outcome, detail)
        self._close(now)

    # ------------------------------------------------------------------ ticks
    def _on_tick(self, now: float) -> None:
        dt = now - (self._last_tick_s if self._last_tick_s is not None else now)
        self._last_tick_s = now
        if self._closing is not _Closing.NO:
            return
        if self.interrupt_by is not None and self._interrupted_done(now):
            self._close(now)
            return
        if self._prep is not _Prep.DONE:
            self._tick_prep(now)
            return
        if self.state is State.RECONNECTING:
            self._tick_unreachable(now)
            return
        if self.state is State.STOPPING:
            if self._safe_stop_done(now):
                self._close(now)
            return
        self._tick(now, dt)

    def _interrupted_done(self, now: float) -> bool:
        """After Ctrl-C/SIGTERM: over once the last Stop is answered and the belt is seen
        stopped, the link is down (nothing more can be sent), or the grace time is up."""
        assert self.interrupt_by is not None
        if now >= self.interrupt_by or not self.link_ok:
            return True
        return self.control.stop_acked and self.control.idle() and (
            self._confirmed_stopped() or self.safety_key_stopped)

    def _tick_unreachable(self, now: float) -> None:
        """RECONNECTING: while the machine cannot be reached, keep saying what to do."""
        last = self._unreachable_alarm_s
        if last is None or now - last >= self.settings.unreachable_alarm_every_s:
            self._unreachable_alarm_s = now
            self.announce(now, "Cannot reach the treadmill: the belt may still be running. "
                          "Pull the safety key or stop it at the console.", "alarm")

    def _tick(self, now: float, dt: float) -> None:
        state = self.state
        if state in (State.PAUSED, State.WAITING_READY):
            if self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since > self.settings.max_idle_s:
                self.trigger(now, Trigger(
                    "idle", Act.STOP, f"nothing happened for "
                    f"{minutes_text(self.settings.max_idle_s, digits=0)} while {state.value}: "
                    "ending the workout"), Outcome.STOPPED_BY_USER)
                return
        else:
            self._idle_since = None
        if state is State.RUNNING and self.companion_rule is not None:
            self._check_companion(now)
            state = self.state
        if state is State.RUNNING:
            self._tick_running(now, dt)
        elif state is State.TURNAROUND:
            if self._confirmed_stopped():
                self._stopped_at = now
                self._start_gate(now)
            elif self._turn_stop_since is not None and (
                    now - self._turn_stop_since > self.settings.stop_confirm_timeout_s):
                self.trigger(now, Trigger(
                    "belt_not_stopping", Act.STOP, "the belt did not stop for the turnaround "
                    f"within {self.settings.stop_confirm_timeout_s:.0f} s"))
        elif state in (State.WAITING_READY, State.HOLD):
            self._tick_gate(now)
        elif state is State.COUNTDOWN:
            self._tick_countdown(now)
        elif state is State.FINISHING and (self._confirmed_stopped() or (
                self._gate_until is not None and now > self._gate_until)):
            self._stop_confirmed = self._confirmed_stopped()
            if self._outcome is None:
                self._outcome = (Outcome.COMPLETED, "workout completed")
            self._close(now)
            return
        self._check_watchdog(now)

    def _check_companion(self, now: float) -> None:
        """``--companion-required``: every paired page lost while the belt moves."""
        assert self.companion_rule is not None
        trigger = self.companion_rule.check(now, belt_moving=self.belt_should_move)
        if trigger is not None:
            self.emit_watchdog(now, trigger)
            self.announce(now, "Companion page lost: pausing the belt. Hold the rails.",
                          "alarm")
            self._enter_paused(now, "companion page lost")

    def _check_watchdog(self, now: float) -> None:
        """Measured against commanded: on every tick and on every telemetry sample."""
        if self.state is not State.RUNNING or not self.belt_should_move:
            return
        window = self.watchdog.limits.overspeed_grace_s + self.period_s
        trigger = self.watchdog.check(
            now, commanded_kmh=self.control.reference_kmh(now, window) or self.cmd_kmh,
            facing=self.facing, belt_should_move=True, started_s=self.belt_started_s,
        )
        if trigger is not None:
            if trigger.action is Act.RETARGET:
                self.emit_watchdog(now, trigger)
                self.control.force_resend()
            else:
                self.trigger(now, trigger)

    def _confirmed_stopped(self) -> bool:
        since = self._stopped_since
        latest = self.latest
        if since is None or latest is None:
            return False
        return latest.time_s - since >= STOPPED_CONFIRM_S

    def _tick_gate(self, now: float) -> None:
        stopped_for = now - (self._stopped_at or now)
        if stopped_for > TURNAROUND_MAX_STOPPED_S and not self._warned_long:
            self._warned_long = True
            self.announce(now, "The belt has been stopped for 30 s: some consoles end the "
                          "workout now; if yours did, restart it at the console.", "warning")
        timed_out = self.state is State.HOLD and self._gate_until is not None and (
            now >= self._gate_until)
        if self._ready or timed_out:
            self._ready = False
            self._warned_long = False
            self.state = State.COUNTDOWN
            self._gate_until = now + self.settings.countdown_s
            self._countdown_said = None
            self._emit(TurnaroundPhase(now, "countdown", self._turn_to,
                                       self.settings.countdown_s))

    def _tick_countdown(self, now: float) -> None:
        assert self._gate_until is not None
        left = self._gate_until - now
        whole = int(left) + 1 if left > 0 else 0
        if whole != self._countdown_said and whole > 0:
            self._countdown_said = whole
            self.announce(now, f"{self._turn_to.value.capitalize()} in {whole}")
        if left > 0:
            return
        if self.belt_moving():  # (a sample without a speed counts as moving)
            self.trigger(now, Trigger("start_on_moving_belt", Act.STOP,
                                      "the belt is moving (or its speed is unknown) when it "
                                      "should stand still"))
            return
        # Start: never on a moving belt; begin at the start speed and ramp.
        self.facing = self._turn_to
        self._expect_machine_start = True
        self._expect_machine_stop = False
        self._submit(now, IntentKind.START, "countdown over")
        self._start_sent_s = now
        self.cmd_kmh = self.envelope.start_speed_kmh()
        self.user_offset_kmh = 0.0
        self.control.last_sent_kmh = None
        self.belt_should_move = True
        self.belt_started_s = now
        self.watchdog.reset_speed_checks()
        self.watchdog.last_telemetry_s = None
        self._emit(TurnaroundPhase(now, "start", self._turn_to))
        if self._resume_plan_s is not None:
            self.plan_time_s = self._resume_plan_s
            self._resume_plan_s = None
        self.state = State.RUNNING
        self._send_speed(now, self.cmd_kmh)

    def _send_speed(self, now: float, speed_kmh: float) -> None:
        quantized = quantize_down(speed_kmh, self.envelope.machine.increment_kmh)
        quantized = max(quantized, self.floor_kmh)
        if quantized != self.control.last_sent_kmh:
            self._submit(now, IntentKind.SPEED, speed_kmh=quantized)

    def _tick_running(self, now: float, dt: float) -> None:
        plan = self.plan
        self.plan_time_s = min(self.plan_time_s + dt, float(plan.total_s))
        if self.facing is Direction.BACKWARD:
            self.backward_s += dt
        target, direction, step = plan.setpoint_at(self.plan_time_s)
        segment = step.segment_index
        if segment != self.segment_index and segment >= 0:
            self._segment_changed(now, segment)
        self._maybe_announce_turn(now)
        self._maybe_announce_speed_change(now)
        kind = step.kind
        if direction is not self.facing and kind != TURNAROUND_STOP:
            # The plan wants the other direction: the belt must be stopped first.
            self._begin_turn_stop(now, direction)
            return
        finishing = self.plan_time_s >= float(plan.total_s) - 1e-9
        if target <= 0 or finishing:
            if finishing:
                self._begin_finish(now)
            elif kind == TURNAROUND_STOP or target <= 0:
                self._begin_turn_stop(now, self._next_direction(step))
            return
        stopping = kind in (TURNAROUND_STOP, FINISH_RAMP)
        wanted = target if stopping else target + self.user_offset_kmh
        if self._heart_rate_limits(now):
            wanted = min(wanted, self.floor_kmh)
            if self.state is not State.RUNNING:
                return
        wanted = self.envelope.clamp(self.facing, wanted) if wanted > 0 else 0.0
        self.cmd_kmh = self.envelope.ramp_step(self.facing, self.cmd_kmh, wanted, dt,
                                               stopping=stopping)
        self._send_speed(now, self.cmd_kmh)

    def _heart_rate_limits(self, now: float) -> bool:
        """The heart-rate rule (watchdog.HeartRateRule): hold the floor speed or stop."""
        rule = self.heart_rule
        if rule is None:
            return False
        limited, trigger = rule.check(now)
        if trigger is not None:
            if trigger.action is Act.STOP:
                self.trigger(now, trigger)
            else:
                self.emit_watchdog(now, trigger)
                level = "info" if trigger.action is Act.RELEASE else "warning"
                self.announce(now, trigger.detail[0].upper() + trigger.detail[1:] + ".", level)
        self.heart_limited = limited
        return limited

    def _next_direction(self, step: PlanStep) -> Direction:
        for later in self.plan.steps:
            if later.start_s >= step.end_s and later.direction is not self.facing:
                return later.direction
        return self.facing

    def _segment_changed(self, now: float, segment: int) -> None:
        self.segment_index = segment
        info = self.segments[segment] if 0 <= segment < len(self.segments) else None
        if info is None:
            return
        nxt = self.segments[segment + 1].label if segment + 1 < len(self.segments) else None
        self._emit(SegmentStarted(now, segment, info.label, info.direction, info.speed_kmh,
                                  info.duration_s, nxt, info.cue))
        if info.cue:
            self.announce(now, info.cue)

    def _maybe_announce_turn(self, now: float) -> None:
        turns = self._turn_steps
        while self._next_turn < len(turns) and (
                turns[self._next_turn].start_s < self.plan_time_s - 1):
            self._next_turn += 1
        if self._next_turn >= len(turns):
            return
        step = turns[self._next_turn]
        start = step.start_s
        if start not in self._announced_turn and start - self.plan_time_s <= (
                self.settings.announce_s):
            self._announced_turn.add(start)
            to = self._next_direction(step)
            self._emit(TurnaroundPhase(now, "announce", to, start - self.plan_time_s))
            self.announce(now, "Turning around soon: the belt will stop.", "warning")

    def _maybe_announce_speed_change(self, now: float) -> None:
        """Automatic speed changes above ``ANNOUNCE_SPEED_CHANGE_KMH`` are announced
        ``SPEED_CHANGE_NOTICE_S`` ahead (at once when the ramp follows a start)."""
        changes = self._speed_changes
        plan_s = self.plan_time_s
        while self._next_speed_change < len(changes) and (
                changes[self._next_speed_change].start_s <= plan_s + SPEED_CHANGE_NOTICE_S):
            step = changes[self._next_speed_change]
            self._next_speed_change += 1
            if step.start_s < plan_s - 1.0:
                continue  # skipped past it (a skip, a pause)
            ahead_s = step.start_s - plan_s
            when = f" in {duration_words(round(ahead_s))}" if ahead_s >= 1.0 else " now"
            speed = self.envelope.clamp(step.direction, step.end_kmh)
            if step.kind == FINISH_RAMP:
                self.announce(now, f"Slowing down to finish{when}.")
            elif step.end_kmh > step.start_kmh:
                self.announce(now, f"Speeding up to {mph_text(speed)}{when}.")
            else:
                self.announce(now, f"Slowing down to {mph_text(speed)}{when}.")

    # ------------------------------------------------------------------ state changes
    def _begin_turn_stop(self, now: float, to: Direction) -> None:
        self._turn_to = to
        self.state = State.TURNAROUND
        self._turn_stop_since = now
        self.belt_should_move = False
        self._expect_machine_stop = True
        self._expect_machine_start = False  # a Start's echo that never came is stale
        self.watchdog.reset_speed_checks()
        self._submit(now, IntentKind.PAUSE, "turnaround")
        # Resume the plan after the turnaround's stop/hold/countdown steps.
        resume = self.plan_time_s
        for step in self.plan.steps:
            if step.start_s >= self.plan_time_s - 1e-9 and step.direction is to and (
                    step.kind not in (TURNAROUND_STOP, TURNAROUND_HOLD, COUNTDOWN)):
                resume = float(step.start_s)
                break
        self._resume_plan_s = resume
        self._emit(TurnaroundPhase(now, "ramp_down", to))

    def _begin_finish(self, now: float) -> None:
        self.state = State.FINISHING
        self.belt_should_move = False
        self._expect_machine_stop = True
        self._expect_machine_start = False  # a Start's echo that never came is stale
        self._submit(now, IntentKind.STOP, "workout complete")
        self._gate_until = now + self.settings.stop_confirm_timeout_s
        self.announce(now, "Workout complete. The belt is stopping.")

    def _enter_paused(self, now: float, why: str) -> None:
        self.state = State.PAUSED
        self._expect_machine_stop = True
        self._expect_machine_start = False  # a Start's echo that never came is stale
        self.belt_should_move = False
        self.watchdog.reset_speed_checks()
        self._submit(now, IntentKind.PAUSE, why)
        self.announce(now, f"Paused: {why}. Press space to resume.")

    def _enter_safe_stop(self, now: float) -> None:
        """Stop the belt: Stop now if the link is up (STOPPING, repeated until the belt is
        known stopped), else RECONNECTING until the link comes back."""
        self.belt_should_move = False
        self._expect_machine_stop = True
        self._expect_machine_start = False  # a Start's echo that never came is stale
        self._safe_stop_started = None
        if self.link_ok:
            self.state = State.STOPPING
            self._submit(now, IntentKind.STOP, "safe stop")
        else:
            self.state = State.RECONNECTING

    def raise_floor(self, now: float, refused_kmh: float) -> bool:
        """The machine refused a speed near its floor: its real minimum is higher."""
        increment = self.envelope.machine.increment_kmh
        new_floor = round(max(self.floor_kmh, refused_kmh) + increment, 2)
        if new_floor > min(self.envelope.ceiling_kmh(self.facing), START_SPEED_MAX_KMH) \
                or new_floor > self.floor_kmh + 2:
            return False  # no start at or below 1.0 mph on this machine: stop instead
        self.floor_kmh = new_floor
        self.control.last_sent_kmh = None
        self.emit_watchdog(now, Trigger("machine_floor", Act.CLAMP,
                                        f"the machine refused {refused_kmh:.2f} km/h: using "
                                        f"{new_floor:.2f} km/h as its lowest speed"))
        return True

    def _start_gate(self, now: float, *, after_pause: bool = False) -> None:
        """The belt has stopped: the ready gate, then the countdown, then Start."""
        if after_pause:
            self.state = State.COUNTDOWN
            self._gate_until = now + self.settings.countdown_s
            self._countdown_said = None
            return
        self.state = State.WAITING_READY if self.settings.ready_gate == "key" else State.HOLD
        self._gate_kind = Gate.TURNAROUND
        self._ready = False
        self._gate_until = now + self.settings.hold_s
        self._emit(TurnaroundPhase(now, "stopped", self._turn_to))
        verb = "Press r when you are ready" if self.state is State.WAITING_READY else (
            f"Starting again in {self.settings.hold_s:.0f} s (r to go sooner)")
        self.announce(now, f"Hold the rails and turn around to face {self._turn_to.value}. "
                      f"{verb}.", "warning")

    def _safe_stop_done(self, now: float) -> bool:
        """In STOPPING (the link is up): repeat Stop until the machine answers it or the
        belt is seen stopped; over once the belt is known stopped. If the machine neither
        answers nor stops within ``stop_confirm_timeout_s``: alarm, and end."""
        control = self.control
        stopped = self._confirmed_stopped() or self.safety_key_stopped
        if stopped and (control.stop_acked or control.stop_sent or self.safety_key_stopped):
            self._stop_confirmed = True
            return control.idle()
        started = self._safe_stop_started
        if started is None:
            self._safe_stop_started = now
            self._last_stop_repeat = now
            return False
        if control.stop_acked and self._telemetry_silent(now):
            return control.idle()  # answered, and nothing can show more: done
        if not control.stop_acked and now - self._last_stop_repeat >= STOP_REPEAT_S and (
                control.idle()):
            self._last_stop_repeat = now
            self._submit(now, IntentKind.STOP, "repeat until confirmed")
        if now - started > self.settings.stop_confirm_timeout_s:
            self.announce(now, "The machine does not confirm the stop: pull the safety key.",
                          "alarm")
            return True
        return False

    def _telemetry_silent(self, now: float) -> bool:
        """No Treadmill Data for the stale limit, counted from the start of this stop."""
        latest = self.latest
        since = self._safe_stop_started if self._safe_stop_started is not None else now
        if latest is not None:
            since = max(since, latest.time_s)
        return now - since > self.watchdog.limits.telemetry_stale_s

    # ------------------------------------------------------------------ the end
    def _close(self, now: float) -> None:
        """Every way out: a bounded wait for the link (only when nobody asked to quit),
        then a last Stop if none was answered, then FINISHED."""
        if self._closing is not _Closing.NO:
            return
        if not self.link_ok and self.interrupt_by is None and self.setup.can_reconnect:
            self._closing = _Closing.LINK
            self._closing_until = now + 2 * self.settings.reconnect_timeout_s
            return
        self._last_stop(now)

    def _last_stop(self, now: float) -> None:
        self._closing = _Closing.LAST_STOP
        bound = self.setup.reply_timeout_s + 1.0
        if self.interrupt_by is None:
            bound = 2 * bound + 1.0  # room for one retry
        self._closing_until = now + bound
        self._closing_waits = self.link_ok and not self.control.stop_acked
        if self._closing_waits and self.control.idle():
            self._submit(now, IntentKind.STOP, "session ending")

    def _check_closing(self, now: float) -> None:
        if self.state is State.FINISHED:
            return
        if self._closing is _Closing.LINK:
            if not self.link_ok and now < self._closing_until:
                return
            self._last_stop(now)
        if not self._closing_waits or self.control.idle() or now >= self._closing_until:
            self._finish(now)

    def abandon(self, now: float) -> list[Event]:
        """The driver gives up waiting (the core failed while ending): FINISHED now."""
        if self.state is not State.FINISHED:
            if self._outcome is None:
                self._outcome = (Outcome.ERROR, "the session core failed while ending")
            self._finish(now)
        return self.drain()

    def _finish(self, now: float) -> None:
        self.state = State.FINISHED
        outcome, reason = self._outcome or (Outcome.ERROR, "ended without an outcome")
        started = self._started_s if self._started_s is not None else now
        elapsed = now - started
        self._emit(SessionFinished(now, outcome, reason, elapsed, self.backward_s,
                                   self.distance_m, self.control.stop_sent,
                                   self.control.stop_acked))
        self.result = SessionResult(outcome, reason, self.control.stop_sent,
                                    self._stop_confirmed, elapsed, self.backward_s,
                                    self.distance_m)

    # ------------------------------------------------------------------ observations
    def _on_telemetry(self, telemetry: Telemetry) -> None:
        self.latest = telemetry
        data = telemetry.data
        now = telemetry.time_s
        self.watchdog.observe_telemetry(now, data.speed_kmh)
        speed = data.speed_kmh
        if speed is not None and speed <= STOPPED_SPEED_KMH:
            if self._stopped_since is None:
                self._stopped_since = now
        elif speed is not None:
            self._stopped_since = None
        if data.total_distance_m is not None:
            if self._distance_origin_m is None:
                self._distance_origin_m = float(data.total_distance_m)
            self.distance_m = max(0.0, data.total_distance_m - self._distance_origin_m)
        if data.heart_rate_bpm is not None and not self.external_heart_rate:
            self.observe_heart_rate(now, data.heart_rate_bpm)
        self._check_watchdog(now)  # a runaway is caught on the sample, not a tick later
        self._check_standing(now, speed)
        self._telemetry_count += 1
        if self._telemetry_count % max(1, self.settings.telemetry_event_every) == 0:
            self._emit(TelemetrySample(
                now, speed, data.total_distance_m, data.elapsed_time_s,
                self.heart_rate_bpm if self.external_heart_rate else data.heart_rate_bpm,
                self.control.last_sent_kmh or 0.0, self.facing, step_count=data.step_count))

    def _check_standing(self, now: float, speed_kmh: float | None) -> None:
        """Once the belt stood still for a turnaround, a countdown or a pause, it must
        not move until our Start (watchdog.Watchdog.check_standing)."""
        if self.state not in STANDING or self._closing is not _Closing.NO:
            self._standing = False
            return
        if not self._standing:
            self._standing = self._confirmed_stopped()
            return
        trigger = self.watchdog.check_standing(speed_kmh)
        if trigger is not None:
            self.trigger(now, trigger)

    def observe_heart_rate(self, now: float, bpm: int | None) -> None:
        """A heart-rate reading from Treadmill Data or from a strap."""
        if bpm is not None and bpm > 0:
            self.heart_rate_bpm = bpm
        if self.heart_rule is not None:
            self.heart_rule.observe(now, bpm)

    def _on_status(self, now: float, status: codec.MachineStatus) -> None:
        detail = ""
        if isinstance(status, codec.TargetSpeedChanged):
            detail = (kmh_text(status.speed_kmh, 2) if status.speed_kmh is not None
                      else "speed not given")
        elif isinstance(status, codec.StoppedOrPausedByUser):
            detail = status.action.name.lower()
        self._emit(MachineStatusChanged(now, type(status).__name__, detail))
        if isinstance(status, codec.StoppedBySafetyKey):
            self.safety_key_stopped = True
            self.announce(now, "Safety key pulled: the workout is over.", "alarm")
            self.trigger(now, Trigger("safety_key", Act.STOP, "the machine reports its safety "
                                      "key was pulled"), Outcome.SAFETY_KEY)
        elif isinstance(status, codec.ControlPermissionLost):
            if self.state not in (State.STOPPING, State.FINISHING):
                self.emit_watchdog(now, Trigger("control_lost", Act.RE_REQUEST_CONTROL,
                                                "the machine reports control permission lost"))
                self._submit(now, IntentKind.CONTROL, "control lost")
        elif isinstance(status, codec.TargetSpeedChanged):
            self._check_console_speed(now, status.speed_kmh)
        elif isinstance(status, codec.StoppedOrPausedByUser):
            if self._expect_machine_stop:
                return
            if status.action is codec.StopPause.STOP:
                self.announce(now, "The belt was stopped at the console.", "warning")
                self.trigger(now, Trigger("console_stop", Act.STOP, "stopped at the console"),
                             Outcome.STOPPED_BY_USER)
            elif self.state is State.RUNNING:
                self._enter_paused(now, "paused at the console")
        elif isinstance(status, codec.StartedOrResumedByUser):
            if self._expect_machine_start:
                self._expect_machine_start = False
                return
            if self.state in (State.TURNAROUND, State.WAITING_READY, State.HOLD,
                              State.COUNTDOWN, State.PAUSED):
                self.trigger(now, Trigger("console_start", Act.STOP,
                                          "the belt was started at the console while it "
                                          "should stand still"))
            elif self.state in (State.STOPPING, State.FINISHING) or (
                    self._closing is not _Closing.NO):
                # Started again while the session stops it: stop it again, and see it
                # stand still before the session ends.
                self.emit_watchdog(now, Trigger("console_start", Act.STOP,
                                                "the belt was started at the console while "
                                                "the session stops it: Stop again"))
                self.control.require_new_stop()
                self._stopped_since = None
                self._stop_confirmed = False
                self._submit(now, IntentKind.STOP, "started at the console while stopping")

    def _check_console_speed(self, now: float, speed_kmh: float | None) -> None:
        if speed_kmh is None:
            # The machine says its target changed but not to what: command ours again.
            if self.state is State.RUNNING:
                self.emit_watchdog(now, Trigger(
                    "console_speed_change", Act.CLAMP, "the machine reports a new target "
                    "speed without its value: commanding the plan's speed again"))
                self.control.force_resend()
            return
        if any(abs(speed_kmh - sent) < 0.011 for sent in self.control.recent_kmh):
            return
        if (self._start_sent_s is not None
                and now - self._start_sent_s <= 2 * self.setup.reply_timeout_s + 1.0
                and speed_kmh <= self.envelope.start_speed_kmh() + 0.011):
            return  # the machine setting its own start speed as it starts: not the console
        if self.state is not State.RUNNING:
            return
        allowed = self.envelope.is_allowed(self.facing, speed_kmh)
        trigger = self.watchdog.console_change(now, speed_kmh, allowed)
        if trigger.action is Act.STOP:
            self.trigger(now, trigger)
            return
        self.emit_watchdog(now, trigger)
        self.control.force_resend()  # force the plan's speed out again

    def _on_link_lost(self, now: float, description: str) -> None:
        """The current link dropped (in any state, as often as it happens): reconnect and
        stop. The driver reconnects; Stop goes out once the link is back."""
        if not self.link_ok:
            return
        self.link_ok = False
        self.control.link_lost()
        self._emit(LinkStateChanged(now, False, f"{description} lost"))
        if self._closing is not _Closing.NO:
            return
        self.announce(now, "Link to the treadmill lost: the belt may still be running. "
                      "Hold the rails; pull the safety key if needed.", "alarm")
        self._unreachable_alarm_s = now
        if self._pending_trigger is None:
            self.trigger(now, Trigger("link_lost", Act.STOP, "the link to the treadmill was "
                                      "lost; reconnecting to stop the belt"))
        else:
            self.emit_watchdog(now, Trigger("link_lost", Act.RECONNECT, "the link was lost "
                                            "again; reconnecting to stop the belt"))
            self._enter_safe_stop(now)

    def _on_link_up(self, now: float, description: str, quirks: Quirks,
                    connected: bool) -> None:
        """A new connection to the machine: from now on only Stop (never a resume)."""
        self.control.quirks = quirks
        self.control.link_lost()
        self.latest = None
        if not connected:  # dropped again before we listened
            return
        self.link_ok = True
        self._emit(LinkStateChanged(now, True, f"reconnected to {description}"))
        if self.interrupt_by is not None:
            return
        self.emit_watchdog(now, Trigger("link_lost", Act.RECONNECT,
                                        "reconnected: sending Stop at once, never resuming"))
        self._stopped_since = None
        self.control.stop_acked = False
        self._enter_safe_stop(now)

    # ------------------------------------------------------------------ user commands
    def _gate(self) -> Gate:
        """Which ready gate is open now (what a READY or START would pass)."""
        if self.state is State.PAUSED or (
                self.state is State.WAITING_READY and self._gate_kind is Gate.RESUME):
            return Gate.RESUME
        if self.state in (State.WAITING_READY, State.HOLD):
            return self._gate_kind
        return Gate.NONE

    def _handle_user(self, now: float, command: UserCommand, source: str) -> tuple[bool, str]:
        active = self.state not in ENDING and self._closing is _Closing.NO
        if command is UserCommand.TOGGLE_PAUSE:
            command = UserCommand.RESUME if self.state is State.PAUSED else UserCommand.PAUSE
        decision = authority.decide(command, source, self._gate())
        if decision.verdict is Verdict.REFUSE:
            return False, decision.reason
        if command is UserCommand.STOP:
            if not active:
                return False, "already stopping"
            self.trigger(now, Trigger("user_stop", Act.STOP, f"stop requested ({source})"),
                         Outcome.STOPPED_BY_USER)
            return True, ""
        if not active:
            return False, "the session is ending"
        if command is UserCommand.PAUSE:
            if self.state is not State.RUNNING:
                return False, f"cannot pause while {self.state.value}"
            self._enter_paused(now, f"paused ({source})")
            return True, ""
        if command is UserCommand.START and self.state is State.PAUSED:
            command = UserCommand.RESUME  # the deliberate hold ends the pause
        elif command is UserCommand.START:
            command = UserCommand.READY  # ... or passes the gate that is open
        if command is UserCommand.RESUME:
            if self.state is not State.PAUSED:
                return False, "not paused"
            self._resume_plan_s = self.plan_time_s
            self._turn_to = self.facing
            if decision.verdict is Verdict.TO_GATE:
                self._resume_gate(now, source)
                return True, decision.reason
            self._start_gate(now, after_pause=True)
            return True, ""
        if command is UserCommand.READY:
            if self.state in (State.WAITING_READY, State.HOLD):
                self._ready = True
                if self._prep is _Prep.READY:
                    self._tick_prep(now)
                return True, ""
            return False, "nothing is waiting for ready"
        if command is UserCommand.SKIP:
            if self.state is not State.RUNNING:
                return False, f"cannot skip while {self.state.value}"
            return self._skip()
        if command in (UserCommand.SPEED_UP, UserCommand.SPEED_DOWN):
            return self._adjust_speed(now, command)
        return False, "unknown command"

    def _adjust_speed(self, now: float, command: UserCommand) -> tuple[bool, str]:
        if self.state is not State.RUNNING:
            return False, "speed can only be adjusted while walking"
        step = self.settings.user_step_kmh
        self.user_offset_kmh += step if command is UserCommand.SPEED_UP else -step
        base, _, _ = self.plan.setpoint_at(self.plan_time_s)
        wanted = base + self.user_offset_kmh
        ceiling = self.envelope.ceiling_kmh(self.facing)
        if wanted > ceiling:
            self.user_offset_kmh = ceiling - base
            self.announce(now, f"Already at the {self.facing.value} ceiling "
                          f"({describe_kmh(ceiling)}).", "warning")
            return False, "at the ceiling"
        if wanted < self.floor_kmh:
            self.user_offset_kmh = self.floor_kmh - base
            return False, "at the machine's lowest speed"
        return True, f"offset {self.user_offset_kmh:+.2f} km/h"

    def _resume_gate(self, now: float, source: str) -> None:
        """A resume from anyone but the person at the machine: the belt stays stopped at
        the ready gate until that person presses r or holds START on the page."""
        self.state = State.WAITING_READY
        self._gate_kind = Gate.RESUME
        self._ready = False
        self._gate_until = None
        self._stopped_at = now
        self._warned_long = True  # a pause, not a turnaround: no console time-out warning
        self.announce(now, f"Resume asked for ({source}). The belt starts only when you are "
                      "ready: press r, or hold START on the page.", "warning")

    def _skip(self) -> tuple[bool, str]:
        current = self.segment_index
        for step in self.plan.steps:
            if step.segment_index > current and step.start_s > self.plan_time_s:
                self.plan_time_s = step.start_s
                return True, f"skipped to {step.start_s:.0f} s of the plan"
        return False, "no further segment"

    # ------------------------------------------------------------------ display
    def snapshot(self, now: float, banner: str = "") -> SessionSnapshot:
        info = (self.segments[self.segment_index]
                if 0 <= self.segment_index < len(self.segments) else None)
        nxt = (self.segments[self.segment_index + 1].label
               if 0 <= self.segment_index + 1 < len(self.segments) else None)
        seg_start, seg_end = self._segment_bounds()
        latest = self.latest
        countdown = None
        if self.state in (State.COUNTDOWN, State.HOLD) and self._gate_until is not None:
            countdown = max(0.0, self._gate_until - now)
        return SessionSnapshot(
            time_s=now,
            state=self.state.value,
            facing=self.facing,
            segment_index=self.segment_index,
            segment_label=info.label if info else "starting",
            segment_elapsed_s=max(0.0, self.plan_time_s - seg_start),
            segment_duration_s=max(0.0, seg_end - seg_start),
            next_label=nxt,
            next_change_in_s=max(0.0, seg_end - self.plan_time_s) if info else None,
            plan_elapsed_s=self.plan_time_s,
            plan_total_s=float(self.plan.total_s),
            target_kmh=self.control.last_sent_kmh or 0.0,
            measured_kmh=latest.data.speed_kmh if latest else None,
            distance_m=self.distance_m,
            heart_rate_bpm=self.heart_rate_bpm,
            backward_ceiling_kmh=self.envelope.ceiling_kmh(Direction.BACKWARD),
            banner=banner,
            last_announcement=self.last_announcement,
            countdown_s=countdown,
            link_ok=self.link_ok,
            **self._presentation_fields(info),
        )

    def _presentation_fields(self, info: SegmentInfo | None) -> dict[str, Any]:
        """What the presentation needs beyond the basic state (see SessionSnapshot)."""
        turning = self.state in TURNING
        if self.segment_index < 0:
            turn_to: Direction | None = self.plan.steps[0].direction
        elif turning:
            turn_to = self._turn_to
        else:
            turn_to = None
        following = (self.segments[self.segment_index + 1]
                     if 0 <= self.segment_index + 1 < len(self.segments) else None)
        target = None
        if info is not None:
            target = self.envelope.clamp(info.direction,
                                         max(self.floor_kmh,
                                             info.speed_kmh + self.user_offset_kmh))
        return {
            "turn_to": turn_to,
            "next_direction": following.direction if following else None,
            "segment_target_kmh": target,
            "turn_started_s": self._turn_stop_since if turning else None,
            "resume_plan_s": self._resume_plan_s if turning else None,
            "simulated": self.setup.simulated,
            "companion_required": self.companion_rule is not None,
        }

    def _segment_bounds(self) -> tuple[float, float]:
        start, end = self.plan_time_s, self.plan_time_s
        first = True
        for step in self.plan.steps:
            if step.segment_index == self.segment_index:
                if first:
                    start, first = float(step.start_s), False
                end = float(step.end_s)
        return start, end
