"""Virtual-time speed: minutes of workout per minute of wall time.

Every bundled profile (``profiles/*.yaml``) runs end to end on the in-process simulator
(generic preset, no noise) with the settings ``retrotread run`` would use, on a looptime
event loop (``looptime.new_event_loop(noop_cycles=1)``), the way the tests run them. The
event bus collects every event in a list, as the test harness does. Workout time is the
session's own elapsed time; wall time is ``time.perf_counter()`` around each run.

A second pass runs the same set under cProfile and reports where the time goes.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import time
from pathlib import Path
from typing import Any

import looptime

from benchmarks.common import Row

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


async def _one(path: Path) -> float:
    from retrotread.clock import LoopClock
    from retrotread.devices import DeviceSpec
    from retrotread.events import Event, EventBus, Outcome
    from retrotread.profile import load_profile
    from retrotread.runner import LinkFactory, run_profile, running_simulator, session_settings

    profile = load_profile(path)
    clock = LoopClock()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    async with running_simulator(clock, "generic", 0.0) as sim:
        result = await run_profile(
            profile, link_factory=LinkFactory(DeviceSpec("sim", "generic"), sim),
            clock=clock, bus=bus, simulated=True,
            settings=session_settings(profile, None, simulated=True))
    if result.outcome is not Outcome.COMPLETED:
        raise RuntimeError(f"{path.name}: {result.outcome.value}: {result.reason}")
    return result.elapsed_s


def run_virtual(path: Path) -> tuple[float, float]:
    """(workout seconds, wall seconds) of one profile in virtual time."""
    loop = looptime.new_event_loop(noop_cycles=1)
    try:
        start = time.perf_counter()
        workout_s = loop.run_until_complete(_one(path))
        return workout_s, time.perf_counter() - start
    finally:
        loop.close()


def run(rounds: int, *, profile_top: int = 5) -> list[Row]:
    paths = sorted(PROFILES_DIR.glob("*.yaml"))
    per_profile: dict[str, dict[str, float]] = {}
    workout_total = wall_total = 0.0
    run_virtual(paths[0])  # warm-up: imports, first compilations
    for _ in range(rounds):
        for path in paths:
            workout_s, wall_s = run_virtual(path)
            entry = per_profile.setdefault(path.stem, {"workout_s": workout_s, "wall_s": 0.0})
            entry["wall_s"] += wall_s / rounds
            workout_total += workout_s
            wall_total += wall_s
    for entry in per_profile.values():
        entry["min_per_min"] = entry["workout_s"] / entry["wall_s"]
    speed = workout_total / wall_total
    top = profile_costs(paths, profile_top)
    floor = empty_ticker_speed()
    return [Row(
        "virtual-time speed (workout min per wall min)", speed, "min/min", target=20000.0,
        better="higher",
        detail=f"{len(paths)} bundled profiles x {rounds}: {workout_total / 60:.0f} workout "
               f"min in {wall_total:.2f} s",
        extra={"per_profile": per_profile, "top_costs": top}),
        Row("reference: empty 10 Hz ticker, same looptime loop", floor, "min/min",
            detail="a task that only sleeps to t0 + k * 0.1 s: the ceiling for any 10 Hz loop"),
    ]


async def _ticker(ticks: int, period_s: float) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for k in range(1, ticks + 1):
        delay = t0 + k * period_s - loop.time()
        await asyncio.sleep(delay if delay > 0 else 0)


def empty_ticker_speed(virtual_s: float = 3600.0, period_s: float = 0.1) -> float:
    """Virtual minutes per wall minute of a loop that does nothing but tick at 10 Hz."""
    loop = looptime.new_event_loop(noop_cycles=1)
    try:
        start = time.perf_counter()
        loop.run_until_complete(_ticker(int(virtual_s / period_s), period_s))
        return virtual_s / (time.perf_counter() - start)
    finally:
        loop.close()


def profile_costs(paths: list[Path], top: int) -> dict[str, Any]:
    profiler = cProfile.Profile()
    profiler.enable()
    for path in paths:
        run_virtual(path)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    ordered = sorted(stats.stats.items(), key=lambda item: item[1][2],  # type: ignore[attr-defined]
                     reverse=True)

    def entries(only_ours: bool) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in ordered:
            if only_ours and "/retrotread/" not in filename:
                continue
            rows.append({"function": f"{_short(filename)}:{line}({name})", "calls": calls,
                         "tottime_s": tottime, "cumtime_s": cumtime,
                         "share_pct": 100 * tottime / total if total else 0.0})
            if len(rows) == top:
                break
        return rows

    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    return {"total_s": total, "by_tottime": entries(False),
            "by_tottime_retrotread": entries(True), "cumulative_report": text.getvalue()}


def _short(filename: str) -> str:
    for marker in ("/retrotread/", "/site-packages/", "/lib/python3"):
        if marker in filename:
            return filename[filename.index(marker) + 1:]
    return filename
