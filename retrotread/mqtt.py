"""The MQTT bridge: live telemetry out, Home Assistant discovery, remote pause/stop in.

MQTT is never in the safety path. The control loop only calls :meth:`MqttBridge.publish_event`
and :meth:`MqttBridge.update_snapshot`, which put a message into a bounded in-memory queue
(dropping the oldest when full) and return at once. A separate task, :meth:`MqttBridge.run`,
owns the broker connection: it connects, publishes, receives commands, and when the broker
goes away it waits (0.5 s doubling to 10 s) and connects again with a fresh client. A broker
that is down when the workout starts only gives a warning.

Topics (``P`` is the topic prefix, ``retrotread`` by default):

- ``P/availability``: ``online`` / ``offline`` (retained; ``offline`` is also the Will)
- ``P/state``: retained JSON of the latest :class:`~retrotread.events.SessionSnapshot`
- ``P/speed_kmh``, ``P/target_kmh``, ``P/direction``, ``P/segment``, ``P/ends_at``,
  ``P/distance_m``, ``P/heart_rate_bpm``: one retained value each, ``None`` when unknown
  (never 0: Home Assistant shows ``None`` as "unknown"). Speeds are always km/h (Home
  Assistant converts for display); ``ends_at`` is when the workout is expected to end,
  an ISO 8601 time with its UTC offset, re-sent only when it moves by more than
  :data:`ENDS_AT_TOLERANCE_S`
- ``P/event``: JSON records of the events a person cares about (segments, announcements,
  turnarounds, watchdog actions, user commands, start and finish); not telemetry samples
- ``P/command``: subscribed; ``pause``, ``resume``, ``stop`` or ``skip`` as plain text
  (any case) or JSON ``{"command": "stop"}``. Anything else is logged and ignored: a
  remote can never raise a speed, and its commands go through the session like a key press.
- ``<discovery prefix>/device/<node id>/config``: Home Assistant device-based discovery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import re
import ssl
import sys
import time
import tomllib
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlsplit

import aiomqtt

from retrotread import __version__
from retrotread.envelope import Direction
from retrotread.errors import MqttConfigError, NameInUseError
from retrotread.events import (
    Event,
    SegmentStarted,
    SessionFinished,
    SessionSnapshot,
    TelemetrySample,
    UserCommand,
)
from retrotread.formatting import clock_text, speed_text
from retrotread.ratelimit import SuppressedLog, TokenBucket, describe_counts
from retrotread.session import State as SessionState

if TYPE_CHECKING:
    from retrotread.presentation import Presentation

log = logging.getLogger(__name__)

ENV_USERNAME = "RETROTREAD_MQTT_USERNAME"
ENV_PASSWORD = "RETROTREAD_MQTT_PASSWORD"

MAX_COMMAND_BYTES = 1024
COMMANDS_PER_S = 2.0
"""Remote commands passed to the session per second, after a burst of COMMAND_BURST: a
person presses a button a few times; more is a flood, counted and summarised instead."""
COMMAND_BURST = 5
COMMAND_SUMMARY_PERIOD_S = 30.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0

#: What a remote may ask. Never a speed change and never "ready" (which starts the belt).
REMOTE_COMMANDS: Mapping[str, UserCommand] = {
    "pause": UserCommand.PAUSE,
    "resume": UserCommand.RESUME,
    "stop": UserCommand.STOP,
    "skip": UserCommand.SKIP,
}

#: Event kinds published on ``P/event`` (telemetry goes to the per-value topics instead).
PUBLISHED_EVENT_KINDS = frozenset({
    "session_started", "segment_started", "announcement", "turnaround", "watchdog",
    "user", "session_finished", "link",
})

VALUE_TOPICS = ("speed_kmh", "target_kmh", "direction", "segment", "ends_at",
                "distance_m", "heart_rate_bpm")

#: ``ends_at`` is re-published only when the expected end moves by more than this (a
#: pause or a long turnaround), not every second.
ENDS_AT_TOLERANCE_S = 15.0

WallClock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)

CommandHandler = Callable[[UserCommand, str], bool]


NAME_CHECK_S = 3.0
"""How long the bridge waits for the broker's retained state before it claims a name."""


