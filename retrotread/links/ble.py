"""The Bluetooth LE link: a :class:`retrotread.gatt.Link` on top of bleak.

``BleLink("C4:A1:...")`` connects by address (a MAC on Linux and Windows, a CoreBluetooth
UUID on macOS); ``BleLink("RT-SIM-0001 FTMS")`` scans for a device advertising that name
first. Notifications and indications both arrive through ``subscribe`` (bleak's
``start_notify`` enables whichever the characteristic has; the FTMS control point answers
by indication). ``write`` is always a write *with response*.

bleak's disconnected callback marks the link lost, which fires the ``on_disconnect``
listeners: the session's watchdog raises the alarm, reconnects with a fresh link and
sends Stop at once. bleak's errors become :class:`LinkError` and its subclasses, with a
message that says what to try.

Tests put the simulator behind the real :class:`bleak.BleakClient` through bleak's
public ``backend=`` argument (``client_backend=``/``scanner_backend=`` here), so the code
below is exactly what runs against a real adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakCharacteristicNotFoundError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)

from retrotread import gatt
from retrotread.errors import GattError, LinkClosedError, LinkError, LinkTimeoutError

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 15.0
DEFAULT_OPERATION_TIMEOUT_S = 3.0
"""A read, write or (un)subscribe that takes longer than this means the link is dead."""
DEFAULT_CONNECT_ATTEMPTS = 3
DEFAULT_RETRY_BACKOFF_S = 0.5

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
_CB_UUID = re.compile(
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)

_PROPERTY_NAMES = {
    "read": gatt.READ,
    "write": gatt.WRITE,
    "notify": gatt.NOTIFY,
    "indicate": gatt.INDICATE,
}

ClientFactory = Callable[[BLEDevice | str, Callable[[BleakClient], None]], BleakClient]
"""Builds the bleak client for a device and a disconnected callback (tests, exotic set-ups)."""

_NOT_WORTH_RETRYING = (BleakDeviceNotFoundError, BleakBluetoothNotAvailableError, OSError)

_HINT_BUSY = ("is it switched on, in range, and not connected to another app "
              "(a phone, a watch, Zwift)? `retrotread scan` lists what is advertising")


def is_address(target: str) -> bool:
    """A Bluetooth address (``AA:BB:CC:DD:EE:FF``) or a macOS CoreBluetooth UUID."""
    return bool(_MAC.match(target) or _CB_UUID.match(target))


def advertises_ftms(advertisement: AdvertisementData) -> bool:
    uuids = {gatt.normalize_uuid(u) for u in advertisement.service_uuids}
    data = {gatt.normalize_uuid(u) for u in advertisement.service_data}
    return gatt.FITNESS_MACHINE_SERVICE in uuids | data


def name_filter(target: str) -> Callable[[BLEDevice, AdvertisementData], bool]:
    """Match a device by name: the whole name (any device, case-insensitive), or a part
    of the name of a device that advertises the Fitness Machine Service."""
    wanted = target.strip().casefold()

    def matches(device: BLEDevice, advertisement: AdvertisementData) -> bool:
        names = {n.casefold() for n in (advertisement.local_name, device.name) if n}
        if wanted in names:
            return True
        return advertises_ftms(advertisement) and any(wanted in n for n in names)

    return matches


class BleLink(gatt.Link):
    """One connection to one Bluetooth LE peripheral. Make a fresh one to reconnect."""

    def __init__(
        self,
        target: str,
        *,
        adapter: str | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        operation_timeout_s: float = DEFAULT_OPERATION_TIMEOUT_S,
        connect_attempts: int = DEFAULT_CONNECT_ATTEMPTS,
        retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S,
        client_factory: ClientFactory | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
    ) -> None:
        super().__init__()
        if not target.strip():
            raise LinkError("a BLE device needs an address or a name, e.g. ble:C4:A1:...")
        self.target = target.strip()
        self.adapter = adapter
        self.connect_timeout_s = connect_timeout_s
        self.operation_timeout_s = operation_timeout_s
        self.connect_attempts = max(1, connect_attempts)
        self.retry_backoff_s = retry_backoff_s
        self._client_factory = client_factory
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._client: BleakClient | None = None
        self._chars: dict[str, BleakGATTCharacteristic] = {}
        self._name: str | None = None if is_address(self.target) else self.target
        self._closing = False
        self.disconnected.set()

    # ------------------------------------------------------------------ identity
    @property
    def description(self) -> str:
        return f"ble:{self._name or self.target}"

    @property
    def address(self) -> str | None:
        return self._client.address if self._client is not None else None

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        device: BLEDevice | str = self.target
        if not is_address(self.target):
            device = await self._find_by_name()
        last_error: LinkError | None = None
        for attempt in range(1, self.connect_attempts + 1):
            try:
                await self._connect_once(device)
                return
            except LinkTimeoutError as exc:
                last_error = exc
            except LinkError as exc:
                if isinstance(exc.__cause__, _NOT_WORTH_RETRYING):
                    raise
                last_error = exc
            if attempt < self.connect_attempts:
                log.info("%s: connect attempt %d failed (%s); retrying",
                         self.description, attempt, last_error)
                await asyncio.sleep(self.retry_backoff_s * attempt)
        assert last_error is not None
        raise last_error

    async def _find_by_name(self) -> BLEDevice:
        kwargs: dict[str, Any] = {}
        if self._scanner_backend is not None:
            kwargs["backend"] = self._scanner_backend
        if self.adapter is not None:
            kwargs["bluez"] = {"adapter": self.adapter}
        try:
            device = await BleakScanner.find_device_by_filter(
                name_filter(self.target), timeout=self.connect_timeout_s, **kwargs)
        except BleakBluetoothNotAvailableError as exc:
            raise LinkError(_unavailable_message(exc)) from exc
        except BleakError as exc:
            raise LinkError(f"scanning for {self.target!r} failed: {exc}") from exc
        except OSError as exc:  # BlueZ: no D-Bus system bus, bluetoothd not running
            raise LinkError(stack_unreachable_message(exc)) from exc
        if device is None:
            raise LinkError(
                f"no FTMS treadmill named {self.target!r} found within "
                f"{self.connect_timeout_s:.0f} s: {_HINT_BUSY}"
            )
        self._name = device.name or self.target
        return device

    def _make_client(self, device: BLEDevice | str) -> BleakClient:
        if self._client_factory is not None:
            return self._client_factory(device, self._on_bleak_disconnect)
        kwargs: dict[str, Any] = {"timeout": self.connect_timeout_s}
        if self._client_backend is not None:
            kwargs["backend"] = self._client_backend
        if self.adapter is not None:
            kwargs["bluez"] = {"adapter": self.adapter}
        return BleakClient(device, disconnected_callback=self._on_bleak_disconnect, **kwargs)

    async def _connect_once(self, device: BLEDevice | str) -> None:
        client = self._make_client(device)
        self._client = client
        self._closing = False
        self.disconnected = asyncio.Event()
        try:
            async with asyncio.timeout(self.connect_timeout_s + 1.0):
                await client.connect()
        except TimeoutError as exc:
            await self._abandon(client)
            raise LinkTimeoutError(
                f"connecting to {self.description} timed out after "
                f"{self.connect_timeout_s:.0f} s: {_HINT_BUSY}"
            ) from exc
        except BleakDeviceNotFoundError as exc:
            await self._abandon(client)
            raise LinkError(
                f"{self.description}: the Bluetooth stack does not know this device: "
                f"{_HINT_BUSY}; on macOS use the UUID that `retrotread scan` shows, "
                "not the MAC address"
            ) from exc
        except BleakBluetoothNotAvailableError as exc:
            await self._abandon(client)
            raise LinkError(_unavailable_message(exc)) from exc
        except BleakError as exc:
            await self._abandon(client)
            raise LinkError(f"could not connect to {self.description}: {exc}: "
                            f"{_HINT_BUSY}") from exc
        except OSError as exc:
            await self._abandon(client)
            raise LinkError(stack_unreachable_message(exc)) from exc
        if self._name is None:
            try:
                self._name = client.name or None
            except (NotImplementedError, BleakError):  # custom backends may not know it
                self._name = None
        self._index_characteristics(client)

    async def _abandon(self, client: BleakClient) -> None:
        self._closing = True
        try:
            await client.disconnect()
        except (BleakError, OSError, TimeoutError) as exc:
            log.debug("%s: disconnect after a failed connect: %s", self.description, exc)
        self._client = None
        self.disconnected.set()

    def _index_characteristics(self, client: BleakClient) -> None:
        self._chars = {}
        try:
            services = list(client.services)
        except BleakError as exc:
            raise LinkError(f"{self.description}: service discovery failed: {exc}") from exc
        # Prefer the Fitness Machine Service's copy if a UUID appears in two services.
        services.sort(key=lambda s: gatt.normalize_uuid(s.uuid) != gatt.FITNESS_MACHINE_SERVICE)
        for service in services:
            for char in service.characteristics:
                self._chars.setdefault(gatt.normalize_uuid(char.uuid), char)

    def _on_bleak_disconnect(self, client: BleakClient) -> None:
        if client is not self._client:
            return  # an old client of this link (a failed attempt)
        if not self._closing:
            log.warning("%s: Bluetooth link lost", self.description)
        self._mark_disconnected()

    async def close(self) -> None:
        client = self._client
        self._closing = True
        if client is not None:
            try:
                async with asyncio.timeout(self.operation_timeout_s):
                    await client.disconnect()
            except (BleakError, OSError, TimeoutError) as exc:
                log.info("%s: disconnect failed: %s", self.description, exc)
        self._mark_disconnected()

    # ------------------------------------------------------------------ GATT
    def _require(self) -> BleakClient:
        client = self._client
        if client is None or self.disconnected.is_set() or not client.is_connected:
            raise LinkClosedError(f"{self.description}: the Bluetooth link is not connected")
        return client

    def _char(self, uuid: str) -> BleakGATTCharacteristic:
        char = self._chars.get(gatt.normalize_uuid(uuid))
        if char is None:
            raise GattError(f"{self.description} has no characteristic {uuid}",
                            gatt.ATT_ATTRIBUTE_NOT_FOUND)
        return char

    async def discover(self) -> tuple[gatt.Service, ...]:
        client = self._require()
        result: list[gatt.Service] = []
        for service in client.services:
            chars = tuple(
                gatt.Characteristic(
                    gatt.normalize_uuid(char.uuid),
                    frozenset(_PROPERTY_NAMES.get(p, p) for p in char.properties),
                )
                for char in service.characteristics
            )
            result.append(gatt.Service(gatt.normalize_uuid(service.uuid), chars))
        return tuple(result)

    async def read(self, uuid: str) -> bytes:
        client = self._require()
        char = self._char(uuid)
        async with self._operation(f"reading {uuid[4:8]}"):
            value = await client.read_gatt_char(char)
        return bytes(value)

    async def write(self, uuid: str, data: bytes) -> None:
        client = self._require()
        char = self._char(uuid)
        async with self._operation(f"writing {uuid[4:8]}"):
            await client.write_gatt_char(char, bytes(data), response=True)

    async def subscribe(self, uuid: str, handler: gatt.NotificationHandler) -> None:
        client = self._require()
        char = self._char(uuid)
        if not {"notify", "indicate"} & set(char.properties):
            raise GattError(f"{self.description}: {uuid[4:8]} has no notifications or "
                            "indications", gatt.ATT_REQUEST_NOT_SUPPORTED)

        def deliver(_sender: BleakGATTCharacteristic, data: bytearray) -> None:
            if not self.disconnected.is_set():
                handler(bytes(data))

        async with self._operation(f"subscribing to {uuid[4:8]}"):
            await client.start_notify(char, deliver)

    async def unsubscribe(self, uuid: str) -> None:
        client = self._require()
        char = self._char(uuid)
        async with self._operation(f"unsubscribing from {uuid[4:8]}"):
            await client.stop_notify(char)

    @contextlib.asynccontextmanager
    async def _operation(self, what: str) -> AsyncIterator[None]:
        """Time-out and error mapping for one GATT operation."""
        try:
            async with asyncio.timeout(self.operation_timeout_s):
                yield
        except TimeoutError as exc:
            raise LinkTimeoutError(
                f"{self.description}: {what} got no answer within "
                f"{self.operation_timeout_s:.1f} s"
            ) from exc
        except BleakGATTProtocolError as exc:
            raise GattError(f"{self.description}: {what} refused: {exc.args[-1]} "
                            f"(ATT error 0x{int(exc.code):02x})", int(exc.code)) from exc
        except BleakCharacteristicNotFoundError as exc:
            raise GattError(f"{self.description}: {what}: {exc}",
                            gatt.ATT_ATTRIBUTE_NOT_FOUND) from exc
        except (BleakError, OSError) as exc:
            client = self._client
            if self.disconnected.is_set() or client is None or not client.is_connected:
                raise LinkClosedError(f"{self.description}: {what} failed: the "
                                      f"Bluetooth link is gone ({exc})") from exc
            raise LinkError(f"{self.description}: {what} failed: {exc}") from exc


def stack_unreachable_message(exc: OSError) -> str:
    return (
        f"cannot reach the system's Bluetooth service ({exc.strerror or exc}): Linux: is "
        "bluetoothd running (`systemctl status bluetooth`) and is there a D-Bus system bus "
        "(not in a container)? See hardware/README.md"
    )


def _unavailable_message(exc: BleakBluetoothNotAvailableError) -> str:
    return (
        f"Bluetooth is not available ({exc.reason.name.lower()}): is the adapter "
        "present and switched on? Linux: is bluetoothd running and are you in the "
        "`bluetooth` group? macOS: allow Bluetooth for your terminal in System Settings > "
        "Privacy & Security > Bluetooth. See hardware/README.md"
    )
