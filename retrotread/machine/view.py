"""What the person must know now: :meth:`View.snapshot`, the one account every screen,
the voice and MQTT share.
"""

from __future__ import annotations

from typing import Any

from retrotread.envelope import Direction
from retrotread.events import SessionSnapshot
from retrotread.machine.base import MachineBase
from retrotread.machine.types import TURNING, SegmentInfo, State


class View(MachineBase):
    """The snapshot of what the person must know now."""

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
