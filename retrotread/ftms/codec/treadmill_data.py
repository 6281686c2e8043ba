"""Treadmill Data (0x2ACD): the record, its 20-byte notifications and their reassembly."""

from __future__ import annotations

import functools
import operator
import struct
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

from retrotread.errors import CodecError
from retrotread.ftms.codec._fields import (
    _SIZES,
    NOT_AVAILABLE,
    _Field,
    _on_wire,
    _pack,
    _Reader,
)

PACE_WIDTH_UINT8 = 1
"""Instantaneous/Average Pace as uint8 (FTMS 1.0 era; every deployed treadmill so far)."""
PACE_WIDTH_UINT16 = 2
"""Instantaneous/Average Pace as uint16 (newer SIG field definitions)."""

_MORE_DATA = 0x0001
_TD_KNOWN_FLAGS = 0x3FFF  # bits 0..13; 14 and 15 are reserved

# (flag bit, fields) in wire order after the flags. Bit 0 is inverted: Instantaneous
# Speed is present when it is 0 ("More Data" clear). "pace" is uint8 or uint16.
_TD_SPEED = _Field("speed_kmh", "u16", 100, label="Instantaneous Speed")
_TD_GROUPS: tuple[tuple[int, tuple[_Field, ...]], ...] = (
    (1, (_Field("average_speed_kmh", "u16", 100, label="Average Speed"),)),
    (2, (_Field("total_distance_m", "u24", label="Total Distance"),)),
    (3, (_Field("inclination_pct", "s16", 10, label="Inclination", not_available=0x7FFF),
         _Field("ramp_angle_deg", "s16", 10, label="Ramp Angle Setting",
                not_available=0x7FFF))),
    (4, (_Field("positive_elevation_gain_m", "u16", 10, label="Positive Elevation Gain"),
         _Field("negative_elevation_gain_m", "u16", 10, label="Negative Elevation Gain"))),
    (5, (_Field("instantaneous_pace_km_per_min", "pace", 10, label="Instantaneous Pace"),)),
    (6, (_Field("average_pace_km_per_min", "pace", 10, label="Average Pace"),)),
    (7, (_Field("total_energy_kcal", "u16", label="Total Energy", not_available=0xFFFF),
         _Field("energy_per_hour_kcal", "u16", label="Energy Per Hour", not_available=0xFFFF),
         _Field("energy_per_minute_kcal", "u8", label="Energy Per Minute",
                not_available=0xFF))),
    (8, (_Field("heart_rate_bpm", "u8", label="Heart Rate"),)),
    (9, (_Field("metabolic_equivalent", "u8", 10, label="Metabolic Equivalent"),)),
    (10, (_Field("elapsed_time_s", "u16", label="Elapsed Time"),)),
    (11, (_Field("remaining_time_s", "u16", label="Remaining Time"),)),
    (12, (_Field("force_on_belt_n", "s16", label="Force on Belt", not_available=0x7FFF),
          _Field("power_output_w", "s16", label="Power Output", not_available=0x7FFF))),
    (13, (_Field("step_count", "u24", label="Step Count (vendor extension)"),)),
)
_STEP_COUNT_BIT = 13
"""Reserved by FTMS; several walking pads put a uint24 step count there (docs/ftms.md)."""
_TD_FIELD_NAMES = frozenset(f.name for _, group in _TD_GROUPS for f in group)


def _pace_field(f: _Field, pace_width: int) -> _Field:
    if f.kind != "pace":
        return f
    if pace_width not in (PACE_WIDTH_UINT8, PACE_WIDTH_UINT16):
        raise CodecError(f"pace width must be 1 or 2 bytes, not {pace_width}")
    return replace(f, kind="u8" if pace_width == PACE_WIDTH_UINT8 else "u16")


