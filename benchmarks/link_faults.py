"""The deep run of the link-fault property test: ``python -m benchmarks.link_faults [N]``.

Runs ``tests/test_link_fault_properties.py`` with N examples (10,000 by default) of fresh
randomness, recording every failing example instead of stopping at the first, and prints
a table: how many examples ran, how long they took, and for each distinct failure how many
examples it took to show first and how often it showed. The normal suite runs the same
property at 1,000 examples with a fixed seed.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    examples = int(argv[0]) if argv else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        survey = Path(tmp) / "failures.jsonl"
        env = {**os.environ, "LINK_FAULT_EXAMPLES": str(examples), "LINK_FAULT_RANDOM": "1",
               "LINK_FAULT_SURVEY": str(survey)}
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
             "no:logging", "-o", "timeout=0", "tests/test_link_fault_properties.py"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        wall_s = time.perf_counter() - started
        rows = [json.loads(line) for line in survey.read_text().splitlines()] \
            if survey.exists() else []
    first: dict[str, int] = {}
    count: collections.Counter[str] = collections.Counter()
    for row in rows:
        first.setdefault(row["kind"], row["example"])
        count[row["kind"]] += 1
    print(f"link-fault property, {examples:,} examples, {wall_s:,.0f} s "
          f"({wall_s / max(examples, 1) * 1000:.0f} ms per example), pytest exit "
          f"{result.returncode}")
    print()
    print("| failure | first seen at example | failing examples |")
    print("|---|---|---|")
    for kind, number in sorted(first.items(), key=lambda item: item[1]):
        print(f"| `{kind}` | {number:,} | {count[kind]:,} |")
    if not first:
        print("| none | - | 0 |")
    if result.returncode not in (0,):
        errors = [line for line in result.stdout.splitlines()
                  if line.startswith(("E ", "FAILED", "Falsifying", "  |"))][:60]
        print("\n".join(errors) or result.stdout[-3000:])
    return 0 if not first and result.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
