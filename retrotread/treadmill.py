"""The FTMS client: the treadmill as the rest of the program sees it.

Works over any :class:`retrotread.gatt.Link`. It discovers the Fitness Machine Service,
reads the features and speed range, subscribes to telemetry, status and the control
point, and sends commands. Every command waits for its Response Code (one procedure at a
time, with a time-out) and turns a failure into a :class:`ControlPointError` or
:class:`ControlPointTimeoutError` a person can act on. Telemetry and status reach callers
as typed values through listeners, which must not block.

This is the asyncio layer over :class:`retrotread.ftms.client.ClientProtocol`, which holds
the client's state and rules (decoding, odd bytes, the outstanding command, time-outs);
the typed values (:class:`Telemetry`, :class:`CommandOutcome`, ...) live there and are
re-exported here. Every oddity reaches :meth:`Treadmill.on_decode_problem`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from retrotread import gatt
from retrotread.clock import Clock
from retrotread.errors import (
    CodecError,
    ControlPointError,
    ControlPointTimeoutError,
    GattError,
    LinkError,
    TreadmillError,
)
from retrotread.ftms import codec
from retrotread.ftms.client import (
    BUSY_RETRY_S,
    DEFAULT_REPLY_TIMEOUT_S,
    ClientEvent,
    ClientProtocol,
    CommandOutcome,
    CommandReply,
    CommandStatus,
    DecodeProblem,
    StatusEvent,
    Telemetry,
    describe_request,
    outcome_of,
    timeout_message,
)
from retrotread.quirks import Quirks

__all__ = [
    "BUSY_RETRY_S",
    "DEFAULT_REPLY_TIMEOUT_S",
    "CommandOutcome",
    "CommandReply",
    "CommandStatus",
    "DecodeProblem",
    "DeviceInfo",
    "StatusEvent",
    "Telemetry",
    "Treadmill",
    "describe_request",
    "outcome_of",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class DeviceInfo:
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None


class Treadmill:
    def __init__(
        self,
        link: gatt.Link,
        clock: Clock,
        *,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        pace_width: int = codec.PACE_WIDTH_UINT8,
    ) -> None:
        self.link = link
        self.clock = clock
        self.reply_timeout_s = reply_timeout_s
        self.quirks = Quirks()
        """What is known about this machine's behaviour (set from its quirk file)."""
        self.feature: codec.FitnessMachineFeature | None = None
        self.speed_range: codec.SpeedRange | None = None
        self.inclination_range: codec.InclinationRange | None = None
        self.device_info = DeviceInfo()
        self.protocol = ClientProtocol(reply_timeout_s=reply_timeout_s, pace_width=pace_width)
        """The client's state and rules; this class feeds it the link's bytes and times.
        (Reply time-outs and busy retries run on the loop's clock, as ``asyncio.wait_for``
        does; the events are stamped with ``clock``.)"""
        self._lock = asyncio.Lock()
        self._reply: asyncio.Future[CommandOutcome] | None = None
        self._telemetry_listeners: list[Callable[[Telemetry], None]] = []
        self._status_listeners: list[Callable[[StatusEvent], None]] = []
        self._command_listeners: list[Callable[[CommandReply], None]] = []
        self._sent_listeners: list[Callable[[float, codec.ControlPointRequest], None]] = []
        self._problem_listeners: list[Callable[[DecodeProblem], None]] = []

    # ------------------------------------------------------------------ state (the protocol's)
    @property
    def has_control(self) -> bool:
        return self.protocol.has_control

    @property
    def latest(self) -> Telemetry | None:
        return self.protocol.latest

    @latest.setter
    def latest(self, value: Telemetry | None) -> None:
        self.protocol.latest = value

    @property
    def last_status(self) -> StatusEvent | None:
        return self.protocol.last_status

    @property
    def decode_errors(self) -> int:
        """Messages dropped because they could not be read at all."""
        return self.protocol.decode_errors

    # ------------------------------------------------------------------ listeners
    def on_telemetry(self, listener: Callable[[Telemetry], None]) -> None:
        self._telemetry_listeners.append(listener)

    def on_status(self, listener: Callable[[StatusEvent], None]) -> None:
        self._status_listeners.append(listener)

    def on_command(self, listener: Callable[[CommandReply], None]) -> None:
        """Called with every command's outcome (reply, refusal or time-out)."""
        self._command_listeners.append(listener)

    def on_command_sent(self, listener: Callable[[float, codec.ControlPointRequest], None]) -> None:
        self._sent_listeners.append(listener)

    def on_decode_problem(self, listener: Callable[[DecodeProblem], None]) -> None:
        """Called for every message that could not be read, or only partly."""
        self._problem_listeners.append(listener)

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        """Connect the link, discover FTMS, read what the machine can do, subscribe."""
        await self.link.connect()
        self.link.on_disconnect(self._on_disconnect)
        services = await self.link.discover()
        by_uuid = {service.uuid: service for service in services}
        ftms = by_uuid.get(gatt.FITNESS_MACHINE_SERVICE)
        if ftms is None:
            raise TreadmillError(
                f"{self.link.description} has no Fitness Machine Service (0x1826): "
                "is it an FTMS treadmill, and is FTMS enabled in its settings?"
            )
        for required in (gatt.TREADMILL_DATA, gatt.FITNESS_MACHINE_CONTROL_POINT):
            if ftms.characteristic(required) is None:
                raise TreadmillError(
                    f"{self.link.description} lacks characteristic {required[4:8]}: "
                    "it cannot be controlled as a treadmill"
                )
        self.feature = await self._read_optional(ftms, gatt.FITNESS_MACHINE_FEATURE,
                                                 codec.decode_feature)
        self.speed_range = await self._read_optional(ftms, gatt.SUPPORTED_SPEED_RANGE,
                                                     codec.decode_speed_range)
        self.inclination_range = await self._read_optional(
            ftms, gatt.SUPPORTED_INCLINATION_RANGE, codec.decode_inclination_range)
        info = by_uuid.get(gatt.DEVICE_INFORMATION_SERVICE)
        if info is not None:
            self.device_info = DeviceInfo(
                manufacturer=await self._read_text(info, gatt.MANUFACTURER_NAME),
                model=await self._read_text(info, gatt.MODEL_NUMBER),
                serial_number=await self._read_text(info, gatt.SERIAL_NUMBER),
            )
        await self.link.subscribe(gatt.FITNESS_MACHINE_CONTROL_POINT, self._on_control_point)
        await self.link.subscribe(gatt.TREADMILL_DATA, self._on_treadmill_data)
        if ftms.characteristic(gatt.FITNESS_MACHINE_STATUS) is not None:
            await self.link.subscribe(gatt.FITNESS_MACHINE_STATUS, self._on_status)

    async def _read_optional(
        self, service: gatt.Service, uuid: str, decode: Callable[[bytes], _T]
    ) -> _T | None:
        if service.characteristic(uuid) is None:
            return None
        try:
            raw = await self.link.read(uuid)
        except GattError as exc:  # an optional value the machine will not give: do without
            log.warning("could not read %s: %s", uuid[4:8], exc)
            return None
        try:
            return decode(raw)
        except CodecError as exc:
            log.warning("ignoring unreadable %s: %s", uuid[4:8], exc)
            return None

    async def _read_text(self, service: gatt.Service, uuid: str) -> str | None:
        if service.characteristic(uuid) is None:
            return None
        try:
            raw = await self.link.read(uuid)
        except LinkError as exc:
            log.info("could not read %s: %s", uuid[4:8], exc)
            return None
        return raw.decode("utf-8", errors="replace").strip("\x00 ") or None

    async def close(self) -> None:
        await self.link.close()

    def _on_disconnect(self) -> None:
        self.protocol.link_lost(self.clock.now())
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(TreadmillError(f"{self.link.description}: link lost"))

    # ------------------------------------------------------------------ notifications
    def _on_treadmill_data(self, raw: bytes) -> None:
        self._dispatch(self.protocol.receive(gatt.TREADMILL_DATA, raw, self.clock.now()))

    def _on_status(self, raw: bytes) -> None:
        self._dispatch(self.protocol.receive(gatt.FITNESS_MACHINE_STATUS, raw, self.clock.now()))

    def _on_control_point(self, raw: bytes) -> None:
        self._dispatch(self.protocol.receive(gatt.FITNESS_MACHINE_CONTROL_POINT, raw,
                                             self.clock.now()))

    def _dispatch(self, events: Iterable[ClientEvent]) -> None:
        for event in events:
            if isinstance(event, Telemetry):
                for telemetry_listener in list(self._telemetry_listeners):
                    telemetry_listener(event)
            elif isinstance(event, StatusEvent):
                for status_listener in list(self._status_listeners):
                    status_listener(event)
            elif isinstance(event, DecodeProblem):
                for problem_listener in list(self._problem_listeners):
                    problem_listener(event)
            elif self._reply is not None and not self._reply.done():
                self._reply.set_result(event)

    # ------------------------------------------------------------------ commands
    async def command(
        self, request: codec.ControlPointRequest, *, timeout_s: float | None = None
    ) -> codec.ControlPointResponse:
        """Send one control point request and wait for its Response Code."""
        timeout = self.reply_timeout_s if timeout_s is None else timeout_s
        async with self._lock:
            loop = asyncio.get_running_loop()
            self._reply = loop.create_future()
            data = self.protocol.send(request, loop.time(), timeout_s=timeout)
            sent_at = self.clock.now()
            for listener in list(self._sent_listeners):
                listener(sent_at, request)
            written = False
            try:
                await self._write_when_free(data)
                written = True
                self.protocol.written(loop.time())
                outcome = await asyncio.wait_for(self._reply, timeout)
            except TimeoutError:
                message = timeout_message(request, timeout)
                self._notify_reply(request, None, message)
                error = ControlPointTimeoutError(message)
                error.delivered = True
                raise error from None
            except (LinkError, TreadmillError) as exc:
                exc.delivered = written
                self._notify_reply(request, None, str(exc))
                raise
            finally:
                self._reply = None
                self.protocol.cancel()  # ended here (or cancelled): the next command may go
        response = outcome.response
        if response is None:  # only an answer from the machine resolves the reply
            raise TreadmillError(outcome.detail)
        self._notify_reply(request, response, None)
        if outcome.status is CommandStatus.REFUSED:
            refused = ControlPointError(outcome.detail, int(request.op), int(response.result))
            refused.delivered = True
            raise refused
        return response

    async def _write_when_free(self, data: bytes) -> None:
        """Write to the control point. A machine still busy with an earlier request (its
        late reply not sent yet: ATT "procedure already in progress") is asked again
        every 0.1 s until the reply time-out, so a Stop after a timed-out request still
        goes out as soon as the machine can take it."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, data)
                return
            except GattError as exc:
                if self.protocol.write_refused(loop.time(), exc) is None:
                    raise
            await asyncio.sleep(BUSY_RETRY_S)
            data = self.protocol.rewrite()

    def _notify_reply(self, request: codec.ControlPointRequest,
                      response: codec.ControlPointResponse | None, error: str | None) -> None:
        reply = CommandReply(self.clock.now(), request, response, error)
        for listener in list(self._command_listeners):
            listener(reply)

    async def request_control(self) -> None:
        await self.command(codec.RequestControl())

    async def reset(self) -> None:
        await self.command(codec.Reset())

    async def set_target_speed(self, speed_kmh: float) -> None:
        await self.command(codec.SetTargetSpeed(speed_kmh=speed_kmh))

    async def start(self) -> None:
        """Start or Resume (0x07). Never send this to a moving belt."""
        await self.command(codec.StartOrResume())

    async def stop(self) -> None:
        await self.command(codec.StopOrPause(action=codec.StopPause.STOP))

    async def pause(self) -> None:
        await self.command(codec.StopOrPause(action=codec.StopPause.PAUSE))

    def telemetry_age_s(self) -> float | None:
        if self.latest is None:
            return None
        return self.clock.now() - self.latest.time_s
