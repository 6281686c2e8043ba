"""Shared pieces: the result row, percentiles and the benchmark profiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of the final table."""

    name: str
    value: float
    unit: str
    target: float | None = None
    better: str = "lower"  # "lower": pass when value < target; "higher": value > target
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        if self.target is None or math.isnan(self.value):
            return None
        return self.value < self.target if self.better == "lower" else self.value > self.target

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the value at rank ceil(p/100 * n)): conservative, and
    always one of the measured values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


Z95 = 1.959963984540054
"""The two-sided 95 % point of the normal distribution."""


def wilson_95(hits: int, trials: int) -> tuple[float, float]:
    """The Wilson score 95 % interval for a proportion of ``hits`` in ``trials``."""
    if trials <= 0:
        return (math.nan, math.nan)
    p, z2 = hits / trials, Z95 * Z95
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z95 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X Poisson with ``mean``."""
    term = total = math.exp(-mean)
    for i in range(1, k + 1):
        term *= mean / i
        total += term
    return total


def poisson_95(count: int) -> tuple[float, float]:
    """The exact (Garwood) 95 % interval for the mean of a Poisson count: the means under
    which seeing ``count`` or more, or ``count`` or fewer, has probability 2.5 %."""

    def solve(below: float, k: int) -> float:  # the mean where P(X <= k) falls to ``below``
        lo, hi = 0.0, 10.0 + 10.0 * k
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if poisson_cdf(k, mid) > below else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if count == 0 else solve(0.975, count - 1)
    return (lower, solve(0.025, count))


# One backward segment: each watchdog trial starts a fresh workout on it.
REACTION_PROFILE = """\
name: Benchmark reaction
units: mph
segments:
  - backward: 60s
    speed: 1.0 mph
"""

# A live workout with turnarounds, ramps and both directions inside the first minute.
LIVE_PROFILE = """\
name: Benchmark live workout
units: mph
turnaround:
  announce: 5s
  ready: hold
  hold: 5s
  countdown: 3s
segments:
  - repeat: 10
    segments:
      - forward: 20s
        speed: 2.0 mph
      - backward: 20s
        speed: 1.2 mph
"""
