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

from retrotread.gatt_ids import *  # noqa: F403  (the identifiers, re-exported)
from retrotread.gatt_ids import Service

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