@dataclass(frozen=True)
class TreadmillData:
    """One Treadmill Data record (0x2ACD); ``None`` means the value is unknown.

    A value is unknown when the field was not sent, or when it was sent as the
    specification's "Data Not Available" value (0x7FFF for inclination, ramp angle, force
    on belt and power output; 0xFFFF for total energy and energy per hour; 0xFF for energy
    per minute): such fields are named in ``unavailable``. A sentinel is never a number.

    ``more_data`` is True for a partial record (one notification of a split record,
    without the speed). ``unknown_flags`` holds reserved flag bits that were set,
    ``truncated_flags`` flag bits whose field did not fit in what was left of the message
    (only bit 13, the vendor step count, is read that leniently: the rest of the record
    stays good) and ``extra_bytes`` any bytes left over after the known fields:
    diagnostics from real machines, never an error.
    """

    more_data: bool = False
    speed_kmh: float | None = None
    average_speed_kmh: float | None = None
    total_distance_m: int | None = None
    inclination_pct: float | None = None
    ramp_angle_deg: float | None = None
    positive_elevation_gain_m: float | None = None
    negative_elevation_gain_m: float | None = None
    instantaneous_pace_km_per_min: float | None = None
    average_pace_km_per_min: float | None = None
    total_energy_kcal: int | None = None
    energy_per_hour_kcal: int | None = None
    energy_per_minute_kcal: int | None = None
    heart_rate_bpm: int | None = None
    metabolic_equivalent: float | None = None
    elapsed_time_s: int | None = None
    remaining_time_s: int | None = None
    force_on_belt_n: int | None = None
    power_output_w: int | None = None
    step_count: int | None = None
    unknown_flags: int = 0
    extra_bytes: bytes = b""
    unavailable: frozenset[str] = frozenset()
    truncated_flags: int = 0

    def merged(self, later: TreadmillData) -> TreadmillData:
        """This partial record completed by a later notification of the same record."""
        return TreadmillData.from_values(_merged_values(vars(self), vars(later)))

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> TreadmillData:
        """``TreadmillData(**values)``, the same record, for values whose every key is a
        field (the simulator's and the codec's own). A frozen dataclass sets its 24
        fields one ``object.__setattr__`` at a time; with a record a second, that was the
        largest single cost of a simulated workout's telemetry."""
        record = object.__new__(cls)
        fields = record.__dict__
        fields.update(_TD_DEFAULTS)
        fields.update(values)
        if len(fields) != len(_TD_DEFAULTS):  # (a key that is no field added one)
            raise TypeError(f"not TreadmillData fields: {sorted(fields - _TD_DEFAULTS.keys())}")
        return record


_TD_DEFAULTS = {f.name: f.default for f in fields(TreadmillData)}
"""Every field of a :class:`TreadmillData` with its default, in order."""


