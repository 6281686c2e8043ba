"""The companion page under load, in a real headless Chromium.

``python -m benchmarks.companion [--presses N] [--seconds S]`` prints a table:

* **STOP → wire**: the page's STOP pressed in Chromium (the ``pointerdown`` event's own
  time stamp, ``performance.timeOrigin + event.timeStamp``) to the Stop decoded by the
  simulator (``time.time()`` when it appends the request), over N presses. Each press gets
  a fresh simulated treadmill and session, caught in its start countdown (the session
  is live and a Stop is what it must send); the page stays connected to the one server,
  which serves each new session in turn. Target p99 <= 250 ms.
* **tick lateness with 8 pages**: a live workout (LIVE_PROFILE, 10 Hz, real clock) with
  8 pages of one Chromium connected at 4 Hz each; lateness of each tick against its
  absolute deadline (as in ``live.py``) over S seconds. Target p99 <= 5 ms.
* **server CPU, 2 pages at 2 Hz**: ``time.thread_time()`` of the thread that runs the
  event loop (session, simulator, companion server) over S seconds, with no page and
  with 2 pages fed at 2 Hz; the difference is the page server's share.

Everything runs in one process: the workout's event loop in a thread, Playwright's
synchronous client in the main thread, Chromium in its own processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import LIVE_PROFILE, REACTION_PROFILE, Row, percentile
from benchmarks.live import DeadlineClock
from retrotread.clock import LoopClock
from retrotread.companion import CompanionServer
from retrotread.devices import DeviceSpec
from retrotread.events import EventBus
from retrotread.ftms import codec
from retrotread.presentation import Narration
from retrotread.profile import load_profile_text
from retrotread.runner import LinkFactory, run_profile
from retrotread.session import Session, SessionSettings, State
from retrotread.sim.treadmill import SimulatedTreadmill


class TimedRequests(list):  # type: ignore[type-arg]
    """The simulator's request list, with the wall time each Stop arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.stop_ms: list[float] = []

    def append(self, request: Any) -> None:
        if isinstance(request, codec.StopOrPause) and request.action is codec.StopPause.STOP:
            self.stop_ms.append(time.time() * 1000.0)
        super().append(request)


class Bench:
    """An event loop in a thread: one companion server; sessions started on demand."""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self.session: Session | None = None
        self.server: CompanionServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._tasks: list[asyncio.Future[Any]] = []

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        narration = Narration()
        self.narration = narration
        self.server = CompanionServer(lambda: self.session, narration=narration,
                                      host="127.0.0.1", port=0, rate_hz=self.rate_hz)
        await self.server.start()
        self._ready.set()
        await self._stop.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.server.close()

    def __enter__(self) -> Bench:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url("127.0.0.1")

    def call(self, fn: Callable[[], Any]) -> Any:
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def start_session(self, profile_text: str, *, clock: LoopClock,
                      settings: SessionSettings,
                      on_session: Callable[[Session], None] | None = None) -> SimulatedTreadmill:
        """A fresh simulator and session (the previous ones are left to finish)."""
        profile = load_profile_text(profile_text, "benchmark.yaml")

        def begin() -> SimulatedTreadmill:
            sim = SimulatedTreadmill(clock, "generic", telemetry_interval_s=0.1)
            sim.requests = TimedRequests()
            bus = EventBus()
            bus.subscribe(self.narration)

            def install(session: Session) -> None:
                self.session = session
                if on_session is not None:
                    on_session(session)

            async def run() -> None:
                sim_task = asyncio.ensure_future(sim.run())
                try:
                    await run_profile(profile, link_factory=LinkFactory(
                        DeviceSpec("sim", "generic"), sim), clock=clock, bus=bus,
                        simulated=True, settings=settings, on_session=install)
                finally:
                    sim.close()
                    sim_task.cancel()

            self._tasks.append(asyncio.ensure_future(run()))
            return sim

        sim: SimulatedTreadmill = self.call(begin)
        return sim

    def state(self) -> State | None:
        return self.call(lambda: self.session.state if self.session else None)


@contextlib.contextmanager
def _browser() -> Any:
    """Chromium at the lowest CPU priority: in use the pages run on a phone, not on the
    computer that drives the treadmill, so they should not compete with the loop here."""
    from tests.companion_harness import browser

    with browser() as chromium:
        chromium.new_page().close()  # make sure every helper process exists
        _renice_descendants()
        yield chromium


