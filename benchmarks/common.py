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
