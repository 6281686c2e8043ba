"""The simulated treadmill: belt physics + the FTMS server state machine + faults.

It implements :class:`retrotread.gatt.GattServer`, so any link (in-process, DIRCON over
TCP) can reach it, and it runs on an injected clock, so a test can run an hour of belt
time in well under a second. :meth:`SimulatedTreadmill.run` is its only task: it sends
Treadmill Data at a fixed rate (split into notifications of at most 20 bytes, as a radio
with the default MTU must) and delivers scheduled control point replies. Without an event
loop, :meth:`SimulatedTreadmill.advance_to` and :meth:`SimulatedTreadmill.next_due_s` do
the same from a plain loop (retrotread/sim/stepped.py).

Console actions (speed +/-, stop, start, safety key) and faults (telemetry stops, link
drops, late or missing replies, refused commands, a runaway belt, km/h read as mph) are
methods and attributes a test can use at any time.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from retrotread import gatt
from retrotread.clock import Clock, next_deadline, sleep_until_or_woken
from retrotread.envelope import Direction
from retrotread.errors import CodecError, GattError, LinkClosedError, UnsupportedOpCodeError
from retrotread.ftms import codec
from retrotread.sim.belt import Belt
from retrotread.sim.person import HeartModel
from retrotread.sim.presets import PRESETS, MachinePreset, Quirk
from retrotread.units import KMH_PER_MPH, TIME_TOLERANCE_S

log = logging.getLogger(__name__)

MAX_NOTIFICATION_BYTES = 20  # ATT_MTU 23 - 3

_ENERGY_RATES = frozenset({"energy_per_hour_kcal", "energy_per_minute_kcal"})
"""Sent as "Data Not Available" in Treadmill Data (the simulator does not model them)."""


class MachineState(enum.StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    SAFETY_STOP = "safety_stop"


_TRAINING_STATUS = {
    MachineState.IDLE: codec.TrainingStatus(codec.TrainingStatusCode.IDLE),
    MachineState.RUNNING: codec.TrainingStatus(codec.TrainingStatusCode.MANUAL_MODE),
    MachineState.PAUSED: codec.TrainingStatus(codec.TrainingStatusCode.IDLE),
    MachineState.STOPPED: codec.TrainingStatus(codec.TrainingStatusCode.POST_WORKOUT),
    MachineState.SAFETY_STOP: codec.TrainingStatus(codec.TrainingStatusCode.IDLE),
}
"""The Training Status each state reports (frozen values: made once)."""


@dataclass
class Faults:
    """Faults a test can inject at any moment (all off by default)."""

    telemetry_stopped: bool = False
    """Treadmill Data notifications stop; the link stays up (a silent machine)."""
    reply_delay_s: float | None = None
    """Control point replies arrive this late (overrides the preset)."""
    replies_lost: bool = False
    """Control point writes are accepted but no reply ever comes."""
    refuse_commands: codec.ResultCode | None = None
    """Every control point request except Request Control gets this result."""
    runaway_kmh: float | None = None
    """The belt runs to this speed on its own and ignores speed commands."""
    kmh_read_as_mph: bool = False
    """Set Target Speed values are read as mph (so the belt runs 1.609 times too fast)."""
    ignore_speed_commands: bool = False
    """Set Target Speed is answered "success" and nothing changes."""
    heart_rate_lost: bool = False
    """Treadmill Data stops carrying the heart rate (the strap slipped)."""
    heart_rate_extra_bpm: float = 0.0
    """The simulated person's heart rate runs this much higher (an unfit day)."""
    refuse_connections: bool = False
    """New connections are refused (the machine is out of reach); existing ones stay."""


@dataclass(order=True)
class _Scheduled:
    due_s: float
    seq: int
    action: Callable[[], None]


