"""Profile loading: a bundled profile, big valid profiles, and every hostile file refused.

    python -m benchmarks.profiles [--rounds N]

Time is the median of N rounds of `load_profile` (wall clock, in this process); memory
is the tracemalloc peak of one more round (Python allocations while loading).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks.common import Row
from benchmarks.run import table
from retrotread.errors import ProfileError
from retrotread.profile import load_profile

ROOT = Path(__file__).resolve().parent.parent
BROKEN = ROOT / "tests" / "broken_profiles"
HOSTILE = ("yaml-anchors-billion-laughs.yaml", "nesting-too-deep.yaml",
           "integer-5000-digits.yaml", "duration-310-digits.yaml", "nul-byte.yaml",
           "workout-46-hours.yaml")


def big_profile(size_bytes: int) -> str:
    """A valid profile of about ``size_bytes``: many short labelled segments (about 30 s
    each, so the planned time stays under the 4-hour limit)."""
    lines = ["name: Big", "description: many short segments", "segments:"]
    size, i = 0, 0
    while size < size_bytes:
        line = (f"  - forward: 5s\n    speed: 2.{i % 10} mph\n"
                f"    label: Segment number {i} of a long profile\n"
                f"    cue: Keep going, this is the cue of segment number {i}")
        lines.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(lines) + "\n"


def measure(path: Path, rounds: int) -> tuple[float, int, str]:
    """Median seconds, peak bytes and the outcome ('ok' or the first message)."""
    def once() -> str:
        try:
            load_profile(path)
        except ProfileError as exc:
            return str(exc.problems[0]).removeprefix(f"{path}:")
        return "ok"

    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        outcome = once()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    once()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak, outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiles", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per file (default 5)")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[tuple[str, Path, float]] = [
            ("bundled intervals.yaml", ROOT / "profiles" / "intervals.yaml", 0.1)]
        for kib in (100, 250):
            path = Path(tmp) / f"big{kib}.yaml"
            path.write_text(big_profile(kib * 1000), encoding="utf-8")
            cases.append((f"valid {kib} KB profile", path, 1.0))
        cases += [(f"refuse {name}", BROKEN / name, 0.2) for name in HOSTILE]
        for name, path, target_s in cases:
            seconds, peak, outcome = measure(path, args.rounds)
            detail = f"peak {peak / 1e6:.1f} MB; {outcome[:70]}"
            rows.append(Row(name, seconds * 1000, "ms", target_s * 1000, detail=detail))
            if name.startswith("refuse"):
                rows.append(Row(f"  memory {name.removeprefix('refuse ')}", peak / 1e6, "MB",
                                5.0))
    print(table(rows))
    for row in rows:
        if row.detail:
            print(f"{row.name}: {row.detail}")
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
