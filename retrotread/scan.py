"""``retrotread scan``: find FTMS machines nearby.

It listens for Bluetooth LE advertisements and lists the devices that advertise the
Fitness Machine Service (0x1826), with name, address, signal strength and, from the FTMS
service data, whether each is a treadmill. ``retrotread doctor`` (probing one machine) is
:mod:`retrotread.doctor`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from retrotread import gatt
from retrotread.errors import (
    LinkError,
    RetrotreadError,
)

MACHINE_TYPE_BITS = {
    0: "treadmill",
    1: "cross trainer",
    2: "step climber",
    3: "stair climber",
    4: "rower",
    5: "indoor bike",
}


@dataclass(frozen=True)
class FoundDevice:
    name: str | None
    address: str
    rssi: int | None
    ftms: bool
    """It advertises the Fitness Machine Service (UUID or service data)."""
    machine_types: tuple[str, ...]
    """From the FTMS service data; empty when the advertisement does not say."""
    available: bool | None
    """FTMS service data flag "available" (None when the advertisement does not say)."""

    @property
    def is_treadmill(self) -> bool | None:
        if not self.machine_types:
            return None
        return "treadmill" in self.machine_types

    @property
    def kind(self) -> str:
        if self.machine_types:
            return ", ".join(self.machine_types)
        return "unknown" if self.ftms else "not FTMS"

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["machine_types"] = list(self.machine_types)
        record["treadmill"] = self.is_treadmill
        return record


def parse_ftms_service_data(data: bytes) -> tuple[bool | None, tuple[str, ...]]:
    """FTMS advertisement service data: flags (bit 0 available), then a uint16 of
    machine type bits (bit 0 treadmill, ...). Short or odd data says nothing."""
    if len(data) < 3:
        return None, ()
    flags, types = struct.unpack_from("<BH", data)
    names = tuple(name for bit, name in MACHINE_TYPE_BITS.items() if types & (1 << bit))
    return bool(flags & 0x01), names


def describe_advertisement(address: str, name: str | None, advertisement: Any) -> FoundDevice:
    uuids = {gatt.normalize_uuid(u) for u in advertisement.service_uuids}
    service_data = {gatt.normalize_uuid(k): bytes(v)
                    for k, v in advertisement.service_data.items()}
    ftms_data = service_data.get(gatt.FITNESS_MACHINE_SERVICE)
    available, types = parse_ftms_service_data(ftms_data) if ftms_data else (None, ())
    return FoundDevice(
        name=advertisement.local_name or name,
        address=address,
        rssi=advertisement.rssi,
        ftms=gatt.FITNESS_MACHINE_SERVICE in uuids or ftms_data is not None,
        machine_types=types,
        available=available,
    )


async def scan(
    timeout_s: float = 5.0,
    *,
    include_all: bool = False,
    adapter: str | None = None,
    scanner_backend: Any = None,
) -> list[FoundDevice]:
    """Listen for ``timeout_s`` seconds; FTMS devices (all named ones with
    ``include_all``), strongest signal first."""
    from bleak import BleakScanner
    from bleak.exc import BleakBluetoothNotAvailableError, BleakError

    kwargs: dict[str, Any] = {}
    if scanner_backend is not None:
        kwargs["backend"] = scanner_backend
    if adapter is not None:
        kwargs["bluez"] = {"adapter": adapter}
    try:
        found = await BleakScanner.discover(timeout=timeout_s, return_adv=True, **kwargs)
    except BleakBluetoothNotAvailableError as exc:
        from retrotread.links.ble import _unavailable_message

        raise LinkError(_unavailable_message(exc)) from exc
    except BleakError as exc:
        raise LinkError(f"Bluetooth scan failed: {exc}; see hardware/README.md") from exc
    except OSError as exc:  # BlueZ: no D-Bus system bus, bluetoothd not running
        from retrotread.links.ble import stack_unreachable_message

        raise LinkError(stack_unreachable_message(exc)) from exc
    devices = [describe_advertisement(address, device.name, advertisement)
               for address, (device, advertisement) in found.items()]
    devices = [d for d in devices if d.ftms or (include_all and d.name)]
    devices.sort(key=lambda d: (not d.ftms, -(d.rssi if d.rssi is not None else -999)))
    return devices


def devices_json(devices: list[FoundDevice]) -> str:
    return json.dumps([d.as_dict() for d in devices], indent=2)


def print_devices(devices: list[FoundDevice], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False)
    if not devices:
        console.print("No FTMS devices heard. Is the treadmill on and not connected to "
                      "another app (phone, watch, Zwift)? See hardware/README.md.")
        return
    table = Table(title="FTMS devices nearby")
    for column in ("name", "address", "RSSI", "machine", "available"):
        table.add_column(column)
    for d in devices:
        available = "-" if d.available is None else "yes" if d.available else "no"
        table.add_row(d.name or "(no name)", d.address,
                      "-" if d.rssi is None else f"{d.rssi} dBm", d.kind, available)
    console.print(table)
    console.print("Use one with: retrotread run PROFILE --device ble:ADDRESS_OR_NAME")


def add_scan_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Listen for Bluetooth LE advertisements and list FTMS machines: name, "
                     "address (a UUID on macOS), signal strength, and whether each is a "
                     "treadmill (from its FTMS service data; 'unknown' when it does not say).")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to listen (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--all", action="store_true",
                   help="also list named devices that do not advertise FTMS")
    p.add_argument("--adapter", default=None, help="Linux: the adapter to use (e.g. hci1)")


def run_scan(args: argparse.Namespace, *, scanner_backend: Any = None,
             out: TextIO | None = None) -> int:
    stream = out if out is not None else sys.stdout
    if args.timeout <= 0:
        raise RetrotreadError("--timeout must be a positive number of seconds")
    devices = asyncio.run(scan(args.timeout, include_all=args.all, adapter=args.adapter,
                               scanner_backend=scanner_backend))
    if args.json:
        stream.write(devices_json(devices) + "\n")
    else:
        print_devices(devices, stream)
    return 0
