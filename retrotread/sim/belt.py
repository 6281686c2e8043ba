"""Belt physics of the simulated treadmill: pure state advanced to a given time.

The belt moves toward its target speed at its own acceleration (a real machine ramps at
its own, unknown rate) and integrates distance exactly (piecewise-constant acceleration),
so the simulation gives the same answer whether it is advanced once an hour or ten times
a second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Belt:
    acceleration_kmh_per_s: float = 1.0
    deceleration_kmh_per_s: float = 1.5
    emergency_deceleration_kmh_per_s: float = 4.0
    noise_kmh: float = 0.0
    seed: int = 0
    speed_kmh: float = 0.0
    target_kmh: float = 0.0
    distance_m: float = 0.0
    moving_time_s: float = 0.0
    time_s: float = 0.0
    emergency: bool = False
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def set_target(self, target_kmh: float, *, emergency: bool = False) -> None:
        self.target_kmh = max(0.0, target_kmh)
        self.emergency = emergency

    def advance_to(self, t_s: float) -> None:
        """Integrate speed, distance and moving time up to ``t_s`` (never backward)."""
        dt = t_s - self.time_s
        if dt <= 0:
            return
        self.time_s = t_s
        v0, target = self.speed_kmh, self.target_kmh
        if target >= v0:
            rate = self.acceleration_kmh_per_s
        elif self.emergency:
            rate = self.emergency_deceleration_kmh_per_s
        else:
            rate = self.deceleration_kmh_per_s
        delta = target - v0
        t_reach = abs(delta) / rate if rate > 0 else float("inf")
        if t_reach <= dt:
            area_kmh_s = (v0 + target) / 2 * t_reach + target * (dt - t_reach)
            moving = (t_reach if target == 0 else dt) if v0 > 0 or target > 0 else 0.0
            self.speed_kmh = target
        else:
            v1 = v0 + (rate * dt if delta > 0 else -rate * dt)
            area_kmh_s = (v0 + v1) / 2 * dt
            moving = dt
            self.speed_kmh = v1
        self.distance_m += area_kmh_s / 3.6
        self.moving_time_s += moving
        if self.speed_kmh == 0:
            self.emergency = False

    def measured_kmh(self) -> float:
        """The speed a sensor would report: true speed plus optional noise, never < 0."""
        if self.speed_kmh <= 0 or self.noise_kmh <= 0:
            return self.speed_kmh
        return max(0.0, self.speed_kmh + self._rng.gauss(0.0, self.noise_kmh))
