"""The FTMS client: the treadmill as the rest of the program sees it.

Works over any :class:`retrotread.gatt.Link`. It discovers the Fitness Machine Service,
reads the features and speed range, subscribes to telemetry, status and the control
point, and sends commands. Every command waits for its Response Code (one procedure at a
time, with a time-out) and turns a failure into a :class:`ControlPointError` or
:class:`ControlPointTimeoutError` a person can act on. Telemetry and status reach callers
as typed values through listeners, which must not block.

Odd bytes from real machines (docs/ftms.md) are handled here, never by dropping what
matters: a Fitness Machine Status with an unreadable parameter still reaches listeners as
its kind (a "stopped or paused" with a reserved parameter is a stop); a control point
response whose length does not fit its request op code is reported as malformed and never
taken as the answer; every such oddity reaches :meth:`Treadmill.on_decode_problem`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from retrotread import gatt
from retrotread.clock import Clock
from retrotread.errors import (
    CodecError,
    ControlPointError,
    ControlPointTimeoutError,
    GattError,
    LinkClosedError,
    LinkError,
    TreadmillError,
)
from retrotread.formatting import kmh_text
from retrotread.ftms import codec
from retrotread.quirks import Quirks

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BUSY_RETRY_S = 0.1
"""How often a write refused as "procedure already in progress" is tried again."""

DEFAULT_REPLY_TIMEOUT_S = 2.0

_RESULT_HINTS = {
    codec.ResultCode.OP_CODE_NOT_SUPPORTED: "the machine does not support this command",
    codec.ResultCode.INVALID_PARAMETER: "the value is outside what the machine accepts",
    codec.ResultCode.OPERATION_FAILED: "the machine could not do it now "
    "(is the safety key in? is the belt in the right state?)",
    codec.ResultCode.CONTROL_NOT_PERMITTED: "control not permitted: request control first, "
    "or another app holds control",
}


@dataclass(frozen=True)
class DeviceInfo:
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None


@dataclass(frozen=True)
class Telemetry:
    """One complete Treadmill Data record and the monotonic time it arrived."""

    time_s: float
    data: codec.TreadmillData


@dataclass(frozen=True)
class StatusEvent:
    time_s: float
    status: codec.MachineStatus


@dataclass(frozen=True)
class DecodeProblem:
    """Bytes from the machine that were not (or not fully) understood."""

    time_s: float
    characteristic: str  # "Treadmill Data", "Fitness Machine Status", ...
    raw: bytes
    message: str
    dropped: bool  # True: nothing was delivered; False: delivered, with this remark


@dataclass(frozen=True)
class CommandReply:
    time_s: float
    request: codec.ControlPointRequest
    response: codec.ControlPointResponse | None
    error: str | None = None


class CommandStatus(enum.Enum):
    """How one control point command ended (the sans-I/O view of :meth:`Treadmill.command`)."""

    ANSWERED = "answered"  # the machine answered "success"
    REFUSED = "refused"  # the machine answered with another result code
    TIMED_OUT = "timed_out"  # written, and no answer within the reply time-out
    LINK_CLOSED = "link_closed"  # the link is gone (it may or may not have been written)
    FAILED = "failed"  # any other failure of the link or the client


@dataclass(frozen=True)
class CommandOutcome:
    """One command's end, as the session core sees it: no exceptions, no I/O."""

    time_s: float
    request: codec.ControlPointRequest
    status: CommandStatus
    result_code: int | None = None
    """The machine's result code (REFUSED)."""
    delivered: bool = True
    """The write reached the machine (a failure after that may still have acted)."""
    detail: str = ""


def outcome_of(time_s: float, request: codec.ControlPointRequest,
               error: BaseException | None) -> CommandOutcome:
    """The :class:`CommandOutcome` of :meth:`Treadmill.command` returning (``error`` None)
    or raising ``error``."""
    if error is None:
        return CommandOutcome(time_s, request, CommandStatus.ANSWERED)
    delivered = bool(getattr(error, "delivered", False))
    if isinstance(error, ControlPointTimeoutError):
        return CommandOutcome(time_s, request, CommandStatus.TIMED_OUT, None, delivered,
                              str(error))
    if isinstance(error, ControlPointError):
        return CommandOutcome(time_s, request, CommandStatus.REFUSED, error.result_code,
                              delivered, str(error))
    if isinstance(error, LinkClosedError):
        return CommandOutcome(time_s, request, CommandStatus.LINK_CLOSED, None, delivered,
                              str(error))
    return CommandOutcome(time_s, request, CommandStatus.FAILED, None, delivered, str(error))


