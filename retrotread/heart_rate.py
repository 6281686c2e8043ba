"""Heart rate from a Bluetooth heart-rate strap (Heart Rate Service 0x180D).

Two parts:

* a pure codec for the Heart Rate Measurement characteristic (0x2A37):
  :func:`decode_heart_rate_measurement` and :func:`encode_heart_rate_measurement` (no
  I/O, no clock; :class:`~retrotread.errors.CodecError` and only that for bytes it cannot
  read, like :mod:`retrotread.ftms.codec`);
* :class:`HeartRateStrap`: subscribes to 0x2A37 over any :class:`retrotread.gatt.Link`
  (BLE, or the in-process loopback to :class:`retrotread.sim.strap.SimulatedHeartRateStrap`)
  and hands each reading to a listener as ``(time_s, bpm)``; ``bpm`` is ``None`` when
  the strap says it has no skin contact (or reports 0), which counts as no reading.

Heart Rate Measurement layout (Heart Rate Service 1.0, GATT Specification Supplement),
little-endian:

==========  =======  =============================================================
field       size     presence / meaning
==========  =======  =============================================================
flags       uint8    bit 0: value format (0 uint8, 1 uint16);
                     bits 1-2: sensor contact (0b0x not supported, 0b10 supported but
                     not detected, 0b11 detected); bit 3: energy expended present;
                     bit 4: RR-intervals present; bits 5-7 reserved
heart rate  uint8 or uint16  beats per minute
energy      uint16   kilojoules since the last reset (when bit 3)
RR          uint16*  the rest of the value, each in 1/1024 s (when bit 4)
==========  =======  =============================================================
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from retrotread import gatt
from retrotread.clock import Clock
from retrotread.errors import CodecError, GattError, RetrotreadError

log = logging.getLogger(__name__)

BODY_SENSOR_LOCATION = gatt.uuid16(0x2A38)
"""Heart Rate Service: where the sensor sits (read; 1 = chest)."""

FLAG_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY_EXPENDED = 0x08
FLAG_RR_INTERVALS = 0x10

RR_UNITS_PER_S = 1024
_WHAT = "Heart Rate Measurement (0x2A37)"


class SensorContact(enum.Enum):
    NOT_SUPPORTED = "not_supported"
    """The strap cannot tell (flags bits 1-2 = 0b00 or 0b01)."""
    NOT_DETECTED = "not_detected"
    """Supported, and the strap is not touching skin (0b10): the value means nothing."""
    DETECTED = "detected"
    """Supported and detected (0b11)."""


@dataclass(frozen=True)
class HeartRateMeasurement:
    bpm: int
    contact: SensorContact = SensorContact.NOT_SUPPORTED
    energy_expended_kj: int | None = None
    rr_intervals_1024: tuple[int, ...] | None = None
    """RR-intervals in units of 1/1024 s (``None``: the field is absent; ``()``: flagged
    present but empty)."""
    uint16: bool = False
    """The value was (or is to be) sent as uint16; the encoder widens on its own above 255."""

    @property
    def rr_intervals_s(self) -> tuple[float, ...]:
        return tuple(rr / RR_UNITS_PER_S for rr in self.rr_intervals_1024 or ())

    @property
    def reading(self) -> int | None:
        """The heart rate to act on: ``None`` without skin contact or for a zero value."""
        if self.contact is SensorContact.NOT_DETECTED or self.bpm <= 0:
            return None
        return self.bpm


def decode_heart_rate_measurement(data: bytes | bytearray | memoryview) -> HeartRateMeasurement:
    raw = bytes(data)
    if not raw:
        raise CodecError(f"{_WHAT}: empty value (needs at least the flags and the heart rate)")
    flags = raw[0]
    pos = 1

    def take(size: int, name: str) -> int:
        nonlocal pos
        if len(raw) - pos < size:
            raise CodecError(
                f"{_WHAT}: truncated at {name} (needs {size} byte{'s' * (size != 1)} at "
                f"offset {pos}, the value has {len(raw)} bytes: {raw.hex()})"
            )
        value = int.from_bytes(raw[pos:pos + size], "little")
        pos += size
        return value

    wide = bool(flags & FLAG_UINT16)
    bpm = take(2 if wide else 1, "heart rate")
    if flags & FLAG_CONTACT_SUPPORTED:
        detected = flags & FLAG_CONTACT_DETECTED
        contact = SensorContact.DETECTED if detected else SensorContact.NOT_DETECTED
    else:
        contact = SensorContact.NOT_SUPPORTED
    energy = take(2, "energy expended") if flags & FLAG_ENERGY_EXPENDED else None
    rr: tuple[int, ...] | None = None
    if flags & FLAG_RR_INTERVALS:
        rest = len(raw) - pos
        if rest % 2:
            raise CodecError(
                f"{_WHAT}: RR-intervals are uint16 each, but {rest} bytes follow at offset "
                f"{pos} ({raw.hex()})"
            )
        rr = tuple(take(2, "RR-interval") for _ in range(rest // 2))
    # Without RR-intervals, trailing bytes are ignored (reserved for later versions).
    return HeartRateMeasurement(bpm=bpm, contact=contact, energy_expended_kj=energy,
                                rr_intervals_1024=rr, uint16=wide)


def encode_heart_rate_measurement(measurement: HeartRateMeasurement) -> bytes:
    m = measurement
    if not 0 <= m.bpm <= 0xFFFF:
        raise CodecError(f"{_WHAT}: heart rate {m.bpm} bpm does not fit in uint16")
    wide = m.uint16 or m.bpm > 0xFF
    flags = FLAG_UINT16 if wide else 0
    if m.contact is SensorContact.DETECTED:
        flags |= FLAG_CONTACT_SUPPORTED | FLAG_CONTACT_DETECTED
    elif m.contact is SensorContact.NOT_DETECTED:
        flags |= FLAG_CONTACT_SUPPORTED
    out = bytearray()
    out += m.bpm.to_bytes(2 if wide else 1, "little")
    if m.energy_expended_kj is not None:
        if not 0 <= m.energy_expended_kj <= 0xFFFF:
            raise CodecError(f"{_WHAT}: energy expended {m.energy_expended_kj} kJ does not "
                             "fit in uint16")
        flags |= FLAG_ENERGY_EXPENDED
        out += m.energy_expended_kj.to_bytes(2, "little")
    if m.rr_intervals_1024 is not None:
        flags |= FLAG_RR_INTERVALS
        for rr in m.rr_intervals_1024:
            if not 0 <= rr <= 0xFFFF:
                raise CodecError(f"{_WHAT}: RR-interval {rr}/1024 s does not fit in uint16")
            out += rr.to_bytes(2, "little")
    return bytes([flags]) + bytes(out)


def rr_interval_1024(bpm: float) -> int:
    """The RR-interval of a steady heart rate, in 1/1024 s (for the simulator)."""
    return min(0xFFFF, round(60 * RR_UNITS_PER_S / bpm)) if bpm > 0 else 0xFFFF


# --------------------------------------------------------------------------- the strap

HeartRateListener = Callable[[float, int | None], None]
"""``(time_s, bpm)``; ``bpm`` is ``None`` for a reading without skin contact."""


class HeartRateStrap:
    """A heart-rate strap on a :class:`retrotread.gatt.Link`: connect, subscribe, listen.

    Notifications that cannot be decoded are logged and skipped (a strap sends one a
    second; the watchdog's "signal lost" rule covers a strap that sends only garbage).
    A lost link is logged; the heart-rate rule sees the readings stop.
    """

    def __init__(self, link: gatt.Link, clock: Clock,
                 listener: HeartRateListener | None = None) -> None:
        self.link = link
        self.clock = clock
        self.listeners: list[HeartRateListener] = [listener] if listener is not None else []
        self.last: HeartRateMeasurement | None = None
        self.last_time_s: float | None = None
        self.readings = 0
        """Valid notifications received (with or without contact)."""
        self.invalid = 0
        """Notifications that could not be decoded."""
        self._closing = False
        self._subscribed = False

    @property
    def description(self) -> str:
        return self.link.description

    @property
    def bpm(self) -> int | None:
        return self.last.reading if self.last is not None else None

    def add_listener(self, listener: HeartRateListener) -> None:
        self.listeners.append(listener)

    async def connect(self) -> None:
        """Connect the link, check it is a heart-rate sensor, and subscribe to 0x2A37.

        Raises :class:`~retrotread.errors.LinkError` (or a subclass) or
        :class:`~retrotread.errors.GattError`; the link is closed again on failure."""
        self._closing = False
        try:
            await self.link.connect()
            services = await self.link.discover()
            if not any(service.characteristic(gatt.HEART_RATE_MEASUREMENT)
                       for service in services):
                raise GattError(
                    f"{self.link.description} has no Heart Rate Measurement (0x2A37): "
                    "is it a heart-rate strap (Heart Rate Service 0x180D)?",
                    gatt.ATT_ATTRIBUTE_NOT_FOUND)
            self.link.on_disconnect(self._on_disconnect)
            await self.link.subscribe(gatt.HEART_RATE_MEASUREMENT, self._on_notification)
            self._subscribed = True
        except BaseException:
            self._closing = True
            with contextlib.suppress(Exception):
                await self.link.close()
            raise

    def _on_notification(self, data: bytes) -> None:
        try:
            measurement = decode_heart_rate_measurement(data)
        except CodecError as exc:
            self.invalid += 1
            log.warning("%s: %s", self.link.description, exc)
            return
        now = self.clock.now()
        self.readings += 1
        self.last, self.last_time_s = measurement, now
        for listener in list(self.listeners):
            listener(now, measurement.reading)

    def _on_disconnect(self) -> None:
        if not self._closing:
            log.warning("%s: heart-rate strap link lost", self.link.description)

    async def close(self) -> None:
        self._closing = True
        if self._subscribed and self.link.is_connected:
            with contextlib.suppress(RetrotreadError, OSError, TimeoutError):
                await self.link.unsubscribe(gatt.HEART_RATE_MEASUREMENT)
        self._subscribed = False
        with contextlib.suppress(RetrotreadError, OSError, TimeoutError):
            await self.link.close()


async def connect_strap(link_factory: Callable[[], gatt.Link], clock: Clock,
                        listener: HeartRateListener) -> HeartRateStrap | None:
    """Open a strap for a workout; ``None`` (and a warning) when it cannot be reached."""
    strap = HeartRateStrap(link_factory(), clock, listener)
    try:
        await strap.connect()
    except (RetrotreadError, OSError, TimeoutError) as exc:
        log.warning("heart-rate strap not connected, continuing without it: %s", exc)
        return None
    return strap
