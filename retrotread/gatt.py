"""GATT-level seam: UUIDs, service tables, the client ``Link`` and the server side.

A *link* is the only place bytes cross a process or radio boundary. Above it everything
speaks FTMS values; a link speaks GATT: a characteristic UUID and bytes. The simulated
treadmill implements :class:`GattServer`, so every link (in-process, DIRCON over TCP,
BLE through bleak) can reach it.

UUIDs are lowercase 128-bit strings throughout (``uuid16(0x2ACD)``).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """The 128-bit string form of a 16-bit SIG UUID."""
    return f"0000{short:04x}{BASE_UUID_SUFFIX}"


def normalize_uuid(value: str | int) -> str:
    """Accept ``0x2acd``, ``2ACD``, ``"2acd"`` or a full UUID; return the 128-bit form."""
    if isinstance(value, int):
        return uuid16(value)
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) == 4:
        return uuid16(int(text, 16))
    if len(text) == 8:
        return f"{text}{BASE_UUID_SUFFIX}"
    return text


# Services
FITNESS_MACHINE_SERVICE = uuid16(0x1826)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
HEART_RATE_SERVICE = uuid16(0x180D)

# Fitness Machine characteristics
FITNESS_MACHINE_FEATURE = uuid16(0x2ACC)
TREADMILL_DATA = uuid16(0x2ACD)
TRAINING_STATUS = uuid16(0x2AD3)
SUPPORTED_SPEED_RANGE = uuid16(0x2AD4)
SUPPORTED_INCLINATION_RANGE = uuid16(0x2AD5)
FITNESS_MACHINE_CONTROL_POINT = uuid16(0x2AD9)
FITNESS_MACHINE_STATUS = uuid16(0x2ADA)

# Device Information characteristics
MANUFACTURER_NAME = uuid16(0x2A29)
MODEL_NUMBER = uuid16(0x2A24)
SERIAL_NUMBER = uuid16(0x2A25)
FIRMWARE_REVISION = uuid16(0x2A26)

# Heart Rate
HEART_RATE_MEASUREMENT = uuid16(0x2A37)

# ATT error codes a server may answer with
ATT_WRITE_NOT_PERMITTED = 0x03
ATT_INVALID_ATTRIBUTE_LENGTH = 0x0D
ATT_REQUEST_NOT_SUPPORTED = 0x06
ATT_ATTRIBUTE_NOT_FOUND = 0x0A
ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD
ATT_PROCEDURE_ALREADY_IN_PROGRESS = 0xFE

# Characteristic properties (our names; DIRCON and BLE map them to their own bits)
READ = "read"
WRITE = "write"
NOTIFY = "notify"
INDICATE = "indicate"


@dataclass(frozen=True)
class Characteristic:
    uuid: str
    properties: frozenset[str]


@dataclass(frozen=True)
class Service:
    uuid: str
    characteristics: tuple[Characteristic, ...]

    def characteristic(self, uuid: str) -> Characteristic | None:
        for char in self.characteristics:
            if char.uuid == uuid:
                return char
        return None


NotificationHandler = Callable[[bytes], None]


class Link(abc.ABC):
    """Client side of a GATT connection to one machine.

    ``write`` is a write *with response*: it returns when the peer accepted the bytes
    (a control point's answer comes later, as an indication to the subscriber).
    ``disconnected`` is set when the link is lost or closed.
    """

    def __init__(self) -> None:
        self.disconnected = asyncio.Event()
        self._disconnect_callbacks: list[Callable[[], None]] = []

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where this link goes, for banners and logs (``dircon://127.0.0.1:36866``)."""

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def discover(self) -> tuple[Service, ...]: ...

    @abc.abstractmethod
    async def read(self, uuid: str) -> bytes: ...

    @abc.abstractmethod
    async def write(self, uuid: str, data: bytes) -> None: ...

    @abc.abstractmethod
    async def subscribe(self, uuid: str, handler: NotificationHandler) -> None:
        """Enable notifications or indications (whichever the characteristic has)."""

    @abc.abstractmethod
    async def unsubscribe(self, uuid: str) -> None: ...

    @property
    def is_connected(self) -> bool:
        return not self.disconnected.is_set()

    def on_disconnect(self, callback: Callable[[], None]) -> None:
        self._disconnect_callbacks.append(callback)

    def _mark_disconnected(self) -> None:
        if self.disconnected.is_set():
            return
        self.disconnected.set()
        for callback in list(self._disconnect_callbacks):
            callback()


@dataclass
class ServerConnection:
    """One central connected to a :class:`GattServer`.

    The server pushes notifications/indications through ``notify`` and ends the
    connection (a link drop) through ``drop``. ``subscriptions`` holds the UUIDs this
    central enabled.
    """

    notify: Callable[[str, bytes], None]
    drop: Callable[[], None]
    subscriptions: set[str] = field(default_factory=set)
    closed: bool = False


class GattServer(abc.ABC):
    """Server (peripheral) side: what the simulated treadmill implements.

    Methods are synchronous; anything slow (a late reply) the server schedules itself.
    Refusals raise :class:`retrotread.errors.GattError` with an ATT error code.
    """

    @property
    @abc.abstractmethod
    def services(self) -> tuple[Service, ...]: ...

    @abc.abstractmethod
    def attach(self, connection: ServerConnection) -> None:
        """A central connected."""

    @abc.abstractmethod
    def detach(self, connection: ServerConnection) -> None:
        """A central went away (closed or dropped)."""

    @abc.abstractmethod
    def read(self, connection: ServerConnection, uuid: str) -> bytes: ...

    @abc.abstractmethod
    def write(self, connection: ServerConnection, uuid: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def set_subscription(self, connection: ServerConnection, uuid: str, enabled: bool) -> None:
        ...