# ----------------------------------------------------------------------------- settings
_TOPIC_PREFIX_RE = re.compile(r"^[^#+\s]+(/[^#+\s]+)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def check_name(name: str) -> str:
    """A treadmill's name on a shared broker (``--name``): one topic level, no spaces."""
    if not _NAME_RE.match(name):
        raise MqttConfigError(
            f"the name {name!r} cannot be used: 1-32 letters, digits, '-' or '_', starting "
            "with a letter or digit (for example 'garage' or 'clinic-2')")
    return name


def prefix_for_name(name: str) -> str:
    """Where a named treadmill publishes: ``retrotread/NAME``."""
    return f"retrotread/{check_name(name)}"


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is and how to talk to it. Build with :meth:`from_sources`."""

    url: str = "mqtt://localhost:1883"
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    password_file: Path | None = None
    ca_file: Path | None = None
    client_id: str | None = None
    topic_prefix: str = "retrotread"
    discovery_prefix: str | None = "homeassistant"  # None: no Home Assistant discovery
    queue_size: int = 1000
    units: str = "km/h"  # what `retrotread monitor` shows; Home Assistant always gets km/h
    name: str | None = None
    """The treadmill's name (``--name``): several on one broker each publish under their
    own ``retrotread/NAME`` prefix, as their own Home Assistant device."""

    def named(self, name: str | None) -> MqttSettings:
        """These settings for the treadmill called ``name`` (None: unchanged)."""
        if name is None:
            return self
        return dataclasses.replace(self, name=check_name(name),
                                   topic_prefix=prefix_for_name(name))

    def __post_init__(self) -> None:
        self.endpoint()  # validates the URL
        for name in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, name)
            if value is None and name == "discovery_prefix":
                continue
            if not isinstance(value, str) or not _TOPIC_PREFIX_RE.match(value):
                raise MqttConfigError(
                    f"MQTT {name} {value!r} is not a valid topic prefix: use words separated "
                    "by '/', without spaces, '+' or '#' (for example 'retrotread' or 'home/tm')")
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise MqttConfigError(f"MQTT queue_size must be a positive integer, "
                                  f"not {self.queue_size!r}")
        if self.units not in ("km/h", "mph"):
            raise MqttConfigError(f"MQTT units must be 'km/h' or 'mph', not {self.units!r}")

    # -- derived values
    def endpoint(self) -> tuple[str, int, bool]:
        """``(host, port, tls)`` from the URL; raises :class:`MqttConfigError` if it is bad."""
        return parse_broker_url(self.url)[:3]

    @property
    def host(self) -> str:
        return self.endpoint()[0]

    @property
    def port(self) -> int:
        return self.endpoint()[1]

    @property
    def tls(self) -> bool:
        return self.endpoint()[2]

    @property
    def node_id(self) -> str:
        """The Home Assistant device id: stable across runs, so entities keep their history."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.topic_prefix).strip("_") or "retrotread"

    def topic(self, leaf: str) -> str:
        return f"{self.topic_prefix}/{leaf}"

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            try:
                text = Path(self.password_file).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise MqttConfigError(
                    f"cannot read the MQTT password file {self.password_file}: "
                    f"{exc.strerror or exc}") from exc
            return text.rstrip("\r\n")
        return None

    @classmethod
    def from_sources(cls, url: str | None = None, config_file: Path | str | None = None,
                     environ: Mapping[str, str] | None = None) -> MqttSettings:
        """Settings from a TOML file (an ``[mqtt]`` table, or top-level keys), then the
        environment (``RETROTREAD_MQTT_USERNAME`` / ``RETROTREAD_MQTT_PASSWORD``), then
        ``url`` (the ``--mqtt`` option), each overriding the one before."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(_read_config_file(Path(config_file)))
        if env.get(ENV_USERNAME):
            values["username"] = env[ENV_USERNAME]
        if env.get(ENV_PASSWORD):
            values["password"] = env[ENV_PASSWORD]
            values.pop("password_file", None)
        if url is not None:
            values["url"] = url
        if "url" not in values:
            raise MqttConfigError(
                "no MQTT broker given: pass --mqtt mqtt://HOST:PORT or set url in the "
                "[mqtt] table of the config file")
        user_in_url = parse_broker_url(values["url"])[3]
        if user_in_url is not None and "username" not in values:
            values["username"] = user_in_url
        for key in ("password_file", "ca_file"):
            if values.get(key) is not None:
                values[key] = Path(values[key]).expanduser()
        settings = cls(**values)
        if settings.ca_file is not None and not settings.tls:
            log.warning("MQTT ca_file is set but the URL %s is not mqtts://; TLS is off",
                        settings.url)
        if settings.ca_file is not None and not settings.ca_file.is_file():
            raise MqttConfigError(f"the MQTT CA file {settings.ca_file} does not exist")
        settings.resolved_password()  # fail now, not at the first connection
        return settings


_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "url": (str,), "username": (str,), "password": (str,), "password_file": (str,),
    "ca_file": (str,), "client_id": (str,), "topic_prefix": (str,),
    "discovery_prefix": (str, bool), "queue_size": (int,), "units": (str,),
}


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise MqttConfigError(f"cannot read the MQTT config file {path}: "
                              f"{exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MqttConfigError(f"{path}: not valid TOML: {exc}") from exc
    table = data.get("mqtt", data)
    if not isinstance(table, dict):
        raise MqttConfigError(f"{path}: [mqtt] must be a table")
    unknown = sorted(set(table) - set(_CONFIG_TYPES))
    if unknown:
        raise MqttConfigError(f"{path}: unknown MQTT setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(_CONFIG_TYPES)}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        types = _CONFIG_TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise MqttConfigError(f"{path}: MQTT setting {key} must be "
                                  f"{' or '.join(t.__name__ for t in types)}, not {value!r}")
        values[key] = value
    if values.get("discovery_prefix") is False:
        values["discovery_prefix"] = None
    elif values.get("discovery_prefix") is True:
        values.pop("discovery_prefix")
    return values


def parse_broker_url(url: str) -> tuple[str, int, bool, str | None]:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> ``(host, port, tls, username)``.

    A password in the URL is refused: it would show in the shell history and the process
    list. Use the environment or a password file.
    """
    if not isinstance(url, str) or "://" not in url:
        raise MqttConfigError(f"MQTT broker URL {url!r} needs a scheme: "
                              "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise MqttConfigError(f"MQTT broker URL {url!r}: scheme must be mqtt:// or mqtts://, "
                              f"not {parts.scheme}://")
    if parts.password is not None:
        raise MqttConfigError(
            f"do not put the MQTT password in the URL (it would show in the shell history "
            f"and the process list): set {ENV_PASSWORD} or password_file in the config file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttConfigError(f"MQTT broker URL {url!r}: expected only a host and a port "
                              "(the topic prefix is a separate setting)")
    try:
        port = parts.port
    except ValueError as exc:
        raise MqttConfigError(f"MQTT broker URL {url!r}: the port must be a number "
                              "from 1 to 65535") from exc
    host = parts.hostname
    if not host:
        raise MqttConfigError(f"MQTT broker URL {url!r} has no host name")
    tls = scheme == "mqtts"
    if port is None:
        port = 8883 if tls else 1883
    if port == 0:
        raise MqttConfigError(f"MQTT broker URL {url!r}: port 0 is not a broker port")
    username = unquote(parts.username) if parts.username else None
    return host, port, tls, username


# ----------------------------------------------------------------------------- commands
def parse_command(payload: bytes | bytearray | str | None) -> UserCommand | None:
    """The remote command a payload asks for, or None when it is not an allowed one."""
    if payload is None:
        return None
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "replace")
    if len(payload) > MAX_COMMAND_BYTES:
        return None
    try:
        text = bytes(payload).decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("command"), str):
            return None
        text = data["command"].strip()
    return REMOTE_COMMANDS.get(text.lower())


