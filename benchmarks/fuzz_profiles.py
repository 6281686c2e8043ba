"""The big fuzz: 100,000+ hostile profiles and session logs, each bounded in time and memory.

    python -m benchmarks.fuzz_profiles [--examples 100000] [--log-examples 100000]

The inputs and the checks are the suite's (tests/fuzz_inputs.py): YAML from the profile
grammar, mutations of the bundled and broken profiles, and cut, corrupted and reordered
session logs. Every input runs under tracemalloc (so its CPU time includes the overhead
and is an upper bound); an input slower than --max-seconds or with a Python-allocation peak
above --max-mb counts as a bound broken, any exception other than the clean refusal as a
traceback. Prints one table and the worst inputs; exit status 1 if any row fails.
"""

from __future__ import annotations

import argparse
import gc
import logging
import resource
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from benchmarks.common import Row
from benchmarks.run import table
from tests.fuzz_inputs import (
    check_profile_text,
    check_session_log,
    grammar_profiles,
    mutated_profiles,
    session_logs,
)


@dataclass
class Tally:
    """What one fuzz target saw."""

    name: str
    max_seconds: float
    max_bytes: int
    outcomes: Counter[str] = field(default_factory=Counter)
    tracebacks: list[str] = field(default_factory=list)
    over_bounds: int = 0
    worst_seconds: float = 0.0
    worst_seconds_input: str = ""
    worst_bytes: int = 0
    worst_bytes_input: str = ""
    worst_input_seconds_of_peak: float = 0.0
    worst_input_bytes_of_slowest: int = 0
    seconds: float = 0.0  # wall time of the whole target

    worst_value: Any = None

    def run_one(self, check: Callable[[], str], shown: str, value: Any = None) -> None:
        tracemalloc.start()  # around the check only: hypothesis's own work is not traced
        gc.disable()  # a collection of hypothesis's big heap is not this input's cost
        start = time.process_time()  # CPU time: a busy shared machine does not inflate it
        try:
            outcome = check()
        except Exception:  # the point of the fuzz: count, keep the first few, go on
            outcome = "traceback"
            if len(self.tracebacks) < 5:
                self.tracebacks.append(f"{shown}\n{traceback.format_exc()}")
        seconds = time.process_time() - start
        gc.enable()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        self.outcomes[outcome] += 1
        if seconds > self.max_seconds or peak > self.max_bytes:
            self.over_bounds += 1
        if seconds > self.worst_seconds:
            self.worst_seconds, self.worst_seconds_input = seconds, shown
            self.worst_value = value
            self.worst_input_bytes_of_slowest = peak
        if peak > self.worst_bytes:
            self.worst_bytes, self.worst_bytes_input = peak, shown
            self.worst_input_seconds_of_peak = seconds

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


def _shown(value: str | bytes) -> str:
    text = repr(value)
    return f"{len(value)} chars/bytes: {text[:160]}{'...' if len(text) > 160 else ''}"


def fuzz(tally: Tally, strategy: st.SearchStrategy[Any], check: Callable[[Any], str],
         examples: int) -> None:
    started = time.monotonic()
    if examples <= 0:
        return

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def body(value: Any) -> None:
        tally.run_one(lambda: check(value), _shown(value), value)
        if tally.total % 5_000 == 0:
            print(f"  {tally.name}: {tally.total:,} inputs ({tally.outcomes['traceback']} "
                  f"tracebacks, {tally.over_bounds} over the bounds), "
                  f"{time.monotonic() - started:.0f} s; slowest {tally.worst_seconds * 1000:.0f}"
                  f" ms, largest peak {tally.worst_bytes / 1e6:.2f} MB", flush=True)

    body()
    tally.seconds = time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_profiles",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100_000,
                        help="profile inputs, half from the grammar, half mutations "
                             "(default 100,000)")
    parser.add_argument("--log-examples", type=int, default=100_000,
                        help="session logs (default 100,000)")
    parser.add_argument("--max-seconds", type=float, default=1.0,
                        help="bound on one input's CPU time (default 1 s)")
    parser.add_argument("--save-worst", type=Path, metavar="DIR",
                        help="write each target's slowest input to DIR")
    parser.add_argument("--max-mb", type=float, default=32.0,
                        help="bound on one input's Python-allocation peak (default 32 MB)")
    args = parser.parse_args(argv)
    bound_bytes = int(args.max_mb * 1e6)
    logging.getLogger("retrotread").setLevel(logging.ERROR)  # "skipping a truncated line"...
    tallies = [Tally("profiles (grammar)", args.max_seconds, bound_bytes),
               Tally("profiles (mutations)", args.max_seconds, bound_bytes),
               Tally("session logs", args.max_seconds, bound_bytes)]
    log_path = Path(tempfile.mkdtemp(prefix="retrotread-fuzz-")) / "session.jsonl"
    fuzz(tallies[0], grammar_profiles(), check_profile_text, args.examples // 2)
    fuzz(tallies[1], mutated_profiles(), check_profile_text, args.examples - args.examples // 2)
    fuzz(tallies[2], session_logs(), lambda data: check_session_log(log_path, data),
         args.log_examples)
    rows: list[Row] = []
    for tally in tallies:
        if not tally.total:
            continue
        outcomes = ", ".join(f"{n:,} {kind}" for kind, n in tally.outcomes.most_common())
        elapsed = tally.seconds
        rows += [
            Row(f"{tally.name}: inputs", tally.total, "inputs",
                detail=f"{outcomes}; {elapsed:.0f} s"),
            Row(f"{tally.name}: tracebacks", len(tally.tracebacks) and tally.outcomes[
                "traceback"], "", 1, detail="\n".join(tally.tracebacks)),
            Row(f"{tally.name}: inputs over the bounds", tally.over_bounds, "", 1),
            Row(f"{tally.name}: slowest input", tally.worst_seconds * 1000, "ms",
                args.max_seconds * 1000,
                detail=f"peak {tally.worst_input_bytes_of_slowest / 1e6:.2f} MB; "
                       f"{tally.worst_seconds_input}"),
            Row(f"{tally.name}: largest peak", tally.worst_bytes / 1e6, "MB", args.max_mb,
                detail=f"{tally.worst_input_seconds_of_peak * 1000:.1f} ms; "
                       f"{tally.worst_bytes_input}"),
        ]
    if args.save_worst:
        args.save_worst.mkdir(parents=True, exist_ok=True)
        for tally in tallies:
            if tally.worst_value is not None:
                data = tally.worst_value
                name = tally.name.replace(" ", "-").replace("(", "").replace(")", "")
                (args.save_worst / f"slowest-{name}").write_bytes(
                    data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    print(table(rows))
    for row in rows:
        if row.detail:
            print(f"{row.name}: {row.detail}")
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
