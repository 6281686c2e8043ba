"""Machine presets for the simulator: speed range, increment, acceleration and quirks.

A quirk is a behaviour of real machines reported by users of FTMS apps (see
docs/ftms.md). The simulator plays each one so the controller is tested against it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Quirk(enum.StrEnum):
    MUST_START_BEFORE_SPEED = "must_start_before_speed"
    """Set Target Speed is answered "success" but ignored until the belt is started."""
    REQUEST_CONTROL_AFTER_STOP = "request_control_after_stop"
    """Control is lost after every stop; Request Control must be sent again."""
    START_AT_OWN_MINIMUM = "start_at_own_minimum"
    """Start runs the belt at the machine's minimum, whatever target was set before."""
    START_TOGGLES_PAUSE = "start_toggles_pause"
    """Start or Resume sent to a moving belt pauses it."""
    IGNORES_PAUSE = "ignores_pause"
    """Pause is answered "success" but the belt stops instead (no resumable pause)."""
    MIN_SPEED_ABOVE_ADVERTISED = "min_speed_above_advertised"
    """The real minimum is 0.5 km/h above the advertised one; lower targets are refused."""
    SLOW_REPLIES = "slow_replies"
    """Control point replies take 0.8 s."""
    STOPS_ON_DISCONNECT = "stops_on_disconnect"
    """The machine stops the belt itself when the controlling link drops."""


@dataclass(frozen=True)
class MachinePreset:
    name: str
    manufacturer: str
    model: str
    min_kmh: float
    max_kmh: float
    increment_kmh: float
    acceleration_kmh_per_s: float
    deceleration_kmh_per_s: float
    reply_delay_s: float = 0.05
    has_incline: bool = False
    quirks: frozenset[Quirk] = field(default_factory=frozenset)
    description: str = ""


PRESETS: dict[str, MachinePreset] = {
    preset.name: preset
    for preset in (
        MachinePreset(
            name="generic",
            manufacturer="retrotread",
            model="Simulated FTMS treadmill",
            min_kmh=0.5, max_kmh=20.0, increment_kmh=0.1,
            acceleration_kmh_per_s=1.0, deceleration_kmh_per_s=1.5,
            has_incline=True,
            description="a well-behaved FTMS treadmill",
        ),
        MachinePreset(
            name="walking-pad",
            manufacturer="retrotread",
            model="Simulated walking pad",
            min_kmh=1.0, max_kmh=6.0, increment_kmh=0.1,
            acceleration_kmh_per_s=0.5, deceleration_kmh_per_s=0.8,
            quirks=frozenset({Quirk.START_AT_OWN_MINIMUM, Quirk.STOPS_ON_DISCONNECT}),
            description="an under-desk pad: 1-6 km/h, slow belt, starts at its own minimum",
        ),
        MachinePreset(
            name="home-treadmill",
            manufacturer="retrotread",
            model="Simulated home treadmill",
            min_kmh=0.8, max_kmh=16.0, increment_kmh=0.1,
            acceleration_kmh_per_s=0.8, deceleration_kmh_per_s=1.2,
            quirks=frozenset({Quirk.MUST_START_BEFORE_SPEED, Quirk.START_TOGGLES_PAUSE}),
            description="ignores speed until started; Start on a moving belt pauses it",
        ),
        MachinePreset(
            name="coarse",
            manufacturer="retrotread",
            model="Simulated coarse treadmill",
            min_kmh=1.0, max_kmh=12.0, increment_kmh=0.5,
            acceleration_kmh_per_s=1.0, deceleration_kmh_per_s=1.5,
            quirks=frozenset({Quirk.MIN_SPEED_ABOVE_ADVERTISED, Quirk.IGNORES_PAUSE}),
            description="0.5 km/h steps; real minimum above the advertised one; no pause",
        ),
        MachinePreset(
            name="strict-control",
            manufacturer="retrotread",
            model="Simulated strict treadmill",
            min_kmh=0.5, max_kmh=18.0, increment_kmh=0.1,
            acceleration_kmh_per_s=1.0, deceleration_kmh_per_s=1.5,
            quirks=frozenset({Quirk.REQUEST_CONTROL_AFTER_STOP, Quirk.SLOW_REPLIES}),
            description="control lost after every stop; replies take 0.8 s",
        ),
        MachinePreset(
            name="fast-minimum",
            manufacturer="retrotread",
            model="Simulated fast-minimum treadmill",
            min_kmh=2.0, max_kmh=16.0, increment_kmh=0.1,
            acceleration_kmh_per_s=1.0, deceleration_kmh_per_s=1.5,
            description="its lowest speed is 2.0 km/h (1.24 mph): unfit for retro walking, "
                        "retrotread refuses it before the belt moves",
        ),
    )
}


def get_preset(name: str) -> MachinePreset:
    from retrotread.errors import RetrotreadError

    try:
        return PRESETS[name]
    except KeyError:
        raise RetrotreadError(
            f"unknown machine preset {name!r}; choose one of: {', '.join(PRESETS)}"
        ) from None
