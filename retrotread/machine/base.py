"""The session machine's fields and the few transitions every part uses.

:class:`MachineBase` holds the whole state of one workout (what the belt should do, the
plan clock, the gates, the watchdog, the control point) and the plumbing: emit an event,
announce, hand an intent to the control point. Its transitions are the ones several
parts need: pause, the safe stop, the ready gate after a stop.
"""

from __future__ import annotations

from retrotread.authority import Gate
from retrotread.control_point import ControlPoint, Intent, IntentKind, WireContext
from retrotread.envelope import (
    ANNOUNCE_SPEED_CHANGE_KMH,
    STOPPED_CONFIRM_S,
    STOPPED_SPEED_KMH,
    Direction,
    Envelope,
)
from retrotread.events import Announcement, Event, Outcome, TurnaroundPhase, WatchdogAction
from retrotread.ftms.client import Telemetry
from retrotread.machine.types import (
    Closing,
    MachineSetup,
    Prep,
    ReadyGate,
    SegmentInfo,
    SessionResult,
    SessionSettings,
    State,
)
from retrotread.plan import FINISH_RAMP, RAMP, TURNAROUND_STOP, Plan
from retrotread.quirks import Quirks
from retrotread.watchdog import CompanionRule, HeartRateRule, Trigger, Watchdog, WatchdogLimits


class MachineBase:
    """The state of one workout and the plumbing every part uses."""

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
        self._reference_window_s = self.watchdog.limits.overspeed_grace_s + self.period_s
        """How far back a commanded speed counts for the speed checks (every sample and
        tick asks)."""
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
        self._prep = Prep.CONTROL
        self._prep_until = 0.0
        self._closing = Closing.NO
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

    def _confirmed_stopped(self) -> bool:
        since = self._stopped_since
        latest = self.latest
        if since is None or latest is None:
            return False
        return latest.time_s - since >= STOPPED_CONFIRM_S

    def drain(self) -> list[Event]:
        """Events caused outside :meth:`step` (by :meth:`take_write`)."""
        events, self._events = self._events, []
        return events

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

    def _start_gate(self, now: float, *, after_pause: bool = False) -> None:
        """The belt has stopped: the ready gate, then the countdown, then Start."""
        if after_pause:
            self.state = State.COUNTDOWN
            self._gate_until = now + self.settings.countdown_s
            self._countdown_said = None
            return
        by_key = self.settings.ready_gate is ReadyGate.KEY
        self.state = State.WAITING_READY if by_key else State.HOLD
        self._gate_kind = Gate.TURNAROUND
        self._ready = False
        self._gate_until = now + self.settings.hold_s
        self._emit(TurnaroundPhase(now, "stopped", self._turn_to))
        verb = "Press r when you are ready" if self.state is State.WAITING_READY else (
            f"Starting again in {self.settings.hold_s:.0f} s (r to go sooner)")
        self.announce(now, f"Hold the rails and turn around to face {self._turn_to.value}. "
                      f"{verb}.", "warning")
