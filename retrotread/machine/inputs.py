"""What the treadmill and the link report, and what the machine does about it.

Treadmill Data samples (stopped-belt confirmation, distance, heart rate, the runaway and
standing checks on the sample itself), Fitness Machine Status notifications (safety key,
console stop/pause/start, a new target speed, control lost), and the link dropping or
coming back (after a drop only Stop is ever sent, never a resume).
"""

from __future__ import annotations

from retrotread.control_point import IntentKind
from retrotread.envelope import STOPPED_SPEED_KMH
from retrotread.events import LinkStateChanged, MachineStatusChanged, Outcome, TelemetrySample
from retrotread.formatting import kmh_text
from retrotread.ftms import codec
from retrotread.ftms.client import Telemetry
from retrotread.machine.ending import Ending
from retrotread.machine.types import STANDING, Closing, State
from retrotread.quirks import Quirks
from retrotread.watchdog import Act, Trigger


class Inputs(Ending):
    """Samples, statuses and link events from the treadmill side."""

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

    def _check_watchdog(self, now: float) -> None:
        """Measured against commanded: on every tick and on every telemetry sample."""
        if self.state is not State.RUNNING or not self.belt_should_move:
            return
        trigger = self.watchdog.check(
            now, commanded_kmh=(self.control.reference_kmh(now, self._reference_window_s)
                                or self.cmd_kmh),
            facing=self.facing, belt_should_move=True, started_s=self.belt_started_s,
        )
        if trigger is not None:
            if trigger.action is Act.RETARGET:
                self.emit_watchdog(now, trigger)
                self.control.force_resend()
            else:
                self.trigger(now, trigger)

    def _check_standing(self, now: float, speed_kmh: float | None) -> None:
        """Once the belt stood still for a turnaround, a countdown or a pause, it must
        not move until our Start (watchdog.Watchdog.check_standing)."""
        if self.state not in STANDING or self._closing is not Closing.NO:
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
                    self._closing is not Closing.NO):
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
        for sent in self.control.recent_kmh:
            if abs(speed_kmh - sent) < 0.011:
                return  # our own speed echoed
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
        if self._closing is not Closing.NO:
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
