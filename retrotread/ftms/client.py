"""The FTMS client's logic, without I/O (in the style of h11): bytes in, typed events out.

:class:`ClientProtocol` is everything the client knows and decides, with no link, no clock
and no asyncio: it encodes a control point request and tracks the one command outstanding
(FTMS allows one procedure at a time) with its reply deadline; it turns the raw
notifications of each characteristic into typed events (:class:`Telemetry`,
:class:`StatusEvent`, :class:`DecodeProblem`, and the outstanding command's
:class:`CommandOutcome` when its answer comes); it says when a command timed out. The
caller owns the link and the time: it passes ``now`` to every call and writes the bytes.

Two callers drive it: :class:`retrotread.treadmill.Treadmill` (asyncio, over any link) and
:class:`retrotread.sim.stepped.SteppedTreadmill` (a plain loop, in-process simulator).

Odd bytes from real machines (docs/ftms.md) are handled here, never by dropping what
matters: a Fitness Machine Status with an unreadable parameter still reaches the caller as
its kind (a "stopped or paused" with a reserved parameter is a stop); a control point
response whose length does not fit its request op code is reported as malformed and never
taken as the answer; an answer to an earlier op code (one that timed out) is ignored;
every oddity is a :class:`DecodeProblem`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from retrotread import gatt_ids as gatt
from retrotread.errors import (
    CodecError,
    ControlPointError,
    ControlPointTimeoutError,
    GattError,
    LinkClosedError,
    TreadmillError,
)
from retrotread.formatting import kmh_text
from retrotread.ftms import codec

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------- events
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
    response: codec.ControlPointResponse | None = None
    """The machine's answer (ANSWERED, REFUSED), with its parameter bytes if any."""


@dataclass(frozen=True)
class LinkLost:
    """The link to the machine went down (the belt may still be running)."""

    time_s: float


ClientEvent = Telemetry | StatusEvent | DecodeProblem | CommandOutcome
"""What :meth:`ClientProtocol.receive` returns."""

Event = ClientEvent | LinkLost
"""Everything a session core hears from the machine."""


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


def timeout_message(request: codec.ControlPointRequest, timeout_s: float) -> str:
    return f"{describe_request(request)}: no reply from the treadmill within {timeout_s:.1f} s"


def refusal_message(request: codec.ControlPointRequest, result: int) -> str:
    try:
        code = codec.ResultCode(result)
    except ValueError:
        hint = f"unknown result code 0x{int(result):02x}"
    else:
        hint = _RESULT_HINTS.get(code, code.name.lower())
    return f"the treadmill refused {describe_request(request)}: {hint}"


# ---------------------------------------------------------------------- the protocol
@dataclass
class PendingCommand:
    """The one control point command in progress."""

    request: codec.ControlPointRequest
    data: bytes
    timeout_s: float
    write_deadline_s: float
    """A machine busy with an earlier request is asked again until then."""
    reply_deadline_s: float | None = None
    """Set when the write was accepted: no answer by then is a time-out."""
    on_wire: bool = True
    """False between a refused write and the next try: an answer then is not ours."""


