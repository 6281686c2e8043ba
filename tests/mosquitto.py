"""A real Mosquitto broker for the MQTT tests, on a free loopback port.

The broker refuses anonymous clients, checks a password file made with
``mosquitto_passwd`` and an ACL:

- ``retrotread`` (the bridge): read and write ``retrotread/#`` and ``homeassistant/#``
- ``phone`` (a remote control): write ``retrotread/command`` and ``retrotread/+/command``
  (tests use one prefix each), read ``retrotread/#``
- ``coach`` (a dashboard): read ``retrotread/#`` only, so it cannot command

``scripts/install-mosquitto.sh`` (run by ``./dev test``) installs the broker where apt is
available. Without it the tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

USERS = {
    "retrotread": "bridge-secret",
    "phone": "phone-secret",
    "coach": "coach-secret",
}

ACL = """\
user retrotread
topic readwrite retrotread/#
topic readwrite homeassistant/#

user phone
topic write retrotread/command
topic write retrotread/+/command
topic read retrotread/#

user coach
topic read retrotread/#
"""


def find_executable(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/usr/bin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    """One mosquitto process; ``stop()`` and ``start()`` again keep the same port."""

    directory: Path
    mosquitto: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    host = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def write_config(self, mosquitto_passwd: str) -> Path:
        passwd = self.directory / "passwd"
        passwd.unlink(missing_ok=True)
        for i, (user, password) in enumerate(USERS.items()):
            args = [mosquitto_passwd, "-b"] + (["-c"] if i == 0 else [])
            subprocess.run([*args, str(passwd), user, password], check=True,
                           capture_output=True)
        acl = self.directory / "acl"
        acl.write_text(ACL, encoding="utf-8")
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {acl}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            # As root it would switch to the mosquitto user, which cannot read our files.
            lines.append("user root")
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for path in (passwd, acl, config):
            path.chmod(0o600)
        return config

    def start(self, timeout_s: float = 10.0) -> None:
        assert self.process is None, "broker already running"
        config = self.directory / "mosquitto.conf"
        self.process = subprocess.Popen(
            [self.mosquitto, "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                self.process = None
                raise RuntimeError(f"mosquitto exited at start: {err}\n{self.tail_log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on port {self.port} "
                                       f"within {timeout_s} s\n{self.tail_log()}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Kill the broker hard (no clean disconnects: like a crash or a power cut)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=5)
        if process.stderr:
            process.stderr.close()

    def ensure_running(self) -> None:
        """Start the broker again if a test stopped it (or it died)."""
        if self.process is not None and self.process.poll() is None:
            return
        self.stop()
        self.start()

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail_log(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_broker(directory: Path) -> Broker:
    """Start a broker, or raise LookupError when mosquitto is not installed."""
    mosquitto = find_executable("mosquitto")
    mosquitto_passwd = find_executable("mosquitto_passwd")
    if mosquitto is None or mosquitto_passwd is None:
        raise LookupError("mosquitto is not installed (scripts/install-mosquitto.sh installs "
                          "it with apt-get; ./dev test runs that script)")
    broker = Broker(directory=directory, mosquitto=mosquitto, port=free_port())
    broker.write_config(mosquitto_passwd)
    broker.start()
    return broker
