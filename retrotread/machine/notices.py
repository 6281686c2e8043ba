"""What is said as the plan goes: the segment's cue when it starts, the turnaround
notice ``announce_s`` ahead, and automatic speed changes announced
``SPEED_CHANGE_NOTICE_S`` ahead.
"""

from __future__ import annotations

from retrotread.envelope import SPEED_CHANGE_NOTICE_S, Direction
from retrotread.events import SegmentStarted, TurnaroundPhase
from retrotread.formatting import duration_words, speed_text
from retrotread.machine.base import MachineBase
from retrotread.plan import FINISH_RAMP, PlanStep


class PlanNotices(MachineBase):
    """Announcements the plan calls for as it runs."""

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
            speed = speed_text(self.envelope.clamp(step.direction, step.end_kmh),
                               self.settings.units)
            if step.kind == FINISH_RAMP:
                self.announce(now, f"Slowing down to finish{when}.")
            elif step.end_kmh > step.start_kmh:
                self.announce(now, f"Speeding up to {speed}{when}.")
            else:
                self.announce(now, f"Slowing down to {speed}{when}.")

    def _next_direction(self, step: PlanStep) -> Direction:
        for later in self.plan.steps:
            if later.start_s >= step.end_s and later.direction is not self.facing:
                return later.direction
        return self.facing
