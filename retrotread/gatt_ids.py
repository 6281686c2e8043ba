"""GATT identifiers (pure, no I/O): UUIDs, ATT error codes, characteristic properties
and service tables. :mod:`retrotread.gatt` re-exports all of them next to the link seam,
so ``gatt.TREADMILL_DATA`` keeps working everywhere; the sans-I/O parts (the FTMS client
protocol, the session core) import them from here and so never import asyncio.

UUIDs are lowercase 128-bit strings throughout (``uuid16(0x2ACD)``).
"""

from __future__ import annotations

from dataclasses import dataclass

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
