"""A live workout with the companion page, for a real browser to drive.

The workout (in-process simulator, session, companion server) runs in a thread with its
own event loop in real time (``speedup`` times faster), so a synchronous Playwright
browser in the test's thread can open the page. Also: the Chromium to use.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from typing import Any

from retrotread.clock import ScaledClock
from retrotread.companion import CompanionServer
from retrotread.devices import DeviceSpec
from retrotread.events import Event, EventBus
from retrotread.ftms import codec
from retrotread.presentation import Narration
from retrotread.profile import load_profile_text
from retrotread.runner import LinkFactory, run_profile, running_simulator, session_settings
from retrotread.session import Session, SessionResult
from retrotread.sim.treadmill import SimulatedTreadmill

SHORT_PROFILE = """\
name: Companion test
units: mph
turnaround:
  announce: 5s
  ready: hold
  hold: 5s
  countdown: 3s
segments:
  - forward: 16s
    speed: 2.0 mph
    label: Warm-up walk
    cue: Easy pace.
  - backward: 20s
    speed: 1.0 mph
    label: Backward
    cue: Short steps, land on the ball of the foot.
  - forward: 16s
    speed: 1.8 mph
    label: Cool-down walk
"""


def chromium_path() -> str | None:
    """Debian's chromium (scripts/install-chromium.sh), or $RETROTREAD_CHROMIUM."""
    return os.environ.get("RETROTREAD_CHROMIUM") or shutil.which("chromium") or (
        shutil.which("chromium-browser"))


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]


class LiveWorkout:
    """``with LiveWorkout() as live:`` a workout runs; ``live.url`` is its page."""

    def __init__(self, profile_text: str = SHORT_PROFILE, *, speedup: float = 2.0,
                 simulated: bool = True, preset: str = "generic", rate_hz: float = 4.0,
                 wait_for_first_page: bool = True) -> None:
        self.profile = load_profile_text(profile_text, "companion-test.yaml")
        self.speedup = speedup
        self.simulated = simulated
        self.preset = preset
        self.rate_hz = rate_hz
        self.wait_for_first_page = wait_for_first_page
        self.events: list[Event] = []
        self.url = ""
        self.sim: SimulatedTreadmill | None = None
        self.session: Session | None = None
        self.server: CompanionServer | None = None
        self.result: SessionResult | None = None
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_session: Callable[[Session], None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="live-workout", daemon=True)
        self._page_seen = threading.Event()

    # -- the workout's thread
    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by __exit__
            self.error = exc
        finally:
            self._ready.set()

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        clock = ScaledClock(self.speedup)
        bus = EventBus()
        bus.subscribe(self.events.append)
        narration = Narration()
        bus.subscribe(narration)
        holder: list[Session] = []
        async with running_simulator(clock, self.preset) as sim:
            self.sim = sim
            server = CompanionServer(lambda: holder[0] if holder else None,
                                     narration=narration, host="127.0.0.1", port=0,
                                     banner="SIMULATED TREADMILL" if self.simulated
                                     else "TREADMILL", rate_hz=self.rate_hz)
            await server.start()
            self.server = server
            self.url = server.url("127.0.0.1")
            self._ready.set()
            if self.wait_for_first_page:
                while not server.pages:  # noqa: ASYNC110 (the workout starts once a page is open)
                    await asyncio.sleep(0.02)
            # Keep the real tick period at 100 ms whatever the speedup, so that a busy
            # machine's scheduling jitter is not taken for a stalled control loop.
            settings = dataclasses.replace(
                session_settings(self.profile, None, simulated=self.simulated),
                tick_hz=10.0 / self.speedup)

            def install(session: Session) -> None:
                holder.append(session)
                self.session = session
                if self.on_session is not None:
                    self.on_session(session)

            try:
                self.result = await run_profile(
                    self.profile, link_factory=LinkFactory(DeviceSpec("sim", self.preset), sim),
                    clock=clock, bus=bus, simulated=self.simulated, settings=settings,
                    on_session=install, speedup=self.speedup)
            finally:
                await server.close()

    # -- the test's thread
    def __enter__(self) -> LiveWorkout:
        self._thread.start()
        if not self._ready.wait(30) or self.error is not None:
            raise RuntimeError(f"the live workout did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.error is not None and not isinstance(self.error, asyncio.CancelledError):
            raise RuntimeError("the live workout failed") from self.error

    def stop(self) -> None:
        """Interrupt the workout (the belt is stopped) and wait for its thread."""
        if self.loop is not None and self._thread.is_alive():
            session = self.session
            if session is not None:
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(session.interrupt, "test over")
            else:
                with contextlib.suppress(RuntimeError):
                    for task in asyncio.all_tasks(self.loop):
                        self.loop.call_soon_threadsafe(task.cancel)
        self._thread.join(30)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the workout's loop and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def wire(self) -> list[codec.ControlPointRequest]:
        """Every control point request the simulator received so far."""
        assert self.sim is not None
        return self.call(lambda: list(self.sim.requests))  # type: ignore[union-attr]

    def stops_on_wire(self) -> int:
        return sum(1 for r in self.wire() if isinstance(r, codec.StopOrPause)
                   and r.action is codec.StopPause.STOP)


@contextlib.contextmanager
def browser(headless: bool = True) -> Iterator[Any]:
    """A real headless Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise LookupError("chromium is not installed (scripts/install-chromium.sh)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=headless,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
