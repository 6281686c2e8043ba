"""Wahoo Direct Connect (DIRCON) framing: pure encode/decode, no I/O.

See ``docs/dircon.md``. A message is a 6-byte header (version 1, message type, sequence
number, response code, big-endian data length) followed by ``data``. UUIDs travel as the
16 raw bytes in written order (not BLE's little-endian order).

Everything here raises :class:`~retrotread.errors.CodecError` on bytes that do not form
a valid message; the socket code in :mod:`retrotread.links.dircon` builds on it.
"""

from __future__ import annotations

import struct
import uuid as _uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from retrotread import gatt
from retrotread.errors import CodecError

PROTOCOL_VERSION = 1
HEADER_LENGTH = 6
DEFAULT_PORT = 36866
UUID_LENGTH = 16

#: Largest ``data`` we accept or send. The wire allows 65535, but no GATT value is
#: longer than 512 bytes and a discovery answer for 100 characteristics is 1716; a
#: bigger length field almost certainly means garbage, so we fail fast instead of
#: waiting for 64 KiB that never come.
MAX_DATA_LENGTH = 4096

_HEADER = struct.Struct(">BBBBH")

# Properties byte
PROP_READ = 0x01
PROP_WRITE = 0x02
PROP_NOTIFY = 0x04
#: Not in the community spec, but some servers (SmartSpin2k) send it; we read it as
#: "indicate" and never send it (an indication goes out as a notification).
PROP_INDICATE = 0x08


class MessageType(IntEnum):
    DISCOVER_SERVICES = 1
    DISCOVER_CHARACTERISTICS = 2
    READ_CHARACTERISTIC = 3
    WRITE_CHARACTERISTIC = 4
    ENABLE_NOTIFICATIONS = 5
    NOTIFICATION = 6


class ResponseCode(IntEnum):
    SUCCESS = 0
    INVALID_MESSAGE_TYPE = 1
    GENERIC_ERROR = 2
    SERVICE_NOT_FOUND = 3
    CHARACTERISTIC_NOT_FOUND = 4
    OPERATION_NOT_SUPPORTED = 5
    WRITE_FAILED = 6


def message_type_name(value: int) -> str:
    try:
        return MessageType(value).name
    except ValueError:
        return f"message type {value}"


def response_code_name(value: int) -> str:
    try:
        return ResponseCode(value).name
    except ValueError:
        return f"response code {value}"


@dataclass(frozen=True)
class DirconMessage:
    """One DIRCON message. ``message_type`` is a plain int so unknown types survive
    decoding (the server must answer them with INVALID_MESSAGE_TYPE)."""

    message_type: int
    sequence: int
    response_code: int = ResponseCode.SUCCESS
    data: bytes = b""

    def __repr__(self) -> str:
        return (
            f"DirconMessage({message_type_name(self.message_type)}, seq={self.sequence}, "
            f"{response_code_name(self.response_code)}, data={self.data.hex(' ')!r})"
        )


def encode_message(message: DirconMessage, *, max_data_length: int = MAX_DATA_LENGTH) -> bytes:
    for name, value in (
        ("message type", message.message_type),
        ("sequence", message.sequence),
        ("response code", message.response_code),
    ):
        if not 0 <= value <= 0xFF:
            raise CodecError(f"DIRCON {name} {value} does not fit in one byte")
    if len(message.data) > max_data_length:
        raise CodecError(
            f"DIRCON {message_type_name(message.message_type)}: {len(message.data)} bytes of "
            f"data exceed the limit of {max_data_length}"
        )
    header = _HEADER.pack(
        PROTOCOL_VERSION,
        message.message_type,
        message.sequence,
        message.response_code,
        len(message.data),
    )
    return header + bytes(message.data)


