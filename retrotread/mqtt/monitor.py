"""``retrotread monitor``: watch a session's state and events from anywhere on the broker
(read-only)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
import uuid
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import aiomqtt

from retrotread.errors import MqttConfigError
from retrotread.formatting import clock_text, speed_text
from retrotread.mqtt.settings import (
    AUTH_HINT,
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    ENV_PASSWORD,
    ENV_USERNAME,
    MqttSettings,
    is_auth_failure,
)


def add_monitor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt", default=None, metavar="URL",
                        help="the broker: mqtt://host:port or mqtts://host:port "
                        f"(credentials from {ENV_USERNAME}/{ENV_PASSWORD} or the config file)")
    parser.add_argument("--mqtt-config", type=Path, default=None, metavar="FILE",
                        help="TOML file with an [mqtt] table")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="the treadmill to watch, by the --name its session runs under "
                        "(several can share a broker)")
    parser.add_argument("--prefix", default=None, metavar="PREFIX",
                        help="topic prefix of the session to watch (default: retrotread, "
                        "or retrotread/NAME with --name)")
    parser.add_argument("--units", choices=["mph", "km/h"], default="mph",
                        help="units for speeds (default: mph)")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help=argparse.SUPPRESS)  # exit after N messages (tests, scripts)


def run_monitor(args: argparse.Namespace) -> int:
    if args.mqtt is None and args.mqtt_config is None:
        raise MqttConfigError("retrotread monitor needs --mqtt URL or --mqtt-config FILE")
    settings = MqttSettings.from_sources(url=args.mqtt, config_file=args.mqtt_config)
    settings = settings.named(getattr(args, "name", None))
    settings = dataclasses.replace(settings, topic_prefix=args.prefix or settings.topic_prefix,
                                   units=getattr(args, "units", None) or settings.units)
    out: TextIO = sys.stdout
    try:
        return asyncio.run(monitor(settings, out=out, live=out.isatty(), count=args.count))
    except KeyboardInterrupt:
        return 0


class MonitorView:
    """What the monitor knows: the latest state, availability, and recent events."""

    def __init__(self, units: str = "km/h", name: str | None = None) -> None:
        self.name = name  # the treadmill watched (its --name, or its topic prefix)
        self.state: dict[str, Any] | None = None
        self.availability: str | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=8)
        self.units = units

    def update(self, leaf: str, payload: bytes) -> str | None:
        """Take one message; return a one-line description of it (None if not shown)."""
        text = payload.decode("utf-8", "replace")
        if leaf == "availability":
            self.availability = text
            return f"availability: {text}"
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        if leaf == "state":
            self.state = data
            return self.state_line()
        if leaf == "event":
            self.events.append(data)
            return "event " + _event_line(data)
        return None

    def state_line(self) -> str:
        s = self.state or {}
        speed = s.get("measured_kmh")
        return (f"state {s.get('state', '?')} | {s.get('facing', '?')} | "
                f"{s.get('segment_label', '?')} | speed {_speed(speed, self.units)} "
                f"target {_speed(s.get('target_kmh'), self.units)} | "
                f"{_clock(s.get('remaining_s'))} left | {_num(s.get('distance_m'))} m"
                + (f" | {s['heart_rate_bpm']} bpm" if s.get("heart_rate_bpm") else ""))

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        s = self.state or {}
        avail = self.availability or "unknown"
        table.add_row("Session", Text(f"{s.get('state', '-')} ({avail})",
                                      style="green" if avail == "online" else "red"))
        table.add_row("Facing", str(s.get("facing", "-")))
        table.add_row("Segment", f"{s.get('segment_label', '-')}"
                      + (f"  (next: {s['next_label']})" if s.get("next_label") else ""))
        table.add_row("Speed", f"{_speed(s.get('measured_kmh'), self.units)}  target "
                      f"{_speed(s.get('target_kmh'), self.units)}")
        table.add_row("Remaining", _clock(s.get("remaining_s")))
        table.add_row("Distance", f"{_num(s.get('distance_m'))} m")
        if s.get("heart_rate_bpm"):
            table.add_row("Heart rate", f"{s['heart_rate_bpm']} bpm")
        if s.get("last_announcement"):
            table.add_row("Last cue", str(s["last_announcement"]))
        events = Text("\n".join(_event_line(e) for e in self.events), style="dim")
        title = "retrotread monitor" + (f": {self.name}" if self.name else "")
        return Group(Text(f"{title} (read-only; Ctrl-C to quit)", style="bold"),
                     table, Text(""), events)


def _num(value: Any, digits: int = 0) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def _number(value: Any) -> float | None:
    """A number from a JSON message, or None (anything else: shown as unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float
        return None


def _speed(kmh: Any, units: str) -> str:
    return speed_text(_number(kmh), units, unknown="-")


def _clock(seconds: Any) -> str:
    return clock_text(_number(seconds), unknown="-")


def _event_line(record: Mapping[str, Any]) -> str:
    kind = record.get("type", "?")
    details = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("type", "t"))
    return f"{kind}: {details}"


async def monitor(settings: MqttSettings, *, out: TextIO, live: bool,
                  count: int | None = None) -> int:
    """Subscribe to a session's state, events and availability and show them."""
    view = MonitorView(units=settings.units, name=settings.name or settings.topic_prefix)
    prefix = settings.topic_prefix
    leaves = ("availability", "state", "event")
    seen = 0
    live_display: Any = None
    if live:
        from rich.console import Console
        from rich.live import Live

        live_display = Live(view.render(), console=Console(file=out), auto_refresh=False)
        live_display.start()
    delay = BACKOFF_FIRST_S
    host, port, tls = settings.endpoint()
    try:
        while True:
            tls_params = (aiomqtt.TLSParameters(ca_certs=str(settings.ca_file)
                                                if settings.ca_file else None)
                          if tls else None)
            try:
                async with aiomqtt.Client(
                        host, port, username=settings.username,
                        password=settings.resolved_password(), tls_params=tls_params,
                        identifier=f"retrotread-monitor-{uuid.uuid4().hex[:8]}") as client:
                    delay = BACKOFF_FIRST_S
                    for leaf in leaves:
                        await client.subscribe(f"{prefix}/{leaf}", qos=1)
                    async for message in client.messages:
                        leaf = str(message.topic).rsplit("/", 1)[-1]
                        payload = message.payload
                        data = payload if isinstance(payload, bytes | bytearray) else str(
                            payload).encode()
                        line = view.update(leaf, bytes(data))
                        if line is None:
                            continue
                        if live_display is not None:
                            live_display.update(view.render(), refresh=True)
                        else:
                            print(f"{time.strftime('%H:%M:%S')} {line}", file=out, flush=True)
                        seen += 1
                        if count is not None and seen >= count:
                            return 0
            except aiomqtt.MqttError as exc:
                if is_auth_failure(exc):
                    raise MqttConfigError(f"the broker {settings.url} refused the login: "
                                          f"{exc}; {AUTH_HINT}") from exc
                print(f"retrotread monitor: broker {settings.url}: {exc}; retrying in "
                      f"{delay:.1f} s", file=sys.stderr, flush=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
    finally:
        if live_display is not None:
            live_display.stop()