def _describe_payload(payload: bytes) -> str:
    if len(payload) > 60:
        return f"{len(payload)} bytes"
    return repr(payload)


def is_auth_failure(exc: BaseException) -> bool:
    """The broker refused our user name or password (or this user may not connect)."""
    if not isinstance(exc, aiomqtt.MqttCodeError):
        return False
    rc = exc.rc
    value = getattr(rc, "value", rc)
    return isinstance(value, int) and value in (4, 5, 134, 135)  # 3.1.1 and MQTT 5 codes


_AUTH_HINT = (f"check {ENV_USERNAME} / {ENV_PASSWORD} (or username / password_file in the "
              "config file) and the broker's password file and ACL")


# ----------------------------------------------------------------------------- payloads
def _fmt(value: float | int | None, digits: int = 2) -> str:
    """A value for a per-value topic; ``None`` (Home Assistant's 'unknown') when absent."""
    if value is None:
        return "None"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def presentation_record(presentation: Presentation) -> dict[str, Any]:
    """The part of a presentation a remote needs (never the pairing token: there is
    none in it)."""
    alert = presentation.alert
    return {
        "phase": presentation.phase.value,
        "face": presentation.face.value,
        "face_next": presentation.face_next.value if presentation.face_next else None,
        "turning": presentation.turning,
        "countdown": presentation.countdown,
        "segment_left_s": (round(presentation.segment_left_s, 1)
                           if presentation.segment_left_s is not None else None),
        "next": presentation.next_label,
        "next_in_s": (round(presentation.next_in_s, 1)
                      if presentation.next_in_s is not None else None),
        "said": presentation.said,
        "alert": {"level": alert.level.value, "text": alert.text} if alert else None,
    }


