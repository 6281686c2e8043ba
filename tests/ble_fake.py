"""A fake bleak backend: a :class:`retrotread.gatt.GattServer` (the simulator) behind the
REAL :class:`bleak.BleakClient` and :class:`bleak.BleakScanner`.

bleak lets anyone plug in a backend through its public ``backend=`` argument. This one
sits at the lowest level, where BlueZ, CoreBluetooth or WinRT would be: the code path
``BleLink -> BleakClient -> FakeBleakClient -> SimulatedTreadmill`` is the one a real
adapter uses, minus the radio. It behaves like a radio with the default ATT MTU of 23:

- notifications carry at most 20 bytes (longer values are truncated, as an ATT stack
  would; ``FakePeripheral.notification_sizes`` records every size for assertions);
- notifications and indications are delivered on a later loop iteration, never inside
  the write that caused them;
- a link loss (``FakePeripheral.drop_links()`` or the simulator's own ``drop_links()``)
  calls bleak's disconnected callback, as a radio loss does.

The scanner side advertises every :class:`FakePeripheral` of a :class:`FakeAir` every
0.1 s (in the loop's time, so virtual under looptime).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError

from retrotread import gatt
from retrotread.errors import GattError

ATT_MTU = 23
MAX_NOTIFICATION_BYTES = ATT_MTU - 3
CCCD = gatt.uuid16(0x2902)

# FTMS advertisement service data (FTMS 1.0, 3.1.1): flags, then the machine type bits.
FTMS_FLAG_AVAILABLE = 0x01
MACHINE_TREADMILL = 0x0001
MACHINE_INDOOR_BIKE = 0x0020


def ftms_service_data(machine_type: int = MACHINE_TREADMILL, available: bool = True) -> bytes:
    return struct.pack("<BH", FTMS_FLAG_AVAILABLE if available else 0, machine_type)


@dataclass
class FakePeripheral:
    """One advertising device; connectable when it has a ``server``."""

    address: str
    name: str | None
    server: gatt.GattServer | None = None
    rssi: int = -60
    service_uuids: list[str] = field(default_factory=list)
    service_data: dict[str, bytes] = field(default_factory=dict)
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    advertise_while_connected: bool = False
    """Most treadmills stop advertising while a central is connected."""
    failing_connects: int = 0
    """This many connection attempts fail (a flaky adapter) before one succeeds."""
    clients: list[FakeBleakClient] = field(default_factory=list)
    notification_sizes: list[int] = field(default_factory=list)
    writes: list[tuple[str, bytes, bool]] = field(default_factory=list)
    """Every write: (uuid, data, with response)."""
    subscriptions: list[tuple[str, str]] = field(default_factory=list)
    """Every start_notify: (uuid, "notify" or "indicate" as the CCCD was written)."""
    connects: int = 0

    @property
    def connected(self) -> bool:
        return any(client.is_connected for client in self.clients)

    def advertisement(self) -> AdvertisementData:
        return AdvertisementData(
            local_name=self.name,
            manufacturer_data=dict(self.manufacturer_data),
            service_data=dict(self.service_data),
            service_uuids=list(self.service_uuids),
            tx_power=None,
            rssi=self.rssi,
            platform_data=("fake",),
        )

    def drop_links(self) -> None:
        """Radio loss: every connected client is cut off; bleak's callback fires."""
        for client in list(self.clients):
            client.lose_link()


@dataclass
class FakeAir:
    """What the fake radio can see; builds backend classes bound to it."""

    peripherals: list[FakePeripheral] = field(default_factory=list)
    advertising_interval_s: float = 0.1

    def add(self, peripheral: FakePeripheral) -> FakePeripheral:
        self.peripherals.append(peripheral)
        return peripheral

    def add_treadmill(
        self,
        server: gatt.GattServer,
        *,
        address: str = "C0:FF:EE:00:00:01",
        name: str = "RT-SIM-0001 FTMS",
        rssi: int = -58,
    ) -> FakePeripheral:
        return self.add(FakePeripheral(
            address=address, name=name, server=server, rssi=rssi,
            service_uuids=[gatt.FITNESS_MACHINE_SERVICE],
            service_data={gatt.FITNESS_MACHINE_SERVICE: ftms_service_data()},
        ))

    def find(self, address: str) -> FakePeripheral | None:
        for peripheral in self.peripherals:
            if peripheral.address.casefold() == address.casefold():
                return peripheral
        return None

    @property
    def client_backend(self) -> type[FakeBleakClient]:
        return type("FakeBleakClient", (FakeBleakClient,), {"air": self})

    @property
    def scanner_backend(self) -> type[FakeBleakScanner]:
        return type("FakeBleakScanner", (FakeBleakScanner,), {"air": self})


def build_collection(services: tuple[gatt.Service, ...]) -> BleakGATTServiceCollection:
    """Our service table as bleak's objects, with handles as a real server numbers them
    (service, then each characteristic's value handle, then its CCCD)."""
    collection = BleakGATTServiceCollection()
    handle = 0
    for service in services:
        handle += 1
        bleak_service = BleakGATTService(None, handle, service.uuid)
        collection.add_service(bleak_service)
        for char in service.characteristics:
            handle += 2  # declaration + value
            props: list[Any] = sorted(char.properties)
            bleak_char = BleakGATTCharacteristic(
                None, handle, char.uuid, props,
                lambda: MAX_NOTIFICATION_BYTES, bleak_service,
            )
            collection.add_characteristic(bleak_char)
            if char.properties & {gatt.NOTIFY, gatt.INDICATE}:
                handle += 1
                collection.add_descriptor(BleakGATTDescriptor(None, handle, CCCD, bleak_char))
    return collection