def _merged_values(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of two parts of a record merged: the later part's known
    values win, flags and trailing bytes add up (a missing key is the field's default)."""
    known_later = {name: value for name, value in later.items() if value is not None}
    unavailable = earlier.get("unavailable", frozenset()) - known_later.keys()
    return earlier | known_later | {
        "more_data": later.get("more_data", False),
        "unknown_flags": earlier.get("unknown_flags", 0) | later.get("unknown_flags", 0),
        "truncated_flags": earlier.get("truncated_flags", 0) | later.get("truncated_flags", 0),
        "extra_bytes": earlier.get("extra_bytes", b"") + later.get("extra_bytes", b""),
        "unavailable": unavailable | later.get("unavailable", frozenset()),
    }


_WHAT_TD = "Treadmill Data"


def _group_bytes(data: TreadmillData, group: tuple[_Field, ...], pace_width: int) -> bytes | None:
    """A flag bit's fields on the wire; None when the record has none of them. (One pass
    for the common case; anything unusual is redone by :func:`_checked_group_bytes`,
    which raises the first problem in a fixed order.)"""
    unavailable = data.unavailable
    out = b""
    missing = 0
    try:
        for f in group:
            value = getattr(data, f.name)
            if f.name in unavailable:
                if value is not None:
                    return _checked_group_bytes(data, group, pace_width)
                out += f.encode_not_available(_WHAT_TD)
            elif value is None:
                missing += 1
            else:
                out += (_pace_field(f, pace_width) if f.kind == "pace" else f).encode(
                    value, _WHAT_TD)
    except CodecError:
        return _checked_group_bytes(data, group, pace_width)
    if missing == len(group):
        return None
    return _checked_group_bytes(data, group, pace_width) if missing else out


def _checked_group_bytes(data: TreadmillData, group: tuple[_Field, ...],
                         pace_width: int) -> bytes | None:
    present = [getattr(data, f.name) is not None or f.name in data.unavailable for f in group]
    if not any(present):
        return None
    if not all(present):
        missing = [f.name for f, p in zip(group, present, strict=True) if not p]
        raise CodecError(f"{_WHAT_TD}: {', '.join(missing)} must be given together with "
                         f"{', '.join(f.name for f in group if f.name not in missing)} "
                         "(they share one flag bit; list an unknown one as unavailable)")
    out = b""
    for f in group:
        value = getattr(data, f.name)
        if f.name in data.unavailable:
            if value is not None:
                raise CodecError(f"{_WHAT_TD}: {f.name} = {value!r} is listed as unavailable")
            out += f.encode_not_available(_WHAT_TD)
        else:
            out += _pace_field(f, pace_width).encode(value, _WHAT_TD)
    return out


def encode_treadmill_data(data: TreadmillData, pace_width: int = PACE_WIDTH_UINT8) -> bytes:
    """One notification. Use :func:`split_treadmill_data` to respect a 20-byte MTU."""
    if data.unknown_flags & _TD_KNOWN_FLAGS:
        raise CodecError(f"{_WHAT_TD}: unknown_flags 0x{data.unknown_flags:04x} overlaps "
                         "defined flag bits")
    if data.unavailable - _TD_FIELD_NAMES:
        raise CodecError(f"{_WHAT_TD}: unavailable names unknown fields "
                         f"{sorted(data.unavailable - _TD_FIELD_NAMES)}")
    if data.truncated_flags and (
            data.truncated_flags != 1 << _STEP_COUNT_BIT or data.step_count is not None
            or len(data.extra_bytes) >= 3):
        raise CodecError(f"{_WHAT_TD}: truncated_flags 0x{data.truncated_flags:04x} can "
                         "only be the step count bit, without a step count and with "
                         "fewer than 3 bytes after it")
    flags = data.unknown_flags | data.truncated_flags
    body = b""
    if data.more_data:
        flags |= _MORE_DATA
        if data.speed_kmh is not None:
            raise CodecError(f"{_WHAT_TD}: a partial record (more_data) cannot carry the "
                             "Instantaneous Speed")
    else:
        if data.speed_kmh is None:
            raise CodecError(f"{_WHAT_TD}: a complete record must carry speed_kmh "
                             "(the More Data bit is inverted)")
        body += _TD_SPEED.encode(data.speed_kmh, _WHAT_TD)
    for bit, group in _TD_GROUPS:
        chunk = _group_bytes(data, group, pace_width)
        if chunk is not None:
            flags |= 1 << bit
            body += chunk
    return _pack("u16", flags, _WHAT_TD, "flags") + body + data.extra_bytes


def decode_treadmill_data(raw: bytes, pace_width: int = PACE_WIDTH_UINT8) -> TreadmillData:
    """Decode one notification (a whole record, or one part of a split record)."""
    return TreadmillData.from_values(_treadmill_data_values(raw, pace_width))


def _treadmill_data_values(raw: bytes, pace_width: int) -> dict[str, Any]:
    """One notification as the keyword arguments of its :class:`TreadmillData`."""
    if len(raw) >= 2:
        flags = raw[0] | raw[1] << 8
        layout = _treadmill_data_layout(flags, pace_width)
        if layout is not None and len(raw) >= 2 + layout.struct.size:
            return _values_by_layout(raw, flags, layout)
    return _values_field_by_field(raw, pace_width)


_STRUCT_CODES = {"u8": "B", "s8": "b", "u16": "H", "s16": "h", "u24": "3s", "u32": "I"}


class _Layout(NamedTuple):
    """The fields a Treadmill Data flags value announces, in wire order, and one struct
    that reads them all at once."""

    fields: tuple[_Field, ...]
    struct: struct.Struct
    readers: tuple[tuple[str, int, int | None], ...]
    """(name, scale, "Data Not Available" value) of each field: what
    :meth:`_Field.from_raw` needs for a field without an enum."""


@functools.lru_cache(maxsize=64)
def _treadmill_data_layout(flags: int, pace_width: int) -> _Layout | None:
    """None for what only the field-by-field decoder reads (reserved flag bits, the
    vendor step count with its leniency, a bad pace width)."""
    if (flags & ~_TD_KNOWN_FLAGS & 0xFFFF or flags & (1 << _STEP_COUNT_BIT)
            or pace_width not in (PACE_WIDTH_UINT8, PACE_WIDTH_UINT16)):
        return None
    spec = [] if flags & _MORE_DATA else [_TD_SPEED]
    for bit, group in _TD_GROUPS:
        if flags & (1 << bit):
            spec.extend(_pace_field(f, pace_width) for f in group)
    if any(f.enum is not None for f in spec):
        return None
    codes = "".join(_STRUCT_CODES[f.kind] for f in spec)
    return _Layout(tuple(spec), struct.Struct("<" + codes),
                   tuple((f.name, f.scale, f.not_available) for f in spec))


def _values_by_layout(raw: bytes, flags: int, layout: _Layout) -> dict[str, Any]:
    """The common case, fast: a message long enough for every field its flags announce."""
    values: dict[str, Any] = {"more_data": bool(flags & _MORE_DATA)}
    unavailable = []
    for (name, scale, not_available), wire in zip(
            layout.readers, layout.struct.unpack_from(raw, 2), strict=True):
        if type(wire) is bytes:  # (a uint24)
            wire = int.from_bytes(wire, "little")
        if wire == not_available:
            unavailable.append(name)
        else:  # (as _Field.from_raw reads a field without an enum)
            values[name] = wire if scale == 1 else wire / scale
    values["extra_bytes"] = bytes(raw[2 + layout.struct.size:])
    values["unavailable"] = frozenset(unavailable)
    return values


def _values_field_by_field(raw: bytes, pace_width: int) -> dict[str, Any]:
    """Any message, with a precise error for one that is cut short."""
    reader = _Reader(raw, _WHAT_TD)
    flags = reader.int("u16", "Flags")
    values: dict[str, Any] = {"more_data": bool(flags & _MORE_DATA)}
    unavailable = set()
    truncated = 0
    if not flags & _MORE_DATA:
        values["speed_kmh"] = _TD_SPEED.decode(reader)
    for bit, group in _TD_GROUPS:
        if not flags & (1 << bit):
            continue
        if bit == _STEP_COUNT_BIT and reader.remaining < 3:
            # A vendor extension cut short: keep the record, note the bit.
            truncated |= 1 << bit
            continue
        for f in group:
            value = _pace_field(f, pace_width).decode(reader)
            if value is NOT_AVAILABLE:
                unavailable.add(f.name)
            else:
                values[f.name] = value
    values["unknown_flags"] = flags & ~_TD_KNOWN_FLAGS & 0xFFFF
    values["extra_bytes"] = reader.rest()
    values["unavailable"] = frozenset(unavailable)
    values["truncated_flags"] = truncated
    return values


def _record_groups(data: TreadmillData, pace_width: int) -> list[tuple[int, bytes]]:
    out = []
    for bit, group in _TD_GROUPS:
        chunk = _group_bytes(data, group, pace_width)
        if chunk is not None:
            out.append((bit, chunk))
    return out


def split_treadmill_data(data: TreadmillData, max_len: int = 20,
                         pace_width: int = PACE_WIDTH_UINT8) -> list[bytes]:
    """Split a complete record into notifications of at most ``max_len`` bytes.

    Every notification but the last has More Data set (and no speed); the last carries
    the speed. Fields that share a flag bit stay together.
    """
    if data.more_data or data.speed_kmh is None:
        raise CodecError(f"{_WHAT_TD}: only a complete record (with speed_kmh) can be split")
    if data.unknown_flags or data.extra_bytes or data.truncated_flags:
        raise CodecError(f"{_WHAT_TD}: a record with reserved flags, truncated fields or "
                         "trailing bytes cannot be split (their position in a split record "
                         "is undefined)")
    if max_len < 7:
        raise CodecError(f"{_WHAT_TD}: notifications of {max_len} bytes cannot carry a record")
    values = _td_split_values(data)
    plan = _split_plan(tuple(map(type, values)), data.unavailable, max_len, pace_width)
    if plan is not None:
        try:
            return _split_by_plan(values, plan)
        except (CodecError, TypeError, ValueError, OverflowError, struct.error):
            pass  # a value that does not fit: the general path below names it
    return _split_field_by_field(data, max_len, pace_width)


def _split_field_by_field(data: TreadmillData, max_len: int, pace_width: int) -> list[bytes]:
    speed = _TD_SPEED.encode(data.speed_kmh, _WHAT_TD)
    room = max_len - 2
    packets: list[tuple[int, bytes]] = []
    flags, body = 0, b""
    for bit, chunk in _record_groups(data, pace_width):
        if len(body) + len(chunk) > room:
            packets.append((flags, body))
            flags, body = 0, b""
        flags |= 1 << bit
        body += chunk
    if len(body) + len(speed) <= room:
        last = (flags, speed + body)
    else:
        packets.append((flags, body))
        last = (0, speed)
    out = [_pack("u16", f | _MORE_DATA, _WHAT_TD, "flags") + b for f, b in packets]
    out.append(_pack("u16", last[0], _WHAT_TD, "flags") + last[1])
    return out


# Splitting the simulator's record every second is the plain loop's commonest encoding:
# which fields a record carries (and which it lists as unavailable) fixes the packets and
# their layouts, so they are worked out once per such shape (:func:`_split_plan`), and
# each record is then converted value by value and packed with one struct per packet.
# Any value that does not fit falls back to :func:`_split_field_by_field`, which raises
# the same error it always did; tests/test_codec.py checks both give the same bytes.

_TD_SPLIT_FIELDS = (_TD_SPEED, *(f for _, group in _TD_GROUPS for f in group))
_td_split_values = operator.attrgetter(*(f.name for f in _TD_SPLIT_FIELDS))
"""The values of a record's fields, in :data:`_TD_SPLIT_FIELDS` order."""


class _Slot(NamedTuple):
    """One field in a packet: where its value is (-1: it is sent as "Data Not
    Available"), and how it goes on the wire."""

    position: int
    field: _Field


class _Packet(NamedTuple):
    struct: struct.Struct  # the flags, then every slot
    flags: int
    slots: tuple[_Slot, ...]


@functools.lru_cache(maxsize=64)
def _split_plan(types: tuple[type, ...], unavailable: frozenset[str], max_len: int,
                pace_width: int) -> tuple[_Packet, ...] | None:
    """The packets of every record whose values have ``types`` (NoneType: not given);
    None when the general path must decide (a value listed as unavailable, a flag
    bit's fields given in part, a bad pace width)."""
    if pace_width not in (PACE_WIDTH_UINT8, PACE_WIDTH_UINT16):
        return None
    groups: list[tuple[int, list[_Slot], int]] = []  # (bit, slots, bytes)
    index = 1  # (0 is the speed)
    for bit, group in _TD_GROUPS:
        slots = []
        for f in group:
            given = types[index] is not type(None)
            if f.name in unavailable:
                if given or f.not_available is None:
                    return None
                slots.append(_Slot(-1, f))
            elif given:
                slots.append(_Slot(index, _pace_field(f, pace_width)))
            index += 1
        if slots and len(slots) != len(group):
            return None
        if slots:
            groups.append((bit, slots, sum(_SIZES[slot.field.kind] for slot in slots)))
    room = max_len - 2
    speed = [_Slot(0, _TD_SPEED)]
    packets: list[tuple[int, list[_Slot]]] = []
    flags: int = 0
    body: list[_Slot] = []
    used = 0
    for bit, slots, size in groups:  # (as _split_field_by_field packs the groups)
        if used + size > room:
            packets.append((flags | _MORE_DATA, body))
            flags, body, used = 0, [], 0
        flags |= 1 << bit
        body = body + slots
        used += size
    if used + _SIZES[_TD_SPEED.kind] <= room:
        packets.append((flags, speed + body))
    else:
        packets.append((flags | _MORE_DATA, body))
        packets.append((0, speed))
    return tuple(
        _Packet(struct.Struct("<H" + "".join(_STRUCT_CODES[slot.field.kind] for slot in slots)),
                packet_flags, tuple(slots))
        for packet_flags, slots in packets)


def _split_by_plan(values: tuple[Any, ...], plan: tuple[_Packet, ...]) -> list[bytes]:
    """Raises (CodecError, TypeError, ValueError, OverflowError or struct.error) for a
    value the wire cannot carry; :func:`_split_field_by_field` then says which."""
    out = []
    for packet in plan:
        raws: list[int | bytes] = []
        for position, f in packet.slots:
            # (to_raw refuses a value equal to the sentinel; a field listed as unavailable
            # goes out as its sentinel, which the plan made sure it has)
            raw = f.to_raw(values[position], _WHAT_TD) if position >= 0 else f.not_available
            assert raw is not None
            raws.append(_on_wire(f, raw))
        out.append(packet.struct.pack(packet.flags, *raws))
    return out


class TreadmillDataAssembler:
    """Merges the notifications of a split record; yields one record per final part.

    A part with More Data set is held; the next part without it completes the record.
    :meth:`reset` (on a link loss) discards a partial record. A machine that never sends
    the final part cannot make the held record grow without bound.
    """

    MAX_PARTS = 8

    def __init__(self, pace_width: int = PACE_WIDTH_UINT8) -> None:
        self.pace_width = pace_width
        self._partial: dict[str, Any] | None = None  # the held parts, merged
        self._parts = 0
        self.discarded_parts = 0

    def reset(self) -> None:
        if self._partial is not None:
            self.discarded_parts += self._parts
        self._partial = None
        self._parts = 0

    def feed(self, raw: bytes) -> TreadmillData | None:
        """Decode one notification; return the complete record when it is finished."""
        part = _treadmill_data_values(raw, self.pace_width)
        merged = part if self._partial is None else _merged_values(self._partial, part)
        if part["more_data"]:
            if self._parts >= self.MAX_PARTS:
                self.reset()
                merged = part
            self._partial = merged
            self._parts += 1
            return None
        self._partial = None
        self._parts = 0
        return TreadmillData.from_values(merged)