def snapshot_record(snapshot: SessionSnapshot) -> dict[str, Any]:
    record = dataclasses.asdict(snapshot)
    for key, value in record.items():
        if isinstance(value, float):
            record[key] = round(value, 3)
        elif hasattr(value, "value"):  # enums
            record[key] = value.value
    record["remaining_s"] = round(max(0.0, snapshot.plan_total_s - snapshot.plan_elapsed_s), 1)
    return record


def project_url() -> str | None:
    """The project's web address from the installed package's metadata (``[project.urls]``
    in pyproject.toml), or None when the package declares none."""
    try:
        urls = importlib.metadata.metadata("retrotread").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    by_label = {}
    for entry in urls:
        label, _, url = entry.partition(",")
        by_label[label.strip().lower()] = url.strip()
    for label in ("documentation", "homepage", "source", "repository"):
        if by_label.get(label, "").startswith(("https://", "http://")):
            return by_label[label]
    return None


#: The session states a Home Assistant "State" enum sensor can take.
SESSION_STATES: tuple[str, ...] = tuple(state.value for state in SessionState)


def discovery_config(settings: MqttSettings,
                     support_url: str | None = None) -> tuple[str, dict[str, Any]]:
    """Home Assistant device-based discovery: ``(config topic, payload)``.

    One retained message declares the device, where it comes from (``o``, with the
    project's address) and every entity (``cmps``). Speeds are always km/h with device
    class ``speed``, so Home Assistant converts them to the unit each user picks without
    splitting the statistics; a ``None`` payload is "unknown", never 0. Values that
    change every second are entity states, never attributes (attributes are stored with
    every state change). See docs/mqtt.md.
    """
    node = settings.node_id
    p = settings.topic_prefix

    def sensor(key: str, name: str, topic: str, **extra: Any) -> dict[str, Any]:
        return {"p": "sensor", "name": name, "unique_id": f"{node}_{key}",
                "state_topic": f"{p}/{topic}", **extra}

    def button(key: str, name: str, payload: str, icon: str) -> dict[str, Any]:
        return {"p": "button", "name": name, "unique_id": f"{node}_{key}",
                "command_topic": f"{p}/command", "payload_press": payload, "icon": icon,
                "qos": 1, "retain": False}

    speed_extra = {"device_class": "speed", "state_class": "measurement",
                   "unit_of_measurement": "km/h", "suggested_display_precision": 1}
    components = {
        "speed": sensor("speed", "Speed", "speed_kmh", **speed_extra),
        "target_speed": sensor("target_speed", "Target speed", "target_kmh", **speed_extra),
        "direction": sensor("direction", "Direction", "direction", device_class="enum",
                            options=[str(d) for d in Direction], icon="mdi:swap-vertical"),
        "segment": sensor("segment", "Segment", "segment", icon="mdi:format-list-numbered"),
        "ends_at": sensor("ends_at", "Ends at", "ends_at", device_class="timestamp",
                          icon="mdi:flag-checkered"),
        "distance": sensor("distance", "Distance", "distance_m", device_class="distance",
                           unit_of_measurement="m", state_class="total_increasing",
                           suggested_display_precision=0),
        "heart_rate": sensor("heart_rate", "Heart rate", "heart_rate_bpm",
                             unit_of_measurement="bpm", state_class="measurement",
                             icon="mdi:heart-pulse"),
        "state": sensor("state", "State", "state", device_class="enum",
                        options=list(SESSION_STATES), value_template="{{ value_json.state }}",
                        icon="mdi:walk"),
        "stop": button("stop", "Stop", "stop", "mdi:stop"),
        "pause": button("pause", "Pause", "pause", "mdi:pause"),
        "resume": button("resume", "Resume", "resume", "mdi:play"),
        "skip": button("skip", "Skip segment", "skip", "mdi:skip-next"),
    }
    origin: dict[str, Any] = {"name": "retrotread", "sw": __version__}
    url = support_url if support_url is not None else project_url()
    if url:
        origin["url"] = url
    payload = {
        "dev": {"ids": [node], "name": f"Retrotread {settings.name}" if settings.name
                else "Retrotread treadmill" if node == "retrotread" else f"Retrotread {node}",
                "mf": "retrotread", "mdl": "Backward-walking workout", "sw": __version__},
        "o": origin,
        "availability_topic": f"{p}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "cmps": components,
    }
    return f"{settings.discovery_prefix}/device/{node}/config", payload


