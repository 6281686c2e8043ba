"""Stepped simulator speed: simulated seconds per wall second, without an event loop.

A 30-minute raw workout runs on :class:`retrotread.sim.stepped.SteppedTreadmill`
(generic preset, no noise) as the session core's loop will run it: step to the next due
time, take the events, write the commands due. Request Control and Start, a new target
speed every minute (between 1.0 and 3.2 km/h), Stop at 30 minutes, 10 s more. Every
Treadmill Data record is encoded by the simulator, split into notifications of at most
``max_notification_bytes`` (20: the default ATT MTU, two notifications per record; 244:
one), decoded and reassembled by the client; or, in the "records" rows
(``telemetry_as_bytes=False``), handed to the client as values. Wall time is the best of
``--rounds`` runs (``time.perf_counter``), so another process's burst does not count; CPU time
(``time.process_time``, best of the same runs) is shown too: on a machine shared with
other work it is the steadier number.

    python -m benchmarks.stepped_sim [--rounds N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from benchmarks.common import Row
from retrotread.ftms import codec
from retrotread.ftms.client import CommandOutcome, CommandStatus, Telemetry
from retrotread.sim.stepped import SteppedTreadmill

WORKOUT_S = 30 * 60.0
TARGET_MS = 50.0  # a 30-minute workout with 1 Hz telemetry, 20-byte notifications


def workout(telemetry_interval_s: float, max_notification_bytes: int = 20,
            as_bytes: bool = True) -> int:
    """One 30-minute workout; the number of telemetry records the client took."""
    stepped = SteppedTreadmill("generic", telemetry_interval_s=telemetry_interval_s,
                               max_notification_bytes=max_notification_bytes,
                               telemetry_as_bytes=as_bytes)
    script: list[tuple[float, codec.ControlPointRequest]] = [
        (0.0, codec.RequestControl()), (0.0, codec.StartOrResume())]
    script += [(60.0 * k, codec.SetTargetSpeed(speed_kmh=1.0 + (k * 0.7) % 2.2))
               for k in range(1, 30)]
    script.append((WORKOUT_S, codec.StopOrPause(action=codec.StopPause.STOP)))
    end_s = WORKOUT_S + 10.0
    records = 0
    answered = 0
    next_command = 0
    t = 0.0
    while t < end_s:
        command_due = script[next_command][0] if next_command < len(script) else end_s
        t = min(command_due, stepped.next_due_s())
        for event in stepped.advance(t):
            if type(event) is Telemetry:
                records += 1
            elif type(event) is CommandOutcome and event.status is CommandStatus.ANSWERED:
                answered += 1
        while next_command < len(script) and script[next_command][0] <= t:
            stepped.write(t, script[next_command][1])
            next_command += 1
    if answered != len(script) or stepped.sim.belt.speed_kmh != 0.0:
        raise RuntimeError(f"the workout went wrong: {answered} of {len(script)} answered")
    return records


def measure(telemetry_interval_s: float, max_notification_bytes: int, as_bytes: bool,
            rounds: int) -> tuple[float, float, int]:
    """Best wall and CPU seconds of ``rounds`` workouts, and the records of one."""
    best_wall = best_cpu = float("inf")
    records = 0
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        records = workout(telemetry_interval_s, max_notification_bytes, as_bytes)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu, records


def run(rounds: int = 5) -> list[Row]:
    rows = []
    for hz, mtu_bytes, as_bytes in ((1, 20, True), (1, 244, True), (1, 20, False),
                                    (10, 20, True), (10, 244, True), (10, 20, False)):
        wall_s, cpu_s, records = measure(1.0 / hz, mtu_bytes, as_bytes,
                                         rounds if hz == 1 else max(1, rounds // 3))
        target = TARGET_MS if hz == 1 and mtu_bytes == 20 else None
        wire = f"{mtu_bytes}-byte notifications" if as_bytes else "records as values"
        rows.append(Row(
            f"stepped sim {hz} Hz, {wire}", wall_s * 1000, "ms",
            target=target,
            detail=f"30-min workout, {records} records: "
                   f"{(WORKOUT_S + 10) / wall_s:,.0f} simulated s per wall s "
                   f"({1e6 * wall_s / records:.0f} µs per record)",
            extra={"records": records, "speedup": (WORKOUT_S + 10) / wall_s,
                   "cpu_ms": cpu_s * 1000}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs per row; the best counts")
    parser.add_argument("--profile", action="store_true",
                        help="also show where the time goes (cProfile, 1 Hz, 20 bytes)")
    args = parser.parse_args()
    rows = run(args.rounds)
    print(f"{'benchmark':<42} {'wall ms':>8} {'CPU ms':>7} {'target':>7} {'sim s/wall s':>13}")
    for row in rows:
        target = f"< {row.target:.0f}" if row.target is not None else "-"
        verdict = {True: " PASS", False: " FAIL", None: ""}[row.passed]
        print(f"{row.name:<42} {row.value:8.1f} {row.extra['cpu_ms']:7.1f} {target:>7} "
              f"{row.extra['speedup']:>13,.0f}{verdict}")
        print(f"    {row.detail}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(workout, 1.0)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
        print(out.getvalue())


if __name__ == "__main__":
    main()
