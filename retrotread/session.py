"""The session: the async control loop that drives one workout.

It ticks at a steady rate (10 Hz by default) against absolute deadlines, follows the
compiled plan, and sends Set Target Speed only when the quantized setpoint changes.
Speeds pass three gates before they reach the wire: the plan (already inside the
envelope), the session's own ramp limiter, and the commander's final envelope clamp for
the direction the person faces. The watchdog (``retrotread.watchdog``) is consulted on
every tick and from a task of its own (a stalled loop). Every path out ends with the belt
commanded to stop: a planned ramp-down at the finish, an immediate Stop on error, Ctrl-C,
SIGTERM or any watchdog trigger. A reconnect never restarts the belt.

Commands go through :class:`Commander`, one task that owns the control point: speed
requests coalesce to the latest, a Stop jumps the queue, and failures follow the rules
in docs/safety.md (one retry on time-out, two unanswered commands in a row stop the belt,
one Request Control on lost permission, then stop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from retrotread import authority
from retrotread.authority import Gate, Verdict
from retrotread.clock import Clock
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
from retrotread.errors import (
    ControlPointError,
    ControlPointTimeoutError,
    LinkClosedError,
    LinkError,
    RetrotreadError,
    TreadmillError,
)
from retrotread.events import (
    Announcement,
    CommandReplied,
    CommandSent,
    EventBus,
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
from retrotread.ftms import codec
from retrotread.plan import (
    COUNTDOWN,
    FINISH_RAMP,
    RAMP,
    TURNAROUND_HOLD,
    TURNAROUND_STOP,
    Plan,
    PlanStep,
)
from retrotread.treadmill import CommandReply, StatusEvent, Telemetry, Treadmill
from retrotread.units import kmh_to_mph, quantize_down, quantize_up
from retrotread.watchdog import (
    CompanionRule,
    HeartRateRule,
    Trigger,
    Watchdog,
    WatchdogLimits,
)

log = logging.getLogger(__name__)

ReconnectFactory = Callable[[], Awaitable[Treadmill]]


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    TURN_STOPPING = "turnaround"  # ramped down, Pause sent, waiting for the belt to stop
    WAITING_READY = "waiting_ready"
    HOLD = "hold"
    COUNTDOWN = "countdown"
    PAUSED = "paused"
    FINISHING = "finishing"
    SAFE_STOP = "stopping"
    RECONNECTING = "reconnecting"
    FINISHED = "finished"


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
class _Intent:
    kind: str  # speed | start | pause | stop | control
    speed_kmh: float = 0.0
    reason: str = ""


class Commander:
    """The one task that writes to the control point."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._pending: collections.deque[_Intent] = collections.deque()
        self._wake = asyncio.Event()
        self.last_sent_kmh: float | None = None
        self.recent_kmh: collections.deque[float] = collections.deque(maxlen=8)
        self.stop_sent = False
        """A Stop reached the machine's control point (its write was accepted) since the
        last Start: what the summary calls "Stop sent"."""
        self.stop_acked = False  # a Stop was answered "success" by the machine
        self.busy = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.unanswered = 0
        """Commands in a row that got no reply, whatever they were: the second is a stop."""
        self.started = False
        """The machine was started (Start answered, or the belt seen moving) and not
        stopped or paused since: what ``must_start_before_speed`` machines need."""
        self.history: collections.deque[tuple[float, float]] = collections.deque(maxlen=64)
        self.wire_kmh: float | None = None  # last speed on the wire since Start/Stop/Pause
        self._force = False
        self.wire_s = 0.0

    def reference_kmh(self, now: float, window_s: float) -> float | None:
        """The highest speed commanded in the last ``window_s``: a belt slowing down at
        its own rate (and telemetry that lags) is compared with what it was told."""
        history = self.history
        while history and now - history[0][0] > window_s:  # oldest first: drop expired
            history.popleft()
        recent = [kmh for _, kmh in history]
        if self.last_sent_kmh is not None:
            recent.append(self.last_sent_kmh)
        return max(recent) if recent else None

    def submit(self, intent: _Intent) -> None:
        if intent.kind == "speed":
            self._pending = collections.deque(i for i in self._pending if i.kind != "speed")
            self.last_sent_kmh = intent.speed_kmh
            self.recent_kmh.append(intent.speed_kmh)
            self.history.append((self.session.clock.now(), intent.speed_kmh))
        elif intent.kind == "stop":
            self._pending.clear()
        self._pending.append(intent)
        self._idle.clear()
        self._wake.set()

    def stop_queued(self) -> bool:
        return any(i.kind == "stop" for i in self._pending)

    def idle(self) -> bool:
        return not self._pending and not self.busy

    async def wait_idle(self) -> None:
        """Until every queued command has been carried out (or failed)."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                intent = self._pending.popleft()
                self.busy = True
                try:
                    await self._execute(intent)
                finally:
                    self.busy = False
            self._idle.set()

    def force_resend(self) -> None:
        """Send the current setpoint again even if it is what we last sent (the console
        changed the machine's target, or the belt ignored it)."""
        self.last_sent_kmh = None
        self._force = True

    def _ramp_limited(self, wanted_kmh: float) -> float:
        """The last gate but one: whatever was queued (replies may be slow, commands
        coalesce), the speed on the wire never steps faster than the ramp limit from the
        speed last sent, and the first speed after a Start is the start speed."""
        session = self.session
        env = session.envelope
        first = max(session.floor_kmh, env.start_speed_kmh())
        if self.wire_kmh is None:
            return min(wanted_kmh, first)
        dt = max(0.0, session.clock.now() - self.wire_s)
        increment = env.machine.increment_kmh
        if wanted_kmh > self.wire_kmh:
            # (1 ms of slack: tick times carry floating-point noise)
            step = env.ramp_kmh_per_s(session.facing) * (dt + 0.001)
            return max(self.wire_kmh, min(wanted_kmh, quantize_down(self.wire_kmh + step,
                                                                    increment)))
        step = max(env.ramp_kmh_per_s(session.facing), env.ramp_stop_kmh_per_s) * (dt + 0.001)
        return min(self.wire_kmh, max(wanted_kmh, quantize_up(self.wire_kmh - step, increment)))

    def _delivered(self, intent: _Intent, error: LinkError | TreadmillError) -> None:
        """A failed command may still have reached the machine: a Stop that did counts as
        sent (and a Start that did makes any earlier Stop history)."""
        if not error.delivered:
            return
        if intent.kind == "stop":
            self.stop_sent = True
        elif intent.kind == "start":
            self.stop_acked = self.stop_sent = False

    def _request(self, intent: _Intent) -> codec.ControlPointRequest:
        session = self.session
        if intent.kind == "speed":
            facing = session.facing
            limited = self._ramp_limited(intent.speed_kmh)
            if limited != intent.speed_kmh:
                # Sent in steps: the session sends the rest on its next ticks.
                self.last_sent_kmh = limited
                self.recent_kmh.append(limited)  # its status echo is ours, not the console's
                intent = _Intent("speed", limited, intent.reason)
            speed = session.envelope.clamp(facing, intent.speed_kmh)
            if speed != intent.speed_kmh:  # the final gate caught something: say so
                session.emit_watchdog(Trigger(
                    "envelope", "clamp",
                    f"{describe_kmh(intent.speed_kmh)} is outside the envelope facing "
                    f"{facing.value}; sending {describe_kmh(speed)}",
                ))
            return codec.SetTargetSpeed(speed_kmh=speed)
        if intent.kind == "start":
            return codec.StartOrResume()
        if intent.kind == "pause":
            if session.treadmill.quirks.ignores_pause:
                # Its Pause stops the workout anyway: say so (Stop), and wait as for one.
                return codec.StopOrPause(action=codec.StopPause.STOP)
            return codec.StopOrPause(action=codec.StopPause.PAUSE)
        if intent.kind == "control":
            return codec.RequestControl()
        return codec.StopOrPause(action=codec.StopPause.STOP)

    async def _execute(self, intent: _Intent) -> None:
        session = self.session
        if session.safety_key_stopped and intent.kind != "stop":
            return
        request = self._request(intent)
        if (isinstance(request, codec.SetTargetSpeed) and self.wire_kmh is not None
                and request.speed_kmh == self.wire_kmh and not self._force):
            return  # the ramp limit allows no step yet: the next tick asks again
        if isinstance(request, codec.SetTargetSpeed):
            self._force = False
            if session.treadmill.quirks.must_start_before_speed and not self.started:
                # This machine ignores a speed until it runs: it is sent after the Start.
                self.last_sent_kmh = None
                return
        for attempt in (1, 2):
            if attempt > 1 and intent.kind != "stop" and self.stop_queued():
                return  # a Stop is waiting: never retry anything else before it
            treadmill = session.treadmill
            sent_s = session.clock.now()
            try:
                if intent.kind != "control" and (
                        treadmill.quirks.request_control_before_every_command):
                    await treadmill.request_control()
                elif intent.kind == "stop" and not treadmill.has_control:
                    # After a reconnect or a lost permission: take control first, so the
                    # Stop is not refused (a refusal here still falls through to Stop).
                    with contextlib.suppress(RetrotreadError):
                        await treadmill.request_control()
                await treadmill.command(request)
                self.unanswered = 0
                if intent.kind == "stop":
                    self.stop_acked = self.stop_sent = True
                    self.started = False
                elif intent.kind == "start":
                    self.stop_acked = self.stop_sent = False
                    self.started = True
                elif intent.kind == "pause":
                    self.started = False
                if isinstance(request, codec.SetTargetSpeed):
                    self.wire_kmh, self.wire_s = request.speed_kmh, sent_s
                elif intent.kind in ("start", "stop", "pause"):
                    self.wire_kmh = None
                return
            except ControlPointTimeoutError as exc:
                self._delivered(intent, exc)
                self.unanswered += 1
                if intent.kind in ("start", "stop", "pause"):
                    self.wire_kmh = None
                if intent.kind == "start" and session.belt_moving():
                    self.started = True
                if intent.kind != "stop" and self.unanswered >= 2:
                    # No reply twice in a row, whichever commands they were: stop now.
                    session.trigger(Trigger("no_reply", "stop", str(exc)))
                    return
                if attempt == 1 and intent.kind == "start" and session.belt_moving():
                    return  # the first Start took effect; never send Start to a moving belt
                if attempt == 1:
                    continue
                session.trigger(Trigger("no_reply", "stop", str(exc)))
                return
            except ControlPointError as exc:
                self._delivered(intent, exc)
                self.unanswered = 0  # refused is an answer
                not_permitted = exc.result_code == codec.ResultCode.CONTROL_NOT_PERMITTED
                if not_permitted and attempt == 1:
                    session.emit_watchdog(Trigger(
                        "control_lost", "re_request_control", str(exc)))
                    try:
                        await treadmill.request_control()
                    except RetrotreadError as again:
                        session.trigger(Trigger("control_lost", "stop", str(again)))
                        return
                    continue
                if (isinstance(request, codec.SetTargetSpeed)
                        and exc.result_code == codec.ResultCode.INVALID_PARAMETER
                        and session.raise_floor(request.speed_kmh)):
                    return
                if intent.kind == "stop":
                    session.emit_watchdog(Trigger("stop_refused", "alarm", str(exc)))
                    return
                session.trigger(Trigger("command_refused", "stop", str(exc)))
                return
            except LinkClosedError as exc:
                # The link is gone: the disconnect handler reconnects and sends Stop.
                self._delivered(intent, exc)
                log.info("command %s failed, the link is closed: %s", request, exc)
                return
            except (LinkError, TreadmillError) as exc:
                self._delivered(intent, exc)
                # Refused by the peer (e.g. ATT "procedure already in progress" after a
                # late reply): retry once, then treat it as a failed command.
                if attempt == 1:
                    await session.clock.sleep_until(session.clock.now() + 0.5)
                    continue
                if intent.kind == "stop":
                    session.emit_watchdog(Trigger("stop_failed", "alarm", str(exc)))
                else:
                    session.trigger(Trigger("command_failed", "stop", str(exc)))
                return


class Session:
    def __init__(
        self,
        *,
        plan: Plan,
        segments: list[SegmentInfo],
        envelope: Envelope,
        treadmill: Treadmill,
        clock: Clock,
        bus: EventBus,
        settings: SessionSettings | None = None,
        profile_name: str = "workout",
        profile_path: str | None = None,
        simulated: bool = False,
        reconnect: ReconnectFactory | None = None,
        watchdog_limits: WatchdogLimits | None = None,
        stall_clock: Clock | None = None,
    ) -> None:
        """``stall_clock``: the real clock, when ``clock`` runs faster than real time (a
        sped-up simulator demo). A stalled loop is a fact of real time: it is judged on
        this clock, against ``WatchdogLimits.stall_limit_s`` real seconds."""
        self.plan = plan
        self.segments = segments
        self.envelope = envelope
        self.treadmill = treadmill
        self.clock = clock
        self.bus = bus
        self.settings = settings or SessionSettings()
        self.profile_name = profile_name
        self.profile_path = profile_path
        self.simulated = simulated
        self.reconnect = reconnect
        self.period_s = 1.0 / self.settings.tick_hz
        self.stall_clock = stall_clock or clock
        self.watchdog = Watchdog(
            backward_ceiling_kmh=envelope.ceiling_kmh(Direction.BACKWARD),
            tick_period_s=self.period_s,
            limits=watchdog_limits or WatchdogLimits(reply_timeout_s=treadmill.reply_timeout_s),
        )
        self.commander = Commander(self)
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
        self._last_tick_s: float | None = None
        self._started_s = 0.0
        self._stall_detected = False
        self._telemetry_count = 0
        self._distance_origin_m: float | None = None
        self._stop_confirmed = False
        self._idle_since: float | None = None
        self._start_sent_s: float | None = None
        self._link_down = asyncio.Event()  # wakes the link keeper after every drop
        self._unreachable_alarm_s: float | None = None
        self._interrupt_by: float | None = None  # Ctrl-C/SIGTERM: end by this time
        self.treadmills: list[Treadmill] = [treadmill]
        """Every treadmill connection this session opened (the runner closes them all)."""
        self._turn_stop_since: float | None = None
        self._warned_long = False
        self._safe_stop_started: float | None = None
        self._last_stop_repeat = 0.0
        self.heart_rule = (HeartRateRule(self.settings.heart_rate_max_bpm)
                           if self.settings.heart_rate_max_bpm is not None else None)
        self.heart_limited = False
        self.external_heart_rate = False
        """True when a strap feeds :meth:`observe_heart_rate` (Treadmill Data's is ignored)."""
        self.companion_rule: CompanionRule | None = None
        """``--companion-required``: the page server feeds it (watchdog.CompanionRule)."""
        self._bind(treadmill)

    # ------------------------------------------------------------------ plumbing
    def _bind(self, treadmill: Treadmill) -> None:
        """Listen to ``treadmill``; anything from a connection that was replaced since
        (a late notification, a second disconnect) is ignored."""

        def current() -> bool:
            return treadmill is self.treadmill

        treadmill.on_telemetry(lambda sample: self._on_telemetry(sample) if current() else None)
        treadmill.on_status(lambda status: self._on_status(status) if current() else None)
        treadmill.on_command(self._on_command_reply)
        treadmill.on_command_sent(self._on_command_sent)
        treadmill.link.on_disconnect(lambda: self._on_link_lost() if current() else None)

    def emit_watchdog(self, trigger: Trigger) -> None:
        self.bus.emit(WatchdogAction(self.clock.now(), trigger.name, trigger.action,
                                     trigger.detail))

    def announce(self, text: str, level: str = "info") -> None:
        self.last_announcement = text
        self.bus.emit(Announcement(self.clock.now(), text, level))

    def trigger(self, trigger: Trigger, outcome: Outcome = Outcome.WATCHDOG) -> None:
        """A reason to stop at once (from the watchdog, the commander, a signal). The
        first one decides the outcome; later ones change nothing (the stop is under way)."""
        if self._pending_trigger is not None or self.state is State.FINISHED:
            return
        self._pending_trigger = trigger
        if self._outcome is None:
            self._outcome = (outcome, trigger.detail)
        self.emit_watchdog(trigger)
        if trigger.action == "stop":
            self.announce(f"Stopping the belt: {trigger.detail}", "alarm")
        self._enter_safe_stop()

    def interrupt(self, reason: str) -> None:
        """Ctrl-C, SIGTERM: a controlled stop, and the session ends within
        ``interrupt_grace_s`` whatever state the link is in (a second one: at once).
        With the link up, a last Stop goes out; with the link down, nothing can."""
        if self.state is State.FINISHED:
            return
        now = self.clock.now()
        first = self._interrupt_by is None
        self._interrupt_by = now + self.settings.interrupt_grace_s if first else now
        if self._pending_trigger is None:
            self.trigger(Trigger("interrupted", "stop", reason), Outcome.INTERRUPTED)
        else:
            self.emit_watchdog(Trigger("interrupted", "stop",
                                       f"{reason}: ending the session"
                                       + ("" if self.link_ok else
                                          " with the link down: no Stop can be sent")))

    def request(self, command: UserCommand, source: str = "key", *,
                confidence: float | None = None, latency_s: float | None = None) -> bool:
        """A person's (or a remote's) command. Returns whether it was accepted.
        ``confidence`` and ``latency_s`` (a recognizer's) go into the ``user`` record."""
        accepted, detail = self._handle_user(command, source)
        self.bus.emit(UserAction(self.clock.now(), command, source, accepted, detail,
                                 confidence, latency_s))
        return accepted

    def belt_moving(self) -> bool:
        """Whether the belt may be moving, by the latest sample. A sample without a
        speed is never taken for a stopped belt (no sample at all: nothing is known)."""
        latest = self.treadmill.latest
        if latest is None:
            return False
        speed = latest.data.speed_kmh
        return speed is None or speed > STOPPED_SPEED_KMH

    # ------------------------------------------------------------------ listeners
    def _on_command_sent(self, time_s: float, request: codec.ControlPointRequest) -> None:
        speed = request.speed_kmh if isinstance(request, codec.SetTargetSpeed) else None
        self.bus.emit(CommandSent(time_s, int(request.op), type(request).__name__, speed,
                                  self.facing))

    def _on_command_reply(self, reply: CommandReply) -> None:
        result = None
        if reply.response is not None:
            try:
                result = codec.ResultCode(reply.response.result).name
            except ValueError:
                result = f"0x{int(reply.response.result):02x}"
        self.bus.emit(CommandReplied(reply.time_s, int(reply.request.op),
                                     type(reply.request).__name__, result, reply.error))

    def _on_telemetry(self, telemetry: Telemetry) -> None:
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
        self._telemetry_count += 1
        if self._telemetry_count % max(1, self.settings.telemetry_event_every) == 0:
            self.bus.emit(TelemetrySample(
                now, speed, data.total_distance_m, data.elapsed_time_s,
                self.heart_rate_bpm if self.external_heart_rate else data.heart_rate_bpm,
                self.commander.last_sent_kmh or 0.0, self.facing,
                step_count=data.step_count,
            ))

    def observe_heart_rate(self, now: float, bpm: int | None) -> None:
        """A heart-rate reading from Treadmill Data or from a strap (``external``)."""
        if bpm is not None and bpm > 0:
            self.heart_rate_bpm = bpm
        if self.heart_rule is not None:
            self.heart_rule.observe(now, bpm)

    def _on_status(self, event: StatusEvent) -> None:
        status = event.status
        detail = ""
        if isinstance(status, codec.TargetSpeedChanged):
            detail = (f"{status.speed_kmh:.2f} km/h" if status.speed_kmh is not None
                      else "speed not given")
        elif isinstance(status, codec.StoppedOrPausedByUser):
            detail = status.action.name.lower()
        self.bus.emit(MachineStatusChanged(event.time_s, type(status).__name__, detail))
        if self.state is State.FINISHED:
            return
        if isinstance(status, codec.StoppedBySafetyKey):
            self.safety_key_stopped = True
            self.announce("Safety key pulled: the workout is over.", "alarm")
            self.trigger(Trigger("safety_key", "stop", "the machine reports its safety key "
                                 "was pulled"), Outcome.SAFETY_KEY)
        elif isinstance(status, codec.ControlPermissionLost):
            if self.state not in (State.SAFE_STOP, State.FINISHING):
                self.emit_watchdog(Trigger("control_lost", "re_request_control",
                                           "the machine reports control permission lost"))
                self.commander.submit(_Intent("control", reason="control lost"))
        elif isinstance(status, codec.TargetSpeedChanged):
            self._check_console_speed(event.time_s, status.speed_kmh)
        elif isinstance(status, codec.StoppedOrPausedByUser):
            if self._expect_machine_stop:
                return
            if status.action is codec.StopPause.STOP:
                self.announce("The belt was stopped at the console.", "warning")
                self.trigger(Trigger("console_stop", "stop", "stopped at the console"),
                             Outcome.STOPPED_BY_USER)
            elif self.state is State.RUNNING:
                self._enter_paused("paused at the console")
        elif isinstance(status, codec.StartedOrResumedByUser):
            if self._expect_machine_start:
                self._expect_machine_start = False
                return
            if self.state in (State.TURN_STOPPING, State.WAITING_READY, State.HOLD,
                              State.COUNTDOWN, State.PAUSED):
                self.trigger(Trigger("console_start", "stop",
                                     "the belt was started at the console while it should "
                                     "stand still"))

    def _check_console_speed(self, now: float, speed_kmh: float | None) -> None:
        if speed_kmh is None:
            # The machine says its target changed but not to what: command ours again.
            if self.state is State.RUNNING:
                self.emit_watchdog(Trigger("console_speed_change", "clamp",
                                           "the machine reports a new target speed without "
                                           "its value: commanding the plan's speed again"))
                self.commander.force_resend()
            return
        if any(abs(speed_kmh - sent) < 0.011 for sent in self.commander.recent_kmh):
            return
        if (self._start_sent_s is not None
                and now - self._start_sent_s <= 2 * self.treadmill.reply_timeout_s + 1.0
                and speed_kmh <= self.envelope.start_speed_kmh() + 0.011):
            return  # the machine setting its own start speed as it starts: not the console
        if self.state not in (State.RUNNING,):
            return
        allowed = self.envelope.is_allowed(self.facing, speed_kmh)
        trigger = self.watchdog.console_change(now, speed_kmh, allowed)
        if trigger.action == "stop":
            self.trigger(trigger)
            return
        self.emit_watchdog(trigger)
        self.commander.force_resend()  # force the plan's speed out again

    def _on_link_lost(self) -> None:
        """The current link dropped (in any state, as often as it happens): reconnect and
        stop. The link keeper reconnects; the loop sends Stop once the link is back."""
        if self.state is State.FINISHED or not self.link_ok:
            return
        self.link_ok = False
        now = self.clock.now()
        self.bus.emit(LinkStateChanged(now, False, f"{self.treadmill.link.description} lost"))
        self.announce("Link to the treadmill lost: the belt may still be running. "
                      "Hold the rails; pull the safety key if needed.", "alarm")
        self._unreachable_alarm_s = now
        if self._pending_trigger is None:
            self.trigger(Trigger("link_lost", "stop", "the link to the treadmill was lost; "
                                 "reconnecting to stop the belt"))
        else:
            self.emit_watchdog(Trigger("link_lost", "reconnect",
                                       "the link was lost again; reconnecting to stop the belt"))
            self._enter_safe_stop()
        self._link_down.set()

    # ------------------------------------------------------------------ user commands
    def _gate(self) -> Gate:
        """Which ready gate is open now (what a READY or START would pass)."""
        if self.state is State.PAUSED or (
                self.state is State.WAITING_READY and self._gate_kind is Gate.RESUME):
            return Gate.RESUME
        if self.state in (State.WAITING_READY, State.HOLD):
            return self._gate_kind
        return Gate.NONE

    def _handle_user(self, command: UserCommand, source: str) -> tuple[bool, str]:
        active = self.state not in (State.FINISHED, State.SAFE_STOP, State.FINISHING,
                                    State.RECONNECTING)
        if command is UserCommand.TOGGLE_PAUSE:
            command = UserCommand.RESUME if self.state is State.PAUSED else UserCommand.PAUSE
        decision = authority.decide(command, source, self._gate())
        if decision.verdict is Verdict.REFUSE:
            return False, decision.reason
        if command is UserCommand.STOP:
            if not active:
                return False, "already stopping"
            self.trigger(Trigger("user_stop", "stop", f"stop requested ({source})"),
                         Outcome.STOPPED_BY_USER)
            return True, ""
        if not active:
            return False, "the session is ending"
        if command is UserCommand.PAUSE:
            if self.state is not State.RUNNING:
                return False, f"cannot pause while {self.state.value}"
            self._enter_paused(f"paused ({source})")
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
                self._resume_gate(source)
                return True, decision.reason
            self._start_gate(after_pause=True)
            return True, ""
        if command is UserCommand.READY:
            if self.state in (State.WAITING_READY, State.HOLD):
                self._ready = True
                return True, ""
            return False, "nothing is waiting for ready"
        if command is UserCommand.SKIP:
            if self.state is not State.RUNNING:
                return False, f"cannot skip while {self.state.value}"
            return self._skip()
        if command in (UserCommand.SPEED_UP, UserCommand.SPEED_DOWN):
            if self.state is not State.RUNNING:
                return False, "speed can only be adjusted while walking"
            step = self.settings.user_step_kmh
            self.user_offset_kmh += step if command is UserCommand.SPEED_UP else -step
            base, _, _ = self.plan.setpoint_at(self.plan_time_s)
            wanted = base + self.user_offset_kmh
            ceiling = self.envelope.ceiling_kmh(self.facing)
            if wanted > ceiling:
                self.user_offset_kmh = ceiling - base
                self.announce(f"Already at the {self.facing.value} ceiling "
                              f"({describe_kmh(ceiling)}).", "warning")
                return False, "at the ceiling"
            if wanted < self.floor_kmh:
                self.user_offset_kmh = self.floor_kmh - base
                return False, "at the machine's lowest speed"
            return True, f"offset {self.user_offset_kmh:+.2f} km/h"
        return False, "unknown command"

    def _resume_gate(self, source: str) -> None:
        """A resume from anyone but the person at the machine: the belt stays stopped at
        the ready gate until that person presses r or holds START on the page."""
        self.state = State.WAITING_READY
        self._gate_kind = Gate.RESUME
        self._ready = False
        self._gate_until = None
        self._stopped_at = self.clock.now()
        self._warned_long = True  # a pause, not a turnaround: no console time-out warning
        self.announce(f"Resume asked for ({source}). The belt starts only when you are "
                      "ready: press r, or hold START on the page.", "warning")

    def _skip(self) -> tuple[bool, str]:
        steps = self.plan.steps
        current = self.segment_index
        for step in steps:
            if step.segment_index > current and step.start_s > self.plan_time_s:
                self.plan_time_s = step.start_s
                return True, f"skipped to {step.start_s:.0f} s of the plan"
        return False, "no further segment"

    # ------------------------------------------------------------------ state changes
    def _enter_paused(self, why: str) -> None:
        self.state = State.PAUSED
        self._expect_machine_stop = True
        self.belt_should_move = False
        self.watchdog.reset_speed_checks()
        self.commander.submit(_Intent("pause", reason=why))
        self.announce(f"Paused: {why}. Press space to resume.")

    def _enter_safe_stop(self) -> None:
        """Stop the belt: Stop now if the link is up (SAFE_STOP, repeated until the belt is
        known stopped), else RECONNECTING until the link keeper brings it back."""
        self.belt_should_move = False
        self._expect_machine_stop = True
        self._safe_stop_started = None
        if self.link_ok:
            self.state = State.SAFE_STOP
            self.commander.submit(_Intent("stop", reason="safe stop"))
        else:
            self.state = State.RECONNECTING

    def raise_floor(self, refused_kmh: float) -> bool:
        """The machine refused a speed near its floor: its real minimum is higher."""
        increment = self.envelope.machine.increment_kmh
        new_floor = round(max(self.floor_kmh, refused_kmh) + increment, 2)
        if new_floor > min(self.envelope.ceiling_kmh(self.facing), START_SPEED_MAX_KMH) \
                or new_floor > self.floor_kmh + 2:
            return False  # no start at or below 1.0 mph on this machine: stop instead
        self.floor_kmh = new_floor
        self.commander.last_sent_kmh = None
        self.emit_watchdog(Trigger("machine_floor", "clamp",
                                   f"the machine refused {refused_kmh:.2f} km/h: using "
                                   f"{new_floor:.2f} km/h as its lowest speed"))
        return True

    def _start_gate(self, *, after_pause: bool = False) -> None:
        """The belt has stopped: the ready gate, then the countdown, then Start."""
        if after_pause:
            self.state = State.COUNTDOWN
            self._gate_until = self.clock.now() + self.settings.countdown_s
            self._countdown_said = None
            return
        self.state = State.WAITING_READY if self.settings.ready_gate == "key" else State.HOLD
        self._gate_kind = Gate.TURNAROUND
        self._ready = False
        self._gate_until = self.clock.now() + self.settings.hold_s
        self.bus.emit(TurnaroundPhase(self.clock.now(), "stopped", self._turn_to))
        verb = "Press r when you are ready" if self.state is State.WAITING_READY else (
            f"Starting again in {self.settings.hold_s:.0f} s (r to go sooner)")
        self.announce(f"Hold the rails and turn around to face {self._turn_to.value}. "
                      f"{verb}.", "warning")

    # ------------------------------------------------------------------ the loop
    async def run(self) -> SessionResult:
        clock = self.clock
        self._started_s = clock.now()
        commander = asyncio.ensure_future(self.commander.run())
        guard = asyncio.ensure_future(self._stall_guard())
        keeper = asyncio.ensure_future(self._keep_link())
        cancelled = False
        try:
            self._emit_started()
            try:
                await self._prepare()
            except RetrotreadError:
                if self._pending_trigger is None:
                    raise
                # The link dropped (or a watchdog fired) while preparing: the loop below
                # reconnects and stops the belt.
            await self._loop()
        except asyncio.CancelledError:
            cancelled = True
            if self._outcome is None:
                self._outcome = (Outcome.INTERRUPTED, "cancelled")
        except RetrotreadError as exc:
            log.error("session failed: %s", exc)
            if self._outcome is None:
                self._outcome = (Outcome.ERROR, str(exc))
        except Exception as exc:
            log.exception("session failed")
            if self._outcome is None:
                self._outcome = (Outcome.ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            result = await self._finish(commander, guard, keeper)
        if cancelled:
            raise asyncio.CancelledError
        return result

    async def _loop(self) -> None:
        """Tick on absolute deadlines until the session is over."""
        clock = self.clock
        period = self.period_s
        t0 = clock.now()
        self._last_tick_s = t0
        k = 0
        while self.state is not State.FINISHED:
            k += 1
            deadline = t0 + k * period
            now = clock.now()
            if deadline < now - period:  # fell behind: skip missed ticks, keep phase
                k += int((now - deadline) // period)
                deadline = t0 + k * period
            await clock.sleep_until(deadline)
            now = clock.now()
            dt = now - (self._last_tick_s or now)
            self._last_tick_s = now
            self.watchdog.observe_tick(self.stall_clock.now())
            if self._interrupt_by is not None and self._interrupted_done(now):
                return
            if self.state is State.RECONNECTING:
                self._tick_unreachable(now)
                continue
            if self.state is State.SAFE_STOP:
                if self._safe_stop_done(now):
                    return
                continue
            self._tick(now, dt)

    def _interrupted_done(self, now: float) -> bool:
        """After Ctrl-C/SIGTERM: over once the last Stop is answered and the belt is seen
        stopped, the link is down (nothing more can be sent), or the grace time is up."""
        assert self._interrupt_by is not None
        if now >= self._interrupt_by or not self.link_ok:
            return True
        return self.commander.stop_acked and self.commander.idle() and (
            self._confirmed_stopped(now) or self.safety_key_stopped)

    def _tick_unreachable(self, now: float) -> None:
        """RECONNECTING: while the machine cannot be reached, keep saying what to do."""
        last = self._unreachable_alarm_s
        if last is None or now - last >= self.settings.unreachable_alarm_every_s:
            self._unreachable_alarm_s = now
            self.announce("Cannot reach the treadmill: the belt may still be running. "
                          "Pull the safety key or stop it at the console.", "alarm")

    def _emit_started(self) -> None:
        plan = self.plan
        self.bus.emit(SessionStarted(
            self.clock.now(), self.profile_name, self.profile_path,
            self.treadmill.link.description, self.simulated,
            self.envelope.ceiling_kmh(Direction.BACKWARD),
            float(plan.total_s), float(plan.backward_s),
            float(plan.distance_m),
        ))

    async def _prepare(self) -> None:
        """Take control, check the belt stands still, count down, start."""
        await self.treadmill.request_control()
        if not self.simulated:
            self.announce("Clip the safety key to your clothing. It is the only true "
                          "emergency stop.", "warning")
        deadline = self.clock.now() + 3.0
        while self.treadmill.latest is None and self.clock.now() < deadline:
            await self.clock.sleep_until(self.clock.now() + 0.1)
        if self.belt_moving():
            speed = self.treadmill.latest.data.speed_kmh if self.treadmill.latest else None
            raise TreadmillError(
                f"the belt is already moving ({speed:.2f} km/h): stop it at the console, "
                "then start the workout again" if speed is not None else
                "the treadmill reports no belt speed, so a stopped belt cannot be confirmed "
                "before the start"
            )
        if self.settings.wait_for_ready_at_start:
            self.state = State.WAITING_READY
            self.announce("Stand on the side rails and press r to begin.")
            while not self._ready and self._pending_trigger is None:
                await self.clock.sleep_until(self.clock.now() + 0.1)
            self._ready = False
        first = self.plan.steps[0]
        self._turn_to = first.direction
        self.facing = first.direction
        if self._pending_trigger is not None:
            return
        self.state = State.COUNTDOWN
        self._gate_until = self.clock.now() + self.settings.start_countdown_s
        self._countdown_said = None

    def _tick(self, now: float, dt: float) -> None:
        state = self.state
        if state in (State.PAUSED, State.WAITING_READY):
            if self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since > self.settings.max_idle_s:
                self.trigger(Trigger("idle", "stop",
                                     f"nothing happened for {self.settings.max_idle_s / 60:.0f} "
                                     f"min while {state.value}: ending the workout"),
                             Outcome.STOPPED_BY_USER)
                return
        else:
            self._idle_since = None
        if state is State.RUNNING and self.companion_rule is not None:
            self._check_companion(now)
            state = self.state
        if state is State.RUNNING:
            self._tick_running(now, dt)
        elif state is State.TURN_STOPPING:
            if self._confirmed_stopped(now):
                self._stopped_at = now
                self._start_gate()
            elif self._turn_stop_since is not None and (
                    now - self._turn_stop_since > self.settings.stop_confirm_timeout_s):
                self.trigger(Trigger("belt_not_stopping", "stop",
                                     "the belt did not stop for the turnaround within "
                                     f"{self.settings.stop_confirm_timeout_s:.0f} s"))
        elif state in (State.WAITING_READY, State.HOLD):
            self._tick_gate(now)
        elif state is State.COUNTDOWN:
            self._tick_countdown(now)
        elif state is State.FINISHING and (self._confirmed_stopped(now) or (
                self._gate_until is not None and now > self._gate_until)):
            self._stop_confirmed = self._confirmed_stopped(now)
            self.state = State.FINISHED
            if self._outcome is None:
                self._outcome = (Outcome.COMPLETED, "workout completed")
        self._check_watchdog(now)

    def _check_companion(self, now: float) -> None:
        """``--companion-required``: every paired page lost while the belt moves."""
        assert self.companion_rule is not None
        trigger = self.companion_rule.check(now, belt_moving=self.belt_should_move)
        if trigger is not None:
            self.emit_watchdog(trigger)
            self.announce("Companion page lost: pausing the belt. Hold the rails.", "alarm")
            self._enter_paused("companion page lost")

    def _check_watchdog(self, now: float) -> None:
        """Measured against commanded: on every tick and on every telemetry sample."""
        if self.state is not State.RUNNING or not self.belt_should_move:
            return
        window = self.watchdog.limits.overspeed_grace_s + self.period_s
        trigger = self.watchdog.check(
            now, commanded_kmh=self.commander.reference_kmh(now, window) or self.cmd_kmh,
            facing=self.facing, belt_should_move=True, started_s=self.belt_started_s,
        )
        if trigger is not None:
            if trigger.action == "retarget":
                self.emit_watchdog(trigger)
                self.commander.force_resend()
            else:
                self.trigger(trigger)

    def _confirmed_stopped(self, now: float) -> bool:
        since = self._stopped_since
        latest = self.treadmill.latest
        if since is None or latest is None:
            return False
        return latest.time_s - since >= STOPPED_CONFIRM_S

    def _tick_gate(self, now: float) -> None:
        stopped_for = now - (self._stopped_at or now)
        if stopped_for > TURNAROUND_MAX_STOPPED_S and not self._warned_long:
            self._warned_long = True
            self.announce("The belt has been stopped for 30 s: some consoles end the "
                          "workout now; if yours did, restart it at the console.", "warning")
        timed_out = self.state is State.HOLD and self._gate_until is not None and (
            now >= self._gate_until)
        if self._ready or timed_out:
            self._ready = False
            self._warned_long = False
            self.state = State.COUNTDOWN
            self._gate_until = now + self.settings.countdown_s
            self._countdown_said = None
            self.bus.emit(TurnaroundPhase(now, "countdown", self._turn_to,
                                          self.settings.countdown_s))

    def _tick_countdown(self, now: float) -> None:
        assert self._gate_until is not None
        left = self._gate_until - now
        whole = int(left) + 1 if left > 0 else 0
        if whole != self._countdown_said and whole > 0:
            self._countdown_said = whole
            self.announce(f"{self._turn_to.value.capitalize()} in {whole}")
        if left > 0:
            return
        if self.belt_moving():  # (a sample without a speed counts as moving)
            self.trigger(Trigger("start_on_moving_belt", "stop",
                                 "the belt is moving (or its speed is unknown) when it "
                                 "should stand still"))
            return
        # Start: never on a moving belt; begin at the start speed and ramp.
        self.facing = self._turn_to
        self._expect_machine_start = True
        self._expect_machine_stop = False
        self.commander.submit(_Intent("start", reason="countdown over"))
        self._start_sent_s = now
        self.cmd_kmh = self.envelope.start_speed_kmh()
        self.user_offset_kmh = 0.0
        self.commander.last_sent_kmh = None
        self.belt_should_move = True
        self.belt_started_s = now
        self.watchdog.reset_speed_checks()
        self.watchdog.last_telemetry_s = None
        self.bus.emit(TurnaroundPhase(now, "start", self._turn_to))
        if self._resume_plan_s is not None:
            self.plan_time_s = self._resume_plan_s
            self._resume_plan_s = None
        self.state = State.RUNNING
        self._send_speed(self.cmd_kmh)

    def _send_speed(self, speed_kmh: float) -> None:
        quantized = quantize_down(speed_kmh, self.envelope.machine.increment_kmh)
        quantized = max(quantized, self.floor_kmh)
        if quantized != self.commander.last_sent_kmh:
            self.commander.submit(_Intent("speed", quantized))

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
        self._maybe_announce_speed_change()
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
        self._send_speed(self.cmd_kmh)

    def _heart_rate_limits(self, now: float) -> bool:
        """The heart-rate rule (watchdog.HeartRateRule): hold the floor speed or stop."""
        rule = self.heart_rule
        if rule is None:
            return False
        limited, trigger = rule.check(now)
        if trigger is not None:
            if trigger.action == "stop":
                self.trigger(trigger)
            else:
                self.emit_watchdog(trigger)
                level = "info" if trigger.action == "release" else "warning"
                self.announce(trigger.detail[0].upper() + trigger.detail[1:] + ".", level)
        self.heart_limited = limited
        return limited

    def _next_direction(self, step: PlanStep) -> Direction:
        steps = self.plan.steps
        for later in steps:
            if later.start_s >= step.end_s and later.direction is not self.facing:
                return later.direction
        return self.facing

    def _segment_changed(self, now: float, segment: int) -> None:
        self.segment_index = segment
        info = self.segments[segment] if 0 <= segment < len(self.segments) else None
        if info is None:
            return
        nxt = self.segments[segment + 1].label if segment + 1 < len(self.segments) else None
        self.bus.emit(SegmentStarted(now, segment, info.label, info.direction, info.speed_kmh,
                                     info.duration_s, nxt, info.cue))
        if info.cue:
            self.announce(info.cue)

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
            self.bus.emit(TurnaroundPhase(now, "announce", to, start - self.plan_time_s))
            self.announce("Turning around soon: the belt will stop.", "warning")

    def _maybe_announce_speed_change(self) -> None:
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
            when = f" in {ahead_s:.0f} seconds" if ahead_s >= 1.0 else " now"
            speed = self.envelope.clamp(step.direction, step.end_kmh)
            if step.kind == FINISH_RAMP:
                self.announce(f"Slowing down to finish{when}.")
            elif step.end_kmh > step.start_kmh:
                self.announce(f"Speeding up to {kmh_to_mph(speed):.1f} mph{when}.")
            else:
                self.announce(f"Slowing down to {kmh_to_mph(speed):.1f} mph{when}.")

    def _begin_turn_stop(self, now: float, to: Direction) -> None:
        self._turn_to = to
        self.state = State.TURN_STOPPING
        self._turn_stop_since = now
        self.belt_should_move = False
        self._expect_machine_stop = True
        self.watchdog.reset_speed_checks()
        self.commander.submit(_Intent("pause", reason="turnaround"))
        # Resume the plan after the turnaround's stop/hold/countdown steps.
        steps = self.plan.steps
        resume = self.plan_time_s
        for step in steps:
            if step.start_s >= self.plan_time_s - 1e-9 and step.direction is to and (
                    step.kind not in (TURNAROUND_STOP, TURNAROUND_HOLD, COUNTDOWN)):
                resume = float(step.start_s)
                break
        self._resume_plan_s = resume
        self.bus.emit(TurnaroundPhase(now, "ramp_down", to))

    def _begin_finish(self, now: float) -> None:
        self.state = State.FINISHING
        self.belt_should_move = False
        self._expect_machine_stop = True
        self.commander.submit(_Intent("stop", reason="workout complete"))
        self._gate_until = now + self.settings.stop_confirm_timeout_s
        self.announce("Workout complete. The belt is stopping.")

    def _safe_stop_done(self, now: float) -> bool:
        """In SAFE_STOP (the link is up): repeat Stop until the machine answers it or the
        belt is seen stopped; over once the belt is known stopped. If the machine neither
        answers nor stops within ``stop_confirm_timeout_s``: alarm, and end."""
        commander = self.commander
        stopped = self._confirmed_stopped(now) or self.safety_key_stopped
        if stopped and (commander.stop_acked or commander.stop_sent or self.safety_key_stopped):
            self._stop_confirmed = True
            return commander.idle()
        started = self._safe_stop_started
        if started is None:
            self._safe_stop_started = now
            self._last_stop_repeat = now
            return False
        if commander.stop_acked and self._telemetry_silent(now):
            return commander.idle()  # answered, and nothing can show more: done
        if not commander.stop_acked and now - self._last_stop_repeat >= 1.0 and (
                commander.idle()):
            self._last_stop_repeat = now
            commander.submit(_Intent("stop", reason="repeat until confirmed"))
        if now - started > self.settings.stop_confirm_timeout_s:
            self.announce("The machine does not confirm the stop: pull the safety key.",
                          "alarm")
            return True
        return False

    def _telemetry_silent(self, now: float) -> bool:
        """No Treadmill Data for the stale limit, counted from the start of this stop."""
        latest = self.treadmill.latest
        since = self._safe_stop_started if self._safe_stop_started is not None else now
        if latest is not None:
            since = max(since, latest.time_s)
        return now - since > self.watchdog.limits.telemetry_stale_s

    async def _stall_guard(self) -> None:
        """A task of its own: stop the belt if the control loop stops ticking (judged on
        the real clock: see ``stall_clock``)."""
        clock = self.stall_clock
        allowed = self.watchdog.stall_limit_s()
        margin = allowed / 6
        while True:
            # Wake just after the moment a stall would be declared (not every tick).
            last = self.watchdog.last_tick_s
            due = (last if last is not None else clock.now()) + allowed + margin
            await clock.sleep_until(max(due, clock.now() + margin))
            if self.state in (State.FINISHED, State.SAFE_STOP, State.RECONNECTING):
                continue
            trigger = self.watchdog.check_stall(clock.now())
            if trigger is not None and not self._stall_detected:
                self._stall_detected = True
                self.trigger(trigger)

    async def _keep_link(self) -> None:
        """For the whole session: after every drop, reconnect (with back-off, for as long
        as it takes: a belt may be running) and hand over to the safe stop, which sends
        Stop on the new link. A drop during any of this simply starts it again."""
        while True:
            await self._link_down.wait()
            self._link_down.clear()
            delay = self.settings.reconnect_backoff_s
            attempt = 0
            while not self.link_ok and self.state is not State.FINISHED and (
                    self._interrupt_by is None):
                if self.reconnect is None:
                    self.announce("Cannot reconnect to the treadmill: stop the belt at the "
                                  "console or pull the safety key.", "alarm")
                    return
                attempt += 1
                try:
                    treadmill = await asyncio.wait_for(self.reconnect(),
                                                       self.settings.reconnect_timeout_s)
                except (RetrotreadError, OSError, TimeoutError) as exc:
                    self.emit_watchdog(Trigger("link_lost", "reconnect",
                                               f"attempt {attempt} failed: {exc or 'timed out'}"))
                    await self.clock.sleep_until(self.clock.now() + delay)
                    delay = min(delay * 2, self.settings.reconnect_backoff_max_s)
                    continue
                self._adopt(treadmill)

    def _adopt(self, treadmill: Treadmill) -> None:
        """A new connection to the machine: from now on only Stop (never a resume)."""
        self.treadmills.append(treadmill)
        self.treadmill = treadmill
        self._bind(treadmill)
        if not treadmill.link.is_connected:  # dropped again before we listened
            return
        self.link_ok = True
        now = self.clock.now()
        self.bus.emit(LinkStateChanged(now, True, f"reconnected to {treadmill.link.description}"))
        if self.state is State.FINISHED or self._interrupt_by is not None:
            return
        self.emit_watchdog(Trigger("link_lost", "reconnect",
                                   "reconnected: sending Stop at once, never resuming"))
        self._stopped_since = None
        self.commander.stop_acked = False
        self._enter_safe_stop()

    async def _finish(self, commander: asyncio.Future[None], guard: asyncio.Future[None],
                      keeper: asyncio.Future[None]) -> SessionResult:
        guard.cancel()
        # Every way out ends with the belt commanded to stop: a last Stop on the link if
        # it is up and no Stop was answered yet (bounded: Ctrl-C must end the program).
        if not self.link_ok and self._interrupt_by is None and self.reconnect is not None:
            # Only an error ends the loop with the link down (nobody asked to quit): give
            # the keeper a bounded chance to reconnect, so a Stop can still go out.
            self._link_down.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._link_up(), 2 * self.settings.reconnect_timeout_s)
        keeper.cancel()
        if self.link_ok and not self.commander.stop_acked:
            if self.commander.idle():
                self.commander.submit(_Intent("stop", reason="session ending"))
            bound = self.treadmill.reply_timeout_s + 1.0
            if self._interrupt_by is None:
                bound = 2 * bound + 1.0  # room for one retry
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.commander.wait_idle(), bound)
        commander.cancel()
        for task in (commander, guard, keeper):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = State.FINISHED
        outcome, reason = self._outcome or (Outcome.ERROR, "ended without an outcome")
        elapsed = self.clock.now() - self._started_s
        self.bus.emit(SessionFinished(self.clock.now(), outcome, reason, elapsed,
                                      self.backward_s, self.distance_m,
                                      self.commander.stop_sent, self.commander.stop_acked))
        return SessionResult(outcome, reason, self.commander.stop_sent, self._stop_confirmed,
                             elapsed, self.backward_s, self.distance_m)

    async def _link_up(self) -> None:
        while not self.link_ok:
            await self.clock.sleep_until(self.clock.now() + 0.1)

    # ------------------------------------------------------------------ display
    def snapshot(self, banner: str = "") -> SessionSnapshot:
        now = self.clock.now()
        info = (self.segments[self.segment_index]
                if 0 <= self.segment_index < len(self.segments) else None)
        nxt = (self.segments[self.segment_index + 1].label
               if 0 <= self.segment_index + 1 < len(self.segments) else None)
        seg_start, seg_end = self._segment_bounds()
        latest = self.treadmill.latest
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
            target_kmh=self.commander.last_sent_kmh or 0.0,
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
        if self.segment_index < 0:
            turn_to: Direction | None = self.plan.steps[0].direction
        elif self.state in (State.TURN_STOPPING, State.WAITING_READY, State.HOLD,
                            State.COUNTDOWN):
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
        turning = self.state in (State.TURN_STOPPING, State.WAITING_READY, State.HOLD,
                                 State.COUNTDOWN)
        return {
            "turn_to": turn_to,
            "next_direction": following.direction if following else None,
            "segment_target_kmh": target,
            "turn_started_s": self._turn_stop_since if turning else None,
            "resume_plan_s": self._resume_plan_s if turning else None,
            "simulated": self.simulated,
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
