"""The watchdog: every reason to stop the belt, in one file a reader can audit.

Pure rules over observations (no I/O, no clock of its own): the session feeds it the
time, telemetry, what it commanded and what the machine said, and asks :meth:`check`
what to do. The session carries out the answer. Thresholds come from
``docs/safety.md`` (which says why each number is what it is):

| trigger | threshold | action |
|---|---|---|
| control loop stalled | no tick for 0.5 s of real time (5 periods at 10 Hz) | stop |
| telemetry stale while the belt should move | no Treadmill Data for 3 s | stop |
| measured > commanded + 0.5, or (backward) > ceiling + 0.3 km/h | 2 s | re-command; stop 2 s on |
| (backward) measured > ceiling + 1.0 km/h (a runaway) | at once | stop (no grace) |
| commanded speed not reached | off by > 1.0 km/h for 15 s | stop |
| a console button changed the speed | at once | clamp back; stop on the 3rd time in 60 s |
| control point: no response | 2 s per command | one retry; 2 unanswered in a row (any kind): stop |
| control permission lost / Control Not Permitted | at once | re-request control once, then stop |
| stopped by safety key | at once | end the workout, nothing but Stop is ever sent again |
| link lost | at once | alarm; reconnect (after every drop, never giving up) and send Stop |
| Ctrl-C, SIGTERM, an exception anywhere | at once | controlled stop before exit |
| heart rate above the profile's ceiling | at once / 60 s | slow to the floor; stop if it stays |
| heart-rate signal lost (with a ceiling) | 5 s / 60 s | hold the floor speed; end after 60 s |
| no paired page while the belt moves (`--companion-required`) | 3 s | announce, Pause |
| the belt moves after it stood still (turnaround gate, countdown, pause) | at once | stop |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from retrotread.envelope import (
    BACKWARD_OVERSPEED_MARGIN_KMH,
    OVERSPEED_GRACE_S,
    OVERSPEED_MARGIN_KMH,
    STOPPED_SPEED_KMH,
    Direction,
)
from retrotread.formatting import kmh_text


@dataclass(frozen=True)
class WatchdogLimits:
    stall_limit_s: float = 0.5
    """No tick for this long (real seconds, on the session's stall clock) is a stalled
    loop. 5 periods at 10 Hz: far above a busy 2-core machine's scheduling hiccups (tick
    lateness p99 about 4 ms, worst seen 0.3 s under a load of 9), far below the 3 s
    telemetry rule. docs/safety.md has the reasoning."""
    telemetry_stale_s: float = 3.0
    overspeed_margin_kmh: float = OVERSPEED_MARGIN_KMH
    backward_overspeed_margin_kmh: float = BACKWARD_OVERSPEED_MARGIN_KMH
    backward_runaway_margin_kmh: float = 1.0
    """Backward and this far above the ceiling: stop at once, no grace (ours, stricter)."""
    overspeed_grace_s: float = OVERSPEED_GRACE_S
    underspeed_margin_kmh: float = 1.0
    underspeed_grace_s: float = 15.0
    console_changes_allowed: int = 2
    console_window_s: float = 60.0
    reply_timeout_s: float = 2.0


class Act(enum.StrEnum):
    """What a trigger asks for (its value is what the session log records)."""

    STOP = "stop"  # stop the belt at once
    RETARGET = "retarget"  # command the plan's speed again
    CLAMP = "clamp"  # a value was brought back inside the limits; go on
    ALARM = "alarm"  # tell the person; nothing more can be done from here
    RECONNECT = "reconnect"  # the link is being brought back (to send Stop)
    RE_REQUEST_CONTROL = "re_request_control"
    PAUSE = "pause"  # pause the belt (it never resumes by itself)
    RELEASE = "release"  # a limit that held the belt back is lifted


@dataclass(frozen=True)
class Trigger:
    """What the watchdog (or the session core) found, and what it asks for."""

    name: str
    action: Act
    detail: str


@dataclass
class Watchdog:
    backward_ceiling_kmh: float
    tick_period_s: float
    limits: WatchdogLimits = field(default_factory=WatchdogLimits)
    last_tick_s: float | None = None
    last_telemetry_s: float | None = None
    measured_kmh: float | None = None
    _overspeed_since: float | None = None
    _retargeted: bool = False
    _underspeed_since: float | None = None
    _console_changes: list[float] = field(default_factory=list)

    def observe_tick(self, now: float) -> None:
        self.last_tick_s = now

    def observe_telemetry(self, now: float, speed_kmh: float | None) -> None:
        self.last_telemetry_s = now
        if speed_kmh is not None:
            self.measured_kmh = speed_kmh

    def stall_limit_s(self) -> float:
        """How long without a tick counts as a stalled loop (on the stall clock)."""
        return max(self.limits.stall_limit_s, 2 * self.tick_period_s)

    def check_stall(self, now: float) -> Trigger | None:
        """Run from a task of its own: has the control loop stopped ticking? ``now`` and
        the ticks are on the same (real) clock."""
        if self.last_tick_s is None:
            return None
        allowed = self.stall_limit_s()
        if now - self.last_tick_s > allowed:
            return Trigger(
                "loop_stalled", Act.STOP,
                f"the control loop has not ticked for {now - self.last_tick_s:.2f} s "
                f"(limit {allowed:.2f} s)",
            )
        return None

    def check(
        self, now: float, *, commanded_kmh: float, facing: Direction, belt_should_move: bool,
        started_s: float,
    ) -> Trigger | None:
        """Check telemetry against what was commanded. ``started_s``: when the belt was
        last started (the stale rule counts from then if no telemetry came since)."""
        if belt_should_move:
            since = self.last_telemetry_s if self.last_telemetry_s is not None else started_s
            since = max(since, started_s) if self.last_telemetry_s is None else since
            if now - since > self.limits.telemetry_stale_s:
                return Trigger(
                    "telemetry_stale", Act.STOP,
                    f"no Treadmill Data for {now - since:.1f} s while the belt should move",
                )
        measured = self.measured_kmh
        if measured is None:
            return None
        limit = commanded_kmh + self.limits.overspeed_margin_kmh
        if facing is Direction.BACKWARD:
            backward_limit = self.backward_ceiling_kmh + self.limits.backward_overspeed_margin_kmh
            limit = min(limit, backward_limit)
        if facing is Direction.BACKWARD and measured > (
                self.backward_ceiling_kmh + self.limits.backward_runaway_margin_kmh):
            return Trigger(
                "overspeed", Act.STOP,
                f"belt at {kmh_text(measured, 2)} while walking backward, far above the "
                f"{kmh_text(self.backward_ceiling_kmh, 2)} ceiling: stopping at once",
            )
        if measured > limit:
            if self._overspeed_since is None:
                self._overspeed_since = now
            over_for = now - self._overspeed_since
            if over_for >= 2 * self.limits.overspeed_grace_s:
                return Trigger(
                    "overspeed", Act.STOP,
                    f"belt at {kmh_text(measured, 2)}, limit {kmh_text(limit, 2)}, for "
                    f"{over_for:.1f} s after re-commanding the target",
                )
            if over_for >= self.limits.overspeed_grace_s and not self._retargeted:
                self._retargeted = True
                return Trigger(
                    "overspeed", Act.RETARGET,
                    f"belt at {kmh_text(measured, 2)}, limit {kmh_text(limit, 2)}: commanding "
                    f"{kmh_text(commanded_kmh, 2)} again",
                )
        else:
            self._overspeed_since = None
            self._retargeted = False
        if belt_should_move and commanded_kmh > 0 and (
            commanded_kmh - measured > self.limits.underspeed_margin_kmh
        ):
            if self._underspeed_since is None:
                self._underspeed_since = now
            elif now - self._underspeed_since >= self.limits.underspeed_grace_s:
                return Trigger(
                    "speed_not_reached", Act.STOP,
                    f"commanded {kmh_text(commanded_kmh, 2)} but the belt stays at "
                    f"{kmh_text(measured, 2)} after {now - self._underspeed_since:.0f} s",
                )
        else:
            self._underspeed_since = None
        return None

    def timing(self) -> bool:
        """Whether a speed rule's grace timer runs (over- or underspeed): its deadline
        is only seen on a tick."""
        return self._overspeed_since is not None or self._underspeed_since is not None

    @staticmethod
    def check_standing(speed_kmh: float | None) -> Trigger | None:
        """The belt was seen standing still for a turnaround, a countdown or a pause: it
        must not move again until our Start. A moving belt now (a creeping or runaway
        belt, a console Start the machine did not report) is a stop."""
        if speed_kmh is not None and speed_kmh > STOPPED_SPEED_KMH:
            return Trigger("belt_moving_while_stopped", Act.STOP,
                           f"the belt moves ({kmh_text(speed_kmh, 2)}) while it should "
                           "stand still")
        return None

    def reset_speed_checks(self) -> None:
        """After a deliberate change of regime (pause, turnaround), restart the timers."""
        self._overspeed_since = None
        self._retargeted = False
        self._underspeed_since = None

    def console_change(self, now: float, speed_kmh: float, allowed: bool) -> Trigger:
        """A speed change we did not command (console +/-)."""
        window = self.limits.console_window_s
        self._console_changes = [t for t in self._console_changes if now - t < window] + [now]
        count = len(self._console_changes)
        if count > self.limits.console_changes_allowed:
            return Trigger(
                "console_speed_change", Act.STOP,
                f"the console changed the speed {count} times within {window:.0f} s",
            )
        how = "inside the envelope" if allowed else "outside the envelope"
        return Trigger(
            "console_speed_change", Act.CLAMP,
            f"the console set {kmh_text(speed_kmh, 2)} ({how}): commanding the plan's speed again",
        )


HEART_RATE_HOLD_S = 60.0
"""Above the ceiling (or without a signal) this long at the floor speed: stop."""
HEART_RATE_SIGNAL_LOST_S = 5.0
"""No heart rate for this long counts as a lost signal."""
HEART_RATE_HYSTERESIS_BPM = 5
"""The limit is released once the heart rate is this far below the ceiling."""


@dataclass
class HeartRateRule:
    """The heart-rate ceiling of a profile (docs/safety.md).

    Above the ceiling: slow to the floor speed; stop if it stays above for 60 s. The
    signal lost during a limited workout: announce, hold the floor speed, end after 60 s.
    :meth:`check` answers whether the speed must be held at the floor, and a trigger when
    something is to be said or done.
    """

    ceiling_bpm: int
    last_bpm: int | None = None
    last_seen_s: float | None = None
    above_since: float | None = None
    lost_since: float | None = None

    def observe(self, now: float, bpm: int | None) -> None:
        if bpm is not None and bpm > 0:
            self.last_bpm = bpm
            self.last_seen_s = now

    def check(self, now: float) -> tuple[bool, Trigger | None]:
        if self.last_seen_s is None:
            return False, None  # no source (yet): nothing to limit on
        if now - self.last_seen_s > HEART_RATE_SIGNAL_LOST_S:
            if self.lost_since is None:
                self.lost_since = now
                return True, Trigger("heart_rate_lost", Act.CLAMP,
                                     "the heart-rate signal is lost: holding the lowest speed")
            if now - self.lost_since > HEART_RATE_HOLD_S:
                return True, Trigger("heart_rate_lost", Act.STOP,
                                     f"no heart-rate signal for {now - self.lost_since:.0f} s")
            return True, None
        self.lost_since = None
        bpm = self.last_bpm
        assert bpm is not None
        if bpm > self.ceiling_bpm:
            if self.above_since is None:
                self.above_since = now
                return True, Trigger("heart_rate", Act.CLAMP,
                                     f"heart rate {bpm} bpm is above the ceiling of "
                                     f"{self.ceiling_bpm} bpm: slowing to the lowest speed")
            if now - self.above_since > HEART_RATE_HOLD_S:
                return True, Trigger("heart_rate", Act.STOP,
                                     f"heart rate still {bpm} bpm, above {self.ceiling_bpm} "
                                     f"bpm, after {now - self.above_since:.0f} s at the lowest "
                                     "speed")
            return True, None
        if self.above_since is not None:
            if bpm <= self.ceiling_bpm - HEART_RATE_HYSTERESIS_BPM:
                self.above_since = None
                return False, Trigger("heart_rate", Act.RELEASE,
                                      f"heart rate back to {bpm} bpm: following the plan again")
            return True, None
        return False, None


COMPANION_LOST_S = 3.0
"""``--companion-required``: how long the belt may move with no paired page connected."""


@dataclass
class CompanionRule:
    """The dead-man rule of ``--companion-required``: the paired page is part of the
    safety chain. While the belt moves, no page connected for more than ``grace_s``
    (every page lost, or none ever opened) is a trigger with action ``pause``: the session
    announces it and pauses the belt, and only the person can start it again."""

    grace_s: float = COMPANION_LOST_S
    pages: int = 0
    _alone_since: float | None = None

    def observe(self, now: float, pages: int) -> None:
        """How many paired pages are connected now."""
        self.pages = pages
        if pages > 0:
            self._alone_since = None
        elif self._alone_since is None:
            self._alone_since = now

    def check(self, now: float, *, belt_moving: bool) -> Trigger | None:
        if self.pages > 0:
            return None
        if not belt_moving:
            # Standing still with no page is allowed; the clock starts when it moves.
            self._alone_since = None
            return None
        if self._alone_since is None:
            self._alone_since = now
            return None
        if now - self._alone_since > self.grace_s:
            self._alone_since = None  # one trigger per loss
            return Trigger("companion_lost", Act.PAUSE,
                           f"no companion page connected for {self.grace_s:.0f} s while "
                           "the belt moves")
        return None
