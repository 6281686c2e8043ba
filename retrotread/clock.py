"""The injected clock: monotonic seconds and sleeping until an absolute deadline.

Everything that keeps time (the simulator's physics, the session loop, the watchdog)
reads one ``Clock``. In production it is the asyncio loop's monotonic clock; in tests the
same clock runs in virtual time (looptime fast-forwards the loop), so a 30-minute workout
runs in milliseconds with exactly the same events. Schedule against absolute deadlines
(``t0 + k * period``), never by adding up sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds (arbitrary origin)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return at or after ``deadline`` (in this clock's seconds)."""
        ...


class LoopClock:
    """The running asyncio loop's monotonic clock (virtual under looptime)."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - self.now()
        await asyncio.sleep(delay if delay > 0 else 0)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + seconds)


MAX_SCALED_STEP_S = 1.5
"""A sped-up clock never jumps more than this (in its own seconds) between two readings."""


class ScaledClock:
    """A clock that runs ``speedup`` times faster than the loop's (for simulator demos).

    The simulated machine and the session share it, so when the computer stalls (a busy
    laptop, 0.3 s without scheduling), simulated time advances by at most
    ``MAX_SCALED_STEP_S`` at once instead of ``speedup`` times the stall: a hiccup is not
    magnified into a simulated fault (at 20x, 0.3 s would be 6 s without telemetry).
    A stalled control loop is judged on the real clock instead (``Session.stall_clock``).
    """

    def __init__(self, speedup: float) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.speedup = speedup
        self._origin: float | None = None
        self._last_loop_s = 0.0
        self._now_s = 0.0

    def now(self) -> float:
        t = asyncio.get_running_loop().time()
        if self._origin is None:
            self._origin = self._last_loop_s = self._now_s = t
        step = (t - self._last_loop_s) * self.speedup
        self._last_loop_s = t
        self._now_s += min(max(step, 0.0), MAX_SCALED_STEP_S)
        return self._now_s

    async def sleep_until(self, deadline: float) -> None:
        delay = (deadline - self.now()) / self.speedup
        await asyncio.sleep(delay if delay > 0 else 0)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + seconds)


async def sleep_until_or_woken(clock: Clock, deadline: float, wakeup: asyncio.Event) -> None:
    """Sleep until ``deadline`` or until ``wakeup`` is set, whichever comes first.

    The caller clears ``wakeup`` before deciding on the deadline, so a wake-up that comes
    in between is not lost.
    """
    sleeper = asyncio.ensure_future(clock.sleep_until(deadline))
    waker = asyncio.ensure_future(wakeup.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waker.cancel()


def next_deadline(due: float, now: float, period: float) -> float:
    """The next absolute deadline after ``due`` has passed at ``now``: missed periods are
    skipped rather than bunched."""
    return due + (int((now - due) // period) + 1) * period
