"""The MQTT bridge against a real Mosquitto broker (password file + ACL), on the real clock.

Pure parts (URL, settings, command parsing, discovery) are tested without a broker first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import itertools
import json
import os
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from retrotread import __version__
from retrotread.envelope import Direction
from retrotread.events import (
    Announcement,
    CommandSent,
    SegmentStarted,
    SessionFinished,
    SessionSnapshot,
    SessionStarted,
    TelemetrySample,
    UserCommand,
    WatchdogAction,
)
from retrotread.events import Outcome as SessionOutcome
from retrotread.mqtt import (
    ENDS_AT_TOLERANCE_S,
    MAX_COMMAND_BYTES,
    REMOTE_COMMANDS,
    MqttBridge,
    MqttConfigError,
    MqttSettings,
    discovery_config,
    parse_broker_url,
    parse_command,
    project_url,
)
from retrotread.session import State as SessionState
from tests.mosquitto import USERS, Broker

pytestmark = pytest.mark.timeout(30)


# ============================================================ pure: no broker needed
@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://broker.local", ("broker.local", 1883, False, None)),
    ("mqtts://broker.local", ("broker.local", 8883, True, None)),
    ("mqtt://127.0.0.1:18830", ("127.0.0.1", 18830, False, None)),
    ("MQTTS://ha@[::1]:8884/", ("::1", 8884, True, "ha")),
])
def test_broker_urls(url: str, expected: tuple[str, int, bool, str | None]) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("broker.local:1883", "needs a scheme"),
    ("http://broker.local", "mqtt:// or mqtts://"),
    ("mqtt://user:secret@broker.local", "do not put the MQTT password in the URL"),
    ("mqtt://broker.local:99999", "port must be a number"),
    ("mqtt://broker.local:abc", "port must be a number"),
    ("mqtt://:1883", "no host name"),
    ("mqtt://broker.local/retrotread", "only a host and a port"),
])
def test_bad_broker_urls_say_what_to_do(url: str, message: str) -> None:
    with pytest.raises(MqttConfigError, match=message):
        parse_broker_url(url)


def test_settings_from_config_file_environment_and_url(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("from-file\n", encoding="utf-8")
    config = tmp_path / "retrotread.toml"
    config.write_text(
        '[mqtt]\nurl = "mqtt://ha.local"\nusername = "walker"\n'
        f'password_file = "{secret}"\ntopic_prefix = "home/treadmill"\nqueue_size = 50\n'
        'units = "mph"\n', encoding="utf-8")
    settings = MqttSettings.from_sources(config_file=config, environ={})
    assert (settings.host, settings.port, settings.tls) == ("ha.local", 1883, False)
    assert settings.username == "walker"
    assert settings.resolved_password() == "from-file"
    assert settings.topic("state") == "home/treadmill/state"
    assert settings.node_id == "home_treadmill"
    assert settings.queue_size == 50
    assert "from-file" not in repr(settings)

    env = {"RETROTREAD_MQTT_USERNAME": "envuser", "RETROTREAD_MQTT_PASSWORD": "envpass"}
    settings = MqttSettings.from_sources(url="mqtts://other:8884", config_file=config,
                                         environ=env)
    assert (settings.host, settings.port, settings.tls) == ("other", 8884, True)
    assert (settings.username, settings.resolved_password()) == ("envuser", "envpass")


def test_settings_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(MqttConfigError, match="no MQTT broker given"):
        MqttSettings.from_sources(environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nurl = "mqtt://x"\nprefix = "oops"\n', encoding="utf-8")
    with pytest.raises(MqttConfigError, match=r"unknown MQTT setting.*prefix"):
        MqttSettings.from_sources(config_file=bad, environ={})
    bad.write_text('[mqtt]\nurl = "mqtt://x"\nqueue_size = "big"\n', encoding="utf-8")
    with pytest.raises(MqttConfigError, match="queue_size must be int"):
        MqttSettings.from_sources(config_file=bad, environ={})
    bad.write_text('[mqtt]\nurl = "mqtt://x"\npassword_file = "/nonexistent/pw"\n',
                   encoding="utf-8")
    with pytest.raises(MqttConfigError, match="cannot read the MQTT password file"):
        MqttSettings.from_sources(config_file=bad, environ={})
    with pytest.raises(MqttConfigError, match="not valid TOML"):
        bad.write_text("[mqtt\n", encoding="utf-8")
        MqttSettings.from_sources(config_file=bad, environ={})
    with pytest.raises(MqttConfigError, match="topic prefix"):
        MqttSettings(url="mqtt://x", topic_prefix="retro/#")


@pytest.mark.parametrize(("payload", "expected"), [
    (b"stop", UserCommand.STOP),
    (b"  STOP\n", UserCommand.STOP),
    (b"Pause", UserCommand.PAUSE),
    (b"resume", UserCommand.RESUME),
    (b"skip", UserCommand.SKIP),
    (b'{"command": "stop"}', UserCommand.STOP),
    (b'{"command": "Resume", "from": "phone"}', UserCommand.RESUME),
    (b"speed_up", None),
    (b"speed_down", None),
    (b"ready", None),
    (b"toggle_pause", None),
    (b'{"command": "speed_up"}', None),
    (b'{"command": 5}', None),
    (b'["stop"]', None),
    (b"{stop", None),
    (b"jump", None),
    (b"", None),
    (b"\xff\xfe\x00stop", None),
    (b"stop" + b" " * MAX_COMMAND_BYTES, None),
])
def test_only_pause_resume_stop_skip_are_remote_commands(
        payload: bytes, expected: UserCommand | None) -> None:
    assert parse_command(payload) is expected


# Home Assistant's device-discovery schema, the facts this bridge relies on. Sources:
# - https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload (the page's
#   source: home-assistant.io, source/_integrations/mqtt.markdown): the topic is
#   <discovery prefix>/device/<object id>/config; the root must hold the `device` (`dev`)
#   and `origin` (`o`) mappings; the only other root options are shared ones
#   (availability, command_topic, state_topic, qos, encoding); components go under
#   `cmps`, each with a `platform` (`p`) and, for entities, a `unique_id`.
# - same page, "Adding information about the origin of a discovery message": origin
#   `name` is required, `sw` (sw_version) and `url` (support_url) are optional.
# - https://www.home-assistant.io/integrations/sensor.mqtt/ and button.mqtt/: a sensor
#   needs `state_topic`, a button `command_topic`; the device mapping needs at least one
#   of `identifiers` (`ids`) or `connections` (`cns`).
# - https://www.home-assistant.io/integrations/sensor/#device-class: an `enum` sensor
#   lists its `options` and has no unit or state class; a `timestamp` sensor's state is
#   an ISO 8601 time with a time zone, no unit or state class; speed and distance
#   sensors take one of their class's units (Home Assistant converts between them).
# - https://www.home-assistant.io/integrations/binary_sensor.mqtt/ (and the sensor
#   platform alike): the payload `None` sets the state to unknown.
HA_OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
HA_ROOT_KEYS = {"dev", "device", "o", "origin", "cmps", "components", "~", "availability",
                "availability_topic", "availability_mode", "availability_template",
                "payload_available", "payload_not_available", "command_topic",
                "state_topic", "qos", "encoding"}
HA_STATE_CLASSES = {"measurement", "total", "total_increasing"}
HA_UNITS = {"speed": {"km/h", "mph", "m/s", "ft/s", "kn"},
            "distance": {"km", "m", "cm", "mm", "mi", "yd", "ft", "in"}}
HA_UNKNOWN = "None"


def check_device_discovery(topic: str, config: dict[str, Any], discovery_prefix: str) -> None:
    """Assert ``(topic, config)`` is a valid Home Assistant device discovery message."""
    head, kind, object_id, tail = topic.rsplit("/", 3)
    assert (head, kind, tail) == (discovery_prefix, "device", "config")
    assert HA_OBJECT_ID.match(object_id)
    assert set(config) <= HA_ROOT_KEYS, set(config) - HA_ROOT_KEYS
    device, origin = config["dev"], config["o"]
    assert device.get("ids") or device.get("cns")
    assert isinstance(origin["name"], str) and origin["name"]
    if "url" in origin:
        assert origin["url"].startswith(("https://", "http://"))
    components = config["cmps"]
    assert components
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(unique_ids) == len(set(unique_ids))
    for key, c in components.items():
        assert HA_OBJECT_ID.match(key)
        assert c["p"] in {"sensor", "button"}, key
        if c["p"] == "button":
            assert c["command_topic"] and c["payload_press"], key
            continue
        assert c["state_topic"], key
        assert c.get("state_class", "measurement") in HA_STATE_CLASSES, key
        device_class = c.get("device_class")
        if device_class == "enum":
            assert c["options"] and all(isinstance(o, str) for o in c["options"]), key
        if device_class in ("enum", "timestamp"):
            assert "unit_of_measurement" not in c and "state_class" not in c, key
        if device_class in HA_UNITS:
            assert c["unit_of_measurement"] in HA_UNITS[device_class], key


def test_discovery_config_follows_the_device_discovery_schema() -> None:
    settings = MqttSettings(url="mqtt://x", topic_prefix="home/treadmill", units="mph")
    topic, config = discovery_config(settings, support_url="https://example.org/retrotread")
    check_device_discovery(topic, config, "homeassistant")
    assert topic == "homeassistant/device/home_treadmill/config"
    assert config["o"] == {"name": "retrotread", "sw": __version__,
                           "url": "https://example.org/retrotread"}
    assert config["availability_topic"] == "home/treadmill/availability"


def test_discovery_entities_are_the_right_kinds() -> None:
    # the monitor's units setting does not reach Home Assistant: always km/h
    for units in ("mph", "km/h"):
        _, config = discovery_config(MqttSettings(url="mqtt://x", units=units))
        cmps = config["cmps"]
        for key in ("speed", "target_speed"):
            assert cmps[key]["unit_of_measurement"] == "km/h"
            assert cmps[key]["device_class"] == "speed"
            assert "value_template" not in cmps[key]  # the payload as it is: None stays None
    assert "remaining" not in cmps  # no per-second duration: an end time instead
    assert cmps["ends_at"]["device_class"] == "timestamp"
    assert cmps["ends_at"]["state_topic"] == "retrotread/ends_at"
    assert cmps["state"]["device_class"] == "enum"
    assert set(cmps["state"]["options"]) == {s.value for s in SessionState}
    assert cmps["direction"]["options"] == ["forward", "backward"]
    # nothing that changes every second rides along as attributes
    assert not any(k.startswith("json_attr") for c in cmps.values() for k in c)
    buttons = {c["payload_press"]: c for c in cmps.values() if c["p"] == "button"}
    assert set(buttons) == {"stop", "pause", "resume", "skip"}
    assert set(buttons) == set(REMOTE_COMMANDS)
    assert all(parse_command(p.encode()) for p in buttons)


def test_origin_url_comes_from_the_package_metadata() -> None:
    _, config = discovery_config(MqttSettings(url="mqtt://x"))
    assert config["o"].get("url") == project_url()


def test_publish_event_never_blocks_and_drops_the_oldest_without_a_loop() -> None:
    bridge = MqttBridge(MqttSettings(url="mqtt://127.0.0.1:1", queue_size=100))
    start = time.perf_counter()
    for i in range(10_000):
        bridge.publish_event(Announcement(float(i), f"cue {i}"))
        bridge.publish_event(_telemetry(float(i), speed=1.0 + (i % 50) / 10))
    elapsed = time.perf_counter() - start
    # Never waits on the network (the broker at port 1 refuses): a blocking publish would
    # take seconds per call. How fast a call is belongs to the benchmarks.
    assert elapsed < 5.0
    assert bridge.pending <= 100 + 7
    assert bridge.dropped == 10_000 - 100
    assert json.loads(bridge._events[0].payload)["text"] == "cue 9900"
    bridge.publish_event("not an event")  # type: ignore[arg-type]  # logged, not raised


# ============================================================ helpers for broker tests
_prefixes = itertools.count(1)


def _prefix() -> str:
    return f"retrotread/t{os.getpid()}_{next(_prefixes)}"


def _telemetry(t: float, speed: float | None = 1.6, distance: int | None = 12) -> TelemetrySample:
    return TelemetrySample(t, speed_kmh=speed, distance_m=distance, elapsed_s=int(t),
                           heart_rate_bpm=None, target_kmh=1.6, facing=Direction.BACKWARD)


def _snapshot(t: float = 10.0, state: str = "running") -> SessionSnapshot:
    return SessionSnapshot(
        time_s=t, state=state, facing=Direction.BACKWARD, segment_index=1,
        segment_label="back 1", segment_elapsed_s=4.0, segment_duration_s=60.0,
        next_label="fwd 2", next_change_in_s=56.0, plan_elapsed_s=70.0, plan_total_s=600.0,
        target_kmh=1.6, measured_kmh=1.58, distance_m=31.5, heart_rate_bpm=None,
        backward_ceiling_kmh=3.2, banner="SIMULATED TREADMILL", last_announcement="Turn",
        countdown_s=None, link_ok=True)


def _settings(broker: Broker, prefix: str, **kwargs: Any) -> MqttSettings:
    return MqttSettings(url=broker.url, username="retrotread", password=USERS["retrotread"],
                        topic_prefix=prefix, client_id=f"bridge-{prefix.replace('/', '-')}",
                        **kwargs)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Collector:
    """A subscriber client that keeps every message it gets."""

    messages: list[Received] = field(default_factory=list)
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, predicate: Callable[[Received], bool],
                       within_s: float = 5.0) -> Received:
        deadline = asyncio.get_running_loop().time() + within_s
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            self._new.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                topics = sorted({m.topic for m in self.messages})
                raise AssertionError(f"no matching message within {within_s} s; got {topics}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    async def wait_topic(self, topic: str, payload: str | None = None,
                         within_s: float = 5.0) -> Received:
        return await self.wait_for(
            lambda m: m.topic == topic and (payload is None or m.text == payload), within_s)


def _client(broker: Broker, user: str | None = "retrotread",
            password: str | None = None) -> aiomqtt.Client:
    if user is not None and password is None:
        password = USERS[user]
    return aiomqtt.Client(broker.host, broker.port, username=user, password=password,
                          timeout=3.0)


@contextlib.asynccontextmanager
async def collecting(broker: Broker, *topics: str,
                     user: str = "retrotread") -> AsyncIterator[Collector]:
    collector = Collector()
    async with _client(broker, user) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                collector.messages.append(
                    Received(str(message.topic), bytes(payload), bool(message.retain)))
                collector._new.set()

        task = asyncio.ensure_future(read())
        try:
            yield collector
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def _wait_until(condition: Callable[[], bool], within_s: float = 5.0,
                      what: str = "condition") -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(bridge: MqttBridge, *, wait_connected: bool = True) -> AsyncIterator[
        asyncio.Task[None]]:
    task = asyncio.ensure_future(bridge.run())
    try:
        if wait_connected:
            await _wait_until(lambda: bridge.connected or task.done(), what="the bridge")
            if task.done():
                task.result()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Handler:
    """A command_handler that records (command, source, perf_counter time)."""

    def __init__(self) -> None:
        self.calls: list[tuple[UserCommand, str, float]] = []
        self.called = asyncio.Event()

    def __call__(self, command: UserCommand, source: str) -> bool:
        self.calls.append((command, source, time.perf_counter()))
        self.called.set()
        return True

    @property
    def commands(self) -> list[UserCommand]:
        return [c for c, _, _ in self.calls]


# ============================================================ against the real broker
async def test_events_snapshots_and_discovery_arrive_well_formed(
        mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    settings = _settings(mosquitto_broker, prefix)
    discovery_topic = f"homeassistant/device/{settings.node_id}/config"
    async with collecting(mosquitto_broker, f"{prefix}/#", discovery_topic) as seen:
        bridge = MqttBridge(settings, command_handler=Handler())
        async with running(bridge):
            await seen.wait_topic(f"{prefix}/availability", "online")
            bridge.publish_event(SessionStarted(0.0, "beginner", None, "sim:generic", True,
                                                3.2, 600.0, 240.0, 400.0))
            bridge.publish_event(SegmentStarted(1.0, 1, "back 1", Direction.BACKWARD, 1.6,
                                                60.0, "fwd 2", "Turn around"))
            bridge.publish_event(CommandSent(1.1, 2, "SetTargetSpeed", 1.6,
                                             Direction.BACKWARD))
            bridge.publish_event(_telemetry(2.0, speed=1.55, distance=20))
            bridge.publish_event(Announcement(3.0, "Halfway", "info"))
            bridge.publish_event(WatchdogAction(4.0, "stale_telemetry", "alarm", "no data"))
            bridge.update_snapshot(_snapshot())
            await seen.wait_topic(f"{prefix}/state")
            await seen.wait_topic(f"{prefix}/ends_at")
            bridge.publish_event(SessionFinished(5.0, SessionOutcome.COMPLETED, "done",
                                                 5.0, 3.0, 21.0, True))
            await seen.wait_for(lambda m: m.topic == f"{prefix}/event"
                                and m.json()["type"] == "session_finished")
            await seen.wait_for(lambda m: m.topic == f"{prefix}/state"
                                and m.json()["state"] == "finished")
            await seen.wait_topic(discovery_topic)
            bridge.publish_event(Announcement(6.0, "Well done"))  # then cancelled at once

        # the bridge was cancelled: it sends what was queued, then says offline (a clean
        # exit sends no Will)
        offline = await seen.wait_topic(f"{prefix}/availability", "offline")
        last_event = [m for m in seen.messages if m.topic == f"{prefix}/event"][-1]
        assert last_event.json()["text"] == "Well done"
        assert seen.messages.index(last_event) < seen.messages.index(offline)

    events = [m.json() for m in seen.on(f"{prefix}/event")]
    kinds = [e["type"] for e in events]
    assert kinds == ["session_started", "segment_started", "announcement", "watchdog",
                     "session_finished", "announcement"]  # no command, no telemetry
    assert events[1]["direction"] == "backward" and events[1]["label"] == "back 1"
    assert all(not m.retain for m in seen.on(f"{prefix}/event"))

    def last(leaf: str) -> str:
        return seen.on(f"{prefix}/{leaf}")[-1].text

    assert float(last("speed_kmh")) == pytest.approx(1.55)
    assert float(last("target_kmh")) == pytest.approx(1.6)
    assert last("direction") == "backward"
    assert last("segment") == "back 1"
    assert float(last("distance_m")) == pytest.approx(31.5)  # the snapshot came after
    assert last("heart_rate_bpm") == HA_UNKNOWN
    ends = [datetime.datetime.fromisoformat(m.text) for m in seen.on(f"{prefix}/ends_at")]
    assert all(e.tzinfo is not None for e in ends)  # a Home Assistant timestamp
    assert len(ends) == 2  # expected end while running, then when it ended
    assert abs((ends[0] - ends[1]).total_seconds() - 530) < 5
    running_state, final_state = (m.json() for m in seen.on(f"{prefix}/state"))
    assert running_state["state"] == "running" and running_state["facing"] == "backward"
    assert running_state["remaining_s"] == pytest.approx(530.0)
    assert running_state["segment_label"] == "back 1"
    # the session ended after the last snapshot: the retained state says so anyway
    assert final_state["state"] == "finished" and final_state["outcome"] == "completed"
    assert final_state["remaining_s"] == 0
    assert final_state["segment_label"] == "back 1"  # the rest of the last snapshot stays

    config = seen.on(discovery_topic)[-1].json()
    check_device_discovery(discovery_topic, config, "homeassistant")
    cmps = config["cmps"]
    assert config["availability_topic"] == f"{prefix}/availability"
    assert set(cmps) >= {"speed", "target_speed", "direction", "segment", "ends_at",
                         "distance", "heart_rate", "state", "stop", "pause", "resume",
                         "skip"}
    assert running_state["state"] in cmps["state"]["options"]
    assert cmps["speed"]["unit_of_measurement"] == "km/h"
    assert cmps["speed"]["state_topic"] == f"{prefix}/speed_kmh"
    assert cmps["heart_rate"]["unit_of_measurement"] == "bpm"
    assert cmps["direction"]["options"] == ["forward", "backward"]
    assert cmps["stop"]["command_topic"] == f"{prefix}/command"

    # retained values are there for a dashboard that connects later
    async with collecting(mosquitto_broker, f"{prefix}/+", user="coach") as late:
        await late.wait_topic(f"{prefix}/state")
        await late.wait_topic(f"{prefix}/availability", "offline")
        assert all(m.retain for m in late.messages)


class SteppedWallClock:
    """Wall time that a test moves by hand (with its UTC offset, as Home Assistant needs)."""

    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 3, 1, 7, 0, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


async def test_unknown_stays_unknown_and_the_end_time_moves_only_when_it_must(
        mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    wall = SteppedWallClock()
    async with collecting(mosquitto_broker, f"{prefix}/#") as seen:
        bridge = MqttBridge(_settings(mosquitto_broker, prefix, discovery_prefix=None),
                            wall_clock=wall)
        async with running(bridge):
            # a machine that reports no speed and no distance: unknown, not 0; and a heart
            # rate of 0 (a machine without a sensor, as a real UREVO E1L sends) is unknown
            bridge.publish_event(dataclasses.replace(
                _telemetry(1.0, speed=None, distance=None), heart_rate_bpm=0))
            bridge.update_snapshot(_snapshot(1.0))  # the session counts 31.5 m regardless
            await seen.wait_topic(f"{prefix}/distance_m")
            await seen.wait_topic(f"{prefix}/speed_kmh")
            assert seen.on(f"{prefix}/speed_kmh")[-1].text == HA_UNKNOWN
            assert seen.on(f"{prefix}/distance_m")[-1].text == HA_UNKNOWN
            await seen.wait_topic(f"{prefix}/heart_rate_bpm", HA_UNKNOWN)
            # a second a snapshot, as the session sends them: the end time stays put
            for second in range(1, 31):
                wall.now += datetime.timedelta(seconds=1)
                elapsed = 70.0 + second if second <= 10 else 80.0  # paused after 10 s
                bridge.update_snapshot(dataclasses.replace(_snapshot(1.0 + second),
                                                           plan_elapsed_s=elapsed))
            # then the machine reports a distance: from now on the session's count shows
            bridge.publish_event(_telemetry(40.0, speed=1.5, distance=25))
            bridge.update_snapshot(dataclasses.replace(_snapshot(40.0), distance_m=32.0))
            await seen.wait_topic(f"{prefix}/distance_m", "32.0")
            await seen.wait_topic(f"{prefix}/speed_kmh", "1.50")
    ends = [datetime.datetime.fromisoformat(m.text) for m in seen.on(f"{prefix}/ends_at")]
    start = datetime.datetime(2026, 3, 1, 7, 0, tzinfo=datetime.UTC)
    assert ends[0] == start + datetime.timedelta(seconds=530)
    # 30 snapshots, 20 s of pause: re-sent only once the end moved by over the tolerance
    assert len(ends) == 2
    assert ends[1] - ends[0] > datetime.timedelta(seconds=ENDS_AT_TOLERANCE_S)


async def test_the_will_says_offline_when_the_bridge_process_dies(
        mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    script = (
        "import asyncio, sys\n"
        "from retrotread.mqtt import MqttBridge, MqttSettings\n"
        "s = MqttSettings.from_sources(url=sys.argv[1])\n"
        "s = MqttSettings(url=s.url, username=s.username, password=s.password,"
        " topic_prefix=sys.argv[2], discovery_prefix=None)\n"
        "asyncio.run(MqttBridge(s).run())\n")
    env = {**os.environ, "RETROTREAD_MQTT_USERNAME": "retrotread",
           "RETROTREAD_MQTT_PASSWORD": USERS["retrotread"]}
    async with collecting(mosquitto_broker, f"{prefix}/availability") as seen:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, mosquitto_broker.url, prefix, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await seen.wait_topic(f"{prefix}/availability", "online", within_s=10)
        finally:
            process.kill()  # SIGKILL: no clean disconnect, the broker sends the Will
            await process.wait()
        await seen.wait_topic(f"{prefix}/availability", "offline")


async def test_remote_stop_reaches_the_session_quickly(mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    handler = Handler()
    # 21 stops in a row: this measures latency, so the rate limit is lifted here
    bridge = MqttBridge(_settings(mosquitto_broker, prefix), command_handler=handler,
                        commands_per_s=1000.0, command_burst=100)
    latencies: list[float] = []
    async with running(bridge), _client(mosquitto_broker, "phone") as phone:
        for payload in ["stop"] * 20 + ['{"command": "STOP"}']:
            handler.called.clear()
            sent = time.perf_counter()
            await phone.publish(f"{prefix}/command", payload, qos=1)
            await asyncio.wait_for(handler.called.wait(), 5)
            latencies.append(handler.calls[-1][2] - sent)
    assert handler.commands == [UserCommand.STOP] * 21
    assert {source for _, source, _ in handler.calls} == {"remote"}
    median_ms = statistics.median(latencies) * 1000
    # The first one is often ~40 ms: Mosquitto's default (set_tcp_nodelay false) lets
    # Nagle hold the PUBLISH until the bridge ACKs the broker's previous packet.
    print(f"\nremote stop latency (phone publish -> command_handler, real broker, "
          f"{len(latencies)} runs): median {median_ms:.2f} ms, first "
          f"{latencies[0] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < 1.0


@pytest.mark.parametrize(("user", "password"), [(None, None), ("phone", "wrong"),
                                                ("nobody", "x")])
async def test_anonymous_or_wrong_password_cannot_connect_or_command(
        mosquitto_broker: Broker, user: str | None, password: str | None) -> None:
    prefix = _prefix()
    handler = Handler()
    bridge = MqttBridge(_settings(mosquitto_broker, prefix), command_handler=handler)
    async with running(bridge):
        with pytest.raises(aiomqtt.MqttError):
            async with _client(mosquitto_broker, user, password or "") as intruder:
                await intruder.publish(f"{prefix}/command", "stop", qos=1)
        await asyncio.sleep(0.3)
    assert handler.calls == []


async def test_a_reader_without_write_rights_cannot_command(mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    handler = Handler()
    bridge = MqttBridge(_settings(mosquitto_broker, prefix), command_handler=handler)
    async with running(bridge):
        async with _client(mosquitto_broker, "coach") as coach:
            for payload in ("stop", "pause", "skip"):
                await coach.publish(f"{prefix}/command", payload, qos=1)  # broker drops them
        async with _client(mosquitto_broker, "phone") as phone:  # control: this one works
            await phone.publish(f"{prefix}/command", "resume", qos=1)
            await asyncio.wait_for(handler.called.wait(), 5)
        await asyncio.sleep(0.2)
    assert handler.commands == [UserCommand.RESUME]


async def test_malformed_payloads_change_nothing(mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    handler = Handler()
    bridge = MqttBridge(_settings(mosquitto_broker, prefix), command_handler=handler)
    junk: list[bytes] = [
        b"jump", b'{"command":"speed_up"}', b"speed_up", b"speed_down", b"ready",
        bytes(range(256)), b"stop" + b"!" * 5 * 1024, b"x" * 5 * 1024, b"", b"{not json",
        b'{"command": ["stop"]}', b"\xc3\x28",
    ]
    async with running(bridge) as task, _client(mosquitto_broker, "phone") as phone:
        for payload in junk:
            await phone.publish(f"{prefix}/command", payload, qos=1)
        # the same client's messages arrive in order: once "pause" is handled, all the
        # junk before it has been looked at
        await phone.publish(f"{prefix}/command", "pause", qos=1)
        await asyncio.wait_for(handler.called.wait(), 5)
        assert not task.done()
        assert bridge.connected
        # and the bridge still publishes
        async with collecting(mosquitto_broker, f"{prefix}/event") as seen:
            bridge.publish_event(Announcement(1.0, "still here"))
            await seen.wait_topic(f"{prefix}/event")
    assert handler.commands == [UserCommand.PAUSE]
    assert bridge.commands_ignored == len(junk)


async def test_a_retained_stop_does_not_stop_the_next_workout(mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    async with _client(mosquitto_broker, "phone") as phone:
        await phone.publish(f"{prefix}/command", "stop", qos=1, retain=True)
    handler = Handler()
    bridge = MqttBridge(_settings(mosquitto_broker, prefix), command_handler=handler)
    try:
        async with running(bridge):
            await _wait_until(lambda: bridge.commands_ignored == 1, what="the retained stop")
    finally:
        async with _client(mosquitto_broker, "phone") as phone:
            await phone.publish(f"{prefix}/command", b"", qos=1, retain=True)  # clear it
    assert handler.calls == []


async def test_broker_down_at_start_only_warns_and_connects_later(
        mosquitto_broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    prefix = _prefix()
    settings = MqttSettings(url="mqtt://127.0.0.1:1", topic_prefix=prefix)  # nobody there
    bridge = MqttBridge(settings)
    async with running(bridge, wait_connected=False) as task:
        await asyncio.sleep(0.3)
        assert not task.done() and not bridge.connected
    assert any("retrying" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)


async def test_broker_killed_and_restarted_mid_run(mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    handler = Handler()
    bridge = MqttBridge(_settings(mosquitto_broker, prefix, queue_size=200),
                        command_handler=handler)
    async with running(bridge) as task:
        async with collecting(mosquitto_broker, f"{prefix}/event") as seen:
            bridge.publish_event(Announcement(1.0, "before"))
            await seen.wait_topic(f"{prefix}/event")

        mosquitto_broker.stop()
        await _wait_until(lambda: not bridge.connected, what="the bridge to notice")
        start = time.perf_counter()
        for i in range(10_000):
            bridge.publish_event(Announcement(2.0 + i / 1e4, f"while down {i}"))
            bridge.publish_event(_telemetry(2.0 + i / 1e4, speed=1.0 + (i % 7) / 10))
        blocked = time.perf_counter() - start
        assert blocked < 5.0, f"publish_event took {blocked:.3f} s for 20,000 calls"
        assert bridge.pending <= 200 + 7
        assert bridge.dropped >= 10_000 - 200
        assert not task.done()

        mosquitto_broker.start()  # same port, no persistence: retained values are gone
        restarted = time.perf_counter()
        await _wait_until(lambda: bridge.connections == 2, within_s=12,
                          what="the bridge to reconnect")
        print(f"\nbridge reconnected {time.perf_counter() - restarted:.2f} s after the "
              "broker came back")
        async with collecting(mosquitto_broker, f"{prefix}/#") as seen:
            # the latest live values were published again (retained) after the restart
            speed = await seen.wait_topic(f"{prefix}/speed_kmh")
            assert speed.text == f"{1.0 + (9_999 % 7) / 10:.2f}"  # the last sample
            bridge.publish_event(Announcement(5.0, "after"))
            after = await seen.wait_for(lambda m: m.topic == f"{prefix}/event"
                                        and m.json()["text"] == "after")
            assert after.json()["type"] == "announcement"
            await seen.wait_topic(f"{prefix}/availability", "online")
        # and commands work again
        async with _client(mosquitto_broker, "phone") as phone:
            await phone.publish(f"{prefix}/command", "stop", qos=1)
            await asyncio.wait_for(handler.called.wait(), 5)
    assert handler.commands == [UserCommand.STOP]


async def test_monitor_shows_a_remote_session_read_only(
        mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from retrotread.cli import main

    prefix = _prefix()
    bridge = MqttBridge(_settings(mosquitto_broker, prefix))
    monkeypatch.setenv("RETROTREAD_MQTT_USERNAME", "coach")
    monkeypatch.setenv("RETROTREAD_MQTT_PASSWORD", USERS["coach"])
    async with running(bridge):
        bridge.update_snapshot(_snapshot())
        await _wait_until(lambda: bridge.pending == 0, what="the snapshot to go out")
        # availability + state are retained: the monitor sees them at once; then one event
        monitor = asyncio.ensure_future(asyncio.to_thread(
            main, ["monitor", "--mqtt", mosquitto_broker.url, "--prefix", prefix,
                   "--count", "3"]))
        async with collecting(mosquitto_broker, f"{prefix}/event"):
            # Events are not retained: publish until the monitor (which may take a while
            # to start on a busy machine) has seen one.
            deadline = time.monotonic() + 30
            while not monitor.done() and time.monotonic() < deadline:
                bridge.publish_event(SegmentStarted(70.0, 2, "fwd 2", Direction.FORWARD,
                                                    2.4, 60.0, None))
                await asyncio.wait({monitor}, timeout=0.3)
            assert await asyncio.wait_for(monitor, 5) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3, out
    assert any("availability: online" in line for line in out)
    assert any("state running | backward | back 1" in line and "8:50 left" in line
               for line in out)
    assert any("event segment_started" in line and "label=fwd 2" in line for line in out)


async def test_monitor_live_panel_over_the_broker(mosquitto_broker: Broker) -> None:
    import io

    from retrotread.mqtt import monitor

    prefix = _prefix()
    bridge = MqttBridge(_settings(mosquitto_broker, prefix))
    async with running(bridge):
        bridge.update_snapshot(_snapshot())
        await _wait_until(lambda: bridge.pending == 0, what="the snapshot to go out")
    settings = MqttSettings(url=mosquitto_broker.url, username="coach",
                            password=USERS["coach"], topic_prefix=prefix)
    out = io.StringIO()
    # retained: availability (offline, the bridge has gone) and state
    assert await asyncio.wait_for(monitor(settings, out=out, live=True, count=2), 5) == 0
    text = out.getvalue()
    assert "running (offline)" in text
    assert "back 1" in text and "(next: fwd 2)" in text


async def test_a_refused_login_is_explained(mosquitto_broker: Broker,
                                            caplog: pytest.LogCaptureFixture) -> None:
    from retrotread.mqtt import monitor

    settings = MqttSettings(url=mosquitto_broker.url, username="coach", password="wrong",
                            topic_prefix=_prefix())
    with pytest.raises(MqttConfigError, match=r"refused the login.*RETROTREAD_MQTT_PASSWORD"):
        await asyncio.wait_for(monitor(settings, out=sys.stdout, live=False), 5)
    bridge = MqttBridge(settings)
    async with running(bridge, wait_connected=False):
        await _wait_until(lambda: any("RETROTREAD_MQTT_PASSWORD" in r.getMessage()
                                      for r in caplog.records), what="the warning")
    assert bridge.connections == 0


def test_monitor_live_view_renders() -> None:
    import io

    from rich.console import Console

    from retrotread.mqtt import MonitorView, snapshot_record

    view = MonitorView(units="mph")
    view.update("availability", b"online")
    view.update("state", json.dumps(snapshot_record(_snapshot())).encode())
    view.update("event", b'{"type": "announcement", "t": 3.0, "text": "Turn around"}')
    assert view.update("state", b"\xff junk") is None
    console = Console(file=io.StringIO(), width=100)
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "running (online)" in text
    # 1.58 km/h, one decimal as on every other screen (the monitor alone used to show two)
    assert "1.0 mph" in text
    assert "8:50" in text
    assert "announcement: text=Turn around" in text


# ============================================================ end to end: a workout
SHORT_WALK = """\
name: MQTT test walk
units: mph
turnaround:
  announce: 5s
  ready: hold
  hold: 5s
  countdown: 3s
