"""A Bluetooth heart-rate strap (Heart Rate Service 0x180D) as a heart-rate source: the
Heart Rate Measurement codec, the strap over the loopback link and over the REAL
``bleak.BleakClient`` (tests/ble_fake.py), and heart-rate ceilings end to end with the
strap as the only source (the simulated treadmill sends no heart rate)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrotread import gatt
from retrotread.cli import main, parse_strap
from retrotread.clock import LoopClock
from retrotread.devices import DeviceSpec
from retrotread.envelope import Direction
from retrotread.errors import CodecError, DeviceSpecError, GattError, RetrotreadError
from retrotread.events import (
    CommandSent,
    Event,
    EventBus,
    Outcome,
    TelemetrySample,
    WatchdogAction,
)
from retrotread.heart_rate import (
    HeartRateMeasurement,
    HeartRateStrap,
    SensorContact,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
    rr_interval_1024,
)
from retrotread.links.ble import BleLink
from retrotread.links.loopback import LoopbackLink
from retrotread.profile import load_profile_text
from retrotread.runner import (
    LinkFactory,
    RunOptions,
    run_profile,
    run_workout,
    running_simulator,
)
from retrotread.session import Session
from retrotread.sim.person import HeartModel
from retrotread.sim.strap import SimulatedHeartRateStrap
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.watchdog import HEART_RATE_HOLD_S
from tests.ble_fake import FakeAir, FakePeripheral
from tests.test_heart_rate import BRISK
from tests.workout_harness import check_invariants, run_on_sim

VIRTUAL = pytest.mark.looptime(noop_cycles=1)
STRAP_ADDRESS = "C0:FF:EE:00:48:52"
STRAP_NAME = "RT-SIM HRM"


# =========================================================================== the codec
@pytest.mark.parametrize(("hex_value", "expected"), [
    # flags 0x06: uint8 value, sensor contact supported (bit 2) and detected (bit 1)
    ("0648", HeartRateMeasurement(72, SensorContact.DETECTED)),
    # contact supported, not detected: the value means nothing
    ("0448", HeartRateMeasurement(72, SensorContact.NOT_DETECTED)),
    # bits 1-2 = 0b00 or 0b01: contact not supported
    ("0048", HeartRateMeasurement(72, SensorContact.NOT_SUPPORTED)),
    ("0248", HeartRateMeasurement(72, SensorContact.NOT_SUPPORTED)),
    # uint16 value (bit 0): 0x012c = 300 bpm; 0x0048 = 72 bpm in the wide form
    ("012c01", HeartRateMeasurement(300, SensorContact.NOT_SUPPORTED, uint16=True)),
    ("074800", HeartRateMeasurement(72, SensorContact.DETECTED, uint16=True)),
    # 0x1e: energy (bit 3) and RR (bit 4); 4660 kJ; RR 1024/1024 s and 512/1024 s
    ("1e50341200040002", HeartRateMeasurement(80, SensorContact.DETECTED,
                                              energy_expended_kj=0x1234,
                                              rr_intervals_1024=(1024, 512))),
    # 0x11: uint16 value 90, RR 0x0355 = 853/1024 s (70 bpm would be 878)
    ("115a005503", HeartRateMeasurement(90, rr_intervals_1024=(853,), uint16=True)),
    # 0x08: energy only, 0 kJ (a reset)
    ("08640000", HeartRateMeasurement(100, energy_expended_kj=0)),
    # RR flagged but none follow (a strap that has not seen a beat yet)
    ("1648", HeartRateMeasurement(72, SensorContact.DETECTED, rr_intervals_1024=())),
    # reserved bits 5-7 and trailing bytes without RR are ignored
    ("e6480102", HeartRateMeasurement(72, SensorContact.DETECTED)),
])
def test_decode_hand_vectors(hex_value: str, expected: HeartRateMeasurement) -> None:
    assert decode_heart_rate_measurement(bytes.fromhex(hex_value)) == expected


def test_units_and_the_reading() -> None:
    m = decode_heart_rate_measurement(bytes.fromhex("1e50341200040002"))
    assert m.rr_intervals_s == (1.0, 0.5)
    assert m.reading == 80
    assert decode_heart_rate_measurement(bytes.fromhex("0448")).reading is None  # no contact
    assert decode_heart_rate_measurement(bytes.fromhex("0600")).reading is None  # zero
    assert decode_heart_rate_measurement(bytes.fromhex("0048")).reading == 72
    assert rr_interval_1024(60) == 1024
    assert rr_interval_1024(120) == 512


@pytest.mark.parametrize(("hex_value", "field"), [
    ("", "empty"),
    ("06", "heart rate"),
    ("0748", "heart rate"),  # uint16 flagged, one byte
    ("0e4834", "energy expended"),
    ("0e48", "energy expended"),
    ("164800", "RR-intervals"),  # an odd byte of RR
    ("1e483412000400", "RR-intervals"),  # energy, one RR, then half of another
])
def test_truncated_values_are_codec_errors(hex_value: str, field: str) -> None:
    with pytest.raises(CodecError, match="0x2A37") as info:
        decode_heart_rate_measurement(bytes.fromhex(hex_value))
    assert field.split()[0].lower() in str(info.value).lower()


def test_encode_hand_vectors() -> None:
    enc = encode_heart_rate_measurement
    assert enc(HeartRateMeasurement(72, SensorContact.DETECTED)).hex() == "0648"
    assert enc(HeartRateMeasurement(72, SensorContact.NOT_DETECTED)).hex() == "0448"
    assert enc(HeartRateMeasurement(300)).hex() == "012c01"  # widened on its own
    assert enc(HeartRateMeasurement(80, SensorContact.DETECTED, 0x1234,
                                    (1024, 512))).hex() == "1e50341200040002"
    for bad in (HeartRateMeasurement(-1), HeartRateMeasurement(0x10000),
                HeartRateMeasurement(70, energy_expended_kj=0x10000),
                HeartRateMeasurement(70, rr_intervals_1024=(0x10000,))):
        with pytest.raises(CodecError):
            enc(bad)


MEASUREMENTS = st.builds(
    HeartRateMeasurement,
    bpm=st.integers(0, 0xFFFF),
    contact=st.sampled_from(list(SensorContact)),
    energy_expended_kj=st.none() | st.integers(0, 0xFFFF),
    rr_intervals_1024=st.none() | st.lists(st.integers(0, 0xFFFF), max_size=9).map(tuple),
    uint16=st.booleans(),
)


@given(m=MEASUREMENTS)
def test_round_trip(m: HeartRateMeasurement) -> None:
    data = encode_heart_rate_measurement(m)
    decoded = decode_heart_rate_measurement(data)
    assert decoded == dataclasses.replace(m, uint16=m.uint16 or m.bpm > 0xFF)
    assert encode_heart_rate_measurement(decoded) == data


@given(raw=st.binary(max_size=24))
def test_decoder_fuzz_raises_only_codec_errors(raw: bytes) -> None:
    try:
        m = decode_heart_rate_measurement(raw)
    except CodecError:
        return
    assert 0 <= m.bpm <= 0xFFFF
    if raw[0] & 0x10 == 0:
        return
    flags = raw[0] & 0x1F  # reserved bits dropped
    if flags & 0x06 == 0x02:
        flags &= ~0x02  # "detected" without "supported" is "not supported"
    assert encode_heart_rate_measurement(m) == bytes([flags]) + raw[1:]


# =========================================================================== the strap
def strap_server(clock: LoopClock, **kwargs: object) -> SimulatedHeartRateStrap:
    return SimulatedHeartRateStrap(clock, HeartModel(), **kwargs)  # type: ignore[arg-type]


async def run_strap(strap: SimulatedHeartRateStrap) -> asyncio.Task[None]:
    return asyncio.ensure_future(strap.run())


async def stop(task: asyncio.Task[None], strap: SimulatedHeartRateStrap) -> None:
    strap.close()
    await task


@VIRTUAL
async def test_the_strap_over_the_loopback_link_reports_once_a_second() -> None:
    clock = LoopClock()
    server = strap_server(clock, speed_kmh=lambda: 5.0)
    task = await run_strap(server)
    readings: list[tuple[float, int | None]] = []
    strap = HeartRateStrap(LoopbackLink(server, "strap"), clock,
                           lambda t, bpm: readings.append((t, bpm)))
    await strap.connect()
    await asyncio.sleep(30.5)
    assert 29 <= len(readings) <= 31
    times = [t for t, _ in readings]
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(times))
    bpms = [bpm for _, bpm in readings if bpm is not None]
    assert len(bpms) == len(readings)
    assert bpms[-1] > bpms[0] + 20  # walking at 5 km/h: the heart rate rises
    assert strap.bpm == bpms[-1] and strap.last is not None
    assert strap.last.contact is SensorContact.DETECTED
    assert strap.last.rr_intervals_1024 == (rr_interval_1024(bpms[-1]),)
    await strap.close()
    assert not strap.link.is_connected
    assert not server.connections
    await stop(task, server)


@VIRTUAL
async def test_no_skin_contact_is_no_reading_and_garbage_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = LoopClock()
    server = strap_server(clock)
    task = await run_strap(server)
    readings: list[int | None] = []
    strap = HeartRateStrap(LoopbackLink(server), clock, lambda t, bpm: readings.append(bpm))
    await strap.connect()
    await asyncio.sleep(2.5)
    server.contact_lost = True
    await asyncio.sleep(2.0)
    assert readings[:2] == [70, 70] and readings[-2:] == [None, None]
    assert strap.bpm is None
    with caplog.at_level(logging.WARNING, logger="retrotread.heart_rate"):
        for connection in server.connections:
            connection.notify(gatt.HEART_RATE_MEASUREMENT, b"\x01\x48")  # uint16, 1 byte
        await asyncio.sleep(0.1)
    assert strap.invalid == 1 and "truncated" in caplog.text
    count = len(readings)
    server.contact_lost = False
    await asyncio.sleep(1.0)
    assert len(readings) == count + 1 and readings[-1] == 70
    await strap.close()
    await stop(task, server)


@VIRTUAL
async def test_a_device_without_heart_rate_measurement_is_refused() -> None:
    clock = LoopClock()
    treadmill = SimulatedTreadmill(clock)  # FTMS only, no 0x180D
    link = LoopbackLink(treadmill)
    strap = HeartRateStrap(link, clock)
    with pytest.raises(GattError, match="0x2A37"):
        await strap.connect()
    assert not link.is_connected and not treadmill.connections


@VIRTUAL
async def test_the_strap_reads_the_same_person_as_the_treadmill() -> None:
    clock = LoopClock()
    async with running_simulator(clock, "generic") as sim:
        server = SimulatedHeartRateStrap(clock, treadmill=sim)
        assert server.heart is sim.heart  # one person, one heart
        sim.belt.set_target(5.0)
        await asyncio.sleep(40)
        server.person_faces(Direction.BACKWARD)
        await asyncio.sleep(20)
        assert sim.heart.facing is Direction.BACKWARD
        data_bpm = sim.treadmill_data().heart_rate_bpm
        assert data_bpm is not None and data_bpm > 100
        assert server.measurement().bpm == data_bpm


@VIRTUAL
async def test_without_a_treadmill_sensor_the_strap_follows_the_belt() -> None:
    clock = LoopClock()
    async with running_simulator(clock, "generic", heart_rate=False) as sim:
        assert sim.heart is None and sim.treadmill_data().heart_rate_bpm is None
        server = SimulatedHeartRateStrap(clock, treadmill=sim)
        assert server.measurement().bpm == 70
        sim.belt.set_target(5.0)
        await asyncio.sleep(60)
        assert server.measurement().bpm > 110
        sim.faults.heart_rate_lost = True  # the strap slipped
        assert server.measurement().contact is SensorContact.NOT_DETECTED


# ------------------------------------------------------------------ over bleak
def air_with_strap(server: gatt.GattServer) -> FakeAir:
    air = FakeAir()
    air.add(FakePeripheral(address=STRAP_ADDRESS, name=STRAP_NAME, server=server,
                           service_uuids=[gatt.HEART_RATE_SERVICE]))
    return air


def ble(air: FakeAir, target: str) -> BleLink:
    return BleLink(target, scanner_backend=air.scanner_backend,
                   client_backend=air.client_backend, connect_timeout_s=5.0)


@VIRTUAL
@pytest.mark.parametrize("target", [STRAP_ADDRESS, STRAP_NAME])
async def test_the_strap_over_the_real_bleak_client(target: str) -> None:
    clock = LoopClock()
    async with running_simulator(clock, "generic") as sim:
        air = air_with_strap(server := SimulatedHeartRateStrap(clock, treadmill=sim))
        air.add_treadmill(sim)  # another device on the air: not picked by the name
        task = await run_strap(server)
        readings: list[int | None] = []
        link = ble(air, target)
        strap = HeartRateStrap(link, clock, lambda t, bpm: readings.append(bpm))
        await strap.connect()
        assert strap.description == f"ble:{STRAP_NAME}"
        peripheral = air.find(STRAP_ADDRESS)
        assert peripheral is not None
        assert peripheral.subscriptions == [(gatt.HEART_RATE_MEASUREMENT, "notify")]
        assert not sim.connections
        await asyncio.sleep(10.5)
        assert len(readings) >= 10 and readings[-1] == 70
        assert max(peripheral.notification_sizes) <= 20
        peripheral.drop_links()  # out of range: the link says so, readings stop
        await asyncio.sleep(0.1)
        assert not link.is_connected
        count = len(readings)
        await asyncio.sleep(3)
        assert len(readings) == count
        await strap.close()
        await stop(task, server)


# =========================================================================== end to end
@VIRTUAL
async def test_the_strap_alone_enforces_the_ceiling() -> None:
    profile = load_profile_text(BRISK.format(ceiling=110), "brisk.yaml")
    run = await run_on_sim(profile, heart_rate_in_treadmill_data=False, hr_strap=True)
    assert run.session.external_heart_rate
    assert run.sim.heart is None  # the treadmill knows no heart rate
    # The session log carries the strap's heart rate (the treadmill sends none).
    assert any(t.heart_rate_bpm for t in run.of(TelemetrySample))
    actions = [(e.trigger, e.action) for e in run.of(WatchdogAction)]
    assert ("heart_rate", "clamp") in actions
    assert ("heart_rate", "release") in actions
    assert run.result.outcome is Outcome.COMPLETED
    clamp = next(e for e in run.of(WatchdogAction) if e.action == "clamp")
    after = [c.speed_kmh for c in run.of(CommandSent)
             if c.op == "SetTargetSpeed" and clamp.time_s < c.time_s < clamp.time_s + 15]
    assert after and min(after) == pytest.approx(run.session.floor_kmh)
    strap = run.extra["strap"]
    assert max(m.bpm for m in strap.sent) > 110
    assert not strap.connections  # closed at the end
    check_invariants(run)


@VIRTUAL
async def test_without_the_strap_there_is_nothing_to_limit() -> None:
    profile = load_profile_text(BRISK.format(ceiling=110), "brisk.yaml")
    run = await run_on_sim(profile, heart_rate_in_treadmill_data=False)
    assert not run.session.external_heart_rate
    assert not [e for e in run.of(WatchdogAction) if e.trigger.startswith("heart_rate")]
    assert run.result.outcome is Outcome.COMPLETED


@VIRTUAL
async def test_a_heart_rate_that_stays_above_stops_the_workout_through_the_strap() -> None:
    profile = load_profile_text(BRISK.format(ceiling=110), "brisk.yaml")

    async def unfit_day(sim: SimulatedTreadmill, session: Session) -> None:
        sim.faults.heart_rate_extra_bpm = 60

    run = await run_on_sim(profile, scenario=unfit_day, heart_rate_in_treadmill_data=False,
                           hr_strap=True)
    assert run.result.outcome is Outcome.WATCHDOG
    events = [e for e in run.of(WatchdogAction) if e.trigger == "heart_rate"]
    assert events[0].action == "clamp" and events[-1].action == "stop"
    assert events[-1].time_s - events[0].time_s == pytest.approx(HEART_RATE_HOLD_S, abs=1.5)
    check_invariants(run)


@VIRTUAL
async def test_a_strap_without_skin_contact_is_a_lost_signal() -> None:
    profile = load_profile_text(BRISK.format(ceiling=170), "brisk.yaml")

    async def strap_slips(sim: SimulatedTreadmill, session: Session) -> None:
        await asyncio.sleep(60)
        sim.faults.heart_rate_lost = True  # the simulated strap reports "no contact"

    run = await run_on_sim(profile, scenario=strap_slips, heart_rate_in_treadmill_data=False,
                           hr_strap=True)
    assert run.result.outcome is Outcome.WATCHDOG
    assert "heart_rate_lost" in run.watchdog_triggers()
    check_invariants(run)


@VIRTUAL
async def test_a_strap_that_cannot_connect_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    profile = load_profile_text(BRISK.format(ceiling=110), "brisk.yaml")
    clock = LoopClock()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    sessions: list[Session] = []
    async with running_simulator(clock, "generic") as sim:
        with caplog.at_level(logging.WARNING, logger="retrotread.heart_rate"):
            result = await run_profile(
                profile,
                link_factory=LinkFactory(DeviceSpec("sim", "generic"), sim),
                clock=clock, bus=bus, simulated=True, on_session=sessions.append,
                heart_rate_link_factory=lambda: ble(FakeAir(), STRAP_ADDRESS),
            )
    assert "heart-rate strap not connected" in caplog.text
    assert result.outcome is Outcome.COMPLETED
    assert not sessions[0].external_heart_rate
    # Treadmill Data's heart rate is still the source, and the ceiling still acts.
    assert ("heart_rate", "clamp") in [(e.trigger, e.action) for e in events
                                       if isinstance(e, WatchdogAction)]


@VIRTUAL
async def test_treadmill_and_strap_both_over_bluetooth() -> None:
    profile = load_profile_text(BRISK.format(ceiling=110), "brisk.yaml")
    clock = LoopClock()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    sessions: list[Session] = []
    async with running_simulator(clock, "generic", heart_rate=False) as sim:
        server = SimulatedHeartRateStrap(clock, treadmill=sim)
        air = air_with_strap(server)
        air.add_treadmill(sim)
        task = await run_strap(server)
        result = await run_profile(
            profile,
            link_factory=lambda: ble(air, "C0:FF:EE:00:00:01"),
            clock=clock, bus=bus, simulated=True, on_session=sessions.append,
            heart_rate_link_factory=lambda: ble(air, STRAP_NAME),
        )
        await stop(task, server)
    assert result.outcome is Outcome.COMPLETED
    assert sessions[0].external_heart_rate
    actions = [(e.trigger, e.action) for e in events if isinstance(e, WatchdogAction)]
    assert ("heart_rate", "clamp") in actions
    strap_peripheral = air.find(STRAP_ADDRESS)
    assert strap_peripheral is not None and not strap_peripheral.connected


# =========================================================================== the CLI
def test_parse_strap() -> None:
    assert parse_strap("sim") == DeviceSpec("sim", "strap")
    assert parse_strap("ble:Polar H10 12345") == DeviceSpec("ble", "Polar H10 12345")
    for bad in ("dircon://127.0.0.1:1", "polar", "ble:"):
        with pytest.raises(DeviceSpecError):
            parse_strap(bad)


def test_run_refuses_a_bad_strap(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    profile = tmp_path / "brisk.yaml"
    profile.write_text(BRISK.format(ceiling=110))
    assert main(["run", str(profile), "--hr-strap", "polar", "--no-ui"]) == 2  # bad input
    assert "--hr-strap" in capsys.readouterr().err


@VIRTUAL
async def test_run_workout_with_a_simulated_strap(tmp_path: Path) -> None:
    profile = tmp_path / "brisk.yaml"
    profile.write_text(BRISK.format(ceiling=110))
    out = io.StringIO()
    options = RunOptions(device=DeviceSpec("sim", "generic"), ui=False, bell=False,
                         log_path=tmp_path / "log.jsonl", out=out,
                         hr_strap=DeviceSpec("sim", "strap"))
    assert await run_workout(profile, options) == 0
    text = out.getvalue()
    assert "heart rate: strap (simulated)" in text
    log_text = (tmp_path / "log.jsonl").read_text()
    assert '"heart_rate"' in log_text  # the watchdog's heart-rate clamp is in the log


async def test_a_simulated_strap_needs_the_simulated_treadmill(tmp_path: Path) -> None:
    profile = tmp_path / "brisk.yaml"
    profile.write_text(BRISK.format(ceiling=110))
    options = RunOptions(device=DeviceSpec("ble", "Treadmill"), ui=False,
                         log_path=tmp_path / "log.jsonl", out=io.StringIO(),
                         hr_strap=DeviceSpec("sim", "strap"))
    with pytest.raises(RetrotreadError, match="--hr-strap sim only works with the simulator"):
        await run_workout(profile, options)