def _renice_descendants() -> None:
    """nice 19 for every process below this one (Playwright's driver and Chromium)."""
    import os
    from pathlib import Path

    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                changed = True
    for pid in mine - {os.getpid()}:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 19)


def stop_latency(presses: int, progress: Callable[[str], None]) -> list[Row]:
    latencies: list[float] = []
    failures = 0
    settings = SessionSettings(start_countdown_s=60.0)  # live, waiting: STOP must stop
    with Bench(rate_hz=4.0) as bench, _browser() as chromium:
        page = chromium.new_page(viewport={"width": 390, "height": 844})
        page.goto(bench.url)
        page.evaluate("""() => document.getElementById('stop').addEventListener(
            'pointerdown', (e) => { window.__pressed = performance.timeOrigin + e.timeStamp; },
            true)""")
        for i in range(presses):
            sim = bench.start_session(REACTION_PROFILE, clock=LoopClock(), settings=settings)
            deadline = time.monotonic() + 10
            while bench.state() is not State.COUNTDOWN and time.monotonic() < deadline:
                time.sleep(0.01)
            page.wait_for_selector("body.phase-countdown #stop:not([hidden])", timeout=10_000)
            page.click("#stop")
            deadline = time.monotonic() + 5
            requests: TimedRequests = sim.requests  # type: ignore[assignment]
            while not requests.stop_ms and time.monotonic() < deadline:
                time.sleep(0.002)
            pressed = page.evaluate("window.__pressed")
            if not requests.stop_ms or pressed is None:
                failures += 1
                continue
            latencies.append(requests.stop_ms[0] - pressed)
            if (i + 1) % 20 == 0:
                progress(f"  {i + 1} presses")
            page.wait_for_selector("body.phase-stopping, body.phase-finished", timeout=10_000)
    return [
        Row("STOP in Chromium -> Stop on the wire, p50", percentile(latencies, 50), "ms",
            detail=f"{len(latencies)} presses, {failures} without a Stop"),
        Row("STOP in Chromium -> Stop on the wire, p99", percentile(latencies, 99), "ms",
            target=250.0, extra={"max_ms": max(latencies, default=float("nan"))}),
    ]


def _live(bench: Bench, seconds: float, clock: LoopClock,
          on_session: Callable[[Session], None] | None = None) -> None:
    bench.start_session(LIVE_PROFILE, clock=clock, settings=SessionSettings(),
                        on_session=on_session)
    time.sleep(seconds)
    bench.call(lambda: bench.session.interrupt("benchmark over") if bench.session else None)
    time.sleep(1.0)


def serve(seconds: float, pages: int, rate_hz: float) -> dict[str, Any]:
    """The workout's side, in a process of its own (``--serve``): print the URL, wait for
    ``pages`` pages, run the live workout for ``seconds``; return the measurements."""
    clock = DeadlineClock()
    lateness: list[float] = []

    def on_session(session: Session) -> None:
        observe = session.watchdog.observe_tick

        def observe_tick(now: float) -> None:
            deadline = clock.deadlines.get(asyncio.current_task())
            if deadline is not None and session.state is not State.SAFE_STOP:
                lateness.append((now - deadline) * 1000.0)
            observe(now)

        session.watchdog.observe_tick = observe_tick  # type: ignore[method-assign]

    slices_ms: list[float] = []

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                slices_ms.append((time.perf_counter() - t0) * 1000.0)

        return wrapper

    with Bench(rate_hz=rate_hz) as bench:
        server = bench.server
        assert server is not None
        # The server's work in the loop, between two awaits: what it can hold a tick up by.
        server.frame = timed(server.frame)  # type: ignore[method-assign]
        server._broadcast = timed(server._broadcast)  # type: ignore[method-assign]
        print(bench.url, flush=True)
        deadline = time.monotonic() + 60
        while (bench.call(lambda: len(bench.server.pages))  # type: ignore[union-attr]
               < pages and time.monotonic() < deadline):
            time.sleep(0.1)
        connected = bench.call(lambda: len(bench.server.pages))  # type: ignore[union-attr]
        start_cpu = bench.call(time.thread_time)
        start = time.monotonic()
        _live(bench, seconds, clock, on_session)
        cpu = bench.call(time.thread_time) - start_cpu
        wall = time.monotonic() - start
        messages = bench.call(lambda: bench.server.frames_sent)  # type: ignore[union-attr]
    return {"lateness_ms": lateness, "pages": connected, "cpu_pct": 100.0 * cpu / wall,
            "messages": messages, "slices_ms": slices_ms}


