"""Limits on what an outside source can cost us: a token bucket and a log summary.

Pure: every call takes ``now`` (seconds on any monotonic clock); nothing here reads a
clock, sleeps or logs. The MQTT bridge uses both for remote commands, the Direct Connect
server for its warnings, so a flood costs a few records and one line per period, never
one line per message.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """At most ``burst`` at once, refilled at ``rate_per_s``: ``take(now)`` says whether
    one more may pass now."""

    rate_per_s: float
    burst: float
    _tokens: float | None = field(default=None, init=False)
    _updated_s: float = field(default=0.0, init=False)

    def take(self, now: float) -> bool:
        if self._tokens is None:
            self._tokens = self.burst
        else:
            elapsed = max(0.0, now - self._updated_s)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
        self._updated_s = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass
class SuppressedLog:
    """Counts what was not logged one by one, and says when a summary is due.

    ``note(reason, now)`` returns True the first time a reason is seen (log that one in
    full) and otherwise counts it; ``due(now)`` returns the counts of the last ``period_s``
    (and starts a new period) once the period is over, else None.
    """

    period_s: float = 30.0
    counts: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)
    _since_s: float | None = field(default=None, init=False)

    def note(self, reason: str, now: float) -> bool:
        self.totals[reason] += 1
        if self.totals[reason] == 1:
            return True
        if self._since_s is None:
            self._since_s = now
        self.counts[reason] += 1
        return False

    def due(self, now: float) -> dict[str, int] | None:
        if self._since_s is None or now - self._since_s < self.period_s:
            return None
        return self.flush()

    def flush(self) -> dict[str, int] | None:
        """The counts not yet reported (None if there are none), starting a new period."""
        counts = {reason: n for reason, n in self.counts.items() if n}
        self.counts.clear()
        self._since_s = None
        return counts or None


def describe_counts(counts: dict[str, int]) -> str:
    """``12,000 not a command, 345 over the rate limit``: counts in one line."""
    return ", ".join(f"{n:,} {reason}" for reason, n in sorted(counts.items(),
                                                                 key=lambda kv: -kv[1]))