class FakeBleakClient(BaseBleakClient):
    """bleak's client interface over a :class:`retrotread.gatt.GattServer`."""

    air: ClassVar[FakeAir]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device,
                         disconnected_callback=disconnected_callback, timeout=timeout)
        self.kwargs = kwargs
        self._peripheral: FakePeripheral | None = None
        self._connection: gatt.ServerConnection | None = None
        self._callbacks: dict[str, NotifyCallback] = {}

    # ------------------------------------------------------------------ connection
    @property
    def name(self) -> str:
        return (self._peripheral.name if self._peripheral else None) or self.address

    @property
    def mtu_size(self) -> int:
        return ATT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._connection.closed

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        peripheral = self.air.find(self.address)
        if peripheral is None or peripheral.server is None:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found.")
        await asyncio.sleep(0.05)  # connection set-up and service discovery take time
        if peripheral.failing_connects > 0:
            peripheral.failing_connects -= 1
            raise BleakError("le-connection-abort-by-local")
        loop = asyncio.get_running_loop()

        def notify(uuid: str, value: bytes) -> None:  # a radio delivers it later
            loop.call_soon(self._deliver, connection, uuid, value)

        def drop() -> None:
            loop.call_soon(self._server_dropped, connection)

        connection = gatt.ServerConnection(notify=notify, drop=drop)
        self._peripheral = peripheral
        self._connection = connection
        peripheral.server.attach(connection)
        peripheral.clients.append(self)
        peripheral.connects += 1
        self.services = build_collection(peripheral.server.services)

    async def disconnect(self) -> None:
        self._detach()

    def _detach(self) -> gatt.ServerConnection | None:
        connection, peripheral = self._connection, self._peripheral
        self._connection = None
        self._callbacks.clear()
        if peripheral is not None:
            if self in peripheral.clients:
                peripheral.clients.remove(self)
            if connection is not None and not connection.closed and peripheral.server:
                peripheral.server.detach(connection)
        return connection

    def lose_link(self) -> None:
        """The radio link is gone (out of range, machine switched off)."""
        if self._detach() is not None and self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    def _server_dropped(self, connection: gatt.ServerConnection) -> None:
        if connection is self._connection:
            self.lose_link()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def unpair(self) -> None:
        return None

    # ------------------------------------------------------------------ GATT
    def _require(self) -> tuple[gatt.GattServer, gatt.ServerConnection]:
        if (self._connection is None or self._connection.closed or self._peripheral is None
                or self._peripheral.server is None):
            raise BleakError("Not connected")
        return self._peripheral.server, self._connection

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        server, connection = self._require()
        try:
            return bytearray(server.read(connection, characteristic.uuid))
        except GattError as exc:
            raise BleakGATTProtocolError(exc.code) from exc

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *,
                                   use_cached: bool = False, **kwargs: Any) -> bytearray:
        _server, connection = self._require()
        if descriptor.uuid != CCCD:
            raise BleakGATTProtocolError(gatt.ATT_ATTRIBUTE_NOT_FOUND)
        enabled = descriptor.characteristic_uuid in connection.subscriptions
        return bytearray(b"\x01\x00" if enabled else b"\x00\x00")

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic,
                              data: Any, response: bool) -> None:
        server, connection = self._require()
        assert self._peripheral is not None
        self._peripheral.writes.append((characteristic.uuid, bytes(data), response))
        try:
            server.write(connection, characteristic.uuid, bytes(data))
        except GattError as exc:
            if response:
                raise BleakGATTProtocolError(exc.code) from exc
            # a write without response has no way to report a refusal

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise BleakGATTProtocolError(gatt.ATT_WRITE_NOT_PERMITTED)

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        server, connection = self._require()
        assert self._peripheral is not None
        props = set(characteristic.properties)
        # like every bleak backend: notifications are preferred when both are offered
        mode = "notify" if "notify" in props else "indicate" if "indicate" in props else None
        if mode is None:
            raise BleakGATTProtocolError(gatt.ATT_REQUEST_NOT_SUPPORTED)
        try:
            server.set_subscription(connection, characteristic.uuid, True)
        except GattError as exc:
            raise BleakGATTProtocolError(exc.code) from exc
        self._callbacks[characteristic.uuid] = callback
        self._peripheral.subscriptions.append((characteristic.uuid, mode))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        server, connection = self._require()
        self._callbacks.pop(characteristic.uuid, None)
        try:
            server.set_subscription(connection, characteristic.uuid, False)
        except GattError as exc:
            raise BleakGATTProtocolError(exc.code) from exc

    def _deliver(self, connection: gatt.ServerConnection, uuid: str, value: bytes) -> None:
        if connection is not self._connection or self._peripheral is None:
            return
        self._peripheral.notification_sizes.append(len(value))
        callback = self._callbacks.get(uuid)
        if callback is not None:
            callback(bytearray(value[:MAX_NOTIFICATION_BYTES]))


class FakeBleakScanner(BaseBleakScanner):
    """Hears every peripheral of its :class:`FakeAir` every advertising interval."""

    air: ClassVar[FakeAir]

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self.scanning_mode = scanning_mode
        self.kwargs = kwargs
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._task = asyncio.ensure_future(self._advertise())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _advertise(self) -> None:
        while True:
            for peripheral in list(self.air.peripherals):
                if peripheral.connected and not peripheral.advertise_while_connected:
                    continue
                advertisement = peripheral.advertisement()
                if not self.is_allowed_uuid(advertisement.service_uuids):
                    continue
                device = self.create_or_update_device(
                    peripheral.address, peripheral.address, peripheral.name, None,
                    advertisement)
                self.call_detection_callbacks(device, advertisement)
            await asyncio.sleep(self.air.advertising_interval_s)
