"""Every way out of a workout.

A trigger (the watchdog, a stop from anyone, the safety key, a lost link) puts the
machine in STOPPING: Stop goes out and is repeated until the belt is known stopped.
Ctrl-C/SIGTERM ends within a grace time. :meth:`Ending._close` is the one door out: a
bounded wait for the link, then a last Stop if none was answered, then FINISHED with
:class:`SessionFinished`.
"""

from __future__ import annotations

from retrotread.control_point import IntentKind
from retrotread.events import Event, Outcome, SessionFinished
from retrotread.machine.base import MachineBase
from retrotread.machine.types import STOP_REPEAT_S, Closing, Prep, SessionResult, State
from retrotread.watchdog import Act, Trigger


class Ending(MachineBase):
    """Every way out: trigger, interrupt, the safe stop, closing, FINISHED."""

    def trigger(self, now: float, trigger: Trigger, outcome: Outcome = Outcome.WATCHDOG) -> None:
        """A reason to stop at once (from the watchdog, the control point, a signal). The
        first one decides the outcome; later ones change nothing (the stop is under way)."""
        if self._pending_trigger is not None or self.state is State.FINISHED:
            return
        self._pending_trigger = trigger
        self._prep = Prep.DONE
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
        if self._closing is Closing.LINK:
            self._closing = Closing.NO  # nobody waits for the link any more
            self._close(now)

    def _fail(self, now: float, outcome: Outcome, detail: str) -> None:
        if self._outcome is None:
            self._outcome = (outcome, detail)
        self._close(now)

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

    def _close(self, now: float) -> None:
        """Every way out: a bounded wait for the link (only when nobody asked to quit),
        then a last Stop if none was answered, then FINISHED."""
        if self._closing is not Closing.NO:
            return
        if not self.link_ok and self.interrupt_by is None and self.setup.can_reconnect:
            self._closing = Closing.LINK
            self._closing_until = now + 2 * self.settings.reconnect_timeout_s
            return
        self._last_stop(now)

    def _last_stop(self, now: float) -> None:
        self._closing = Closing.LAST_STOP
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
        if self._closing is Closing.LINK:
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
