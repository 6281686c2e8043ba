"""A simulated Bluetooth heart-rate strap: Heart Rate Service 0x180D as a GattServer.

It notifies Heart Rate Measurement (0x2A37) once a second from a
:class:`~retrotread.sim.person.HeartModel`. Give it the simulated treadmill and it reads
the same person: the treadmill's own ``heart`` when the treadmill has one (so the strap
and Treadmill Data agree), otherwise a model of its own driven by the treadmill's belt
speed (a machine without a heart-rate sensor, the strap as the only source). The runner's
``follow_the_person`` tells it which way the person faces, like the treadmill.

Faults a test can set at any moment: ``contact_lost`` (the strap reports "no skin
contact"; so does the treadmill's ``faults.heart_rate_lost``, "the strap slipped"),
``silent`` (notifications stop, the link stays up), and :meth:`drop_links`. The
treadmill's ``faults.heart_rate_extra_bpm`` (an unfit day) applies to the strap too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from retrotread import gatt
from retrotread.clock import Clock, next_deadline, sleep_until_or_woken
from retrotread.envelope import Direction
from retrotread.errors import GattError
from retrotread.heart_rate import (
    BODY_SENSOR_LOCATION,
    HeartRateMeasurement,
    SensorContact,
    encode_heart_rate_measurement,
    rr_interval_1024,
)
from retrotread.sim.person import HeartModel
from retrotread.units import TIME_TOLERANCE_S

if TYPE_CHECKING:
    from retrotread.sim.treadmill import SimulatedTreadmill

BODY_SENSOR_CHEST = 1
ENERGY_EVERY = 10
"""The spec suggests sending Energy Expended once every 10 measurements."""


class SimulatedHeartRateStrap(gatt.GattServer):
    def __init__(
        self,
        clock: Clock,
        heart: HeartModel | None = None,
        *,
        treadmill: SimulatedTreadmill | None = None,
        speed_kmh: Callable[[], float] | None = None,
        interval_s: float = 1.0,
        name: str = "RT-SIM HRM",
    ) -> None:
        self.clock = clock
        self.treadmill = treadmill
        if heart is None:
            shared = treadmill.heart if treadmill is not None else None
            heart = shared if shared is not None else HeartModel()
        self.heart = heart
        self._speed = speed_kmh
        self.interval_s = interval_s
        self.name = name
        self.contact_lost = False
        self.silent = False
        self.energy_kj = 0.0
        self.connections: list[gatt.ServerConnection] = []
        self.sent: list[HeartRateMeasurement] = []
        self._count = 0
        self._last_s: float | None = None
        self._closed = False
        self._wakeup = asyncio.Event()
        self._services = (
            gatt.Service(gatt.HEART_RATE_SERVICE, (
                gatt.Characteristic(gatt.HEART_RATE_MEASUREMENT, frozenset({gatt.NOTIFY})),
                gatt.Characteristic(BODY_SENSOR_LOCATION, frozenset({gatt.READ})),
            )),
        )

    # ------------------------------------------------------------------ the person
    def speed_kmh(self) -> float:
        if self._speed is not None:
            return self._speed()
        if self.treadmill is not None:
            belt = self.treadmill.belt
            belt.advance_to(self.clock.now())
            return belt.speed_kmh
        return 0.0

    def person_faces(self, direction: Direction) -> None:
        self.heart.facing = direction

    def bpm(self) -> int:
        now = self.clock.now()
        if self.treadmill is not None:  # the same person: the same "unfit day"
            self.heart.extra_bpm = self.treadmill.faults.heart_rate_extra_bpm
        self.heart.advance_to(now, self.speed_kmh())
        return round(self.heart.bpm)

    def measurement(self) -> HeartRateMeasurement:
        now = self.clock.now()
        bpm = self.bpm()
        dt = now - self._last_s if self._last_s is not None else 0.0
        self._last_s = now
        self.energy_kj += max(0.0, dt) * bpm * 0.0015  # ~ a brisk walk at 110 bpm: 10 kJ/min
        self._count += 1
        slipped = self.treadmill is not None and self.treadmill.faults.heart_rate_lost
        if self.contact_lost or slipped:
            return HeartRateMeasurement(bpm=0, contact=SensorContact.NOT_DETECTED)
        energy = (min(0xFFFF, int(self.energy_kj)) if self._count % ENERGY_EVERY == 1
                  else None)
        return HeartRateMeasurement(bpm=bpm, contact=SensorContact.DETECTED,
                                    energy_expended_kj=energy,
                                    rr_intervals_1024=(rr_interval_1024(bpm),))

    # ------------------------------------------------------------------ GattServer
    @property
    def services(self) -> tuple[gatt.Service, ...]:
        return self._services

    def _char(self, uuid: str) -> gatt.Characteristic:
        char = self._services[0].characteristic(uuid)
        if char is None:
            raise GattError(f"no characteristic {uuid} on the simulated strap",
                            gatt.ATT_ATTRIBUTE_NOT_FOUND)
        return char

    def attach(self, connection: gatt.ServerConnection) -> None:
        self.connections.append(connection)

    def detach(self, connection: gatt.ServerConnection) -> None:
        connection.closed = True
        if connection in self.connections:
            self.connections.remove(connection)

    def read(self, connection: gatt.ServerConnection, uuid: str) -> bytes:
        char = self._char(uuid)
        if gatt.READ not in char.properties:
            raise GattError(f"characteristic {uuid} cannot be read", gatt.ATT_REQUEST_NOT_SUPPORTED)
        return bytes([BODY_SENSOR_CHEST])

    def write(self, connection: gatt.ServerConnection, uuid: str, data: bytes) -> None:
        self._char(uuid)
        raise GattError(f"characteristic {uuid} cannot be written", gatt.ATT_WRITE_NOT_PERMITTED)

    def set_subscription(self, connection: gatt.ServerConnection, uuid: str, enabled: bool) -> None:
        char = self._char(uuid)
        if gatt.NOTIFY not in char.properties:
            raise GattError(f"characteristic {uuid} has no notifications",
                            gatt.ATT_REQUEST_NOT_SUPPORTED)
        if enabled:
            connection.subscriptions.add(uuid)
        else:
            connection.subscriptions.discard(uuid)

    # ------------------------------------------------------------------ notifications
    def send_measurement(self) -> None:
        measurement = self.measurement()
        if self.silent:
            return
        self.sent.append(measurement)
        value = encode_heart_rate_measurement(measurement)
        for connection in list(self.connections):
            if not connection.closed and gatt.HEART_RATE_MEASUREMENT in connection.subscriptions:
                connection.notify(gatt.HEART_RATE_MEASUREMENT, value)

    def drop_links(self) -> None:
        """Every connected central loses its link (the strap is out of range)."""
        for connection in list(self.connections):
            connection.drop()
            self.detach(connection)

    async def run(self) -> None:
        """Notify once per ``interval_s`` (absolute deadlines) until closed or cancelled."""
        next_due = self.clock.now()
        while not self._closed:
            now = self.clock.now() + TIME_TOLERANCE_S
            if now >= next_due:
                self.send_measurement()
                next_due = next_deadline(next_due, now, self.interval_s)
            self._wakeup.clear()
            await sleep_until_or_woken(self.clock, next_due, self._wakeup)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
