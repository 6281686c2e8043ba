"""Watchdog reaction: fault -> StopOrPause(STOP) decoded by the machine, real clock, TCP.

Two processes:

* the **machine** (a child process): ``SimulatedTreadmill`` served by ``DirconServer`` on
  127.0.0.1 (port 0), telemetry at 10 Hz, on a real ``LoopClock``. It takes commands on a
  pipe; on ``inject`` it reads ``time.monotonic()`` and applies the fault at once (safety
  key pulled, console stop, runaway), and a ``request_listeners`` hook reads
  ``time.monotonic()`` when a StopOrPause(STOP) is decoded. Both times are on the
  machine's clock.
* the **controller** (this process): ``run_profile`` over a ``DirconLink`` with a real
  ``LoopClock`` at 10 Hz, one fresh workout per fault (one backward segment at 1.0 mph,
  0.5 s start countdown). A user/remote stop is injected here
  (``session.request(UserCommand.STOP, "remote")``) and timed with ``time.monotonic()``;
  on Linux that is CLOCK_MONOTONIC, the same system-wide clock the machine reads.

A fault is injected at a random moment 0.2-0.5 s after the belt was started, so its phase
against the 10 Hz tick and the 10 Hz telemetry is random.

The runaway is measured separately: the watchdog can only see it in telemetry, so its
latency is counted from the moment the belt's true speed crosses the runaway threshold
(backward ceiling + ``backward_runaway_margin_kmh``), computed exactly from the belt
physics at injection, to Stop decoded; it includes up to one telemetry period and one tick.

The simulated belt accelerates and brakes at 3 km/h/s here (the generic preset: 1 / 1.5)
so that each trial is short; reaction times are measured from the fault, so the belt rate
does not enter them, except for the runaway's time-to-threshold, which is excluded.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.common import REACTION_PROFILE, Row, percentile

TELEMETRY_HZ = 10.0
BELT_RATE_KMH_PER_S = 3.0
RUNAWAY_KMH = 8.0
FAST_KINDS = ("safety_key", "console_stop", "remote_stop")


# =========================================================================== machine side
def _machine_main(conn: Connection, telemetry_hz: float, belt_rate: float) -> None:
    asyncio.run(_machine(conn, telemetry_hz, belt_rate))


async def _machine(conn: Connection, telemetry_hz: float, belt_rate: float) -> None:
    from retrotread.clock import LoopClock
    from retrotread.ftms import codec
    from retrotread.links.dircon import DirconServer
    from retrotread.sim.treadmill import MachineState, SimulatedTreadmill

    loop = asyncio.get_running_loop()
    clock = LoopClock()
    sim = SimulatedTreadmill(clock, "generic", telemetry_interval_s=1.0 / telemetry_hz)
    sim.belt.acceleration_kmh_per_s = belt_rate
    sim.belt.deceleration_kmh_per_s = belt_rate
    stops: list[float] = []
    requests_at: list[float] = []  # every control point write decoded (time.monotonic())
    injections: list[tuple[str, float, float]] = []  # kind, t_fault, t_threshold
    done = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    def on_request(_time_s: float, request: codec.ControlPointRequest) -> None:
        now = time.monotonic()
        requests_at.append(now)
        if isinstance(request, codec.StopOrPause) and request.action is codec.StopPause.STOP:
            stops.append(now)

    sim.request_listeners.append(on_request)

    def inject(kind: str, threshold_kmh: float) -> None:
        t_fault = time.monotonic()
        t_threshold = t_fault
        if kind == "safety_key":
            sim.pull_safety_key()
        elif kind == "console_stop":
            sim.console_stop()
        elif kind == "runaway":
            sim.belt.advance_to(clock.now())
            v0 = sim.belt.speed_kmh
            sim.start_runaway(RUNAWAY_KMH)
            t_threshold = t_fault + max(0.0, threshold_kmh - v0) / sim.belt.acceleration_kmh_per_s
        else:
            raise ValueError(kind)
        injections.append((kind, t_fault, t_threshold))

    async def report() -> None:
        # Clear the faults, put the key back, wait for the belt to stand still.
        sim.faults.runaway_kmh = None
        if sim.state is MachineState.RUNNING:
            sim.console_stop()  # a trial that never sent Stop: stop the belt ourselves
        sim.insert_safety_key()
        while True:
            sim.belt.advance_to(clock.now())
            if sim.belt.speed_kmh <= 0:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.5 / telemetry_hz)  # a zero-speed sample has gone out
        # A procedure is pending from its write until its reply (LoopClock is
        # time.monotonic(), the loop's clock). One at a time: a reply ends the latest write.
        replies = [at for at, _request, _response in sim.replies_delivered]
        pending = [(start, next((r for r in replies if r >= start), float("inf")))
                   for start in requests_at]
        conn.send(("report", list(injections), list(stops), pending))
        injections.clear()
        stops.clear()
        requests_at.clear()
        sim.replies_delivered.clear()

    def on_pipe() -> None:
        while conn.poll():
            try:
                message = conn.recv()
            except EOFError:
                done.set()
                return
            match message:
                case ("inject", str(kind), float(threshold)):
                    inject(kind, threshold)
                case ("report",):
                    task = loop.create_task(report())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                case ("quit",):
                    done.set()
                case _:
                    raise ValueError(f"unknown message {message!r}")

    runner = loop.create_task(sim.run())
    try:
        async with DirconServer(sim, "127.0.0.1", 0) as server:
            loop.add_reader(conn.fileno(), on_pipe)
            conn.send(("port", server.port))
            await done.wait()
            loop.remove_reader(conn.fileno())
    finally:
        sim.close()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


# =========================================================================== controller side
@dataclass
class Trial:
    kind: str
    latency_s: float | None  # fault (or threshold crossing) -> Stop decoded by the machine
    from_injection_s: float | None  # fault injection -> Stop (differs only for runaway)
    outcome: str
    stops_before_fault: int
    error: str = ""
    pending_reply_s: float | None = None
    """The fault landed while a command waited for its reply: how long it still waited
    (FTMS allows one procedure at a time, so the Stop cannot go out before it)."""


EXPECTED_OUTCOME = {
    "safety_key": "safety_key",
    "console_stop": "stopped_by_user",
    "remote_stop": "stopped_by_user",
    "runaway": "watchdog",
}


async def _recv(conn: Connection, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not conn.poll():
        if time.monotonic() > deadline:
            raise TimeoutError("the machine process did not answer")
        await asyncio.sleep(0.01)
    return conn.recv()


async def _trial(port: int, conn: Connection, kind: str, rng: random.Random,
                 tick_hz: float) -> Trial:
    from retrotread.clock import LoopClock
    from retrotread.envelope import Direction
    from retrotread.events import Event, EventBus, TurnaroundPhase, UserCommand
    from retrotread.links.dircon import DirconLink
    from retrotread.profile import load_profile_text
    from retrotread.runner import run_profile
    from retrotread.session import Session, SessionSettings, State

    profile = load_profile_text(REACTION_PROFILE, "benchmark-reaction.yaml")
    clock = LoopClock()
    bus = EventBus()
    started = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, TurnaroundPhase) and event.phase == "start":
            started.set()

    bus.subscribe(on_event)
    remote_fault: list[float] = []
    scenario: list[asyncio.Task[None]] = []

    async def inject(session: Session) -> None:
        await started.wait()
        # runaway: let the belt reach its 1.0 mph first (0.54 s at 3 km/h/s)
        delay = rng.uniform(0.7, 1.0) if kind == "runaway" else rng.uniform(0.2, 0.5)
        await asyncio.sleep(delay)
        if session.state is not State.RUNNING:
            return
        if kind == "remote_stop":
            remote_fault.append(time.monotonic())
            session.request(UserCommand.STOP, "remote")
            return
        threshold = (session.envelope.ceiling_kmh(Direction.BACKWARD)
                     + session.watchdog.limits.backward_runaway_margin_kmh)
        conn.send(("inject", kind, float(threshold)))

    def on_session(session: Session) -> None:
        scenario.append(asyncio.ensure_future(inject(session)))

    def link_factory() -> DirconLink:
        return DirconLink("127.0.0.1", port)

    outcome = "none"
    error = ""
    try:
        result = await asyncio.wait_for(run_profile(
            profile, link_factory=link_factory, clock=clock, bus=bus, simulated=True,
            settings=SessionSettings(tick_hz=tick_hz, start_countdown_s=0.5),
            on_session=on_session,
        ), timeout=30.0)
        outcome = result.outcome.value
    except Exception as exc:  # a failed trial is reported, never hidden
        error = f"{type(exc).__name__}: {exc}"
    for task in scenario:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    conn.send(("report",))
    message = await _recv(conn, 15.0)
    _, injections, stops, pending = message
    if kind == "remote_stop":
        t_fault = t_threshold = remote_fault[0] if remote_fault else None
    elif injections:
        _, t_fault, t_threshold = injections[0]
    else:
        t_fault = t_threshold = None
    if t_fault is None:
        return Trial(kind, None, None, outcome, 0, error or "no fault injected")
    after = [t for t in stops if t >= t_fault]
    before = sum(1 for t in stops if t < t_fault)
    if not after:
        return Trial(kind, None, None, outcome, before, error or "no Stop after the fault")
    if outcome != EXPECTED_OUTCOME[kind] and not error:
        error = f"outcome {outcome}, expected {EXPECTED_OUTCOME[kind]}"
    waits = [reply - t_fault for start, reply in pending if start <= t_fault < reply]
    return Trial(kind, after[0] - t_threshold, after[0] - t_fault, outcome, before, error,
                 max(waits) if waits else None)


async def _run_trials(conn: Connection, port: int, kinds: list[str], seed: int,
                      tick_hz: float, progress: Callable[[str], None]) -> list[Trial]:
    rng = random.Random(seed)
    trials: list[Trial] = []
    for i, kind in enumerate(kinds, 1):
        trial = await _trial(port, conn, kind, rng, tick_hz)
        trials.append(trial)
        if i % 20 == 0 or i == len(kinds):
            progress(f"  watchdog reaction: {i}/{len(kinds)} trials")
    return trials


def run(*, fast_trials: int, runaway_trials: int, seed: int = 1,
        tick_hz: float = 10.0, progress: Callable[[str], None] = print) -> list[Row]:
    kinds = [FAST_KINDS[i % len(FAST_KINDS)] for i in range(fast_trials)]
    random.Random(seed).shuffle(kinds)
    kinds += ["runaway"] * runaway_trials
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    machine = ctx.Process(target=_machine_main, args=(child, TELEMETRY_HZ, BELT_RATE_KMH_PER_S),
                          name="retrotread-bench-machine", daemon=True)
    machine.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the machine process did not start")
        tag, port = parent.recv()
        assert tag == "port"
        t0 = time.perf_counter()
        trials = asyncio.run(_run_trials(parent, port, kinds, seed, tick_hz, progress))
        wall = time.perf_counter() - t0
    finally:
        with contextlib.suppress(OSError):
            parent.send(("quit",))
        machine.join(10)
        if machine.is_alive():
            machine.terminate()
            machine.join(5)
    return summarize(trials, wall, tick_hz)


def summarize(trials: list[Trial], wall_s: float, tick_hz: float) -> list[Row]:
    fast = [t for t in trials if t.kind != "runaway"]
    runaway = [t for t in trials if t.kind == "runaway"]
    failures = [t for t in trials if t.latency_s is None or t.error or t.stops_before_fault]
    ms = [t.latency_s * 1000 for t in fast if t.latency_s is not None]
    per_kind: dict[str, dict[str, float]] = {}
    for kind in FAST_KINDS:
        values = [t.latency_s * 1000 for t in fast if t.kind == kind and t.latency_s is not None]
        per_kind[kind] = {"n": len(values), "p50_ms": percentile(values, 50),
                          "p99_ms": percentile(values, 99),
                          "max_ms": max(values) if values else float("nan")}
    details = {
        "trials": len(fast), "measured": len(ms), "failures": len(
            [t for t in failures if t.kind != "runaway"]),
        "max_ms": max(ms) if ms else float("nan"), "per_kind": per_kind,
        "wall_s": wall_s, "tick_hz": tick_hz, "telemetry_hz": TELEMETRY_HZ,
        "failed": [vars(t) for t in failures][:20],
    }
    idle = [t.latency_s * 1000 for t in fast
            if t.latency_s is not None and t.pending_reply_s is None]
    busy = [t for t in fast if t.latency_s is not None and t.pending_reply_s is not None]
    busy_ms = [t.latency_s * 1000 for t in busy]
    after_reply_ms = [(t.latency_s - t.pending_reply_s) * 1000 for t in busy
                      if t.latency_s is not None and t.pending_reply_s is not None]
    details["control_point_idle"] = {"n": len(idle), "p50_ms": percentile(idle, 50),
                                     "p99_ms": percentile(idle, 99)}
    details["reply_pending"] = {"n": len(busy_ms), "p50_ms": percentile(busy_ms, 50),
                                "p99_ms": percentile(busy_ms, 99),
                                "after_reply_p99_ms": percentile(after_reply_ms, 99)}
    kinds_text = ", ".join(f"{k} p50 {v['p50_ms']:.1f}/p99 {v['p99_ms']:.1f}"
                           for k, v in per_kind.items())
    rows = [
        Row("watchdog reaction p50 (fault -> Stop on the wire)", percentile(ms, 50), "ms",
            detail=f"{len(ms)} faults over TCP loopback, {tick_hz:g} Hz", extra=details),
        Row("watchdog reaction p99 (fault -> Stop on the wire)", percentile(ms, 99), "ms",
            target=150.0, detail=kinds_text + f"; failures {details['failures']}"),
        Row("  fault with the control point idle, p99", percentile(idle, 99),
            "ms", detail=f"{len(idle)} faults; p50 {percentile(idle, 50):.2f} ms"),
        Row("  fault while a command waits for its reply, p99", percentile(busy_ms, 99), "ms",
            detail=f"{len(busy_ms)} faults; p50 {percentile(busy_ms, 50):.1f} ms; from the "
            f"reply to Stop p99 {percentile(after_reply_ms, 99):.2f} ms"),
    ]
    if runaway:
        rms = [t.latency_s * 1000 for t in runaway if t.latency_s is not None]
        inj = [t.from_injection_s * 1000 for t in runaway if t.from_injection_s is not None]
        rfail = len([t for t in failures if t.kind == "runaway"])
        rows.append(Row(
            "runaway: threshold crossing -> Stop p50", percentile(rms, 50), "ms",
            detail=f"{len(rms)} runaways, telemetry {TELEMETRY_HZ:g} Hz",
            extra={"p99_ms": percentile(rms, 99), "max_ms": max(rms) if rms else None,
                   "from_injection_p50_ms": percentile(inj, 50), "failures": rfail}))
        rows.append(Row(
            "runaway: threshold crossing -> Stop p99", percentile(rms, 99), "ms", target=150.0,
            detail=f"bounded by one telemetry period + one tick; failures {rfail}"))
    return rows
