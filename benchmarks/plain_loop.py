"""The pure session core as a plain loop: how fast, and thousands of random workouts.

    .venv/bin/python -m benchmarks.plain_loop                  # speed + 10,000 random runs
    .venv/bin/python -m benchmarks.plain_loop --runs 2000 --base 7
    .venv/bin/python -m benchmarks.plain_loop --seed 1815      # replay one scenario
    .venv/bin/python -m benchmarks.plain_loop --speed-only

* speed: every bundled profile (``profiles/*.yaml``, generic preset, no noise, Treadmill
  Data at 1 Hz) run to completion by ``retrotread.plain_loop`` (SessionMachine +
  SteppedTreadmill, no event loop), three rounds after a warm-up. Two variants: Treadmill
  Data as the simulator's 20-byte notifications decoded by the client, and as decoded
  records (identical values, tests/test_stepped_sim.py). Speed = workout minutes per wall
  minute (``perf_counter``), and per CPU minute (``process_time``). The asyncio path
  (``benchmarks.virtual``: Session on looptime) is measured on the same set for reference.
* random runs: scenarios from ``tests/machine_scenarios.py`` (random profile, preset,
  ready gate, 0-4 faults, 0-8 commands from any source, sometimes Ctrl-C), seeds
  ``base .. base+runs-1`` (``--base`` defaults to a fresh random number, printed), every
  invariant checked on every write and at the end. Every failing seed is listed (not just
  the first), so the table says how many runs each distinct failure took to show.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


def speed(rounds: int = 3) -> list[tuple[str, float, float, float]]:
    """(variant, workout s, wall s, cpu s) summed over the bundled profiles."""
    from retrotread.plain_loop import plain_run
    from retrotread.profile import load_profile

    profiles = [load_profile(p) for p in sorted(PROFILES_DIR.glob("*.yaml"))]
    rows = []
    for variant, as_bytes in (("records as values", False), ("20-byte notifications", True)):
        plain_run(profiles[0], telemetry_as_bytes=as_bytes).run()  # warm-up
        workout = wall = cpu = 0.0
        for _ in range(rounds):
            for profile in profiles:
                run = plain_run(profile, telemetry_as_bytes=as_bytes, keep_events=False)
                w0, c0 = time.perf_counter(), time.process_time()
                run.run()
                wall += time.perf_counter() - w0
                cpu += time.process_time() - c0
                assert run.machine.result is not None
                assert run.machine.result.outcome.value == "completed", run.machine.result
                workout += run.machine.result.elapsed_s
        rows.append((variant, workout, wall, cpu))
    return rows


def asyncio_reference(count: int = 3) -> tuple[float, float]:
    from benchmarks.virtual import run_virtual

    workout = wall = 0.0
    for path in sorted(PROFILES_DIR.glob("*.yaml"))[:count]:
        w, t = run_virtual(path)
        workout += w
        wall += t
    return workout, wall


def random_runs(base: int, runs: int, *, progress: bool = True) -> dict[str, object]:
    from tests.machine_scenarios import InvariantBroken, random_scenario, run_scenario

    failures: list[tuple[int, str]] = []
    outcomes: Counter[str] = Counter()
    workout = 0.0
    writes = 0
    start = time.perf_counter()
    for k, seed in enumerate(range(base, base + runs)):
        try:
            run = run_scenario(random_scenario(seed))
        except InvariantBroken as exc:
            failures.append((seed, str(exc).splitlines()[0]))
            continue
        except Exception as exc:  # a crash is a failure too, with its seed
            failures.append((seed, f"crash: {type(exc).__name__}: {exc}"))
            continue
        assert run.machine.result is not None
        outcomes[run.machine.result.outcome.value] += 1
        workout += run.now
        writes += len(run.wire)
        if progress and (k + 1) % 1000 == 0:
            print(f"  {k + 1} runs, {len(failures)} failures, "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    return {"runs": runs, "failures": failures, "outcomes": dict(outcomes),
            "wall_s": time.perf_counter() - start, "workout_s": workout, "writes": writes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plain_loop",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--base", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--seed", type=int, default=None, help="replay one scenario")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.seed is not None:
        from tests.machine_scenarios import random_scenario, run_scenario

        scenario = random_scenario(args.seed)
        print(scenario.describe())
        run = run_scenario(scenario)
        print(run.machine.result)
        return 0
    print("| pure loop over the bundled profiles | workout s | wall s | workout min / wall min "
          "| per CPU min |")
    print("|---|---|---|---|---|")
    for variant, workout, wall, cpu in speed(args.rounds):
        print(f"| Treadmill Data as {variant} | {workout:,.0f} | {wall:.2f} | "
              f"{workout / wall:,.0f} | {workout / cpu:,.0f} |")
    workout, wall = asyncio_reference()
    print(f"| asyncio path (Session on looptime), first 3 profiles | {workout:,.0f} | "
          f"{wall:.2f} | {workout / wall:,.0f} | |")
    if args.speed_only:
        return 0
    base = args.base if args.base is not None else random.randrange(1_000_000_000)
    print(f"\nrandom runs: seeds {base} .. {base + args.runs - 1}")
    result = random_runs(base, args.runs)
    failures = result["failures"]
    assert isinstance(failures, list)
    wall_s = float(result["wall_s"])  # type: ignore[arg-type]
    print("| runs | failures | wall | ms per run | workout hours | writes checked |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.runs:,} | {len(failures)} | {wall_s:.0f} s | "
          f"{1000 * wall_s / args.runs:.1f} | "
          f"{float(result['workout_s']) / 3600:,.1f} | {result['writes']:,} |")  # type: ignore[arg-type]
    print(f"outcomes: {result['outcomes']}")
    by_kind: dict[str, list[int]] = {}
    for seed, message in failures:
        by_kind.setdefault(message.split(":")[0][:60], []).append(seed)
    for kind, seeds in by_kind.items():
        print(f"- {kind}: {len(seeds)} runs, first seed {seeds[0]} "
              f"(run {seeds[0] - base + 1} of the batch)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
