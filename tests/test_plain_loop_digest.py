"""The plain loop's whole output, pinned: a speed-up must change nothing a session does.

For every bundled profile (Treadmill Data as records and as 20-byte notifications) and the
random scenarios of the first ``SEEDS`` seeds (tests/machine_scenarios.py: faults, commands
from every source, Ctrl-C), one SHA-256 over what the run produced:

* every request the core handed out, with its time, its wire bytes and the way the
  person faced;
* every event the machine emitted (their reprs: times, speeds and texts float for float);
* the session's result, and the requests and request times the simulator decoded and
  the replies it delivered;
* where the loop ended and how many ticks it stepped.

``tests/fixtures/plain_loop_digests.json`` holds the digests as the code produced them.
The speed work on the plain loop (benchmarks/README.md, "Speeding up the plain loop")
is checked against them: the same bytes at the same times, the same events, the same
results. A change that *means* to change what a session does regenerates the file and
says why in its commit:

    PYTHONPATH=. .venv/bin/python -m tests.test_plain_loop_digest --write

(The runs use no speed noise, so nothing depends on the platform's ``random.gauss``; the
simulated heart rate uses ``math.exp`` and is rounded to whole beats per minute.)
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from retrotread.ftms import codec
from retrotread.plain_loop import PlainRun, plain_run
from retrotread.profile import load_profile
from tests.machine_scenarios import random_scenario, run_scenario

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "plain_loop_digests.json"
SEEDS = 200


def run_digest(run: PlainRun) -> str:
    digest = hashlib.sha256()
    for record in run.wire:
        digest.update(repr((record.time_s, codec.encode_control_point(record.request),
                            record.request, record.facing)).encode())
    for event in run.events:
        digest.update(repr(event).encode())
    sim = run.stepped.sim
    digest.update(repr((run.machine.result, sim.requests, sim.request_times,
                        sim.replies_delivered, run.now, run.steps)).encode())
    return digest.hexdigest()


def digests() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(PROFILES_DIR.glob("*.yaml")):
        profile = load_profile(path)
        for as_bytes in (False, True):
            run = plain_run(profile, telemetry_as_bytes=as_bytes)
            run.run()
            out[f"{path.stem} ({'bytes' if as_bytes else 'records'})"] = run_digest(run)
    for seed in range(SEEDS):
        # every third scenario with Treadmill Data on the wire, the rest as records
        run = run_scenario(random_scenario(seed), telemetry_as_bytes=seed % 3 == 0)
        out[f"seed {seed}"] = run_digest(run)
    return out


def test_the_plain_loop_does_exactly_what_it_did() -> None:
    pinned = json.loads(FIXTURE.read_text())
    now = digests()
    assert now.keys() == pinned.keys(), "profiles or SEEDS changed: regenerate the fixture"
    changed = [name for name in now if now[name] != pinned[name]]
    assert not changed, (f"{len(changed)} of {len(now)} runs differ, first {changed[:5]}; "
                         "if the change is meant, regenerate (see the module docstring)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_plain_loop_digest --write")
    FIXTURE.write_text(json.dumps(digests(), indent=1) + "\n")
    print(f"wrote {FIXTURE}")
