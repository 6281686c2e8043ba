"""The control point: every command on its way to the machine, as a pure object.

One FTMS procedure at a time (docs/ftms.md): this object decides what to write next and
what an outcome means. It holds no reference to the session and does no I/O: the driver
asks :meth:`ControlPoint.take_write` for the next request, writes it, and hands the
:class:`~retrotread.treadmill.CommandOutcome` back to :meth:`ControlPoint.finished`.

* Speed intents coalesce to the latest; a Stop clears the queue (it jumps it).
* The last gate but one: the speed on the wire never steps faster than the ramp limit
  from the speed last on the wire, and the first speed after a Start is the start speed.
  The last gate is the envelope clamp for the direction the person faces.
* Failures follow docs/safety.md: one retry on a time-out; two unanswered commands in a
  row (of any kind) stop the belt; "control not permitted" gets one Request Control, then
  a stop; a Stop is retried, never a speed, once a Stop is queued.

What the session must act on comes back as :class:`Report` values (a trigger to stop, a
notice to log, a refused speed near the floor).
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass

from retrotread.envelope import Direction, Envelope, describe_kmh
from retrotread.ftms import codec
from retrotread.ftms.client import CommandOutcome, CommandStatus
from retrotread.quirks import Quirks
from retrotread.units import TIME_TOLERANCE_S, quantize_down, quantize_up
from retrotread.watchdog import Act, Trigger

BUSY_RETRY_AFTER_S = 0.5
"""A command that failed on the link (not refused, not timed out) is tried once more
after this long."""


class IntentKind(enum.Enum):
    SPEED = "speed"
    START = "start"
    PAUSE = "pause"
    STOP = "stop"
    CONTROL = "control"


@dataclass(frozen=True)
class Intent:
    kind: IntentKind
    speed_kmh: float = 0.0
    reason: str = ""
    strict: bool = False
    """Report the outcome instead of handling it (the first Request Control: a failure
    there ends the session as an error, as any failure to connect does)."""


MOTION = frozenset({IntentKind.START, IntentKind.SPEED})
"""Intents that can set a belt in motion or speed it up."""


class ReportKind(enum.Enum):
    STOP = "stop"  # a reason to stop the belt at once: the session triggers it
    NOTICE = "notice"  # worth a watchdog record; nothing else to do
    FLOOR_REFUSED = "floor_refused"  # a speed refused as invalid: the floor may be higher
    STRICT_DONE = "strict_done"  # a strict intent ended (``outcome`` says how)


@dataclass(frozen=True)
class Report:
    kind: ReportKind
    trigger: Trigger | None = None
    speed_kmh: float = 0.0
    outcome: CommandOutcome | None = None


class _Phase(enum.Enum):
    CONTROL_FIRST = "control_first"  # quirk: Request Control before every command
    CONTROL_FOR_STOP = "control_for_stop"  # no control (after a reconnect): take it, then Stop
    MAIN = "main"
    CONTROL_AGAIN = "control_again"  # "control not permitted": one Request Control


@dataclass
class _Job:
    intent: Intent
    request: codec.ControlPointRequest
    attempt: int = 1
    phase: _Phase = _Phase.MAIN
    attempt_s: float = 0.0
    """When this attempt began."""
    written_s: float = 0.0
    """When the request itself (not its Request Control) was handed out to be written: a
    speed on the wire counts from then for the ramp. (Counting from the attempt's start
    let the next speed step too far when the Request Control before it was slow.)"""


@dataclass(frozen=True)
class WireContext:
    """What the control point needs to know about the session when it writes."""

    facing: Direction
    floor_kmh: float
    safety_key_stopped: bool
    belt_moving: bool


class ControlPoint:
    def __init__(self, envelope: Envelope, quirks: Quirks | None = None) -> None:
        self.envelope = envelope
        self.quirks = quirks or Quirks()
        self._pending: collections.deque[Intent] = collections.deque()
        self._job: _Job | None = None
        self.in_flight: codec.ControlPointRequest | None = None
        """The request written and not yet finished."""
        self._not_before = float("-inf")
        self.last_sent_kmh: float | None = None
        """The speed the session last asked for (None: ask again on the next tick)."""
        self.recent_kmh: collections.deque[float] = collections.deque(maxlen=8)
        self.history: collections.deque[tuple[float, float]] = collections.deque(maxlen=64)
        self.stop_sent = False
        """A Stop reached the machine's control point (its write was accepted) since the
        last Start: what the summary calls "Stop sent"."""
        self.stop_acked = False
        """A Stop was answered "success" by the machine."""
        self.unanswered = 0
        """Commands in a row that got no reply, whatever they were: the second is a stop."""
        self.started = False
        """The machine was started (Start answered, or the belt seen moving) and not
        stopped or paused since: what ``must_start_before_speed`` machines need."""
        self.has_control = False
        self.wire_kmh: float | None = None
        """The last speed on the wire since Start/Stop/Pause."""
        self.wire_s = 0.0
        self._force = False
        self._stale_stop: _Job | None = None

    # ------------------------------------------------------------------ the session's side
    def submit(self, now: float, intent: Intent) -> None:
        if intent.kind is IntentKind.SPEED:
            if self._pending:  # (usually empty: the last speed already went out)
                self._pending = collections.deque(
                    i for i in self._pending if i.kind is not IntentKind.SPEED)
            self.last_sent_kmh = intent.speed_kmh
            self.recent_kmh.append(intent.speed_kmh)
            self.history.append((now, intent.speed_kmh))
        elif intent.kind is IntentKind.STOP:
            self._pending.clear()
        elif intent.kind is IntentKind.PAUSE:
            # The belt is to stand still: a queued Start or speed would move it first.
            self._pending = collections.deque(i for i in self._pending if i.kind not in MOTION)
        self._pending.append(intent)

    def require_new_stop(self) -> None:
        """The belt moved again after a Stop (a console Start): only a Stop written from
        now on counts as acknowledged, not the answer to one already on its way."""
        self.stop_acked = False
        job = self._job
        self._stale_stop = job if job is not None and job.intent.kind is IntentKind.STOP else None

    def stop_queued(self) -> bool:
        return any(i.kind is IntentKind.STOP for i in self._pending)

    def idle(self) -> bool:
        return not self._pending and self._job is None

    def force_resend(self) -> None:
        """Send the current setpoint again even if it is what we last sent (the console
        changed the machine's target, or the belt ignored it)."""
        self.last_sent_kmh = None
        self._force = True

    def reference_kmh(self, now: float, window_s: float) -> float | None:
        """The highest speed commanded in the last ``window_s``: a belt slowing down at
        its own rate (and telemetry that lags) is compared with what it was told."""
        history = self.history
        while history and now - history[0][0] > window_s:
            history.popleft()
        highest = self.last_sent_kmh
        for _, kmh in history:
            if highest is None or kmh > highest:
                highest = kmh
        return highest

    def link_lost(self) -> None:
        """The link dropped (or a new one came up): the new connection must be given
        control again, and nothing asked for on the old one but a Stop is ever written
        (after a drop only Stop goes out, never a speed or a resume)."""
        self.has_control = False
        self._pending = collections.deque(
            i for i in self._pending if i.kind is IntentKind.STOP)
        if self._job is not None and self._job.intent.kind is not IntentKind.STOP:
            self._job = None

    def next_due_s(self) -> float | None:
        """When a write becomes possible that is not possible now (a retry's wait)."""
        if self.in_flight is None and self._job is not None:
            return self._not_before
        return None

    # ------------------------------------------------------------------ the driver's side
    def take_write(self, now: float, ctx: WireContext) -> tuple[codec.ControlPointRequest | None,
                                                                list[Report]]:
        """The next request to write (None: nothing now), and what the session must
        know (an envelope clamp on the way)."""
        reports: list[Report] = []
        # (a microsecond of tolerance: a virtual clock quantizes time, and a retry due at
        # 0.1 + 0.5 must not wait for an instant that never comes)
        if self.in_flight is not None or now + TIME_TOLERANCE_S < self._not_before:
            return None, reports
        while True:
            job = self._job
            if job is None:
                if not self._pending:
                    return None, reports
                job = self._begin(now, self._pending.popleft(), ctx, reports)
                if job is None:
                    continue
                self._job = job
            if job.attempt > 1 and job.intent.kind is not IntentKind.STOP and self.stop_queued():
                self._job = None  # a Stop is waiting: never retry anything else before it
                continue
            if job.phase is _Phase.MAIN and job.intent.kind in MOTION and (
                    ctx.safety_key_stopped or self._halt_queued()):
                self._job = None  # asked before a Stop/Pause (or the key) came: not now
                continue
            if job.phase is _Phase.MAIN and job.intent.kind is IntentKind.START and (
                    ctx.belt_moving):
                # Checked again at the moment of writing (a Request Control may have
                # taken a second since the countdown ended): never Start a moving belt.
                self._job = None
                reports.append(Report(ReportKind.STOP, Trigger(
                    "start_on_moving_belt", Act.STOP, "the belt is moving (or its speed is "
                    "unknown) as the Start is about to go out")))
                return None, reports
            if job.phase is _Phase.MAIN:
                job.written_s = now
            self.in_flight = self._request_for(job)
            return self.in_flight, reports

    def _halt_queued(self) -> bool:
        return any(i.kind in (IntentKind.STOP, IntentKind.PAUSE) for i in self._pending)

    def finished(self, outcome: CommandOutcome, ctx: WireContext) -> list[Report]:
        """The written request ended (answered, refused, timed out, failed)."""
        self.in_flight = None
        job = self._job
        if job is None:
            return []
        if job.phase is _Phase.CONTROL_FOR_STOP or (
                job.phase is _Phase.CONTROL_FIRST and job.intent.kind is IntentKind.STOP):
            # A Stop's Request Control (control was lost, or this machine wants one before
            # every command): whatever its answer, even none, the Stop itself goes next.
            # A refusal or silence there is no reason not to try the Stop.
            self.has_control = outcome.status is CommandStatus.ANSWERED
            job.phase = _Phase.MAIN
            return []
        if job.phase is _Phase.CONTROL_AGAIN:
            if outcome.status is CommandStatus.ANSWERED:
                self.has_control = True
                self._next_attempt(job, outcome.time_s)
                return []
            self._job = None
            return [Report(ReportKind.STOP, Trigger("control_lost", Act.STOP, outcome.detail))]
        if job.phase is _Phase.CONTROL_FIRST and outcome.status is CommandStatus.ANSWERED:
            self.has_control = True
            job.phase = _Phase.MAIN
            return []
        if job.intent.strict:
            self._job = None
            if outcome.status is CommandStatus.ANSWERED and isinstance(
                    job.request, codec.RequestControl):
                self.has_control = True
            return [Report(ReportKind.STRICT_DONE, outcome=outcome)]
        # The command itself (or its quirk's Request Control) ended.
        if outcome.status is CommandStatus.ANSWERED:
            self._answered(job, outcome)
            return []
        return self._failed(job, outcome, ctx)

    # ------------------------------------------------------------------ internals
    def _begin(self, now: float, intent: Intent, ctx: WireContext,
               reports: list[Report]) -> _Job | None:
        if ctx.safety_key_stopped and intent.kind is not IntentKind.STOP:
            return None
        request = self._request(now, intent, ctx, reports)
        if isinstance(request, codec.SetTargetSpeed):
            if self.wire_kmh is not None and request.speed_kmh == self.wire_kmh and (
                    not self._force):
                return None  # the ramp limit allows no step yet: the next tick asks again
            self._force = False
            if self.quirks.must_start_before_speed and not self.started:
                # This machine ignores a speed until it runs: it is sent after the Start.
                self.last_sent_kmh = None
                return None
        job = _Job(intent, request, attempt_s=now)
        self._first_phase(job)
        return job

    def _first_phase(self, job: _Job) -> None:
        if job.intent.kind is not IntentKind.CONTROL and (
                self.quirks.request_control_before_every_command):
            job.phase = _Phase.CONTROL_FIRST
        elif job.intent.kind is IntentKind.STOP and not self.has_control:
            job.phase = _Phase.CONTROL_FOR_STOP
        else:
            job.phase = _Phase.MAIN

    def _next_attempt(self, job: _Job, now: float, wait_s: float = 0.0) -> None:
        job.attempt += 1
        self._first_phase(job)
        self._not_before = now + wait_s
        job.attempt_s = self._not_before

    def _request_for(self, job: _Job) -> codec.ControlPointRequest:
        if job.phase is _Phase.MAIN:
            return job.request
        return codec.RequestControl()

    def _ramp_limited(self, now: float, wanted_kmh: float, ctx: WireContext) -> float:
        """Whatever was queued (replies may be slow, commands coalesce), the speed on the
        wire never steps faster than the ramp limit from the speed last sent, and the
        first speed after a Start is the start speed."""
        env = self.envelope
        first = max(ctx.floor_kmh, env.start_speed_kmh())
        if self.wire_kmh is None:
            return min(wanted_kmh, first)
        dt = max(0.0, now - self.wire_s)
        increment = env.machine.increment_kmh
        if wanted_kmh > self.wire_kmh:
            # (1 ms of slack: tick times carry floating-point noise)
            step = env.ramp_kmh_per_s(ctx.facing) * (dt + 0.001)
            return max(self.wire_kmh, min(wanted_kmh, quantize_down(self.wire_kmh + step,
                                                                    increment)))
        step = max(env.ramp_kmh_per_s(ctx.facing), env.ramp_stop_kmh_per_s) * (dt + 0.001)
        return min(self.wire_kmh, max(wanted_kmh, quantize_up(self.wire_kmh - step, increment)))

    def _request(self, now: float, intent: Intent, ctx: WireContext,
                 reports: list[Report]) -> codec.ControlPointRequest:
        kind = intent.kind
        if kind is IntentKind.SPEED:
            speed_kmh = intent.speed_kmh
            limited = self._ramp_limited(now, speed_kmh, ctx)
            if limited != speed_kmh:
                # Sent in steps: the session sends the rest on its next ticks.
                self.last_sent_kmh = limited
                self.recent_kmh.append(limited)  # its status echo is ours, not the console's
                speed_kmh = limited
            speed = self.envelope.clamp(ctx.facing, speed_kmh)
            if speed != speed_kmh:  # the final gate caught something: say so
                reports.append(Report(ReportKind.NOTICE, Trigger(
                    "envelope", Act.CLAMP,
                    f"{describe_kmh(speed_kmh)} is outside the envelope facing "
                    f"{ctx.facing.value}; sending {describe_kmh(speed)}")))
            return codec.SetTargetSpeed(speed_kmh=speed)
        if kind is IntentKind.START:
            return codec.StartOrResume()
        if kind is IntentKind.PAUSE:
            if self.quirks.ignores_pause:
                # Its Pause stops the workout anyway: say so (Stop), and wait as for one.
                return codec.StopOrPause(action=codec.StopPause.STOP)
            return codec.StopOrPause(action=codec.StopPause.PAUSE)
        if kind is IntentKind.CONTROL:
            return codec.RequestControl()
        return codec.StopOrPause(action=codec.StopPause.STOP)

    def _answered(self, job: _Job, outcome: CommandOutcome) -> None:
        self._job = None
        self.unanswered = 0
        kind = job.intent.kind
        if kind is IntentKind.STOP:
            self.stop_sent = True
            self.stop_acked = self.stop_acked or job is not self._stale_stop
            self.started = False
        elif kind is IntentKind.START:
            self.stop_acked = self.stop_sent = False
            self.started = True
        elif kind is IntentKind.PAUSE:
            self.started = False
        elif kind is IntentKind.CONTROL:
            self.has_control = True
        request = job.request
        if isinstance(request, codec.SetTargetSpeed):
            self.wire_kmh = request.speed_kmh
            self.wire_s = job.written_s  # (answered: it was written)
        elif kind in (IntentKind.START, IntentKind.STOP, IntentKind.PAUSE):
            self.wire_kmh = None

    def _delivered(self, kind: IntentKind, outcome: CommandOutcome) -> None:
        """A failed command may still have reached the machine: a Stop that did counts as
        sent (and a Start that did makes any earlier Stop history)."""
        if not outcome.delivered:
            return
        if kind is IntentKind.STOP:
            self.stop_sent = True
        elif kind is IntentKind.START:
            self.stop_acked = self.stop_sent = False

    def _failed(self, job: _Job, outcome: CommandOutcome, ctx: WireContext) -> list[Report]:
        kind = job.intent.kind
        status = outcome.status
        first = job.attempt == 1
        if job.phase is _Phase.MAIN:  # (a quirk's Request Control reaching it is no Stop)
            self._delivered(kind, outcome)
        if status is CommandStatus.TIMED_OUT:
            self.unanswered += 1
            if kind in (IntentKind.START, IntentKind.STOP, IntentKind.PAUSE):
                self.wire_kmh = None
            if kind is IntentKind.START and ctx.belt_moving:
                self.started = True
            if kind is not IntentKind.STOP and self.unanswered >= 2:
                # No reply twice in a row, whichever commands they were: stop now.
                return self._end(Report(ReportKind.STOP, Trigger("no_reply", Act.STOP,
                                                                 outcome.detail)))
            if first and kind is IntentKind.START and ctx.belt_moving:
                self._job = None  # the first Start took effect: never Start a moving belt
                return []
            if first:
                self._next_attempt(job, outcome.time_s)
                return []
            return self._end(Report(ReportKind.STOP, Trigger("no_reply", Act.STOP,
                                                             outcome.detail)))
        if status is CommandStatus.REFUSED:
            self.unanswered = 0  # refused is an answer
            if outcome.result_code == codec.ResultCode.CONTROL_NOT_PERMITTED and first:
                job.phase = _Phase.CONTROL_AGAIN
                return [Report(ReportKind.NOTICE, Trigger("control_lost", Act.RE_REQUEST_CONTROL,
                                                          outcome.detail))]
            request = job.request
            if (isinstance(request, codec.SetTargetSpeed)
                    and outcome.result_code == codec.ResultCode.INVALID_PARAMETER):
                return self._end(Report(ReportKind.FLOOR_REFUSED, Trigger(
                    "command_refused", Act.STOP, outcome.detail), speed_kmh=request.speed_kmh))
            if kind is IntentKind.STOP:
                return self._end(Report(ReportKind.NOTICE, Trigger("stop_refused", Act.ALARM,
                                                                   outcome.detail)))
            return self._end(Report(ReportKind.STOP, Trigger("command_refused", Act.STOP,
                                                             outcome.detail)))
        if status is CommandStatus.LINK_CLOSED:
            # The link is gone: the session reconnects and sends Stop on the new link.
            self._job = None
            return []
        # Failed on the link (e.g. ATT "procedure already in progress" after a late
        # reply): once more after a pause, then as a failed command.
        if first:
            self._next_attempt(job, outcome.time_s, BUSY_RETRY_AFTER_S)
            return []
        if kind is IntentKind.STOP:
            return self._end(Report(ReportKind.NOTICE, Trigger("stop_failed", Act.ALARM,
                                                               outcome.detail)))
        return self._end(Report(ReportKind.STOP, Trigger("command_failed", Act.STOP,
                                                         outcome.detail)))

    def _end(self, report: Report) -> list[Report]:
        self._job = None
        return [report]
