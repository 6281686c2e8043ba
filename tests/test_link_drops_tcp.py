"""Link drops over real TCP, with the simulator in another process (issue 9).

``retrotread sim`` serves the simulator over Direct Connect; ``retrotread run --device
dircon://...`` drives it through a TCP proxy in this process that can cut every
connection (a radio dropping) and refuse new ones (the machine out of reach). Real time,
real sockets, real signals.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.test_signals import PROFILE, Lines, simulator, spawn  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 that can drop every connection and refuse new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.refuse = False
        self.accepted = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, upstream))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(4096):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with_shutdown(sock)

    def drop(self) -> None:
        """Cut every connection now (both sides see the TCP connection close)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            with_shutdown(client)
            with_shutdown(upstream)

    def wait_for_connection(self, count: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.accepted < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection number {count} within {timeout_s} s")
            time.sleep(0.005)

    def close(self) -> None:
        self._closed = True
        self.server.close()
        self.drop()


def with_shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def start_walking_backward(port: int, sim_lines: Lines, tmp_path: Path
                           ) -> tuple[subprocess.Popen[str], Lines, Path]:
    profile = tmp_path / "drops.yaml"
    profile.write_text(PROFILE)
    log = tmp_path / "session.jsonl"
    run = spawn("run", str(profile), "--device", f"dircon://127.0.0.1:{port}", "--no-ui",
                "--log", str(log), stdin=subprocess.PIPE)
    lines = Lines(run.stdout)
    lines.wait_for("press r")
    assert run.stdin is not None
    run.stdin.write("r")
    run.stdin.flush()
    sim_lines.wait_for("SetTargetSpeed 1.60 km/h", timeout_s=30)  # walking backward
    return run, lines, log


def finished_record(log: Path) -> dict[str, object]:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    finished = [r for r in records if r.get("type") == "session_finished"]
    assert finished, "the log has no session_finished record"
    return finished[-1]


def test_a_second_drop_right_after_the_reconnect_still_stops_the_belt(
        simulator: tuple[int, Lines], tmp_path: Path) -> None:  # noqa: F811
    sim_port, sim_lines = simulator
    proxy = CuttableProxy(sim_port)
    run, run_lines, log = start_walking_backward(proxy.port, sim_lines, tmp_path)
    try:
        proxy.drop()
        proxy.wait_for_connection(2)  # the session reconnects ...
        time.sleep(0.1)
        proxy.drop()  # ... and the link drops again while it takes control to stop
        code = run.wait(timeout=60)  # it must end by itself
    finally:
        if run.poll() is None:
            run.kill()
        proxy.close()
    output = "\n".join(run_lines.drain())
    assert code == 3, output  # a watchdog stop
    assert proxy.accepted >= 3, output  # it reconnected after the second drop too
    finished = finished_record(log)
    assert finished["stop_sent"] is True and finished["stop_acknowledged"] is True, finished
    seen = sim_lines.drain()
    assert any("StopOrPause (stop)" in line for line in seen), seen[-20:]
    assert "Traceback" not in output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_link_is_down_ends_the_program_within_seconds(
        sig: signal.Signals, simulator: tuple[int, Lines], tmp_path: Path,  # noqa: F811
) -> None:
    sim_port, sim_lines = simulator
    proxy = CuttableProxy(sim_port)
    run, run_lines, log = start_walking_backward(proxy.port, sim_lines, tmp_path)
    try:
        proxy.refuse = True  # the machine is out of reach ...
        proxy.drop()  # ... and the link drops
        run_lines.wait_for("Link to the treadmill lost", timeout_s=10)
        time.sleep(1.0)
        sent = time.monotonic()
        run.send_signal(sig)
        code = run.wait(timeout=30)
        took_s = time.monotonic() - sent
    finally:
        if run.poll() is None:
            run.kill()
        proxy.close()
    output = "\n".join(run_lines.drain())
    # The link loss came first and is the outcome (a watchdog stop, exit status 3); the
    # signal only ends the wait for the machine.
    assert code == 3, output
    assert "received " + sig.name in output
    assert took_s < 8.0, f"took {took_s:.1f} s to exit after {sig.name}"
    finished = finished_record(log)
    assert finished["stop_sent"] is False, finished  # honest: no Stop could be delivered
    assert "Stop not delivered" in output
    assert "Traceback" not in output
