"""The simulated person on the belt: a heart rate that follows the effort.

Pure state advanced to a given time (like :class:`~retrotread.sim.belt.Belt`). The
heart rate moves toward a steady-state value that rises with belt speed, more when the
person walks backward (it costs more until it is practised), and falls with rest; it
rises faster than it falls. Good enough to test heart-rate limits end to end; not a
physiological model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from retrotread.envelope import Direction


@dataclass
class HeartModel:
    rest_bpm: float = 70.0
    max_bpm: float = 185.0
    bpm_per_kmh: float = 12.0
    backward_factor: float = 1.4
    rise_time_constant_s: float = 30.0
    fall_time_constant_s: float = 60.0
    extra_bpm: float = 0.0
    """Added to the steady state (a test's "unfit day")."""
    facing: Direction = Direction.FORWARD
    bpm: float = 70.0
    time_s: float | None = None

    def steady_bpm(self, speed_kmh: float) -> float:
        factor = self.backward_factor if self.facing is Direction.BACKWARD else 1.0
        effort = self.bpm_per_kmh * max(0.0, speed_kmh) * factor
        return min(self.max_bpm, self.rest_bpm + effort + self.extra_bpm)

    def advance_to(self, t_s: float, speed_kmh: float) -> None:
        """Exponential approach to the steady state over the time since the last call."""
        if self.time_s is None:
            self.time_s = t_s
            return
        dt = t_s - self.time_s
        if dt <= 0:
            return
        self.time_s = t_s
        target = self.steady_bpm(speed_kmh)
        tau = self.rise_time_constant_s if target > self.bpm else self.fall_time_constant_s
        self.bpm = target + (self.bpm - target) * math.exp(-dt / tau)
