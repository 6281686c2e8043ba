"""Live workouts in real time: tick jitter (other core busy) and CPU per minute.

Each measurement runs in a fresh process (multiprocessing "spawn"), set up as
``retrotread run --device sim`` sets itself up: the in-process simulator (generic preset,
1 Hz telemetry, 0.03 km/h speed noise) on a real ``LoopClock``, the session at 10 Hz, the
session log (``SessionRecorder`` with its flush task) and either the ``--no-ui`` line
printer or the rich live display (2 Hz, the default, rendered to a terminal console on /dev/null).
The workout (``LIVE_PROFILE``: 20 s forward / 20 s backward, turnarounds with a 5 s hold)
runs for the chosen time, then the session is interrupted and stops the belt.

* **Tick jitter**: the session gets a ``LoopClock`` subclass that remembers, per task,
  the deadline of its last ``sleep_until``; a wrapper on ``session.watchdog.observe_tick``
  (called by the loop right after it wakes, with ``clock.now()``) records
  ``now - deadline``: how late the tick ran against its absolute deadline
  ``t0 + k * period``, for the ticks inside the measured window (not the stop after
  it). A second process spins (``while True: pass``) on the other core.
* **CPU**: ``time.process_time()`` of the session process (session, simulator, log and
  printer or display: everything in it) over the wall time of the workout.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TextIO

from benchmarks.common import LIVE_PROFILE, Row, percentile
from retrotread.clock import LoopClock


class DeadlineClock(LoopClock):
    """A LoopClock that remembers the last deadline each task slept until."""

    def __init__(self) -> None:
        self.deadlines: dict[asyncio.Task[Any] | None, float] = {}

    async def sleep_until(self, deadline: float) -> None:
        self.deadlines[asyncio.current_task()] = deadline
        await super().sleep_until(deadline)


def _spin() -> None:
    while True:
        pass


async def _live(duration_s: float, ui: str, measure_jitter: bool,
                devnull: TextIO) -> dict[str, Any]:
    from rich.console import Console

    from retrotread.devices import DeviceSpec
    from retrotread.display import EventPrinter, LiveDisplay
    from retrotread.events import EventBus
    from retrotread.profile import load_profile_text
    from retrotread.recorder import SessionRecorder
    from retrotread.runner import LinkFactory, run_profile, running_simulator, session_settings
    from retrotread.session import Session

    profile = load_profile_text(LIVE_PROFILE, "benchmark-live.yaml")
    sim_clock = LoopClock()
    clock = DeadlineClock()
    bus = EventBus()
    lateness: list[float] = []
    holder: list[Session] = []
    tasks: list[asyncio.Future[Any]] = []
    window: dict[str, float] = {}

    def on_session(session: Session) -> None:
        holder.append(session)
        if measure_jitter:
            observe = session.watchdog.observe_tick

            def observe_tick(now: float) -> None:
                deadline = clock.deadlines.get(asyncio.current_task())
                if deadline is not None and "wall_end" not in window:
                    lateness.append(now - deadline)
                observe(now)

            session.watchdog.observe_tick = observe_tick  # type: ignore[method-assign]

    async def stop_after() -> None:
        await asyncio.sleep(duration_s)
        window["cpu_end"] = time.process_time()
        window["wall_end"] = time.perf_counter()
        holder[0].interrupt("benchmark over")

    with tempfile.TemporaryDirectory() as tmp, SessionRecorder(
            Path(tmp) / "session.jsonl", clock) as recorder:
        bus.subscribe(recorder)
        tasks.append(asyncio.ensure_future(recorder.flush_loop()))
        if ui == "display":
            console = Console(file=devnull, force_terminal=True, width=100, height=40)
            display = LiveDisplay(lambda: holder[0].snapshot("SIMULATED TREADMILL")
                                  if holder else None, console=console)
            bus.subscribe(display)
            tasks.append(asyncio.ensure_future(display.run()))
        else:
            bus.subscribe(EventPrinter(devnull, segment_count=len(profile.flatten())))
        window["cpu_start"] = time.process_time()
        window["wall_start"] = time.perf_counter()
        tasks.append(asyncio.ensure_future(stop_after()))
        try:
            async with running_simulator(sim_clock, "generic", 0.03) as sim:
                result = await run_profile(
                    profile, link_factory=LinkFactory(DeviceSpec("sim", "generic"), sim),
                    clock=clock, bus=bus, simulated=True,
                    settings=session_settings(profile, None, simulated=True),
                    on_session=on_session)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        records = recorder.records_written
    wall = window["wall_end"] - window["wall_start"]
    cpu = window["cpu_end"] - window["cpu_start"]
    return {
        "ui": ui, "wall_s": wall, "cpu_s": cpu, "lateness_s": lateness,
        "outcome": result.outcome.value, "records": records,
        "backward_s": result.backward_s,
    }


def _live_main(conn: Connection, duration_s: float, ui: str, measure_jitter: bool) -> None:
    with open(os.devnull, "w") as devnull:
        conn.send(asyncio.run(_live(duration_s, ui, measure_jitter, devnull)))


def _in_child(duration_s: float, ui: str, measure_jitter: bool) -> tuple[
        multiprocessing.process.BaseProcess, Connection]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_live_main, args=(child, duration_s, ui, measure_jitter),
                          name=f"retrotread-bench-live-{ui}", daemon=True)
    process.start()
    return process, parent


def _collect(process: multiprocessing.process.BaseProcess, conn: Connection,
             timeout_s: float) -> dict[str, Any]:
    if not conn.poll(timeout_s):
        process.terminate()
        raise RuntimeError(f"{process.name} did not report within {timeout_s:.0f} s")
    result: dict[str, Any] = conn.recv()
    process.join(10)
    return result


def run_jitter(duration_s: float) -> list[Row]:
    ctx = multiprocessing.get_context("spawn")
    spinner = ctx.Process(target=_spin, name="retrotread-bench-busy", daemon=True)
    spinner.start()
    try:
        process, conn = _in_child(duration_s, "no-ui", True)
        data = _collect(process, conn, duration_s + 60)
    finally:
        spinner.terminate()
        spinner.join(5)
    ms = [x * 1000 for x in data["lateness_s"]]
    detail = (f"{len(ms)} ticks over {data['wall_s']:.0f} s, 10 Hz, other core busy "
              f"(cpus: {os.cpu_count()})")
    extra = {"ticks": len(ms), "max_ms": max(ms) if ms else None,
             "p90_ms": percentile(ms, 90), "p999_ms": percentile(ms, 99.9),
             "mean_ms": sum(ms) / len(ms) if ms else None,
             "over_5ms": sum(1 for x in ms if x > 5), "outcome": data["outcome"]}
    return [
        Row("tick lateness p50 (other core busy)", percentile(ms, 50), "ms", detail=detail,
            extra=extra),
        Row("tick lateness p99 (other core busy)", percentile(ms, 99), "ms", target=5.0,
            detail=f"max {extra['max_ms']:.2f} ms, {extra['over_5ms']} ticks over 5 ms"),
    ]


def run_cpu(duration_s: float) -> list[Row]:
    # The two variants run side by side, one per core: CPU time is per process.
    children = [(ui, *_in_child(duration_s, ui, False)) for ui in ("no-ui", "display")]
    rows: list[Row] = []
    for ui, process, conn in children:
        data = _collect(process, conn, duration_s + 60)
        per_min = data["cpu_s"] / data["wall_s"] * 60
        pct = data["cpu_s"] / data["wall_s"] * 100
        label = ("CPU, session + sim + log + --no-ui printer" if ui == "no-ui"
                 else "CPU, same + rich live display (2 Hz, the default)")
        rows.append(Row(
            f"{label} (% of a core)", pct, "%", target=2.0,
            detail=f"{per_min:.3f} CPU s per minute of workout ({data['cpu_s']:.2f} s CPU "
                   f"in {data['wall_s']:.0f} s)",
            extra={"cpu_s_per_min": per_min, "records": data["records"],
                   "outcome": data["outcome"]}))
    return rows
