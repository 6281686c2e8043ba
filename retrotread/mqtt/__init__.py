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

Parts: :mod:`~retrotread.mqtt.settings` (broker, login, name), :mod:`~retrotread.mqtt.messages`
(commands in, payloads and discovery out; pure), :mod:`~retrotread.mqtt.bridge` (the
connection task) and :mod:`~retrotread.mqtt.monitor` (``retrotread monitor``).
"""

from retrotread.errors import MqttConfigError, NameInUseError
from retrotread.mqtt.bridge import (
    COMMAND_BURST,
    COMMAND_SUMMARY_PERIOD_S,
    COMMANDS_PER_S,
    ENDS_AT_TOLERANCE_S,
    NAME_CHECK_S,
    CommandHandler,
    MqttBridge,
    Outgoing,
    WallClock,
)
from retrotread.mqtt.messages import (
    MAX_COMMAND_BYTES,
    PUBLISHED_EVENT_KINDS,
    REMOTE_COMMANDS,
    SESSION_STATES,
    VALUE_TOPICS,
    discovery_config,
    parse_command,
    presentation_record,
    project_url,
    snapshot_record,
)
from retrotread.mqtt.monitor import MonitorView, add_monitor_arguments, monitor, run_monitor
from retrotread.mqtt.settings import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    ENV_PASSWORD,
    ENV_USERNAME,
    MqttSettings,
    check_name,
    is_auth_failure,
    parse_broker_url,
    prefix_for_name,
)

__all__ = [
    "BACKOFF_FIRST_S",
    "BACKOFF_MAX_S",
    "COMMANDS_PER_S",
    "COMMAND_BURST",
    "COMMAND_SUMMARY_PERIOD_S",
    "ENDS_AT_TOLERANCE_S",
    "ENV_PASSWORD",
    "ENV_USERNAME",
    "MAX_COMMAND_BYTES",
    "NAME_CHECK_S",
    "PUBLISHED_EVENT_KINDS",
    "REMOTE_COMMANDS",
    "SESSION_STATES",
    "VALUE_TOPICS",
    "CommandHandler",
    "MonitorView",
    "MqttBridge",
    "MqttConfigError",
    "MqttSettings",
    "NameInUseError",
    "Outgoing",
    "WallClock",
    "add_monitor_arguments",
    "check_name",
    "discovery_config",
    "is_auth_failure",
    "monitor",
    "parse_broker_url",
    "parse_command",
    "prefix_for_name",
    "presentation_record",
    "project_url",
    "run_monitor",
    "snapshot_record",
]
