"""An in-process link straight to a :class:`GattServer` (the simulator), for fast tests.

Notifications are delivered on the next loop iteration (never re-entrantly inside a
write), as they would be from a real transport.
"""

from __future__ import annotations

import asyncio

from retrotread import gatt
from retrotread.errors import LinkClosedError


class LoopbackLink(gatt.Link):
    def __init__(self, server: gatt.GattServer, name: str = "sim") -> None:
        super().__init__()
        self._server = server
        self._name = name
        self._handlers: dict[str, gatt.NotificationHandler] = {}
        self._connection: gatt.ServerConnection | None = None
        self.disconnected.set()

    @property
    def description(self) -> str:
        return f"in-process:{self._name}"

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        def notify(uuid: str, value: bytes) -> None:
            loop.call_soon(self._deliver, connection, uuid, value)

        def drop() -> None:
            loop.call_soon(self._dropped, connection)

        connection = gatt.ServerConnection(notify=notify, drop=drop)
        self._connection = connection
        self.disconnected = asyncio.Event()
        self._server.attach(connection)

    def _deliver(self, connection: gatt.ServerConnection, uuid: str, value: bytes) -> None:
        if connection is not self._connection:
            return
        handler = self._handlers.get(uuid)
        if handler is not None:
            handler(value)

    def _dropped(self, connection: gatt.ServerConnection) -> None:
        if connection is self._connection:
            self._connection = None
            self._mark_disconnected()

    def _require(self) -> gatt.ServerConnection:
        if self._connection is None or self._connection.closed:
            raise LinkClosedError(f"{self.description}: the link is not connected")
        return self._connection

    async def close(self) -> None:
        connection = self._connection
        self._connection = None
        if connection is not None:
            self._server.detach(connection)
        self._mark_disconnected()

    async def discover(self) -> tuple[gatt.Service, ...]:
        self._require()
        return self._server.services

    async def read(self, uuid: str) -> bytes:
        return self._server.read(self._require(), uuid)

    async def write(self, uuid: str, data: bytes) -> None:
        self._server.write(self._require(), uuid, bytes(data))

    async def subscribe(self, uuid: str, handler: gatt.NotificationHandler) -> None:
        connection = self._require()
        self._handlers[uuid] = handler
        self._server.set_subscription(connection, uuid, True)

    async def unsubscribe(self, uuid: str) -> None:
        connection = self._require()
        self._handlers.pop(uuid, None)
        self._server.set_subscription(connection, uuid, False)