class SimulatedTreadmill(gatt.GattServer):
    def __init__(
        self,
        clock: Clock,
        preset: MachinePreset | str = "generic",
        *,
        telemetry_interval_s: float = 1.0,
        speed_noise_kmh: float = 0.0,
        seed: int = 0,
        serial_number: str = "RT-SIM-0001",
        max_notification_bytes: int = MAX_NOTIFICATION_BYTES,
        heart_rate: bool = True,
    ) -> None:
        self.clock = clock
        self.preset = PRESETS[preset] if isinstance(preset, str) else preset
        self.telemetry_interval_s = telemetry_interval_s
        self.serial_number = serial_number
        self.max_notification_bytes = max_notification_bytes
        self.faults = Faults()
        self.heart: HeartModel | None = HeartModel() if heart_rate else None
        """The simulated person's heart rate, sent in Treadmill Data (None: no sensor)."""
        self.belt = Belt(
            acceleration_kmh_per_s=self.preset.acceleration_kmh_per_s,
            deceleration_kmh_per_s=self.preset.deceleration_kmh_per_s,
            noise_kmh=speed_noise_kmh,
            seed=seed,
        )
        self.state = MachineState.IDLE
        self.target_kmh = 0.0
        """The target speed the machine holds (what Set Target Speed set)."""
        self.safety_key_in = True
        self.connections: list[gatt.ServerConnection] = []
        self.controller: gatt.ServerConnection | None = None
        self.requests: list[codec.ControlPointRequest] = []
        """Every control point request decoded, in order (for tests and benchmarks)."""
        self.request_times: list[float] = []
        self.request_listeners: list[Callable[[float, codec.ControlPointRequest], None]] = []
        """Called with every decoded control point request (``retrotread sim -v``)."""
        self.status_sent: list[codec.MachineStatus] = []
        self.replies_delivered: list[tuple[float, codec.ControlPointRequest | None,
                                           codec.ControlPointResponse]] = []
        """Every control point reply that reached a connected central, with its request."""
        self.notifications_sent = 0
        self._pending: dict[int, bool] = {}  # id(connection) -> a procedure is pending
        self._schedule: list[_Scheduled] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()  # (binds to a loop only when awaited)
        self._next_telemetry_s: float | None = None  # None: starts on the first advance_to
        self._started_at: float | None = None
        self._elapsed_base_s = 0.0
        self._closed = False
        self._services = self._build_services()
        self._chars = {char.uuid: char for service in self._services
                       for char in service.characteristics}

    # ------------------------------------------------------------------ GATT table
    def _build_services(self) -> tuple[gatt.Service, ...]:
        r, w, n, i = gatt.READ, gatt.WRITE, gatt.NOTIFY, gatt.INDICATE
        chars = [
            gatt.Characteristic(gatt.FITNESS_MACHINE_FEATURE, frozenset({r})),
            gatt.Characteristic(gatt.TREADMILL_DATA, frozenset({n})),
            gatt.Characteristic(gatt.TRAINING_STATUS, frozenset({r, n})),
            gatt.Characteristic(gatt.SUPPORTED_SPEED_RANGE, frozenset({r})),
            gatt.Characteristic(gatt.FITNESS_MACHINE_CONTROL_POINT, frozenset({w, i})),
            gatt.Characteristic(gatt.FITNESS_MACHINE_STATUS, frozenset({n})),
        ]
        if self.preset.has_incline:
            chars.insert(4, gatt.Characteristic(gatt.SUPPORTED_INCLINATION_RANGE, frozenset({r})))
        info = [
            gatt.Characteristic(gatt.MANUFACTURER_NAME, frozenset({r})),
            gatt.Characteristic(gatt.MODEL_NUMBER, frozenset({r})),
            gatt.Characteristic(gatt.SERIAL_NUMBER, frozenset({r})),
        ]
        return (
            gatt.Service(gatt.FITNESS_MACHINE_SERVICE, tuple(chars)),
            gatt.Service(gatt.DEVICE_INFORMATION_SERVICE, tuple(info)),
        )

    @property
    def services(self) -> tuple[gatt.Service, ...]:
        return self._services

    def _char(self, uuid: str) -> gatt.Characteristic:
        char = self._chars.get(uuid)
        if char is not None:
            return char
        raise GattError(f"no characteristic {uuid} on the simulated treadmill",
                        gatt.ATT_ATTRIBUTE_NOT_FOUND)

    # ------------------------------------------------------------------ values
    @property
    def feature(self) -> codec.FitnessMachineFeature:
        mf = codec.MachineFeature
        machine = (mf.AVERAGE_SPEED | mf.TOTAL_DISTANCE | mf.ELEVATION_GAIN
                   | mf.EXPENDED_ENERGY | mf.ELAPSED_TIME)
        if self.heart is not None:
            machine |= mf.HEART_RATE
        target = codec.TargetSettingFeature.SPEED
        if self.preset.has_incline:
            machine |= mf.INCLINATION
            target |= codec.TargetSettingFeature.INCLINATION
        return codec.FitnessMachineFeature(machine=machine, target=target)

    @property
    def speed_range(self) -> codec.SpeedRange:
        p = self.preset
        return codec.SpeedRange(min_kmh=p.min_kmh, max_kmh=p.max_kmh, increment_kmh=p.increment_kmh)

    @property
    def real_min_kmh(self) -> float:
        extra = 0.5 if Quirk.MIN_SPEED_ABOVE_ADVERTISED in self.preset.quirks else 0.0
        return self.preset.min_kmh + extra

    def training_status(self) -> codec.TrainingStatus:
        return _TRAINING_STATUS[self.state]

    def elapsed_s(self) -> int:
        now = self.clock.now()
        running = now - self._started_at if self._started_at is not None else 0.0
        return int(self._elapsed_base_s + running)

    def treadmill_data(self) -> codec.TreadmillData:
        now = self.clock.now()
        belt, heart, faults = self.belt, self.heart, self.faults
        belt.advance_to(now)
        speed = round(belt.measured_kmh(), 2)
        moving = belt.moving_time_s
        distance = belt.distance_m
        average = round(distance * 3.6 / moving, 2) if moving > 0 else 0.0
        energy = min(int(distance * 0.06), 0xFFFE)  # ~60 kcal per km walking
        heart_rate = None
        if heart is not None:
            heart.extra_bpm = faults.heart_rate_extra_bpm
            heart.advance_to(now, belt.speed_kmh)
            if not faults.heart_rate_lost:
                heart_rate = round(heart.bpm)
        return codec.TreadmillData.from_values({
            "heart_rate_bpm": heart_rate,
            "speed_kmh": speed,
            "average_speed_kmh": min(average, 655.35),
            "total_distance_m": int(distance),
            "inclination_pct": 0.0,
            "ramp_angle_deg": 0.0,
            "positive_elevation_gain_m": 0.0,
            "negative_elevation_gain_m": 0.0,
            "total_energy_kcal": energy,
            "unavailable": _ENERGY_RATES,
            "elapsed_time_s": min(self.elapsed_s(), 0xFFFF),
        })

    # ------------------------------------------------------------------ GattServer
    def attach(self, connection: gatt.ServerConnection) -> None:
        if self.faults.refuse_connections:
            connection.closed = True
            raise LinkClosedError("the simulated treadmill refuses connections (out of reach)")
        self.connections.append(connection)

    def detach(self, connection: gatt.ServerConnection) -> None:
        connection.closed = True
        if connection in self.connections:
            self.connections.remove(connection)
        self._pending.pop(id(connection), None)
        if self.controller is connection:
            self.controller = None
            stops = Quirk.STOPS_ON_DISCONNECT in self.preset.quirks
            if stops and self.state is MachineState.RUNNING:
                self._stop(codec.StopPause.STOP, notify=True)

    def read(self, connection: gatt.ServerConnection, uuid: str) -> bytes:
        char = self._char(uuid)
        if gatt.READ not in char.properties:
            raise GattError(f"characteristic {uuid} cannot be read", gatt.ATT_REQUEST_NOT_SUPPORTED)
        values: dict[str, Callable[[], bytes]] = {
            gatt.FITNESS_MACHINE_FEATURE: lambda: codec.encode_feature(self.feature),
            gatt.TRAINING_STATUS: lambda: codec.encode_training_status(self.training_status()),
            gatt.SUPPORTED_SPEED_RANGE: lambda: codec.encode_speed_range(self.speed_range),
            gatt.SUPPORTED_INCLINATION_RANGE: lambda: codec.encode_inclination_range(
                codec.InclinationRange(min_pct=0.0, max_pct=12.0, increment_pct=0.5)),
            gatt.MANUFACTURER_NAME: lambda: self.preset.manufacturer.encode(),
            gatt.MODEL_NUMBER: lambda: self.preset.model.encode(),
            gatt.SERIAL_NUMBER: lambda: self.serial_number.encode(),
        }
        return values[uuid]()

    def set_subscription(self, connection: gatt.ServerConnection, uuid: str, enabled: bool) -> None:
        char = self._char(uuid)
        if not char.properties & {gatt.NOTIFY, gatt.INDICATE}:
            raise GattError(f"characteristic {uuid} has no notifications",
                            gatt.ATT_REQUEST_NOT_SUPPORTED)
        if enabled:
            connection.subscriptions.add(uuid)
        else:
            connection.subscriptions.discard(uuid)

    def write(self, connection: gatt.ServerConnection, uuid: str, data: bytes) -> None:
        char = self._char(uuid)
        if gatt.WRITE not in char.properties:
            raise GattError(f"characteristic {uuid} cannot be written",
                            gatt.ATT_WRITE_NOT_PERMITTED)
        if gatt.FITNESS_MACHINE_CONTROL_POINT not in connection.subscriptions:
            raise GattError("enable control point indications before writing to it",
                            gatt.ATT_CCCD_IMPROPERLY_CONFIGURED)
        if self._pending.get(id(connection)):
            raise GattError("a control point procedure is already in progress",
                            gatt.ATT_PROCEDURE_ALREADY_IN_PROGRESS)
        self.belt.advance_to(self.clock.now())
        decoded_before = len(self.requests)
        response = self._handle_control_point(connection, data)
        request = self.requests[-1] if len(self.requests) > decoded_before else None
        if self.faults.replies_lost:
            return  # the write is acknowledged, no indication ever follows
        delay = self.faults.reply_delay_s
        if delay is None:
            delay = 0.8 if Quirk.SLOW_REPLIES in self.preset.quirks else self.preset.reply_delay_s
        self._pending[id(connection)] = True

        def deliver() -> None:
            self._pending.pop(id(connection), None)
            if not connection.closed and (
                    gatt.FITNESS_MACHINE_CONTROL_POINT in connection.subscriptions):
                self.replies_delivered.append((self.clock.now(), request, response))
                self._send(connection, gatt.FITNESS_MACHINE_CONTROL_POINT,
                           codec.encode_control_point_response(response))

        self._call_at(self.clock.now() + delay, deliver)

    # ------------------------------------------------------------------ control point
    def _handle_control_point(
        self, connection: gatt.ServerConnection, data: bytes
    ) -> codec.ControlPointResponse:
        result = codec.ResultCode
        op_code = data[0] if data else 0
        try:
            request = codec.decode_control_point(data)
        except UnsupportedOpCodeError:
            return codec.ControlPointResponse(op_code, result.OP_CODE_NOT_SUPPORTED)
        except CodecError as exc:
            log.info("simulator: invalid control point write %s: %s", data.hex(), exc)
            return codec.ControlPointResponse(op_code, result.INVALID_PARAMETER)
        self.requests.append(request)
        self.request_times.append(self.clock.now())
        for listener in list(self.request_listeners):
            listener(self.clock.now(), request)
        op = request.op
        if isinstance(request, codec.RequestControl):
            if self.controller is not None and self.controller is not connection:
                return codec.ControlPointResponse(op, result.CONTROL_NOT_PERMITTED)
            self.controller = connection
            return codec.ControlPointResponse(op, result.SUCCESS)
        if self.controller is not connection:
            return codec.ControlPointResponse(op, result.CONTROL_NOT_PERMITTED)
        if self.faults.refuse_commands is not None:
            return codec.ControlPointResponse(op, self.faults.refuse_commands)
        if not self.safety_key_in and not isinstance(request, codec.StopOrPause | codec.Reset):
            return codec.ControlPointResponse(op, result.OPERATION_FAILED)
        match request:
            case codec.Reset():
                self._stop(codec.StopPause.STOP, notify=False)
                self.state = MachineState.IDLE
                self.target_kmh = 0.0
                self._elapsed_base_s = 0.0
                self.controller = None
                self._broadcast_status(codec.StatusReset())
            case codec.SetTargetSpeed(speed_kmh=speed):
                return self._set_target_speed(speed)
            case codec.SetTargetInclination(inclination_pct=incline):
                if not self.preset.has_incline:
                    return codec.ControlPointResponse(op, result.OP_CODE_NOT_SUPPORTED)
                if not 0.0 <= incline <= 12.0:
                    return codec.ControlPointResponse(op, result.INVALID_PARAMETER)
                self._broadcast_status(codec.TargetInclineChanged(inclination_pct=incline))
            case codec.StartOrResume():
                self._start()
            case codec.StopOrPause(action=action):
                self._stop(action, notify=True)
            case _:
                return codec.ControlPointResponse(op, result.OP_CODE_NOT_SUPPORTED)
        return codec.ControlPointResponse(op, result.SUCCESS)

    def _set_target_speed(self, speed_kmh: float) -> codec.ControlPointResponse:
        op = codec.ControlPointOp.SET_TARGET_SPEED
        result = codec.ResultCode
        if speed_kmh < self.real_min_kmh - 1e-9 or speed_kmh > self.preset.max_kmh + 1e-9:
            return codec.ControlPointResponse(op, result.INVALID_PARAMETER)
        if self.faults.ignore_speed_commands:
            return codec.ControlPointResponse(op, result.SUCCESS)
        if (Quirk.MUST_START_BEFORE_SPEED in self.preset.quirks
                and self.state is not MachineState.RUNNING):
            return codec.ControlPointResponse(op, result.SUCCESS)  # ignored, as reported
        actual = speed_kmh * KMH_PER_MPH if self.faults.kmh_read_as_mph else speed_kmh
        actual = min(actual, self.preset.max_kmh)
        self.target_kmh = round(actual, 2)
        if self.state is MachineState.RUNNING:
            self._apply_belt_target()
        self._broadcast_status(codec.TargetSpeedChanged(speed_kmh=round(speed_kmh, 2)))
        return codec.ControlPointResponse(op, result.SUCCESS)

    def _apply_belt_target(self) -> None:
        target = self.faults.runaway_kmh if self.faults.runaway_kmh is not None else self.target_kmh
        self.belt.set_target(target)

    def _start(self) -> None:
        if self.state is MachineState.RUNNING:
            if Quirk.START_TOGGLES_PAUSE in self.preset.quirks:
                self._stop(codec.StopPause.PAUSE, notify=True)
            return
        if self.target_kmh <= 0 or Quirk.START_AT_OWN_MINIMUM in self.preset.quirks:
            self.target_kmh = self.real_min_kmh
        self.state = MachineState.RUNNING
        self._started_at = self.clock.now()
        self._apply_belt_target()
        self._broadcast_status(codec.StartedOrResumedByUser())

    def _stop(self, action: codec.StopPause, *, notify: bool, emergency: bool = False) -> None:
        if action is codec.StopPause.PAUSE and Quirk.IGNORES_PAUSE in self.preset.quirks:
            action = codec.StopPause.STOP
        if self._started_at is not None:
            self._elapsed_base_s += self.clock.now() - self._started_at
            self._started_at = None
        self.belt.advance_to(self.clock.now())
        self.belt.set_target(0.0, emergency=emergency)
        if action is codec.StopPause.STOP:
            self.state = MachineState.STOPPED
            self.target_kmh = 0.0
            if (Quirk.REQUEST_CONTROL_AFTER_STOP in self.preset.quirks
                    and self.controller is not None):
                self.controller = None
                self._broadcast_status(codec.ControlPermissionLost())
        else:
            self.state = MachineState.PAUSED
        if notify:
            self._broadcast_status(codec.StoppedOrPausedByUser(action=action))

    def person_faces(self, direction: Direction) -> None:
        """The person turned around (the runner follows the session's turnarounds)."""
        if self.heart is not None:
            self.heart.facing = direction

    # ------------------------------------------------------------------ console
    def stop_acknowledged_after(self, time_s: float = float("-inf")) -> bool:
        """Whether a Stop sent at or after ``time_s`` was answered "success" to a central
        that was still connected."""
        return any(
            t >= time_s and isinstance(request, codec.StopOrPause)
            and request.action is codec.StopPause.STOP
            and response.result == codec.ResultCode.SUCCESS
            for t, request, response in self.replies_delivered)

    def console_speed_up(self, step_kmh: float = 0.5) -> None:
        """Someone presses + on the console (only acts on a running belt)."""
        if self.state is MachineState.RUNNING:
            self._console_set(min(self.preset.max_kmh, self.target_kmh + step_kmh))

    def console_speed_down(self, step_kmh: float = 0.5) -> None:
        if self.state is MachineState.RUNNING:
            self._console_set(max(self.real_min_kmh, self.target_kmh - step_kmh))

    def _console_set(self, speed_kmh: float) -> None:
        self.belt.advance_to(self.clock.now())
        self.target_kmh = round(speed_kmh, 2)
        self._apply_belt_target()
        self._broadcast_status(codec.TargetSpeedChanged(speed_kmh=self.target_kmh))

    def console_stop(self) -> None:
        if self.state in (MachineState.RUNNING, MachineState.PAUSED):
            self._stop(codec.StopPause.STOP, notify=True)

    def console_start(self) -> None:
        if self.safety_key_in and self.state is not MachineState.RUNNING:
            self._start()

    def pull_safety_key(self) -> None:
        """The clip comes off: the belt stops hard and the machine refuses to restart."""
        self.safety_key_in = False
        self._stop(codec.StopPause.STOP, notify=False, emergency=True)
        self.state = MachineState.SAFETY_STOP
        self._broadcast_status(codec.StoppedBySafetyKey())

    def insert_safety_key(self) -> None:
        self.safety_key_in = True
        if self.state is MachineState.SAFETY_STOP:
            self.state = MachineState.IDLE

    # ------------------------------------------------------------------ faults
    def drop_links(self) -> None:
        """Every connected central loses its link (radio out of range, cable pulled)."""
        for connection in list(self.connections):
            connection.drop()
            self.detach(connection)

    def start_runaway(self, speed_kmh: float = 22.0) -> None:
        self.belt.advance_to(self.clock.now())
        self.faults.runaway_kmh = min(speed_kmh, self.preset.max_kmh)
        if self.state is not MachineState.RUNNING:
            self.state = MachineState.RUNNING
            self._started_at = self.clock.now()
        self._apply_belt_target()

    # ------------------------------------------------------------------ notifications
    def _send(self, connection: gatt.ServerConnection, uuid: str, value: bytes) -> None:
        if connection.closed or uuid not in connection.subscriptions:
            return
        self.notifications_sent += 1
        connection.notify(uuid, value)

    def subscribed(self, uuid: str) -> bool:
        """Whether a connected central listens to ``uuid`` (no one: nothing to encode)."""
        for connection in self.connections:
            if not connection.closed and uuid in connection.subscriptions:
                return True
        return False

    def _broadcast(self, uuid: str, value: bytes) -> None:
        for connection in list(self.connections):
            self._send(connection, uuid, value)

    def _broadcast_status(self, status: codec.MachineStatus) -> None:
        self.status_sent.append(status)
        self._broadcast(gatt.FITNESS_MACHINE_STATUS, codec.encode_status(status))
        if self.subscribed(gatt.TRAINING_STATUS):
            self._broadcast(gatt.TRAINING_STATUS,
                            codec.encode_training_status(self.training_status()))

    def send_telemetry(self) -> None:
        if self.faults.telemetry_stopped:
            return
        self.broadcast_treadmill_data(self.treadmill_data())

    def broadcast_treadmill_data(self, record: codec.TreadmillData) -> None:
        """Notify ``record`` to every subscriber, split to fit the notification size."""
        for packet in codec.split_treadmill_data(record, max_len=self.max_notification_bytes):
            self._broadcast(gatt.TREADMILL_DATA, packet)

    # ------------------------------------------------------------------ scheduling
    def _call_at(self, due_s: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._schedule, _Scheduled(due_s, next(self._seq), action))
        self._wakeup.set()

    def advance_to(self, now: float) -> None:
        """Do everything due at or before ``now``: scheduled actions (control point
        replies) in time order, then Treadmill Data if its time has come. The clock must
        read ``now``; a plain loop advances in steps of at most :meth:`next_due_s`, an
        event loop calls this whenever it wakes (:meth:`run`)."""
        # A microsecond of tolerance: a virtual clock (looptime) quantizes time, so a
        # deadline such as 0.1 + 0.05 may never be reached exactly.
        if self._next_telemetry_s is None:
            self._next_telemetry_s = now
        now += TIME_TOLERANCE_S
        schedule = self._schedule
        while schedule and schedule[0].due_s <= now:
            heapq.heappop(schedule).action()
        if now >= self._next_telemetry_s:
            self.send_telemetry()
            self._next_telemetry_s = next_deadline(self._next_telemetry_s, now,
                                                   self.telemetry_interval_s)

    def next_due_s(self) -> float:
        """When :meth:`advance_to` next has something to do (the clock's time if it has
        not started yet)."""
        due = self.clock.now() if self._next_telemetry_s is None else self._next_telemetry_s
        if self._schedule:
            return min(due, self._schedule[0].due_s)
        return due

    async def run(self) -> None:
        """Send telemetry at a fixed rate and deliver scheduled replies until cancelled."""
        while not self._closed:
            self.advance_to(self.clock.now())
            self._wakeup.clear()
            await sleep_until_or_woken(self.clock, self.next_due_s(), self._wakeup)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
