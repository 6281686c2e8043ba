"""The one exception hierarchy of retrotread.

Every error the package raises on purpose derives from :class:`RetrotreadError`, so a
caller (the CLI, a test) can tell our errors from bugs. Messages say what went wrong and,
where possible, what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class RetrotreadError(Exception):
    """Root of every error raised on purpose by retrotread."""


class CodecError(RetrotreadError, ValueError):
    """Bytes that do not form a valid FTMS / DIRCON message (truncated, malformed, unknown).

    The message names the characteristic or message and what was wrong with it.
    """


class UnsupportedOpCodeError(CodecError):
    """A control point or status op code this codec does not know."""

    def __init__(self, message: str, op_code: int) -> None:
        super().__init__(message)
        self.op_code = op_code


class LinkError(RetrotreadError):
    """A transport (BLE, TCP, in-process) failed."""

    delivered: bool = False
    """Set by the treadmill client: the request had reached the machine before this."""


class LinkClosedError(LinkError):
    """The link is closed or was lost; the belt may still be running."""


class LinkTimeoutError(LinkError, TimeoutError):
    """A request over the link got no answer in time."""


class GattError(LinkError):
    """The peer refused a GATT operation; ``code`` is the ATT error code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class TreadmillError(RetrotreadError):
    """The treadmill (FTMS server) refused or failed a request."""

    delivered: bool = False
    """The request had reached the machine's control point (its write was accepted)
    before this went wrong: a time-out, a refusal, or the link lost while waiting."""


class ControlPointError(TreadmillError):
    """A control point request was answered with a result other than success."""

    def __init__(self, message: str, op_code: int, result_code: int) -> None:
        super().__init__(message)
        self.op_code = op_code
        self.result_code = result_code


class ControlPointTimeoutError(TreadmillError, TimeoutError):
    """A control point request got no Response Code in time."""


class ProfileError(RetrotreadError):
    """A workout profile is invalid; ``problems`` holds one entry per problem (a message,
    or a ``retrotread.profile.ProfileProblem`` whose str() is ``file:line:col: field: ...``).
    str() of the error is every problem, one per line."""

    def __init__(self, problems: Sequence[object]) -> None:
        self.problems: list[Any] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class CaptureFileError(RetrotreadError):
    """A machine capture file (``doctor --dump``, tests/fixtures/machines/) that cannot be
    read: the message names the file and what is wrong."""


class SafetyError(RetrotreadError):
    """A request would leave the safety envelope (e.g. raising the backward ceiling)."""


class UsageError(RetrotreadError):
    """A bad option or value on the command line (an unknown session, a speed-up on a real
    machine, an output format we cannot write): one line, exit status 2."""


class DeviceSpecError(UsageError):
    """A --device string that cannot be understood."""


class MissingExtraError(RetrotreadError, ImportError):
    """An optional part (a pip "extra") that a command needs is not installed.

    The message names the command, the missing package and the extra that brings it,
    e.g. ``pip install 'retrotread[plot]'``. Raised by :func:`retrotread.extras.require`.
    """


class ConfigError(RetrotreadError):
    """The config file (``~/.config/retrotread/config.toml``) or a RETROTREAD_* variable is
    invalid; str() is one line per problem, ``file:line: key: message``. Exit status 2."""


class VoiceError(RetrotreadError):
    """The hands-free voice stop cannot work (retrotread.voice)."""


class VoiceUnavailableError(VoiceError):
    """``--voice-stop`` was asked for but there is no microphone, no recognizer model or
    no audio library. Raised before the belt moves; the CLI exits with status 2."""


class MicrophoneLostError(VoiceError):
    """The microphone disappeared (unplugged, driver error) while listening."""


class QuirkFileError(RetrotreadError):
    """A quirk file that cannot be read; the message names the file and the field."""


class SessionNotFoundError(UsageError):
    """A SESSION argument that names no log (or more than one)."""


class SessionLogError(UsageError):
    """A session log that cannot be read: missing, damaged before its last line, not a
    retrotread log, or written by a newer major version. One line naming the file (and
    the line); exit status 2."""


class RulesError(RetrotreadError):
    """Progression rules that are malformed or would leave the safety envelope."""


class ExportError(RetrotreadError):
    """A session that cannot be exported (e.g. no telemetry at all)."""


class BleSimUnavailableError(MissingExtraError):
    """Bumble, which ``retrotread sim --ble`` needs, is not installed."""


class MqttConfigError(RetrotreadError):
    """MQTT settings that cannot work (bad URL, unreadable file, unknown key)."""


class NameInUseError(RetrotreadError):
    """Another live session already publishes under this name (topic prefix) on the
    broker: this one refuses to publish or take commands, rather than mix its topics."""
