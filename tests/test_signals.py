"""SIGINT and SIGTERM mid-segment: Stop on the wire before ``retrotread run`` exits.

Real processes, a real TCP socket and real time: ``retrotread sim`` serves the simulator
over DIRCON in one process, ``retrotread run --device dircon://...`` drives it from
another, and the simulator prints every control point request it receives.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROFILE = """\
name: Signal test
units: mph
segments:
  - backward: 120s
    speed: 1.0 mph
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lines:
    """Reads a process's output on a thread, so a test can wait for a line."""

    def __init__(self, stream: object) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.queue.put(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} not seen; got:\n" + "\n".join(self.seen[-40:]))

    def drain(self, wait_s: float = 0.5) -> list[str]:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                self.seen.append(self.queue.get(timeout=0.05))
            except queue.Empty:
                continue
        return self.seen


def spawn(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "retrotread.cli", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def simulator() -> Iterator[tuple[int, Lines]]:
    port = free_port()
    proc = spawn("sim", "--port", str(port), "--noise", "0", "--log-requests")
    lines = Lines(proc.stdout)
    try:
        lines.wait_for("serving FTMS over DIRCON")
        yield port, lines
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_segment_sends_stop_before_exit(
        sig: signal.Signals, simulator: tuple[int, Lines], tmp_path: Path) -> None:
    port, sim_lines = simulator
    profile = tmp_path / "signal.yaml"
    profile.write_text(PROFILE)
    run = spawn("run", str(profile), "--device", f"dircon://127.0.0.1:{port}", "--no-ui",
                "--log", str(tmp_path / "session.jsonl"), stdin=subprocess.PIPE)
    run_lines = Lines(run.stdout)
    try:
        run_lines.wait_for("press r")  # a real machine waits for the person
        assert run.stdin is not None
        run.stdin.write("r")
        run.stdin.flush()
        sim_lines.wait_for("SetTargetSpeed 1.60 km/h", timeout_s=30)  # walking backward
        run.send_signal(sig)
        code = run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    seen = sim_lines.drain()
    stops = [line for line in seen if "StopOrPause (stop)" in line]
    assert stops, "the simulator never received Stop:\n" + "\n".join(seen[-20:])
    output = "\n".join(run_lines.drain())
    assert code == 130, output
    assert "Traceback" not in output
    assert "interrupted" in output