# ----------------------------------------------------------------------------- the bridge
def _raise_if_cancelling() -> None:
    """Honour a cancellation that an inner ``asyncio.wait_for`` swallowed.

    On Python 3.11, ``wait_for`` (used inside aiomqtt's publish) can drop a cancel that
    arrives just as the awaited reply does; the task then reports ``cancelling()`` but
    runs on. Checking after each publish keeps the bridge's shutdown from hanging.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: str
    retain: bool
    qos: int = 0


class MqttBridge:
    """Publishes session events to a broker and passes remote commands to the session.

    ``publish_event`` (subscribe it to the event bus) and ``update_snapshot`` never block
    and never raise: they queue. Live values (retained, one topic each, and the state
    JSON) are coalesced: only the latest per topic waits to be sent. Events wait in a
    bounded queue that drops the oldest when full (``dropped`` counts them).
    """

    def __init__(self, settings: MqttSettings,
                 command_handler: CommandHandler | None = None, *,
                 wall_clock: WallClock = _utc_now,
                 commands_per_s: float = COMMANDS_PER_S, command_burst: int = COMMAND_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.command_handler = command_handler
        self.wall_clock = wall_clock
        """Wall time with its UTC offset, for ``ends_at`` (injected in tests)."""
        self._ends_at: datetime.datetime | None = None
        self._distance_known = False  # has the machine ever reported a distance?
        # Stop has a bucket of its own: a flood of other commands cannot hold back a stop.
        self._command_buckets = {
            kind: TokenBucket(commands_per_s, command_burst) for kind in ("stop", "other")}
        self._command_clock = clock
        self._ignored_log = SuppressedLog(COMMAND_SUMMARY_PERIOD_S)
        self._events: deque[Outgoing] = deque()
        self._values: dict[str, Outgoing] = {}  # latest per retained topic, not yet sent
        self._latest: dict[str, Outgoing] = {}  # latest per retained topic, ever
        self._wakeup = asyncio.Event()
        self.dropped = 0
        self.connected = False
        self.connections = 0  # successful connections so far
        self.commands_received = 0
        self.commands_ignored = 0
        self.client_id = settings.client_id or f"retrotread-{uuid.uuid4().hex[:8]}"
        self.run_id = uuid.uuid4().hex
        """This session's mark in the retained ``P/owner`` topic (see _claim_name)."""
        self._claimed = False
        self.refused: str | None = None
        """Why this bridge stopped for good (the name is in use), or None."""

    # -- the control loop's side (synchronous, never blocks, never raises)
    @property
    def pending(self) -> int:
        """Messages waiting to be sent (bounded by queue_size + the number of value topics)."""
        return len(self._events) + len(self._values)

    def publish_event(self, event: Event) -> None:
        try:
            self._queue_event(event)
        except Exception:  # never reach the control loop
            log.exception("MQTT bridge could not queue %s", getattr(event, "kind", event))

    def update_snapshot(self, snapshot: SessionSnapshot,
                        presentation: Presentation | None = None) -> None:
        """The session's state (retained). ``presentation``: what the person must know
        now, the same account the terminal, the companion page and speech use; it is
        published as ``now`` in the state record and as the ``phase`` and ``face``
        topics."""
        try:
            record = snapshot_record(snapshot)
            if presentation is not None:
                now = presentation_record(presentation)
                record["now"] = now
                self._set_value("phase", now["phase"])
                self._set_value("face", now["face"])
            self._set_value("state", json.dumps(record, separators=(",", ":")), qos=1)
            self._update_ends_at(record["remaining_s"],
                                 finished=snapshot.state == SessionState.FINISHED)
            self._set_value("segment", snapshot.segment_label)
            self._set_value("direction", str(snapshot.facing))
            # the session counts 0 m until the machine reports a distance: unknown till then
            self._set_value("distance_m", _fmt(snapshot.distance_m if self._distance_known
                                               else None, 1))
        except Exception:
            log.exception("MQTT bridge could not queue the snapshot")

    def _queue_event(self, event: Event) -> None:
        if isinstance(event, TelemetrySample):
            self._distance_known = self._distance_known or event.distance_m is not None
            self._set_value("speed_kmh", _fmt(event.speed_kmh))
            self._set_value("target_kmh", _fmt(event.target_kmh))
            self._set_value("direction", str(event.facing))
            # distance_m comes from the snapshot (the session's own count), so that two
            # sources with different rounding do not take turns on one topic
            # a heart rate of 0 is a machine without a sensor (real captures send it), not
            # a reading: unknown, like a missing one
            self._set_value("heart_rate_bpm", _fmt(event.heart_rate_bpm or None))
            return
        if isinstance(event, SegmentStarted):
            self._set_value("segment", event.label)
            self._set_value("direction", str(event.direction))
            self._set_value("target_kmh", _fmt(event.speed_kmh))
        elif isinstance(event, SessionFinished):
            self._update_ends_at(0.0, finished=True)
            self._mark_finished(event)
        if event.kind not in PUBLISHED_EVENT_KINDS:
            return
        payload = json.dumps(event.to_record(), separators=(",", ":"), default=str)
        if len(self._events) >= self.settings.queue_size:
            self._events.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("MQTT queue full: dropped %d old message(s) so far", self.dropped)
        self._events.append(Outgoing(self.settings.topic("event"), payload, False, 1))
        self._wakeup.set()

    def _update_ends_at(self, remaining_s: float, *, finished: bool) -> None:
        """Publish when the workout should end; only when that moves noticeably, and once
        more, exactly, when it is over (then it says when it ended)."""
        now = self.wall_clock()
        ends_at = now + datetime.timedelta(seconds=max(0.0, remaining_s))
        if finished:
            if self._ends_at is not None and self._ends_at <= now:
                return  # already said when it ended
        elif (self._ends_at is not None
              and abs((ends_at - self._ends_at).total_seconds()) <= ENDS_AT_TOLERANCE_S):
            return
        self._ends_at = ends_at
        self._set_value("ends_at", ends_at.isoformat(timespec="seconds"))

    def _mark_finished(self, event: SessionFinished) -> None:
        """The last snapshot may predate the end: make the retained state say finished."""
        state_topic = self.settings.topic("state")
        previous = self._latest.get(state_topic)
        record: dict[str, Any] = {}
        if previous is not None:
            with contextlib.suppress(ValueError):
                record = json.loads(previous.payload)
        record.update(state="finished", outcome=str(event.outcome), reason=event.reason,
                      remaining_s=0.0, distance_m=round(event.distance_m, 3))
        speed = self._latest.get(self.settings.topic("speed_kmh"))
        if speed is not None:
            with contextlib.suppress(ValueError):
                record["measured_kmh"] = float(speed.payload)
        self._set_value("state", json.dumps(record, separators=(",", ":")), qos=1)

    def _set_value(self, leaf: str, payload: str, qos: int = 0) -> None:
        topic = self.settings.topic(leaf)
        previous = self._latest.get(topic)
        if previous is not None and previous.payload == payload:
            return
        message = Outgoing(topic, payload, True, qos)
        self._latest[topic] = message
        self._values[topic] = message
        self._wakeup.set()

    # -- the connection's side
    def _client(self) -> aiomqtt.Client:
        s = self.settings
        host, port, tls = s.endpoint()
        tls_params = None
        if tls:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                cert_reqs=ssl.CERT_REQUIRED)
        return aiomqtt.Client(
            host, port,
            identifier=self.client_id,
            username=s.username,
            password=s.resolved_password(),
            tls_params=tls_params,
            will=aiomqtt.Will(topic=s.topic("availability"), payload="offline", qos=1,
                              retain=True),
            keepalive=15,
            timeout=5.0,
        )

    async def run(self) -> None:
        """Stay connected until cancelled; never raises for broker trouble. Ends by itself
        (``refused`` says why) when another live session already uses this name."""
        delay = BACKOFF_FIRST_S
        failures = 0
        while True:
            client = self._client()
            try:
                async with client:
                    if failures:
                        log.warning("MQTT: connected to %s again", self.settings.url)
                    else:
                        log.info("MQTT: connected to %s", self.settings.url)
                    failures = 0
                    delay = BACKOFF_FIRST_S
                    try:
                        await self._serve(client)
                    except NameInUseError as exc:
                        self.refused = str(exc)
                        log.warning("MQTT: %s", exc)
                        return
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except aiomqtt.MqttError as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.INFO
                hint = f" ({_AUTH_HINT})" if is_auth_failure(exc) else ""
                log.log(level, "MQTT broker %s: %s%s; retrying in %.1f s (the workout goes on "
                        "without it)", self.settings.url, exc, hint, delay)
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """On a clean exit: send what is still queued (the session's last events), then
        say offline ourselves, since a clean disconnect sends no Will. Best effort, briefly."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._send_pending(client, interruptible=False), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                client.publish(self.settings.topic("availability"), "offline", qos=1,
                               retain=True), 1.0)

    async def _claim_name(self, client: aiomqtt.Client) -> None:
        """Before the first "online": is another live session using this name? The
        broker's retained ``availability`` and ``owner`` say so; a probe message of our
        own, sent after subscribing, marks the moment every retained value has arrived."""
        s = self.settings
        probe = s.topic(f"probe/{self.run_id}")
        topics = (s.topic("availability"), s.topic("owner"), probe)
        for topic in topics:
            await client.subscribe(topic, qos=1)
        await client.publish(probe, "probe", qos=1)
        seen: dict[str, str] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NAME_CHECK_S):
                async for message in client.messages:
                    topic = str(message.topic)
                    if topic == probe:
                        break
                    if message.retain and isinstance(message.payload, bytes | bytearray):
                        seen[topic] = bytes(message.payload).decode("utf-8", "replace")
        for topic in topics:
            await client.unsubscribe(topic)
        if seen.get(s.topic("availability")) == "online" and (
                seen.get(s.topic("owner")) != self.run_id):
            who = f"the name {s.name!r}" if s.name else f"the topic prefix {s.topic_prefix!r}"
            raise NameInUseError(
                f"another retrotread session is live on {s.url} under {who}: this one is not "
                "published and takes no remote commands (give each treadmill its own --name; "
                "if no other session runs, clear the stale state with an empty retained "
                f"message on {s.topic('availability')})")
        await client.publish(s.topic("owner"), self.run_id, qos=1, retain=True)
        self._claimed = True

    async def _serve(self, client: aiomqtt.Client) -> None:
        s = self.settings
        _raise_if_cancelling()
        if not self._claimed:
            await self._claim_name(client)
        await client.publish(s.topic("availability"), "online", qos=1, retain=True)
        if s.discovery_prefix:
            topic, config = discovery_config(s)
            await client.publish(topic, json.dumps(config), qos=1, retain=True)
        await client.subscribe(s.topic("command"), qos=1)
        _raise_if_cancelling()
        self.connected = True  # connected, announced and listening for commands
        self.connections += 1
        # A broker that restarted without persistence lost our retained values: send the
        # latest of each again (older queued ones were coalesced away).
        self._values = {**self._latest, **self._values}
        self._wakeup.set()
        tasks = [asyncio.ensure_future(self._drain(client)),
                 asyncio.ensure_future(self._receive(client))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise MqttError from either side
        finally:
            for task in tasks:
                task.cancel()
            # Never hang here, even if a cancellation got lost inside the client.
            await asyncio.wait(tasks, timeout=2.0)
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: reported above or irrelevant now

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._send_pending(client)
            _raise_if_cancelling()

    async def _send_pending(self, client: aiomqtt.Client, *, interruptible: bool = True) -> None:
        """Publish what waits: live values first (latest only), then events in order."""
        while self._values or self._events:
            if interruptible:
                _raise_if_cancelling()
            if self._values:
                topic = next(iter(self._values))
                message = self._values.pop(topic)
                try:
                    await client.publish(message.topic, message.payload, qos=message.qos,
                                         retain=True)
                except aiomqtt.MqttError:  # not on cancel: it may be out already
                    self._values.setdefault(topic, self._latest.get(topic, message))
                    raise
            else:
                message = self._events.popleft()
                try:
                    await client.publish(message.topic, message.payload, qos=message.qos,
                                         retain=False)
                except aiomqtt.MqttError:  # not on cancel: it may be out already
                    if len(self._events) < self.settings.queue_size:
                        self._events.appendleft(message)
                    raise

    async def _receive(self, client: aiomqtt.Client) -> None:
        command_topic = self.settings.topic("command")
        try:
            async for message in client.messages:
                if not message.topic.matches(command_topic):
                    continue
                self.handle_command_message(message.payload, retained=bool(message.retain))
        finally:
            self.report_ignored_commands(final=True)

    def handle_command_message(self, payload: Any, *, retained: bool = False) -> bool:
        """Parse a command topic payload and pass it on. Returns whether it was passed on.

        Garbage, retained commands and commands beyond the rate limit are counted, not
        passed on: the first of each kind is logged in full, the rest in one summary line
        per COMMAND_SUMMARY_PERIOD_S, so a flood grows neither the log nor stderr."""
        data = payload if isinstance(payload, bytes | bytearray) else (
            str(payload).encode("utf-8", "replace") if payload is not None else b"")
        try:
            if retained:
                # A retained command would act on every later workout the moment it connects.
                return self._ignore(
                    "retained", "MQTT: ignoring a retained message on %s (%s); clear it with "
                    "an empty retained message", self.settings.topic("command"),
                    _describe_payload(bytes(data)))
            command = parse_command(bytes(data))
            if command is None:
                return self._ignore(
                    "not a command", "MQTT: ignoring command payload %s: expected one of %s",
                    _describe_payload(bytes(data)), ", ".join(REMOTE_COMMANDS))
            self.commands_received += 1
            bucket = self._command_buckets["stop" if command is UserCommand.STOP else "other"]
            if not bucket.take(self._command_clock()):
                return self._ignore(
                    "over the rate limit", "MQTT: remote %s ignored: more than %d commands "
                    "at once (then %.0f per s) are not passed on", command.value,
                    int(bucket.burst), bucket.rate_per_s)
            if self.command_handler is None:
                return self._ignore(
                    "without a session", "MQTT: remote %s received but there is no session "
                    "to pass it to", command.value)
            try:
                accepted = self.command_handler(command, "remote")
            except Exception:
                log.exception("MQTT: the session failed to handle remote %s", command.value)
                return False
            log.info("MQTT: remote %s %s", command.value, "accepted" if accepted else "refused")
            return True
        finally:
            self.report_ignored_commands()

    def _ignore(self, reason: str, message: str, *args: Any) -> bool:
        self.commands_ignored += 1
        if self._ignored_log.note(reason, self._command_clock()):
            log.warning(message + " (more like it are counted, not logged one by one)", *args)
        return False

    def report_ignored_commands(self, *, final: bool = False) -> None:
        """One warning with the counts of ignored command messages, when one is due."""
        log_ = self._ignored_log
        counts = log_.flush() if final else log_.due(self._command_clock())
        if counts:
            log.warning("MQTT: ignored %d command message(s) %s: %s", sum(counts.values()),
                        "since the last count" if final else
                        f"in the last {log_.period_s:.0f} s", describe_counts(counts))


# ----------------------------------------------------------------------------- monitor
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
                                          f"{exc}; {_AUTH_HINT}") from exc
                print(f"retrotread monitor: broker {settings.url}: {exc}; retrying in "
                      f"{delay:.1f} s", file=sys.stderr, flush=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
    finally:
        if live_display is not None:
            live_display.stop()
