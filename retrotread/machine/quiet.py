"""Quiet windows: until when ticks would change nothing but the clocks.

The plain loop (``retrotread.plain_loop``) may jump its next tick to
:meth:`QuietWindows.quiet_until`; any observation brings the ticks back. The async driver
never jumps (docs/session-core.md).
"""

from __future__ import annotations

from retrotread.envelope import SPEED_CHANGE_NOTICE_S, TURNAROUND_MAX_STOPPED_S
from retrotread.machine.base import MachineBase
from retrotread.machine.types import Closing, Prep, State


class QuietWindows(MachineBase):
    """Until when the plain loop may skip ticks."""

    def quiet_until(self, now: float) -> float:
        """Until when ticks would change nothing but the clocks, unless an observation
        comes first (a plain loop may jump its next tick there, and ticks again one period
        after any observation; the async driver never jumps). Only where every deadline
        is known: steady walking (the setpoint reached and constant, no watchdog timer
        running, no announcement due), the turnaround's hold and countdown, a pause.
        Never with something queued or a rule that needs every tick (heart rate,
        companion)."""
        last = self._last_tick_s
        if (last is None or self._prep is not Prep.DONE or self.heart_rule is not None
                or self.companion_rule is not None or not self.control.idle()
                or self.interrupt_by is not None or self._closing is not Closing.NO
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