def describe_request(request: codec.ControlPointRequest) -> str:
    name = type(request).__name__
    if isinstance(request, codec.SetTargetSpeed):
        return f"{name} {kmh_text(request.speed_kmh, 2)}"
    if isinstance(request, codec.StopOrPause):
        return f"{name} ({request.action.name.lower()})"
    return name


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
        self.has_control = False
        self.latest: Telemetry | None = None
        self.last_status: StatusEvent | None = None
        self._assembler = codec.TreadmillDataAssembler(pace_width=pace_width)
        self._lock = asyncio.Lock()
        self._reply: asyncio.Future[codec.ControlPointResponse] | None = None
        self._reply_op = -1
        self._telemetry_listeners: list[Callable[[Telemetry], None]] = []
        self._status_listeners: list[Callable[[StatusEvent], None]] = []
        self._command_listeners: list[Callable[[CommandReply], None]] = []
        self._sent_listeners: list[Callable[[float, codec.ControlPointRequest], None]] = []
        self._problem_listeners: list[Callable[[DecodeProblem], None]] = []
        self.decode_errors = 0
        """Messages dropped because they could not be read at all."""

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

    def _problem(self, characteristic: str, raw: bytes, message: str, *,
                 dropped: bool) -> None:
        if dropped:
            self.decode_errors += 1
        log.warning("%s %s %s: %s", "dropped" if dropped else "odd", characteristic,
                    raw.hex(), message)
        problem = DecodeProblem(self.clock.now(), characteristic, bytes(raw), message, dropped)
        for listener in list(self._problem_listeners):
            listener(problem)

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
        self._assembler.reset()
        self.has_control = False
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(TreadmillError(f"{self.link.description}: link lost"))

    # ------------------------------------------------------------------ notifications
    def _on_treadmill_data(self, raw: bytes) -> None:
        try:
            record = self._assembler.feed(raw)
        except CodecError as exc:
            self._problem("Treadmill Data", raw, str(exc), dropped=True)
            return
        if record is None:
            return
        if record.truncated_flags:
            self._problem("Treadmill Data", raw, f"flag bits 0x{record.truncated_flags:04x} "
                          "set but their field did not fit; the rest of the record is kept",
                          dropped=False)
        telemetry = Telemetry(self.clock.now(), record)
        self.latest = telemetry
        for listener in list(self._telemetry_listeners):
            listener(telemetry)

    def _on_status(self, raw: bytes) -> None:
        try:
            status = codec.decode_status(raw)
        except CodecError as exc:  # only an empty message: there is no status to pass on
            self._problem("Fitness Machine Status", raw, str(exc), dropped=True)
            return
        problem = getattr(status, "problem", None)
        if problem is not None:
            self._problem("Fitness Machine Status", raw, f"{status.title}: {problem}",
                          dropped=False)
        if isinstance(status, codec.ControlPermissionLost | codec.StatusReset):
            self.has_control = False
        event = StatusEvent(self.clock.now(), status)
        self.last_status = event
        for listener in list(self._status_listeners):
            listener(event)

    def _on_control_point(self, raw: bytes) -> None:
        try:
            response = codec.decode_control_point_response(raw)
        except CodecError as exc:
            # Not taken as an answer: the pending command keeps waiting (and times out).
            self._problem("Fitness Machine Control Point", raw, str(exc), dropped=True)
            return
        if self._reply is not None and not self._reply.done():
            if response.request_op != self._reply_op:
                # A late answer to an earlier request that already timed out.
                log.info("late control point response %s ignored", raw.hex())
                return
            self._reply.set_result(response)
        else:
            log.info("unsolicited control point response %s", raw.hex())

    # ------------------------------------------------------------------ commands
    async def command(
        self, request: codec.ControlPointRequest, *, timeout_s: float | None = None
    ) -> codec.ControlPointResponse:
        """Send one control point request and wait for its Response Code."""
        timeout = self.reply_timeout_s if timeout_s is None else timeout_s
        async with self._lock:
            loop = asyncio.get_running_loop()
            self._reply = loop.create_future()
            self._reply_op = int(request.op)
            data = codec.encode_control_point(request)
            sent_at = self.clock.now()
            for listener in list(self._sent_listeners):
                listener(sent_at, request)
            written = False
            try:
                await self._write_when_free(data, loop.time() + timeout)
                written = True
                response = await asyncio.wait_for(self._reply, timeout)
            except TimeoutError:
                message = (f"{describe_request(request)}: no reply from the treadmill "
                           f"within {timeout:.1f} s")
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
        self._notify_reply(request, response, None)
        if response.request_op != request.op:
            raise TreadmillError(
                f"{describe_request(request)}: the treadmill answered a different request "
                f"(op code 0x{response.request_op:02x})"
            )
        if response.result != codec.ResultCode.SUCCESS:
            try:
                result = codec.ResultCode(response.result)
                hint = _RESULT_HINTS.get(result, result.name.lower())
            except ValueError:
                hint = f"unknown result code 0x{int(response.result):02x}"
            refused = ControlPointError(
                f"the treadmill refused {describe_request(request)}: {hint}",
                int(request.op), int(response.result),
            )
            refused.delivered = True
            raise refused
        if isinstance(request, codec.RequestControl):
            self.has_control = True
        elif isinstance(request, codec.Reset):
            self.has_control = False
        return response

    async def _write_when_free(self, data: bytes, deadline: float) -> None:
        """Write to the control point. A machine still busy with an earlier request (its
        late reply not sent yet: ATT "procedure already in progress") is asked again
        every 0.1 s until ``deadline``, so a Stop after a timed-out request still goes
        out as soon as the machine can take it."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, data)
                return
            except GattError as exc:
                busy = exc.code == gatt.ATT_PROCEDURE_ALREADY_IN_PROGRESS
                if not busy or loop.time() + BUSY_RETRY_S > deadline:
                    raise
            await asyncio.sleep(BUSY_RETRY_S)

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
