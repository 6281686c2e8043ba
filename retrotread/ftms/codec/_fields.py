"""The codec's building blocks: a bounds-checked reader, fixed-point fields and packing."""

from __future__ import annotations

import enum
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from retrotread.errors import CodecError


class _NotAvailable(enum.Enum):
    """The machine sent a field's "Data Not Available" value (decoded to ``None``)."""

    NOT_AVAILABLE = "not available"


NOT_AVAILABLE = _NotAvailable.NOT_AVAILABLE

_SIZES = {"u8": 1, "s8": 1, "u16": 2, "s16": 2, "u24": 3, "u32": 4}
_SIGNED = {"s8", "s16"}


def _range(kind: str) -> tuple[int, int]:
    bits = 8 * _SIZES[kind]
    if kind in _SIGNED:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


_RANGES = {kind: _range(kind) for kind in _SIZES}


class _Reader:
    """Reads little-endian integers from a message, naming what was missing on error."""

    def __init__(self, data: bytes | bytearray | memoryview, what: str) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def need(self, size: int, name: str) -> None:
        if self.remaining < size:
            raise CodecError(
                f"{self.what}: truncated at {name} (needs {size} byte{'s' * (size != 1)} "
                f"at offset {self.pos}, the message has {len(self.data)} bytes: "
                f"{self.data.hex() or 'empty'})"
            )

    def int(self, kind: str, name: str) -> int:
        size = _SIZES[kind]
        start = self.pos
        end = start + size
        if end > len(self.data):
            self.need(size, name)
        self.pos = end
        return int.from_bytes(self.data[start:end], "little", signed=kind in _SIGNED)

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def _pack(kind: str, raw: int, what: str, name: str) -> bytes:
    low, high = _RANGES[kind]
    if not low <= raw <= high:
        raise CodecError(f"{what}: {name} does not fit the wire format "
                         f"(raw value {raw} is outside {low}..{high})")
    return raw.to_bytes(_SIZES[kind], "little", signed=kind in _SIGNED)


@dataclass(frozen=True)
class _Field:
    """One fixed-point or integer field: ``value = raw / scale`` (scale 1: an int)."""

    name: str
    kind: str
    scale: int = 1
    enum: type[enum.IntEnum] | None = None
    label: str = ""
    not_available: int | None = None
    """The raw "Data Not Available" value the specification reserves for this field."""
    fallback: Any = None
    """What a status parameter that cannot be read stands for (see :func:`decode_status`)."""

    @property
    def title(self) -> str:
        return self.label or self.name

    def to_raw(self, value: Any, what: str) -> int:
        try:
            if self.enum is not None:
                raw = int(self.enum(operator.index(value)))
            elif self.scale == 1:
                raw = operator.index(value)
            else:
                raw = round(float(value) * self.scale)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(f"{what}: {self.name} must be a number, not {value!r}") from exc
        if raw == self.not_available:
            raise CodecError(f"{what}: {self.name} = {value!r} is the 'Data Not Available' "
                             f"value 0x{raw & 0xFFFF:x}; list the field as unavailable instead")
        return raw

    def encode(self, value: Any, what: str) -> bytes:
        raw = self.to_raw(value, what)
        low, high = _RANGES[self.kind]
        if not low <= raw <= high:
            shown = raw if self.scale == 1 else raw / self.scale
            raise CodecError(
                f"{what}: {self.name} = {value!r} is outside what the field can carry "
                f"({low / self.scale if self.scale != 1 else low}.."
                f"{high / self.scale if self.scale != 1 else high}; got {shown})"
            )
        return raw.to_bytes(_SIZES[self.kind], "little", signed=self.kind in _SIGNED)

    def encode_not_available(self, what: str) -> bytes:
        if self.not_available is None:
            raise CodecError(f"{what}: {self.name} has no 'Data Not Available' value")
        return _pack(self.kind, self.not_available, what, self.name)

    def decode(self, reader: _Reader) -> Any:
        """The field's value; :data:`NOT_AVAILABLE` for the field's sentinel value."""
        return self.from_raw(reader.int(self.kind, self.title), reader.what)

    def from_raw(self, raw: int, what: str) -> Any:
        if raw == self.not_available:
            return NOT_AVAILABLE
        if self.enum is not None:
            try:
                return self.enum(raw)
            except ValueError:
                raise CodecError(
                    f"{what}: {self.title} has the invalid value 0x{raw:02x}"
                ) from None
        if self.scale == 1:
            return raw
        return raw / self.scale


_Decoded = TypeVar("_Decoded")


def _remembered(decode: Callable[[bytes], _Decoded]) -> Callable[[bytes], _Decoded]:
    """``decode`` with its recent answers remembered, by the message's bytes.

    A decoder is a pure function of the bytes (it reads them as ``bytes(data)`` first),
    and a session meets the same few short messages again and again: its own speeds
    echoed as statuses, "success" answers, the same requests on a simulator. The
    decoded messages are frozen, so callers can share one. A message that raises is
    not remembered: it raises again each time."""
    remembered = functools.lru_cache(maxsize=256)(decode)

    @functools.wraps(decode)
    def decode_remembered(data: bytes) -> _Decoded:
        return remembered(bytes(data))

    return decode_remembered


def _encode_fields(message: Any, spec: tuple[_Field, ...], what: str) -> bytes:
    return b"".join(f.encode(getattr(message, f.name), what) for f in spec)


def _decode_fields(reader: _Reader, spec: tuple[_Field, ...]) -> dict[str, Any]:
    return {f.name: f.decode(reader) for f in spec}


def _on_wire(f: _Field, raw: int) -> int | bytes:
    """A raw value as its struct code takes it (a uint24 as three bytes)."""
    return raw.to_bytes(3, "little") if f.kind == "u24" else raw
