"""``--device`` strings: what they mean and how to open a link for each.

- ``sim`` or ``sim:PRESET``: the built-in simulated treadmill, in-process.
- ``dircon://HOST:PORT``: FTMS over TCP (Wahoo Direct Connect), e.g. ``retrotread sim``.
- ``ble:ADDRESS_OR_NAME``: a real treadmill over Bluetooth LE.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from retrotread.errors import DeviceSpecError
from retrotread.sim.presets import PRESETS

DIRCON_DEFAULT_PORT = 36866


@dataclass(frozen=True)
class DeviceSpec:
    kind: str  # sim | dircon | ble
    target: str = ""  # preset, host, or BLE address/name
    port: int = DIRCON_DEFAULT_PORT

    @property
    def simulated(self) -> bool:
        return self.kind == "sim"

    def __str__(self) -> str:
        if self.kind == "sim":
            return f"sim:{self.target}"
        if self.kind == "dircon":
            return f"dircon://{self.target}:{self.port}"
        return f"ble:{self.target}"


def parse_device(text: str) -> DeviceSpec:
    value = text.strip()
    if value in ("sim", "") or value.startswith("sim:"):
        preset = value.partition(":")[2] or "generic"
        if preset not in PRESETS:
            raise DeviceSpecError(
                f"unknown simulator preset {preset!r} in --device {text!r}; "
                f"choose one of: {', '.join(PRESETS)}"
            )
        return DeviceSpec("sim", preset)
    if value.startswith("dircon://"):
        parts = urlsplit(value)
        if not parts.hostname:
            raise DeviceSpecError(f"--device {text!r}: expected dircon://HOST:PORT")
        try:
            port = parts.port or DIRCON_DEFAULT_PORT
        except ValueError:
            raise DeviceSpecError(f"--device {text!r}: the port is not a number 1-65535") from None
        return DeviceSpec("dircon", parts.hostname, port)
    if value.startswith("ble:"):
        target = value[4:].strip()
        if not target:
            raise DeviceSpecError("--device ble: needs an address or a name, e.g. ble:C4:A1:...")
        return DeviceSpec("ble", target)
    raise DeviceSpecError(
        f"cannot understand --device {text!r}: use sim, sim:PRESET, dircon://HOST:PORT "
        "or ble:ADDRESS_OR_NAME"
    )
