"""The simulated treadmill as a real Bluetooth LE FTMS peripheral, on Bumble.

:class:`BlePeripheral` puts any :class:`retrotread.gatt.GattServer` (the simulator) behind
a Bumble :class:`~bumble.device.Device`, the way :class:`retrotread.links.dircon.DirconServer`
puts it behind TCP:

* the GATT table is built from ``server.services`` (properties read, write, notify,
  indicate; Bumble adds the CCCDs);
* it advertises the FTMS service UUID and the FTMS service data (machine available,
  machine type treadmill), with the name in the scan response too;
* every BLE connection is attached as a :class:`gatt.ServerConnection`; reads go to
  ``server.read``, writes (with response) to ``server.write``, CCCD writes to
  ``server.set_subscription``; ``ServerConnection.notify`` sends a notification, or an
  indication when the central enabled indications (the control point), in order, one
  indication in flight at a time; a disconnection detaches it.

Bumble drives a USB Bluetooth dongle directly (``usb:0``), or any other Bumble transport
(``hci-socket:0`` on Linux, ``serial:...``, ``tcp-client:...``). A test builds the Device
itself on a Bumble ``LocalLink`` (two virtual controllers in one process).

Bumble is an optional dependency (``pip install 'retrotread[ble-sim]'``): importing this
module without it raises :class:`BleSimUnavailableError`, which is both a
:class:`~retrotread.errors.RetrotreadError` (the CLI prints it) and an ``ImportError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from retrotread import gatt
from retrotread.errors import BleSimUnavailableError, GattError, LinkError
from retrotread.extras import install_hint

INSTALL_HINT = install_hint("ble-sim")


try:
    from bumble import att as _att
    from bumble import core as _core
    from bumble import gatt as _bgatt
    from bumble import hci as _hci
    from bumble.device import Connection, Device
except ImportError as _exc:  # pragma: no cover - exercised only without bumble
    raise BleSimUnavailableError(
        f"retrotread sim --ble needs the Bumble Bluetooth stack (bumble), which is not "
        f"installed: {INSTALL_HINT}"
    ) from _exc

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_TRANSPORT",
    "FTMS_MACHINE_TYPE_TREADMILL",
    "TRANSPORT_ENV",
    "BlePeripheral",
    "BleSimUnavailableError",
    "advertising_data",
    "default_transport",
    "ftms_service_data",
    "static_address_for",
]

log = logging.getLogger(__name__)

DEFAULT_NAME = "retrotread sim"
TRANSPORT_ENV = "RETROTREAD_BLE_TRANSPORT"
DEFAULT_TRANSPORT = "usb:0"

#: FTMS service data: Flags bit 0 "Fitness Machine Available".
FTMS_FLAG_AVAILABLE = 0x01
#: FTMS service data: Fitness Machine Type bit 0 "Treadmill Supported".
FTMS_MACHINE_TYPE_TREADMILL = 0x0001

#: A central that stops reading gets dropped once this many values are queued for it.
MAX_QUEUED_VALUES = 512

# AD types (Core Specification Supplement, Part A)
_AD_FLAGS = 0x01
_AD_COMPLETE_16BIT_UUIDS = 0x03
_AD_SHORTENED_NAME = 0x08
_AD_COMPLETE_NAME = 0x09
_AD_SERVICE_DATA_16BIT = 0x16
#: LE General Discoverable Mode, BR/EDR not supported.
_FLAGS_LE_GENERAL_NO_BREDR = 0x06
_MAX_LEGACY_AD_BYTES = 31

_ATT_UNLIKELY_ERROR = 0x0E
_ATT_READ_NOT_PERMITTED = 0x02
_CCCD_NOTIFY = 0x01
_CCCD_INDICATE = 0x02


def default_transport() -> str:
    """The Bumble transport to open: ``$RETROTREAD_BLE_TRANSPORT`` or ``usb:0``."""
    return os.environ.get(TRANSPORT_ENV) or DEFAULT_TRANSPORT


# =========================================================================== advertising
def _ad(ad_type: int, data: bytes) -> bytes:
    return bytes([len(data) + 1, ad_type]) + data


def _short_uuid(uuid: str) -> int | None:
    """The 16-bit form of a SIG UUID (``0000xxxx-0000-1000-8000-00805f9b34fb``)."""
    if uuid.startswith("0000") and uuid.endswith(gatt.BASE_UUID_SUFFIX) and len(uuid) == 36:
        return int(uuid[4:8], 16)
    return None


def ftms_service_data(machine_type: int = FTMS_MACHINE_TYPE_TREADMILL) -> bytes:
    """FTMS service data (without the UUID): flags (1 byte) and machine type (2 bytes)."""
    return struct.pack("<BH", FTMS_FLAG_AVAILABLE, machine_type)


def advertising_data(name: str) -> tuple[bytes, bytes]:
    """Legacy advertising and scan response payloads for an FTMS treadmill.

    The advertisement carries the flags, the FTMS service UUID, the FTMS service data and
    the name (shortened when it does not fit in 31 bytes); the scan response carries the
    complete name (shortened too beyond 29 bytes).
    """
    ftms = _short_uuid(gatt.FITNESS_MACHINE_SERVICE)
    assert ftms is not None
    fixed = (
        _ad(_AD_FLAGS, bytes([_FLAGS_LE_GENERAL_NO_BREDR]))
        + _ad(_AD_COMPLETE_16BIT_UUIDS, struct.pack("<H", ftms))
        + _ad(_AD_SERVICE_DATA_16BIT, struct.pack("<H", ftms) + ftms_service_data())
    )
    adv = fixed + _name_ad(name, _MAX_LEGACY_AD_BYTES - len(fixed) - 2)
    scan_response = _name_ad(name, _MAX_LEGACY_AD_BYTES - 2)
    return adv, scan_response


def _name_ad(name: str, room: int) -> bytes:
    """The complete local name if it fits in ``room`` bytes, else the shortened name."""
    encoded = name.encode("utf-8")
    if len(encoded) <= room:
        return _ad(_AD_COMPLETE_NAME, encoded)
    short = encoded[:room].decode("utf-8", errors="ignore").encode("utf-8")
    return _ad(_AD_SHORTENED_NAME, short)


def static_address_for(seed: str) -> str:
    """A stable random static address (two top bits set) derived from ``seed``.

    The same simulator gets the same address on every start, so a central's cache of
    the GATT table (and of the name) stays valid.
    """
    digest = bytearray(hashlib.sha256(seed.encode("utf-8")).digest()[:6])
    digest[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in digest)


# =========================================================================== connections
def _bumble_uuid(uuid: str) -> _core.UUID:
    short = _short_uuid(uuid)
    if short is not None:
        return _core.UUID.from_16_bits(short)
    return _core.UUID(uuid)


def _att_error(code: int, message: str = "") -> _att.ATT_Error:
    try:
        _att.ErrorCode(code)
    except ValueError:
        code = _ATT_UNLIKELY_ERROR
    return _att.ATT_Error(error_code=code, message=message)


def _connection_of(bearer: Any) -> Any:
    return bearer.connection if _att.is_enhanced_bearer(bearer) else bearer


@dataclass(eq=False)
class _Central:
    """One connected central: its :class:`gatt.ServerConnection` and its send queue."""

    link: Connection
    peripheral: BlePeripheral
    connection: gatt.ServerConnection = field(init=False)
    indicate: set[str] = field(default_factory=set)
    """UUIDs for which this central enabled indications (rather than notifications)."""
    queue: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)
    sender: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.connection = gatt.ServerConnection(notify=self.notify, drop=self.drop)

    @property
    def peer(self) -> str:
        return str(self.link.peer_address)

    def notify(self, uuid: str, value: bytes) -> None:
        """Called synchronously by the GattServer: queue the value, never block."""
        if self.connection.closed or uuid not in self.connection.subscriptions:
            return
        if self.queue.qsize() >= MAX_QUEUED_VALUES:
            log.warning("BLE central %s is not keeping up (%d values queued); dropping it",
                        self.peer, self.queue.qsize())
            self.drop()
            return
        self.queue.put_nowait((uuid, bytes(value)))

    def drop(self) -> None:
        """End the link (fault injection, or a central that does not keep up)."""
        self.connection.closed = True
        self.peripheral._spawn(self._disconnect())

    async def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self.link.disconnect()

    async def send_loop(self) -> None:
        """Send queued values in order; an indication waits for its confirmation."""
        device = self.peripheral.device
        while True:
            uuid, value = await self.queue.get()
            if self.connection.closed:
                continue
            characteristic = self.peripheral.characteristic(uuid)
            if characteristic is None:
                continue
            try:
                if uuid in self.indicate:
                    await device.indicate_subscriber(self.link, characteristic, value,
                                                     force=True)
                else:
                    await device.notify_subscriber(self.link, characteristic, value,
                                                   force=True)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                log.warning("BLE central %s did not confirm an indication of %s; "
                            "dropping it", self.peer, uuid)
                self.drop()
            except Exception:
                log.exception("BLE: cannot send %s to %s", uuid, self.peer)


# =========================================================================== peripheral
class BlePeripheral:
    """Serve a :class:`gatt.GattServer` as a BLE peripheral through Bumble.

    Give either ``transport`` (a Bumble transport name such as ``usb:0``; default
    :func:`default_transport`) or a prebuilt, not yet powered-on ``device`` (a test on a
    ``LocalLink``). Use as ``async with BlePeripheral(sim) as peripheral: ...``; the
    simulator's own task (``sim.run()``) is the caller's to run.
    """

    def __init__(
        self,
        server: gatt.GattServer,
        *,
        transport: str | None = None,
        device: Device | None = None,
        name: str = DEFAULT_NAME,
        address: str | None = None,
        advertising_interval_ms: float = 100.0,
    ) -> None:
        if transport is not None and device is not None:
            raise ValueError("give a transport or a device, not both")
        self.gatt_server = server
        self.name = name
        self.transport_name = None if device is not None else (transport or default_transport())
        self._address = address or static_address_for(f"retrotread:{name}")
        self._advertising_interval_ms = advertising_interval_ms
        self._device = device
        self._transport: Any = None
        self._characteristics: dict[str, _bgatt.Characteristic[bytes]] = {}
        self._centrals: dict[Connection, _Central] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> Device:
        if self._device is None:
            raise RuntimeError("BlePeripheral not started")
        return self._device

    @property
    def address(self) -> str:
        """The advertised (random static) address."""
        if self._device is not None:
            return str(self._device.random_address)
        return self._address

    @property
    def central_count(self) -> int:
        return len(self._centrals)

    @property
    def connections(self) -> list[gatt.ServerConnection]:
        return [central.connection for central in self._centrals.values()]

    def characteristic(self, uuid: str) -> _bgatt.Characteristic[bytes] | None:
        return self._characteristics.get(uuid)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._started:
            raise RuntimeError("BlePeripheral already started")
        self._started = True
        try:
            if self._device is None:
                self._device = await self._open_device()
            device = self._device
            device.add_services(self._build_services())
            device.on(device.EVENT_CONNECTION, self._on_connection)
            await device.power_on()
            adv, scan_response = advertising_data(self.name)
            await device.start_advertising(
                auto_restart=True,
                advertising_data=adv,
                scan_response_data=scan_response,
                advertising_interval_min=self._advertising_interval_ms,
                advertising_interval_max=self._advertising_interval_ms,
            )
        except BaseException:
            await self.close()
            raise
        log.info("BLE peripheral %r advertising FTMS as %s", self.name, self.address)

    async def _open_device(self) -> Device:
        from bumble.transport import open_transport

        assert self.transport_name is not None
        try:
            self._transport = await open_transport(self.transport_name)
        except Exception as exc:
            raise LinkError(
                f"cannot open the Bluetooth controller {self.transport_name!r}: {exc}. "
                "A dongle for Bumble must not be in use by the OS (see hardware/README.md); "
                f"choose another with --transport or ${TRANSPORT_ENV}."
            ) from exc
        return Device.with_hci(self.name, _hci.Address(self._address),
                               self._transport.source, self._transport.sink)

    async def close(self) -> None:
        device = self._device
        if device is not None and device.powered_on:
            with contextlib.suppress(Exception):
                await device.stop_advertising()
            for link in list(self._centrals):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(link.disconnect(), 2.0)
        for link in list(self._centrals):
            self._forget(link)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        if device is not None and device.powered_on:
            with contextlib.suppress(Exception):
                await device.power_off()
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()

    async def __aenter__(self) -> BlePeripheral:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ GATT table
    def _build_services(self) -> list[_bgatt.Service]:
        props = _bgatt.Characteristic.Properties
        perms = _bgatt.Characteristic.Permissions
        services = []
        for service in self.gatt_server.services:
            characteristics = []
            for char in service.characteristics:
                properties = props(0)
                permissions = perms(0)
                if gatt.READ in char.properties:
                    properties |= props.READ
                    permissions |= perms.READABLE
                if gatt.WRITE in char.properties:
                    properties |= props.WRITE
                    permissions |= perms.WRITEABLE
                if gatt.NOTIFY in char.properties:
                    properties |= props.NOTIFY
                if gatt.INDICATE in char.properties:
                    properties |= props.INDICATE
                value = _bgatt.CharacteristicValue(read=self._reader(char.uuid),
                                                   write=self._writer(char.uuid))
                characteristic: _bgatt.Characteristic[bytes] = _bgatt.Characteristic(
                    _bumble_uuid(char.uuid), properties, permissions, value)
                if properties & (props.NOTIFY | props.INDICATE):
                    characteristic.on(characteristic.EVENT_SUBSCRIPTION,
                                      self._subscription_handler(char))
                self._characteristics[char.uuid] = characteristic
                characteristics.append(characteristic)
            services.append(_bgatt.Service(_bumble_uuid(service.uuid), characteristics))
        return services

    def _central(self, bearer: Any) -> _Central:
        central = self._centrals.get(_connection_of(bearer))
        if central is None or central.connection.closed:
            raise _att_error(_ATT_UNLIKELY_ERROR, "unknown or closed connection")
        return central

    def _reader(self, uuid: str) -> Callable[[Any], bytes]:
        def read(bearer: Any) -> bytes:
            central = self._central(bearer)
            try:
                return bytes(self.gatt_server.read(central.connection, uuid))
            except GattError as exc:
                log.info("BLE read of %s by %s refused: %s (ATT 0x%02X)",
                         uuid, central.peer, exc, exc.code)
                code = exc.code
                if code == gatt.ATT_REQUEST_NOT_SUPPORTED:
                    code = _ATT_READ_NOT_PERMITTED
                raise _att_error(code, str(exc)) from exc
            except Exception as exc:
                log.exception("BLE: the GATT server failed reading %s", uuid)
                raise _att_error(_ATT_UNLIKELY_ERROR) from exc

        return read

    def _writer(self, uuid: str) -> Callable[[Any, bytes], None]:
        def write(bearer: Any, value: bytes) -> None:
            central = self._central(bearer)
            try:
                self.gatt_server.write(central.connection, uuid, bytes(value))
            except GattError as exc:
                log.info("BLE write of %s by %s refused: %s (ATT 0x%02X)",
                         uuid, central.peer, exc, exc.code)
                raise _att_error(exc.code, str(exc)) from exc
            except Exception as exc:
                log.exception("BLE: the GATT server failed writing %s", uuid)
                raise _att_error(_ATT_UNLIKELY_ERROR) from exc

        return write

    def _subscription_handler(
        self, char: gatt.Characteristic
    ) -> Callable[[Any, bool, bool], None]:
        def on_subscription(bearer: Any, notify: bool, indicate: bool) -> None:
            central = self._centrals.get(_connection_of(bearer))
            if central is None or central.connection.closed:
                return
            use_indicate = indicate and gatt.INDICATE in char.properties
            use_notify = notify and gatt.NOTIFY in char.properties
            if use_indicate:
                central.indicate.add(char.uuid)
            else:
                central.indicate.discard(char.uuid)
            enabled = use_indicate or use_notify
            try:
                self.gatt_server.set_subscription(central.connection, char.uuid, enabled)
            except GattError as exc:
                # Bumble has already accepted the CCCD write; the server just will not
                # send anything for it.
                log.info("BLE subscription to %s by %s refused: %s", char.uuid, central.peer, exc)
            except Exception:
                log.exception("BLE: the GATT server failed on a subscription to %s", char.uuid)

        return on_subscription

    # ------------------------------------------------------------------ connections
    def _on_connection(self, link: Connection) -> None:
        if link.transport != _core.PhysicalTransport.LE:
            return
        central = _Central(link, self)
        self._centrals[link] = central
        link.on(link.EVENT_DISCONNECTION, lambda *_: self._on_disconnection(link))
        log.info("BLE central %s connected", central.peer)
        try:
            self.gatt_server.attach(central.connection)
        except Exception:
            log.exception("BLE: the GATT server refused central %s; disconnecting it",
                          central.peer)
            self._centrals.pop(link, None)
            central.drop()
            return
        central.sender = self._spawn(central.send_loop())

    def _on_disconnection(self, link: Connection) -> None:
        central = self._centrals.get(link)
        if central is not None:
            log.info("BLE central %s disconnected", central.peer)
        self._forget(link)

    def _forget(self, link: Connection) -> None:
        central = self._centrals.pop(link, None)
        if central is None:
            return
        central.connection.closed = True
        if central.sender is not None:
            central.sender.cancel()
        try:
            self.gatt_server.detach(central.connection)
        except Exception:
            log.exception("BLE: the GATT server failed to detach central %s", central.peer)
