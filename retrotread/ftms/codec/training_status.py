"""Training Status (0x2AD3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from retrotread.errors import CodecError
from retrotread.ftms.codec._fields import (
    _pack,
    _Reader,
)


class TrainingStatusCode(enum.IntEnum):
    OTHER = 0x00
    IDLE = 0x01
    WARMING_UP = 0x02
    LOW_INTENSITY_INTERVAL = 0x03
    HIGH_INTENSITY_INTERVAL = 0x04
    RECOVERY_INTERVAL = 0x05
    ISOMETRIC = 0x06
    HEART_RATE_CONTROL = 0x07
    FITNESS_TEST = 0x08
    SPEED_OUTSIDE_CONTROL_REGION_LOW = 0x09
    SPEED_OUTSIDE_CONTROL_REGION_HIGH = 0x0A
    COOL_DOWN = 0x0B
    WATT_CONTROL = 0x0C
    MANUAL_MODE = 0x0D  # "Manual Mode (Quick Start)"
    PRE_WORKOUT = 0x0E
    POST_WORKOUT = 0x0F


_TS_STRING = 0x01
_TS_EXTENDED = 0x02


@dataclass(frozen=True)
class TrainingStatus:
    """0x2AD3. ``status`` is a plain int for codes the specification reserves."""

    status: TrainingStatusCode | int
    text: str | None = None
    extended_string: bool = False  # the string continues in a later notification


def encode_training_status(value: TrainingStatus) -> bytes:
    what = "Training Status"
    flags = (_TS_STRING if value.text is not None else 0) | (
        _TS_EXTENDED if value.extended_string else 0)
    out = _pack("u8", flags, what, "flags") + _pack("u8", int(value.status), what, "status")
    if value.text is not None:
        try:
            out += value.text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise CodecError(f"{what}: the status string cannot be sent as UTF-8 "
                             f"({value.text!r})") from exc
    return out


def decode_training_status(data: bytes) -> TrainingStatus:
    reader = _Reader(data, "Training Status")
    flags = reader.int("u8", "Flags")
    raw = reader.int("u8", "Training Status")
    status: TrainingStatusCode | int
    try:
        status = TrainingStatusCode(raw)
    except ValueError:
        status = raw
    text = None
    rest = reader.rest()
    if flags & _TS_STRING:
        try:
            text = rest.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"Training Status: the status string is not UTF-8 "
                             f"({rest.hex()})") from exc
    return TrainingStatus(status, text, bool(flags & _TS_EXTENDED))