warmup:
  - forward: 40s
    speed: 2.0 mph
    label: Walk in
segments:
  - backward: 40s
    speed: 1.0 mph
    label: Backward
  - forward: 40s
    speed: 2.0 mph
    label: Walk out
"""


async def _workout_with_bridge(
        broker: Broker, prefix: str, profile_source: Path | str,
        during: Callable[[Any, Any, Handler], Any], speedup: float = 50.0,
) -> tuple[Any, Any, Handler, list[Any]]:
    """Run a profile (a file, or YAML text) on the simulator at ``speedup`` x real time,
    with the bridge wired to ``session.request``; ``during(sim, session, handler)`` runs
    alongside. As in ``retrotread run --speedup``, a stalled loop is judged in real time."""
    pytest.importorskip("retrotread.plan")
    from retrotread.clock import LoopClock, ScaledClock
    from retrotread.devices import DeviceSpec
    from retrotread.events import EventBus
    from retrotread.profile import load_profile, load_profile_text
    from retrotread.runner import LinkFactory, run_profile, running_simulator
    from retrotread.session import Session, SessionSettings

    profile = (load_profile(profile_source) if isinstance(profile_source, Path)
               else load_profile_text(profile_source))
    clock = ScaledClock(speedup)
    bus = EventBus()
    events: list[Any] = []
    bus.subscribe(events.append)
    holder: list[Session] = []
    inner = Handler()

    def handler(command: UserCommand, source: str) -> bool:
        inner(command, source)
        return holder[0].request(command, source) if holder else False

    bridge = MqttBridge(_settings(broker, prefix), command_handler=handler)
    bus.subscribe(bridge.publish_event)
    async with running(bridge), running_simulator(clock, "generic") as sim:
        scenario: list[asyncio.Future[Any]] = []

        def on_session(session: Session) -> None:
            holder.append(session)
            scenario.append(asyncio.ensure_future(during(sim, session, inner)))

        result = await run_profile(
            profile, link_factory=LinkFactory(DeviceSpec("sim", "generic"), sim),
            clock=clock, bus=bus, simulated=True, settings=SessionSettings(),
            on_session=on_session, stall_clock=LoopClock())
        for task in scenario:
            await asyncio.wait_for(task, 5)  # re-raises the scenario's failures
        sim.belt.advance_to(clock.now())
        return result, sim, inner, events


PROFILES = Path(__file__).resolve().parent.parent / "profiles"


async def test_remote_stop_stops_the_simulated_belt_mid_workout(
        mosquitto_broker: Broker) -> None:
    prefix = _prefix()
    timings: dict[str, float] = {}

    async def stop_when_walking(sim: Any, session: Any, handler: Handler) -> None:
        await _wait_until(lambda: sim.belt.speed_kmh > 1.0, within_s=10, what="the belt")
        async with _client(mosquitto_broker, "phone") as phone:
            timings["sent"] = time.perf_counter()
            await phone.publish(f"{prefix}/command", "stop", qos=1)
            await asyncio.wait_for(handler.called.wait(), 5)
        timings["handled"] = handler.calls[-1][2]
        await _wait_until(lambda: sim.belt.speed_kmh == 0.0, within_s=10, what="the belt stop")
        timings["belt_stopped"] = time.perf_counter()

    result, sim, handler, events = await _workout_with_bridge(
        mosquitto_broker, prefix, PROFILES / "first-session.yaml", stop_when_walking)
    assert result.outcome is SessionOutcome.STOPPED_BY_USER
    assert result.stop_sent
    assert sim.belt.speed_kmh == 0.0
    assert handler.commands == [UserCommand.STOP]
    user = [e for e in events if e.kind == "user"]
    assert [(e.command, e.source, e.accepted) for e in user] == [
        (UserCommand.STOP, "remote", True)]
    print(f"\nremote stop mid-workout: publish -> session.request "
          f"{(timings['handled'] - timings['sent']) * 1000:.1f} ms; publish -> belt at 0 "
          f"{timings['belt_stopped'] - timings['sent']:.2f} s real "
          f"(simulator at 50x: the ramp-down takes ~50x longer on a real belt)")


async def test_broker_killed_mid_workout_changes_nothing_in_the_workout(
        mosquitto_broker: Broker) -> None:
    async def nothing(sim: Any, session: Any, handler: Handler) -> None:
        return None

    # A reference run with the broker up all along. At 20x real time, 0.1 s of scheduling
    # jitter on a busy machine is 2 s of workout time: the tolerances below allow for it.
    speedup = 20.0
    reference, _, _, ref_events = await _workout_with_bridge(
        mosquitto_broker, _prefix(), SHORT_WALK, nothing, speedup)

    prefix = _prefix()
    arrived: list[str] = []

    async def kill_and_restart(sim: Any, session: Any, handler: Handler) -> None:
        await _wait_until(lambda: sim.belt.speed_kmh > 1.0, within_s=10, what="the belt")
        # (in a thread: a blocked loop would itself trip the session's watchdog)
        await asyncio.to_thread(mosquitto_broker.stop)
        try:
            await asyncio.sleep(1.5)  # 30 s of workout time with no broker
        finally:  # the broker is shared by the tests after this one
            await asyncio.to_thread(mosquitto_broker.start)
        async with collecting(mosquitto_broker, f"{prefix}/event") as seen:
            message = await seen.wait_for(
                lambda m: m.json()["type"] in ("segment_started", "turnaround"), within_s=8)
            arrived.append(message.json()["type"])

    result, sim, _, events = await _workout_with_bridge(
        mosquitto_broker, prefix, SHORT_WALK, kill_and_restart, speedup)
    assert result.outcome is SessionOutcome.COMPLETED, result
    assert arrived  # telemetry resumed after the restart
    assert sim.belt.speed_kmh == 0.0
    assert not [e for e in events if e.kind == "watchdog"]

    def segment_times(evs: list[Any]) -> list[tuple[str, float]]:
        t0 = next(e.time_s for e in evs if e.kind == "session_started")
        return [(e.label, e.time_s - t0) for e in evs if e.kind == "segment_started"]

    ours, theirs = segment_times(events), segment_times(ref_events)
    assert [label for label, _ in ours] == [label for label, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, abs=4.0)  # workout seconds (0.2 s of real time)
    # the end includes confirming the belt stopped, sampled once a (workout) second or so
    assert result.elapsed_s == pytest.approx(reference.elapsed_s, abs=5.0)


async def test_the_state_carries_the_same_account_as_the_screen_and_the_page(
        mosquitto_broker: Broker) -> None:
    """MQTT publishes what the person must know now from the one presentation model
    (retrotread/presentation.py), not a copy of its own."""
    from retrotread.presentation import present

    prefix = _prefix()
    snapshot = _snapshot()
    presentation = present(snapshot, Announcement(9.5, "Halfway there", "info"))
    async with collecting(mosquitto_broker, f"{prefix}/#") as seen:
        bridge = MqttBridge(_settings(mosquitto_broker, prefix), command_handler=Handler())
        async with running(bridge):
            bridge.update_snapshot(snapshot, presentation)
            state = await seen.wait_topic(f"{prefix}/state")
            face = await seen.wait_topic(f"{prefix}/face")
            phase = await seen.wait_topic(f"{prefix}/phase")
    now = state.json()["now"]
    assert now["face"] == presentation.face.value == face.text
    assert now["phase"] == presentation.phase.value == phase.text
    assert now["said"] == presentation.said
    assert now["segment_left_s"] == pytest.approx(presentation.segment_left_s, abs=0.1)


async def test_two_treadmills_with_different_names_share_a_broker(
        mosquitto_broker: Broker) -> None:
    """--name: each treadmill publishes under retrotread/NAME as its own Home Assistant
    device, and a command to one never reaches the other."""
    names = (f"garage{os.getpid()}", f"clinic{os.getpid()}")
    base = MqttSettings(url=mosquitto_broker.url, username="retrotread",
                        password=USERS["retrotread"])
    settings = [dataclasses.replace(base.named(n), client_id=f"bridge-{n}") for n in names]
    handlers = [Handler(), Handler()]
    bridges = [MqttBridge(s, command_handler=h) for s, h in zip(settings, handlers,
                                                                  strict=True)]
    topics = [discovery_config(s)[0] for s in settings]
    assert topics[0] != topics[1]
    ids = [{c["unique_id"] for c in discovery_config(s)[1]["cmps"].values()} for s in settings]
    assert not ids[0] & ids[1]  # separate entities
    assert discovery_config(settings[0])[1]["dev"]["name"] == f"Retrotread {names[0]}"
    async with running(bridges[0]), running(bridges[1]), \
            _client(mosquitto_broker, "phone") as phone:
        await phone.publish(f"retrotread/{names[0]}/command", "stop", qos=1)
        await asyncio.wait_for(handlers[0].called.wait(), 5)
        await asyncio.sleep(0.5)
    assert handlers[0].commands == [UserCommand.STOP]
    assert handlers[1].commands == []


def test_a_name_must_be_one_topic_level() -> None:
    for bad in ("", "two words", "a/b", "x+", "#", "-lead", "n" * 33):
        with pytest.raises(MqttConfigError):
            MqttSettings().named(bad)
    assert MqttSettings().named("clinic-2").topic_prefix == "retrotread/clinic-2"


async def test_a_second_session_with_the_same_name_is_refused(
        mosquitto_broker: Broker) -> None:
    """Two sessions under one name would mix their topics and both obey one command: the
    second refuses to publish or listen, and says why."""
    name = f"twin{os.getpid()}"
    base = MqttSettings(url=mosquitto_broker.url, username="retrotread",
                        password=USERS["retrotread"]).named(name)
    first_handler, second_handler = Handler(), Handler()
    first = MqttBridge(dataclasses.replace(base, client_id=f"first-{name}"),
                       command_handler=first_handler)
    second = MqttBridge(dataclasses.replace(base, client_id=f"second-{name}"),
                        command_handler=second_handler)
    async with running(first):
        await asyncio.wait_for(second.run(), 15)  # ends by itself: refused
        assert second.refused and name in second.refused and "--name" in second.refused
        async with _client(mosquitto_broker, "phone") as phone:
            await phone.publish(f"retrotread/{name}/command", "pause", qos=1)
            await asyncio.wait_for(first_handler.called.wait(), 5)
    assert second_handler.commands == []
    # once the first has gone offline, the name is free again
    third = MqttBridge(dataclasses.replace(base, client_id=f"third-{name}"),
                       command_handler=Handler())
    async with running(third):
        assert third.refused is None and third.connected