def _measure(seconds: float, pages: int, rate_hz: float, *,
             browser: bool = True) -> dict[str, Any]:
    """Run :func:`serve` in a child process and open ``pages`` pages on it: Chromium
    pages, or (``browser=False``) bare WebSocket clients in another process, which cost
    this machine almost nothing, to tell the server's own cost from Chromium's."""
    import json
    import subprocess

    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.companion", "--serve", str(seconds),
         "--pages", str(pages), "--rate", str(rate_hz)],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    if not browser:
        clients = subprocess.Popen([sys.executable, "-m", "benchmarks.companion",
                                    "--clients", url, "--pages", str(pages)])
        try:
            out, _ = child.communicate(timeout=seconds + 120)
        finally:
            clients.kill()
            clients.wait()
        return json.loads(out.strip().splitlines()[-1])
    with _browser() as chromium:
        opened = [chromium.new_page(viewport={"width": 390, "height": 844})
                  for _ in range(pages)]
        for page in opened:
            page.goto(url)
        _renice_descendants()  # the renderers of the pages just opened too
        out, _ = child.communicate(timeout=seconds + 120)
    return json.loads(out.strip().splitlines()[-1])


async def _clients(url: str, pages: int) -> None:
    """``pages`` WebSocket clients that read every message (until killed)."""
    import aiohttp

    ws_url = url.replace("http://", "ws://").replace("/?t=", "/ws?t=")
    async with aiohttp.ClientSession() as http:

        async def one() -> None:
            async with http.ws_connect(ws_url) as ws:
                async for _ in ws:
                    pass

        await asyncio.gather(*(one() for _ in range(pages)))


def tick_lateness(seconds: float) -> list[Row]:
    rows = []
    for pages, browser, what in ((0, True, "no page"),
                                 (8, False, "8 WebSocket clients at 4 Hz, no browser"),
                                 (8, True, "8 Chromium pages at 4 Hz")):
        result = _measure(seconds, pages, 4.0, browser=browser)
        lateness = result["lateness_ms"]
        rows.append(Row(f"tick lateness p99, {what}",
                        percentile(lateness, 99), "ms", target=5.0 if pages else None,
                        detail=f"{len(lateness)} ticks, {result['pages']} pages connected, "
                        f"max {max(lateness, default=float('nan')):.1f} ms"))
        if pages and browser:
            slices = result["slices_ms"]
            rows.append(Row("page server's longest slice in the loop, 8 pages",
                            max(slices, default=float("nan")), "ms",
                            detail=f"building a frame or queueing it for 8 pages, "
                            f"{len(slices)} slices, p99 {percentile(slices, 99):.2f} ms"))
    return rows


def server_cpu(seconds: float) -> list[Row]:
    idle = _measure(seconds, 0, 2.0)
    two = _measure(seconds, 2, 2.0)
    return [
        Row("workout process loop CPU, no page", idle["cpu_pct"], "% of a core"),
        Row("workout process loop CPU, 2 pages at 2 Hz", two["cpu_pct"], "% of a core",
            detail=f"{two['messages']} messages sent to the pages"),
        Row("page server's share (2 pages at 2 Hz)", two["cpu_pct"] - idle["cpu_pct"],
            "% of a core"),
    ]


def run(presses: int = 100, seconds: float = 30.0,
        progress: Callable[[str], None] | None = None) -> list[Row]:
    say = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    say(f"companion: {presses} STOP presses ...")
    rows = stop_latency(presses, say)
    say(f"companion: tick lateness with 8 pages, {seconds:.0f} s ...")
    rows += tick_lateness(seconds)
    say(f"companion: server CPU, 2 x {seconds:.0f} s ...")
    rows += server_cpu(seconds)
    return rows


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import table

    parser = argparse.ArgumentParser(prog="python -m benchmarks.companion",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--serve", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pages", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=4.0, help=argparse.SUPPRESS)
    parser.add_argument("--clients", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients is not None:
        asyncio.run(_clients(args.clients, args.pages))
        return 0
    if args.serve is not None:
        import json

        print(json.dumps(serve(args.serve, args.pages, args.rate)), flush=True)
        return 0
    rows = run(args.presses, args.seconds)
    print(table(rows))
    for row in rows:
        if row.detail:
            print(f"  {row.name}: {row.detail}")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
