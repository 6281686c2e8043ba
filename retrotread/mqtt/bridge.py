"""The bridge: one task owns the broker connection; the control loop only queues."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt

from retrotread.errors import NameInUseError
from retrotread.events import (
    Event,
    SegmentStarted,
    SessionFinished,
    SessionSnapshot,
    TelemetrySample,
    UserCommand,
)
from retrotread.mqtt.messages import (
    PUBLISHED_EVENT_KINDS,
    REMOTE_COMMANDS,
    describe_payload,
    discovery_config,
    parse_command,
    presentation_record,
    snapshot_record,
    topic_value,
)
from retrotread.mqtt.settings import (
    AUTH_HINT,
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    MqttSettings,
    is_auth_failure,
)
from retrotread.ratelimit import SuppressedLog, TokenBucket, describe_counts
from retrotread.session import State as SessionState

if TYPE_CHECKING:
    from retrotread.presentation import Presentation

log = logging.getLogger(__name__)

COMMANDS_PER_S = 2.0
"""Remote commands passed to the session per second, after a burst of COMMAND_BURST: a
person presses a button a few times; more is a flood, counted and summarised instead."""
COMMAND_BURST = 5
COMMAND_SUMMARY_PERIOD_S = 30.0

#: ``ends_at`` is re-published only when the expected end moves by more than this (a
#: pause or a long turnaround), not every second.
ENDS_AT_TOLERANCE_S = 15.0

NAME_CHECK_S = 3.0
"""How long the bridge waits for the broker's retained state before it claims a name."""

WallClock = Callable[[], datetime.datetime]
CommandHandler = Callable[[UserCommand, str], bool]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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
            self._set_value("distance_m", topic_value(snapshot.distance_m if self._distance_known
                                               else None, 1))
        except Exception:
            log.exception("MQTT bridge could not queue the snapshot")

    def _queue_event(self, event: Event) -> None:
        if isinstance(event, TelemetrySample):
            self._distance_known = self._distance_known or event.distance_m is not None
            self._set_value("speed_kmh", topic_value(event.speed_kmh))
            self._set_value("target_kmh", topic_value(event.target_kmh))
            self._set_value("direction", str(event.facing))
            # distance_m comes from the snapshot (the session's own count), so that two
            # sources with different rounding do not take turns on one topic
            # a heart rate of 0 is a machine without a sensor (real captures send it), not
            # a reading: unknown, like a missing one
            self._set_value("heart_rate_bpm", topic_value(event.heart_rate_bpm or None))
            return
        if isinstance(event, SegmentStarted):
            self._set_value("segment", event.label)
            self._set_value("direction", str(event.direction))
            self._set_value("target_kmh", topic_value(event.speed_kmh))
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
                hint = f" ({AUTH_HINT})" if is_auth_failure(exc) else ""
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
                    describe_payload(bytes(data)))
            command = parse_command(bytes(data))
            if command is None:
                return self._ignore(
                    "not a command", "MQTT: ignoring command payload %s: expected one of %s",
                    describe_payload(bytes(data)), ", ".join(REMOTE_COMMANDS))
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
