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


class SafetyError(RetrotreadError):
    """A request would leave the safety envelope (e.g. raising the backward ceiling)."""


class DeviceSpecError(RetrotreadError):
    """A --device string that cannot be understood."""


class VoiceError(RetrotreadError):
    """The hands-free voice stop cannot work (retrotread.voice)."""


class VoiceUnavailableError(VoiceError):
    """``--voice-stop`` was asked for but there is no microphone, no recognizer model or
    no audio library. Raised before the belt moves; the CLI exits with status 2."""


class MicrophoneLostError(VoiceError):
    """The microphone disappeared (unplugged, driver error) while listening."""