class ClientProtocol:
    """The FTMS client's state and rules; every method takes the time and does no I/O.

    A command: ``data = send(request, now)``; the caller writes ``data`` to the control
    point; on success it calls ``written(now)``; on an ATT refusal it asks
    ``write_refused(now, error)`` for when to write ``rewrite()`` again (None: give up,
    and ``fail(now, error)``). The answer comes back through ``receive`` as a
    :class:`CommandOutcome`; ``check_timeout(now)`` ends the command once its reply
    deadline has passed.
    """

    def __init__(self, *, reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
                 pace_width: int = codec.PACE_WIDTH_UINT8) -> None:
        self.reply_timeout_s = reply_timeout_s
        self.has_control = False
        self.latest: Telemetry | None = None
        self.last_status: StatusEvent | None = None
        self.pending: PendingCommand | None = None
        self.decode_errors = 0
        """Messages dropped because they could not be read at all."""
        self._assembler = codec.TreadmillDataAssembler(pace_width=pace_width)
        self._handlers = {
            gatt.TREADMILL_DATA: self._treadmill_data,
            gatt.FITNESS_MACHINE_STATUS: self._status,
            gatt.FITNESS_MACHINE_CONTROL_POINT: self._control_point,
        }

    # ------------------------------------------------------------------ commands
    def send(self, request: codec.ControlPointRequest, now: float, *,
             timeout_s: float | None = None) -> bytes:
        """Begin ``request``: the bytes to write to the control point.

        Raises :class:`TreadmillError` while another command is outstanding (FTMS has one
        procedure at a time; the caller queues)."""
        if self.pending is not None:
            raise TreadmillError(
                f"{describe_request(request)}: {describe_request(self.pending.request)} "
                "is still waiting for its answer (one command at a time)")
        data = codec.encode_control_point(request)
        timeout = self.reply_timeout_s if timeout_s is None else timeout_s
        self.pending = PendingCommand(request, data, timeout, now + timeout)
        return data

    def written(self, now: float) -> None:
        """The machine accepted the write at ``now``: the reply time-out starts."""
        if self.pending is not None:
            self.pending.reply_deadline_s = now + self.pending.timeout_s

    def write_refused(self, now: float, error: GattError) -> float | None:
        """The write was refused with ``error`` at ``now``: when to write :meth:`rewrite`
        again (a machine still busy with an earlier, late request), or None to give up.
        Until then, an answer that comes is the late one, not this command's."""
        pending = self.pending
        if pending is None:
            return None
        pending.on_wire = False
        busy = error.code == gatt.ATT_PROCEDURE_ALREADY_IN_PROGRESS
        if not busy or now + BUSY_RETRY_S > pending.write_deadline_s:
            return None
        return now + BUSY_RETRY_S

    def rewrite(self) -> bytes:
        """The outstanding command's bytes, to write again after :meth:`write_refused`."""
        pending = self._outstanding()
        pending.on_wire = True
        return pending.data

    def next_due_s(self) -> float | None:
        """When :meth:`check_timeout` next has something to do (None: nothing pending)."""
        return None if self.pending is None else self.pending.reply_deadline_s

    def check_timeout(self, now: float) -> CommandOutcome | None:
        """The outstanding command's TIMED_OUT outcome once its reply deadline has passed."""
        deadline = self.next_due_s()
        if deadline is None or now < deadline:
            return None
        return self.time_out(now)

    def time_out(self, now: float) -> CommandOutcome:
        """End the outstanding command as timed out (its caller's timer fired); a late
        answer to it is ignored."""
        pending = self._take()
        return CommandOutcome(now, pending.request, CommandStatus.TIMED_OUT, None, True,
                              timeout_message(pending.request, pending.timeout_s))

    def fail(self, now: float, error: BaseException) -> CommandOutcome | None:
        """End the outstanding command with ``error`` (from the link); None if none was."""
        if self.pending is None:
            return None
        return outcome_of(now, self._take().request, error)

    def cancel(self) -> None:
        """Forget the outstanding command (its caller gave up); an answer to it is ignored."""
        self.pending = None

    def link_lost(self, now: float) -> CommandOutcome | None:
        """The link went down: a partial record is discarded, control must be requested
        again, and the outstanding command ends as LINK_CLOSED."""
        self._assembler.reset()
        self.has_control = False
        pending = self.pending
        if pending is None:
            return None
        self.pending = None
        return CommandOutcome(now, pending.request, CommandStatus.LINK_CLOSED, None,
                              pending.reply_deadline_s is not None,
                              "the link was lost before the answer came")

    def _outstanding(self) -> PendingCommand:
        if self.pending is None:
            raise TreadmillError("no command is outstanding")
        return self.pending

    def _take(self) -> PendingCommand:
        pending = self._outstanding()
        self.pending = None
        return pending

    # ------------------------------------------------------------------ notifications
    def receive(self, uuid: str, raw: bytes, now: float) -> tuple[ClientEvent, ...]:
        """The machine notified ``raw`` on characteristic ``uuid`` at ``now``: the events
        it makes (none for the first part of a split record, or an ignored answer)."""
        handler = self._handlers.get(uuid)
        return () if handler is None else handler(raw, now)

    def receive_record(self, record: codec.TreadmillData, now: float) -> Telemetry:
        """A complete Treadmill Data record that did not travel as bytes (a simulator's
        own, in :class:`~retrotread.sim.stepped.SteppedTreadmill` without the wire)."""
        telemetry = Telemetry(now, record)
        self.latest = telemetry
        return telemetry

    def _problem(self, now: float, characteristic: str, raw: bytes, message: str, *,
                 dropped: bool) -> DecodeProblem:
        if dropped:
            self.decode_errors += 1
        log.warning("%s %s %s: %s", "dropped" if dropped else "odd", characteristic,
                    raw.hex(), message)
        return DecodeProblem(now, characteristic, bytes(raw), message, dropped)

    def _treadmill_data(self, raw: bytes, now: float) -> tuple[ClientEvent, ...]:
        try:
            record = self._assembler.feed(raw)
        except CodecError as exc:
            return (self._problem(now, "Treadmill Data", raw, str(exc), dropped=True),)
        if record is None:
            return ()
        telemetry = Telemetry(now, record)
        self.latest = telemetry
        if record.truncated_flags:
            return (self._problem(now, "Treadmill Data", raw,
                                  f"flag bits 0x{record.truncated_flags:04x} set but their "
                                  "field did not fit; the rest of the record is kept",
                                  dropped=False), telemetry)
        return (telemetry,)

    def _status(self, raw: bytes, now: float) -> tuple[ClientEvent, ...]:
        try:
            status = codec.decode_status(raw)
        except CodecError as exc:  # only an empty message: there is no status to pass on
            return (self._problem(now, "Fitness Machine Status", raw, str(exc), dropped=True),)
        if isinstance(status, codec.ControlPermissionLost | codec.StatusReset):
            self.has_control = False
        event = StatusEvent(now, status)
        self.last_status = event
        problem = getattr(status, "problem", None)
        if problem is None:
            return (event,)
        return (self._problem(now, "Fitness Machine Status", raw,
                              f"{status.title}: {problem}", dropped=False), event)

    def _control_point(self, raw: bytes, now: float) -> tuple[ClientEvent, ...]:
        try:
            response = codec.decode_control_point_response(raw)
        except CodecError as exc:
            # Not taken as an answer: the pending command keeps waiting (and times out).
            return (self._problem(now, "Fitness Machine Control Point", raw, str(exc),
                                  dropped=True),)
        pending = self.pending
        if pending is None:
            log.info("unsolicited control point response %s", raw.hex())
            return ()
        request = pending.request
        if response.request_op != request.op or not pending.on_wire:
            # A late answer to an earlier request that already timed out.
            log.info("late control point response %s ignored", raw.hex())
            return ()
        self.pending = None
        if response.result != codec.ResultCode.SUCCESS:
            return (CommandOutcome(now, request, CommandStatus.REFUSED, int(response.result),
                                   True, refusal_message(request, response.result), response),)
        if isinstance(request, codec.RequestControl):
            self.has_control = True
        elif isinstance(request, codec.Reset):
            self.has_control = False
        return (CommandOutcome(now, request, CommandStatus.ANSWERED, None, True, "", response),)
