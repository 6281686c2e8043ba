"""Run the benchmarks and print one table: ``python -m benchmarks.run [--quick] [--json F]``.

See ``benchmarks/README.md`` for what each number means and how it is measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row

ALL = ("reaction", "jitter", "cpu", "virtual", "companion")


def _format(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Row]) -> str:
    header = ("benchmark", "value", "target", "result")
    lines: list[tuple[str, str, str, str]] = []
    for row in rows:
        target = "" if row.target is None else (
            f"{'<' if row.better == 'lower' else '>'} {_format(row.target)} {row.unit}")
        verdict = {True: "PASS", False: "FAIL", None: "-"}[row.passed]
        lines.append((row.name, f"{_format(row.value)} {row.unit}", target, verdict))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
           "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="20 faults, 10 s live runs, 1 round of profiles (~2 min)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results here")
    parser.add_argument("--only", choices=ALL, action="append",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--faults", type=int, help="fast faults (default 210; quick 20)")
    parser.add_argument("--runaways", type=int, help="runaway faults (default 20; quick 4)")
    parser.add_argument("--live-seconds", type=float,
                        help="length of each live run (default 60; quick 10)")
    args = parser.parse_args(argv)
    chosen = args.only or list(ALL)
    faults = args.faults if args.faults is not None else (20 if args.quick else 210)
    runaways = args.runaways if args.runaways is not None else (4 if args.quick else 20)
    live_s = args.live_seconds or (10.0 if args.quick else 60.0)
    rounds = 1 if args.quick else 3

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    rows: list[Row] = []
    timings: dict[str, float] = {}
    started = time.perf_counter()
    for name in chosen:
        t0 = time.perf_counter()
        progress(f"running {name} ...")
        if name == "reaction":
            from benchmarks import reaction

            rows += reaction.run(fast_trials=faults, runaway_trials=runaways,
                                 progress=progress)
        elif name == "jitter":
            from benchmarks import live

            rows += live.run_jitter(live_s)
        elif name == "cpu":
            from benchmarks import live

            rows += live.run_cpu(live_s)
        elif name == "virtual":
            from benchmarks import virtual

            rows += virtual.run(rounds)
        elif name == "companion":
            from benchmarks import companion

            rows += companion.run(presses=20 if args.quick else 100,
                                  seconds=10.0 if args.quick else 30.0, progress=progress)
        timings[name] = time.perf_counter() - t0
        progress(f"  {name} took {timings[name]:.0f} s")
    print(table(rows))
    for row in rows:
        if row.detail:
            print(f"  {row.name}: {row.detail}")
    top = next((r.extra["top_costs"] for r in rows if "top_costs" in r.extra), None)
    if top is not None:
        for key, title in (("by_tottime", "all code"), ("by_tottime_retrotread", "retrotread")):
            print(f"virtual time, top costs in {title} (cProfile, own time, "
                  f"of {top['total_s']:.1f} s profiled):")
            for entry in top[key]:
                print(f"  {entry['share_pct']:5.1f}%  {entry['tottime_s']:.3f} s  "
                      f"{entry['calls']:>8} calls  {entry['function']}")
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        payload: dict[str, Any] = {
            "quick": args.quick, "timings_s": timings,
            "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                        "cpus": os.cpu_count()},
            "rows": [r.to_json() for r in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