class FrameDecoder:
    """Incremental decoder: feed it whatever the socket returned, get whole messages.

    Handles partial frames (kept until the rest arrives) and several frames in one
    chunk. A version other than 1 or a data length over the limit raises
    :class:`CodecError`; framing is lost at that point, so the decoder stays failed
    (every later ``feed`` raises too) and the connection should be closed.
    """

    def __init__(self, *, max_data_length: int = MAX_DATA_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_data_length = max_data_length
        self._error: CodecError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame waiting for the rest (non-zero: mid-message)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[DirconMessage]:
        if self._error is not None:
            raise CodecError(f"DIRCON stream already failed: {self._error}")
        self._buffer += data
        messages: list[DirconMessage] = []
        while len(self._buffer) >= HEADER_LENGTH:
            version, message_type, sequence, code, length = _HEADER.unpack_from(self._buffer)
            if version != PROTOCOL_VERSION:
                self._fail(
                    f"DIRCON version {version} is not supported (expected "
                    f"{PROTOCOL_VERSION}); header {bytes(self._buffer[:HEADER_LENGTH]).hex(' ')}"
                )
            if length > self._max_data_length:
                self._fail(
                    f"DIRCON {message_type_name(message_type)} announces {length} bytes of "
                    f"data, over the limit of {self._max_data_length}"
                )
            end = HEADER_LENGTH + length
            if len(self._buffer) < end:
                break
            messages.append(
                DirconMessage(message_type, sequence, code, bytes(self._buffer[HEADER_LENGTH:end]))
            )
            del self._buffer[:end]
        return messages

    def _fail(self, text: str) -> None:
        self._error = CodecError(text)
        self._buffer.clear()
        raise self._error


# --------------------------------------------------------------------------- UUIDs
def uuid_to_bytes(value: str) -> bytes:
    """``00001826-0000-1000-8000-00805f9b34fb`` -> ``00 00 18 26 ... 34 fb`` (written order).

    Short forms (``0x1826``, ``"2acd"``) are accepted through :func:`gatt.normalize_uuid`.
    """
    try:
        return _uuid.UUID(gatt.normalize_uuid(value)).bytes
    except ValueError as exc:
        raise CodecError(f"{value!r} is not a UUID") from exc


def uuid_from_bytes(data: bytes) -> str:
    if len(data) != UUID_LENGTH:
        raise CodecError(f"a DIRCON UUID is 16 bytes, got {len(data)}: {bytes(data).hex(' ')}")
    return str(_uuid.UUID(bytes=bytes(data)))


def split_uuid(data: bytes, what: str) -> tuple[str, bytes]:
    """Split ``char UUID (16) + rest`` (read/write/notify data)."""
    if len(data) < UUID_LENGTH:
        raise CodecError(f"DIRCON {what}: {len(data)} bytes of data, a UUID needs 16")
    return uuid_from_bytes(data[:UUID_LENGTH]), bytes(data[UUID_LENGTH:])


# --------------------------------------------------------------------------- properties
def properties_to_byte(properties: Iterable[str]) -> int:
    props = set(properties)
    value = 0
    if gatt.READ in props:
        value |= PROP_READ
    if gatt.WRITE in props:
        value |= PROP_WRITE
    if props & {gatt.NOTIFY, gatt.INDICATE}:
        value |= PROP_NOTIFY  # TCP has no indications: they are sent as notifications
    return value


def properties_from_byte(value: int) -> frozenset[str]:
    props: set[str] = set()
    if value & PROP_READ:
        props.add(gatt.READ)
    if value & PROP_WRITE:
        props.add(gatt.WRITE)
    if value & PROP_NOTIFY:
        props.add(gatt.NOTIFY)
    if value & PROP_INDICATE:
        props.add(gatt.INDICATE)
    return frozenset(props)


# --------------------------------------------------------------------------- payloads
def encode_service_list(uuids: Iterable[str]) -> bytes:
    return b"".join(uuid_to_bytes(u) for u in uuids)


def decode_service_list(data: bytes) -> tuple[str, ...]:
    if len(data) % UUID_LENGTH:
        raise CodecError(
            f"DIRCON DISCOVER_SERVICES response: {len(data)} bytes is not a whole number "
            "of 16-byte UUIDs"
        )
    return tuple(
        uuid_from_bytes(data[i:i + UUID_LENGTH]) for i in range(0, len(data), UUID_LENGTH)
    )


_CHAR_RECORD = UUID_LENGTH + 1


def encode_characteristic_list(service: gatt.Service) -> bytes:
    parts = [uuid_to_bytes(service.uuid)]
    for char in service.characteristics:
        parts.append(uuid_to_bytes(char.uuid) + bytes([properties_to_byte(char.properties)]))
    return b"".join(parts)


def decode_characteristic_list(data: bytes) -> gatt.Service:
    what = "DISCOVER_CHARACTERISTICS response"
    service_uuid, rest = split_uuid(data, what)
    if len(rest) % _CHAR_RECORD:
        raise CodecError(
            f"DIRCON {what} for {service_uuid}: {len(rest)} bytes is not a whole number of "
            "17-byte characteristic records"
        )
    chars = tuple(
        gatt.Characteristic(
            uuid_from_bytes(rest[i:i + UUID_LENGTH]),
            properties_from_byte(rest[i + UUID_LENGTH]),
        )
        for i in range(0, len(rest), _CHAR_RECORD)
    )
    return gatt.Service(service_uuid, chars)
