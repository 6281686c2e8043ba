"""The session machine: the one entry, the start, and the ticks.

:meth:`SessionMachine.step` takes the time and one observation (``retrotread.
observations``: a tick, telemetry, a status, a command's end, a link event, a person's
command) and returns the events it caused. Commands for the treadmill wait in
:attr:`SessionMachine.control` (``retrotread.control_point``), which the driver asks for
the next write.

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

Every way out goes through :meth:`Ending._close` (``ending.py``): a bounded wait for the link,
then a last Stop if none was answered, then FINISHED with :class:`SessionFinished`.
"""

from __future__ import annotations

from retrotread.control_point import IntentKind, Report, ReportKind
from retrotread.envelope import START_SPEED_MAX_KMH, TURNAROUND_MAX_STOPPED_S, Direction
from retrotread.events import Event, Outcome, SessionStarted, TurnaroundPhase, UserAction
from retrotread.formatting import kmh_text, minutes_text
from retrotread.ftms import codec
from retrotread.ftms.client import CommandStatus
from retrotread.machine.inputs import Inputs
from retrotread.machine.notices import PlanNotices
from retrotread.machine.person import PersonCommands
from retrotread.machine.quiet import QuietWindows
from retrotread.machine.types import FIRST_TELEMETRY_WAIT_S, Closing, Prep, State
from retrotread.machine.view import View
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
from retrotread.plan import COUNTDOWN, FINISH_RAMP, TURNAROUND_HOLD, TURNAROUND_STOP
from retrotread.units import quantize_down
from retrotread.watchdog import Act, Trigger


class SessionMachine(Inputs, PersonCommands, PlanNotices, QuietWindows, View):
    """One workout: feed it observations with :meth:`step`, ask it for writes with
    :meth:`take_write`."""

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
                            State.STOPPING, State.RECONNECTING) and self._closing is Closing.NO:
                        self._stall_detected = True
                        self.trigger(now, trigger)
                case Failed(outcome, detail):
                    if self._outcome is None:
                        self._outcome = (outcome, detail)
                    self._close(now)
        if self._closing is not Closing.NO:
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

    @property
    def wants_reconnect(self) -> bool:
        """The link is down and the session still needs it (to send Stop)."""
        return (not self.link_ok and self.state is not State.FINISHED
                and self.interrupt_by is None and self._closing is not Closing.LAST_STOP)

    def next_due_s(self) -> float | None:
        """The earliest time a write becomes possible that is not possible now."""
        if self.state is State.FINISHED:
            return None
        return self.control.next_due_s()

    # ---------------------------------------------------------- what the control point reports
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
        if self._prep is not Prep.CONTROL:
            return
        if not ok:
            self._prep = Prep.DONE
            if self._pending_trigger is None:
                self._fail(now, Outcome.ERROR, detail)
            return
        if not self.setup.simulated:
            self.announce(now, "Clip the safety key to your clothing. It is the only true "
                          "emergency stop.", "warning")
        self._prep = Prep.FIRST_SAMPLE
        self._prep_until = now + FIRST_TELEMETRY_WAIT_S
        self._tick_prep(now)

    def _tick_prep(self, now: float) -> None:
        if self._prep is Prep.FIRST_SAMPLE:
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
                self._prep = Prep.READY
                self.state = State.WAITING_READY
                self.announce(now, "Stand on the side rails and press r to begin.")
                return
        elif self._prep is Prep.READY:
            if not self._ready:
                return
            self._ready = False
        else:
            return
        self._prep = Prep.DONE
        self.state = State.COUNTDOWN
        self._gate_until = now + self.settings.start_countdown_s
        self._countdown_said = None

    # ------------------------------------------------------------------ ticks
    def _on_tick(self, now: float) -> None:
        dt = now - (self._last_tick_s if self._last_tick_s is not None else now)
        self._last_tick_s = now
        if self._closing is not Closing.NO:
            return
        if self.interrupt_by is not None and self._interrupted_done(now):
            self._close(now)
            return
        if self._prep is not Prep.DONE:
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

    # ------------------------------------------------------------------ walking
    def _send_speed(self, now: float, speed_kmh: float) -> None:
        quantized = quantize_down(speed_kmh, self.envelope.machine.increment_kmh)
        quantized = max(quantized, self.floor_kmh)
        if quantized != self.control.last_sent_kmh:
            self._submit(now, IntentKind.SPEED, speed_kmh=quantized)

    def _tick_running(self, now: float, dt: float) -> None:
        plan = self.plan
        total_s = float(plan.total_s)
        self.plan_time_s = min(self.plan_time_s + dt, total_s)
        if self.facing is Direction.BACKWARD:
            self.backward_s += dt
        step = plan.step_at(self.plan_time_s)
        target, direction = step.speed_at(self.plan_time_s), step.direction
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
        finishing = self.plan_time_s >= total_s - 1e-9
        if target <= 0 or finishing:
            if finishing:
                self._begin_finish(now)
            elif kind == TURNAROUND_STOP or target <= 0:
                self._begin_turn_stop(now, self._next_direction(step))
            return
        stopping = kind in (TURNAROUND_STOP, FINISH_RAMP)
        wanted = target if stopping else target + self.user_offset_kmh
        if self.heart_rule is not None and self._heart_rate_limits(now):
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

    # ------------------------------------------------------------------ turnaround and finish
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
