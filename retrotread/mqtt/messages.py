"""What goes over the broker: the remote commands a payload may ask for, the records and
per-value payloads published, and Home Assistant's discovery message. No network here."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from retrotread import __version__
from retrotread.envelope import Direction
from retrotread.events import (
    SessionSnapshot,
    UserCommand,
)
from retrotread.mqtt.settings import MqttSettings
from retrotread.session import State as SessionState

if TYPE_CHECKING:
    from retrotread.presentation import Presentation

MAX_COMMAND_BYTES = 1024

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


def describe_payload(payload: bytes) -> str:
    if len(payload) > 60:
        return f"{len(payload)} bytes"
    return repr(payload)


def topic_value(value: float | int | None, digits: int = 2) -> str:
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
