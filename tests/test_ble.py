"""The BLE link through the REAL ``bleak.BleakClient``/``BleakScanner`` with a fake
backend (tests/ble_fake.py) in front of the simulator: the code that runs against a real
adapter, minus the radio. Virtual time (looptime) throughout."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retrotread import gatt
from retrotread.clock import LoopClock
from retrotread.envelope import Direction
from retrotread.errors import GattError, LinkClosedError, LinkError
from retrotread.events import (
    CommandSent,
    Event,
    EventBus,
    LinkStateChanged,
    Outcome,
    SegmentStarted,
    TelemetrySample,
    WatchdogAction,
)
from retrotread.ftms import codec
from retrotread.links.ble import BleLink, is_address, name_filter
from retrotread.profile import load_profile
from retrotread.runner import run_profile, running_simulator
from retrotread.session import Session, SessionSettings
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.treadmill import Treadmill
from tests.ble_fake import (
    MACHINE_INDOOR_BIKE,
    FakeAir,
    FakePeripheral,
    ftms_service_data,
)
from tests.workout_harness import WorkoutRun, check_invariants

PROFILES = sorted((Path(__file__).parent.parent / "profiles").glob("*.yaml"))
ADDRESS = "C0:FF:EE:00:00:01"
NAME = "RT-SIM-0001 FTMS"

pytestmark = pytest.mark.looptime(noop_cycles=1)


def ble_link(air: FakeAir, target: str = ADDRESS, **kwargs: object) -> BleLink:
    return BleLink(target, scanner_backend=air.scanner_backend,
                   client_backend=air.client_backend, connect_timeout_s=5.0,
                   **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def ble_sim(preset: str = "generic") -> AsyncIterator[tuple[SimulatedTreadmill, FakeAir]]:
    """The simulator running in this test's (virtual) time, behind a fake radio.

    Not a fixture: looptime's virtual clock starts with the test body, and the simulator
    must take its time origin from it."""
    async with running_simulator(LoopClock(), preset) as simulator:
        fake = FakeAir()
        fake.add_treadmill(simulator, address=ADDRESS, name=NAME)
        yield simulator, fake


# =========================================================================== the link
def test_address_or_name() -> None:
    assert is_address("C0:FF:EE:00:00:01")
    assert is_address("c0-ff-ee-00-00-01")
    assert is_address("9F1C3C2E-5A0B-4C53-9E43-2D1B8E5A6C7D")  # macOS
    assert not is_address("RT-SIM-0001 FTMS")
    assert not is_address("Treadmill")


async def test_connect_by_address_and_discover() -> None:
    async with ble_sim() as (_sim, air):
        link = ble_link(air)
        assert not link.is_connected
        await link.connect()
        assert link.is_connected
        assert link.description == f"ble:{NAME}"  # the name the backend reports
        services = {s.uuid: s for s in await link.discover()}
        ftms = services[gatt.FITNESS_MACHINE_SERVICE]
        assert gatt.DEVICE_INFORMATION_SERVICE in services
        control = ftms.characteristic(gatt.FITNESS_MACHINE_CONTROL_POINT)
        assert control is not None and control.properties == {gatt.WRITE, gatt.INDICATE}
        data = ftms.characteristic(gatt.TREADMILL_DATA)
        assert data is not None and data.properties == {gatt.NOTIFY}
        feature = codec.decode_feature(await link.read(gatt.FITNESS_MACHINE_FEATURE))
        assert codec.TargetSettingFeature.SPEED in feature.target
        speed_range = codec.decode_speed_range(await link.read(gatt.SUPPORTED_SPEED_RANGE))
        assert (speed_range.min_kmh, speed_range.max_kmh) == (0.5, 20.0)
        assert await link.read(gatt.MANUFACTURER_NAME) == b"retrotread"
        await link.close()
        assert not link.is_connected
        with pytest.raises(LinkClosedError):
            await link.read(gatt.FITNESS_MACHINE_FEATURE)


async def test_connect_by_name_scans_first() -> None:
    async with ble_sim() as (_sim, air):
        link = ble_link(air, NAME)
        await link.connect()
        assert link.address == ADDRESS
        assert link.description == f"ble:{NAME}"
        await link.close()
        partial = ble_link(air, "rt-sim-0001")  # a part of the name of an FTMS device
        await partial.connect()
        assert partial.address == ADDRESS
        await partial.close()


async def test_name_not_found_says_what_to_do() -> None:
    async with ble_sim() as (_sim, air):
        link = ble_link(air, "Nobody's Treadmill")
        with pytest.raises(LinkError, match=r"no FTMS treadmill named .* found.*another app"):
            await link.connect()


async def test_unknown_address_is_a_link_error() -> None:
    async with ble_sim() as (_sim, air):
        link = ble_link(air, "AA:BB:CC:DD:EE:FF")
        with pytest.raises(LinkError, match="does not know this device"):
            await link.connect()


async def test_flaky_adapter_connect_is_retried() -> None:
    async with ble_sim() as (_sim, air):
        air.peripherals[0].failing_connects = 2
        link = ble_link(air, connect_attempts=3)
        await link.connect()
        assert link.is_connected
        await link.close()
        air.peripherals[0].failing_connects = 5
        with pytest.raises(LinkError, match="could not connect"):
            await ble_link(air, connect_attempts=2).connect()


def test_name_filter_does_not_take_any_ftms_device() -> None:
    from bleak.backends.device import BLEDevice

    other = FakePeripheral("AA:00:00:00:00:02", "Bike 42",
                           service_uuids=[gatt.FITNESS_MACHINE_SERVICE])
    assert not name_filter("Treadmill")(BLEDevice(other.address, other.name, None),
                                        other.advertisement())
    assert name_filter("bike 42")(BLEDevice(other.address, other.name, None),
                                  other.advertisement())


async def test_notify_indicate_write_with_response() -> None:
    async with ble_sim() as (_sim, air):
        peripheral = air.peripherals[0]
        link = ble_link(air)
        await link.connect()
        replies: list[bytes] = []
        packets: list[bytes] = []
        await link.subscribe(gatt.FITNESS_MACHINE_CONTROL_POINT, replies.append)
        await link.subscribe(gatt.TREADMILL_DATA, packets.append)
        # the control point has only "indicate": bleak enabled indications
        assert (gatt.FITNESS_MACHINE_CONTROL_POINT, "indicate") in peripheral.subscriptions
        assert (gatt.TREADMILL_DATA, "notify") in peripheral.subscriptions
        request_control = bytes([codec.ControlPointOp.REQUEST_CONTROL])
        await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, request_control)
        assert peripheral.writes[-1] == (gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x00", True)
        await asyncio.sleep(0.5)
        assert [codec.decode_control_point_response(r) for r in replies] == [
            codec.ControlPointResponse(codec.ControlPointOp.REQUEST_CONTROL,
                                       codec.ResultCode.SUCCESS)]
        await asyncio.sleep(3.0)
        # Treadmill Data is split over several notifications of at most 20 bytes...
        assert packets and max(len(p) for p in packets) <= 20
        assert max(peripheral.notification_sizes) <= 20
        assert any(p[0] & 0x01 for p in packets), "no 'more data' packet: the record was not split"
        # ...and reassembled into whole records
        assembler = codec.TreadmillDataAssembler()
        records = [r for r in (assembler.feed(p) for p in packets) if r is not None]
        assert len(records) >= 2
        await link.unsubscribe(gatt.TREADMILL_DATA)
        count = len(packets)
        await asyncio.sleep(3.0)
        assert len(packets) == count
        await link.close()


async def test_refusals_become_gatt_errors() -> None:
    async with ble_sim() as (_sim, air):
        link = ble_link(air)
        await link.connect()
        with pytest.raises(GattError) as refused:
            await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x00")  # not subscribed yet
        assert refused.value.code == gatt.ATT_CCCD_IMPROPERLY_CONFIGURED
        with pytest.raises(GattError) as not_readable:
            await link.read(gatt.TREADMILL_DATA)
        assert not_readable.value.code == gatt.ATT_REQUEST_NOT_SUPPORTED
        with pytest.raises(GattError):
            await link.read(gatt.uuid16(0x2A99))  # not on this device
        await link.close()


async def test_link_loss_fires_the_disconnect_listeners() -> None:
    async with ble_sim() as (sim, air):
        link = ble_link(air)
        await link.connect()
        lost: list[str] = []
        link.on_disconnect(lambda: lost.append("lost"))
        sim.drop_links()  # the machine's side: the radio link is gone
        await asyncio.sleep(0.1)
        assert lost == ["lost"]
        assert not link.is_connected
        with pytest.raises(LinkClosedError):
            await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x00")
        # a fresh link (what the session's reconnect makes) works again
        again = ble_link(air)
        await again.connect()
        assert again.is_connected
        await again.close()


async def test_treadmill_client_over_ble() -> None:
    async with ble_sim() as (sim, air):
        clock = LoopClock()
        treadmill = Treadmill(ble_link(air, NAME), clock)
        await treadmill.connect()
        assert treadmill.speed_range is not None and treadmill.speed_range.min_kmh == 0.5
        assert treadmill.device_info.serial_number == "RT-SIM-0001"
        await treadmill.request_control()
        assert treadmill.has_control
        await treadmill.set_target_speed(1.6)
        await treadmill.start()
        await asyncio.sleep(4.0)
        assert treadmill.latest is not None
        assert treadmill.latest.data.speed_kmh == pytest.approx(1.6, abs=0.05)
        await treadmill.pause()
        await asyncio.sleep(3.0)
        await treadmill.stop()
        await asyncio.sleep(3.0)
        assert treadmill.latest.data.speed_kmh == pytest.approx(0.0, abs=0.05)
        kinds = [type(r).__name__ for r in sim.requests]
        assert kinds == ["RequestControl", "SetTargetSpeed", "StartOrResume", "StopOrPause",
                         "StopOrPause"]
        assert treadmill.decode_errors == 0
        await treadmill.close()


# =========================================================================== workouts
async def run_over_ble(profile_path: Path, *, drop_in_backward: bool = False) -> tuple[
        WorkoutRun, FakeAir, list[float]]:
    clock = LoopClock()
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    holder: list[Session] = []
    drops: list[float] = []
    tasks: list[asyncio.Future[None]] = []
    belt_at_drop: list[float] = []
    profile = load_profile(profile_path)
    async with running_simulator(clock, "generic") as sim:
        air = FakeAir()
        peripheral = air.add_treadmill(sim, address=ADDRESS, name=NAME)

        def on_event(event: Event) -> None:
            if (drop_in_backward and not tasks and isinstance(event, TelemetrySample)
                    and event.facing is Direction.BACKWARD
                    and (event.speed_kmh or 0.0) >= 1.5):
                # the person walks backward on a moving belt: the radio link goes
                async def drop_soon() -> None:
                    await asyncio.sleep(2.0)
                    drops.append(clock.now())
                    belt_at_drop.append(sim.belt.speed_kmh)
                    peripheral.drop_links()

                tasks.append(asyncio.ensure_future(drop_soon()))

        bus.subscribe(on_event)
        result = await run_profile(
            profile,
            link_factory=lambda: ble_link(air, NAME),
            clock=clock,
            bus=bus,
            simulated=True,
            settings=SessionSettings(),
            on_session=holder.append,
        )
        await asyncio.sleep(5)  # let the belt coast to a stop in the simulator
    run = WorkoutRun(result, events, sim, holder[0], extra={"belt_at_drop": belt_at_drop})
    return run, air, drops


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
async def test_every_bundled_profile_over_ble(path: Path) -> None:
    run, air, _ = await run_over_ble(path)
    assert run.result.outcome is Outcome.COMPLETED, run.result
    check_invariants(run)
    profile = load_profile(path)
    assert [s.index for s in run.of(SegmentStarted)] == list(range(len(profile.flatten())))
    assert max(air.peripherals[0].notification_sizes) <= 20
    last = run.sim.requests[-1]
    assert isinstance(last, codec.StopOrPause) and last.action is codec.StopPause.STOP


async def test_link_loss_mid_backward_segment_ends_in_stop_after_reconnect() -> None:
    path = Path(__file__).parent.parent / "profiles" / "first-session.yaml"
    run, air, drops = await run_over_ble(path, drop_in_backward=True)
    assert drops, "the workout never reached a backward segment"
    dropped_at = drops[0]
    # the person was walking backward on a moving belt when the link went
    assert run.extra["belt_at_drop"][0] > 1.0
    assert run.result.outcome is Outcome.WATCHDOG, run.result
    assert "link_lost" in run.watchdog_triggers()
    # the session reconnected (a second BLE connection) and said so
    assert air.peripherals[0].connects == 2
    links = run.of(LinkStateChanged)
    assert [e.connected for e in links][:2] == [False, True]
    assert any(e.action == "reconnect" for e in run.of(WatchdogAction))
    # after the drop: Stop on the wire, and never a Start or a speed
    requests = run.sim.requests
    times = run.sim.request_times
    after = [r for r, t in zip(requests, times, strict=True) if t >= dropped_at]
    assert after, "nothing reached the machine after the reconnect"
    assert isinstance(after[-1], codec.StopOrPause) and after[-1].action is codec.StopPause.STOP
    assert not any(isinstance(r, codec.StartOrResume | codec.SetTargetSpeed) for r in after)
    assert run.sim.belt.speed_kmh == pytest.approx(0.0, abs=0.05)
    sent_after = [c for c in run.of(CommandSent) if c.time_s >= dropped_at]
    assert sent_after and sent_after[-1].op == "StopOrPause"
    check_invariants(run)


# =========================================================================== scan
async def test_scan_lists_ftms_devices_with_machine_type() -> None:
    from retrotread.scan import devices_json, scan

    async with ble_sim() as (_sim, air):
        air.add(FakePeripheral(
            "AA:00:00:00:00:02", "Bike 42", rssi=-70,
            service_uuids=[gatt.FITNESS_MACHINE_SERVICE],
            service_data={gatt.FITNESS_MACHINE_SERVICE:
                          ftms_service_data(MACHINE_INDOOR_BIKE)}))
        air.add(FakePeripheral("AA:00:00:00:00:03", "Old treadmill", rssi=-80,
                               service_uuids=[gatt.FITNESS_MACHINE_SERVICE.upper()]))
        air.add(FakePeripheral("AA:00:00:00:00:04", "Headphones", rssi=-40))
        devices = await scan(1.0, scanner_backend=air.scanner_backend)
        records = json.loads(devices_json(devices))
        assert records == [
            {"name": NAME, "address": ADDRESS, "rssi": -58, "ftms": True,
             "machine_types": ["treadmill"], "available": True, "treadmill": True},
            {"name": "Bike 42", "address": "AA:00:00:00:00:02", "rssi": -70, "ftms": True,
             "machine_types": ["indoor bike"], "available": True, "treadmill": False},
            {"name": "Old treadmill", "address": "AA:00:00:00:00:03", "rssi": -80,
             "ftms": True, "machine_types": [], "available": None, "treadmill": None},
        ]
        everything = await scan(1.0, include_all=True, scanner_backend=air.scanner_backend)
        assert [d.name for d in everything][-1] == "Headphones"


def test_scan_command_prints_json_and_a_table() -> None:
    """The CLI handler end to end (real time: asyncio.run makes its own loop)."""
    from retrotread.scan import run_scan

    air = FakeAir()
    air.add(FakePeripheral(ADDRESS, NAME, rssi=-58,
                           service_uuids=[gatt.FITNESS_MACHINE_SERVICE],
                           service_data={gatt.FITNESS_MACHINE_SERVICE: ftms_service_data()}))
    out = io.StringIO()
    args = argparse.Namespace(timeout=0.3, json=True, all=False, adapter=None)
    assert run_scan(args, scanner_backend=air.scanner_backend, out=out) == 0
    assert json.loads(out.getvalue())[0]["treadmill"] is True
    out = io.StringIO()
    args.json = False
    run_scan(args, scanner_backend=air.scanner_backend, out=out)
    assert NAME in out.getvalue() and "treadmill" in out.getvalue()


def test_cli_registers_scan_and_doctor() -> None:
    from retrotread.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["scan", "--json", "--timeout", "2"])
    assert args.json and args.timeout == 2.0
    args = parser.parse_args(["doctor", "--device", "ble:Treadmill", "--yes"])
    assert args.yes and args.write_quirk is None


# =========================================================================== quirks & doctor
QUIRK_DIR = Path(__file__).parent.parent / "hardware" / "quirks"


def test_bundled_quirk_files_load_and_match() -> None:
    from retrotread.quirks import Quirks, load_quirks, match_quirks
    from retrotread.treadmill import DeviceInfo

    files = load_quirks(QUIRK_DIR)
    assert {f.id for f in files} >= {"sim-coarse", "sim-home-treadmill", "sim-strict-control"}
    example = [f for f in files if f.id.startswith("example")]
    assert example and not any(f.verified for f in example)
    coarse = match_quirks(DeviceInfo("retrotread", "Simulated coarse treadmill"), None, files)
    assert coarse == Quirks(ignores_pause=True, min_speed_kmh=1.5)
    assert match_quirks(DeviceInfo("retrotread", "Simulated FTMS treadmill"), None,
                        files) == Quirks()
    assert match_quirks(DeviceInfo(None, None), "Some treadmill", files) == Quirks()


def test_quirk_merge_keeps_the_safer_value() -> None:
    from retrotread.quirks import Quirks

    a = Quirks(min_speed_kmh=1.0, reply_timeout_s=3.0, ignores_pause=True)
    b = Quirks(min_speed_kmh=1.5, increment_kmh=0.5, must_start_before_speed=True)
    assert a.merged(b) == Quirks(ignores_pause=True, must_start_before_speed=True,
                                 min_speed_kmh=1.5, increment_kmh=0.5, reply_timeout_s=3.0)


def test_broken_quirk_file_names_file_and_field(tmp_path: Path) -> None:
    from retrotread.errors import QuirkFileError
    from retrotread.quirks import load_quirks

    (tmp_path / "bad.yaml").write_text(
        "id: bad\nmatch: {model: '('}\nquirks: {ignore_pause: true}\n", encoding="utf-8")
    with pytest.raises(QuirkFileError, match=r"bad\.yaml: match\.model: .*regular") as error:
        load_quirks(tmp_path)
    assert "quirks.ignore_pause" in str(error.value)


@pytest.mark.parametrize("preset", ["generic", "home-treadmill", "coarse", "strict-control",
                                    "walking-pad"])
async def test_doctor_over_ble_finds_the_quirks_the_files_claim(preset: str,
                                                                tmp_path: Path) -> None:
    from retrotread.doctor import doctor, suggested_quirk_yaml
    from retrotread.quirks import Quirks, load_quirk_file, load_quirks, match_quirks

    out = io.StringIO()
    async with ble_sim(preset) as (sim, air):
        report = await doctor(ble_link(air, NAME), motion=True, out=out, name=NAME,
                              quirk_dirs=[QUIRK_DIR])
        await asyncio.sleep(5)
        assert sim.belt.speed_kmh == 0.0
    text = out.getvalue()
    assert report.control_granted and report.motion_tested, text
    assert report.manufacturer == "retrotread"
    assert report.speed_range == (sim.preset.min_kmh, sim.preset.max_kmh,
                                  sim.preset.increment_kmh)
    # the belt never ran above 1.0 mph
    speeds = [r.speed_kmh for r in sim.requests if isinstance(r, codec.SetTargetSpeed)]
    assert speeds and max(speeds) <= 1.60
    last = sim.requests[-1]
    assert isinstance(last, codec.StopOrPause) and last.action is codec.StopPause.STOP
    # what the doctor measured is what the bundled quirk file for that preset says
    expected = match_quirks(report, None, load_quirks(QUIRK_DIR))
    assert report.quirks == expected, text
    if preset == "generic":
        assert report.quirks == Quirks()
    # and the suggested file round-trips
    path = tmp_path / "suggested.yaml"
    path.write_text(suggested_quirk_yaml(report), encoding="utf-8")
    suggested = load_quirk_file(path)
    assert suggested.quirks == report.quirks
    assert suggested.matches(report.manufacturer, report.model, None)


async def test_doctor_without_consent_never_moves_the_belt() -> None:
    from retrotread.doctor import doctor

    out = io.StringIO()
    async with ble_sim() as (sim, air):
        report = await doctor(ble_link(air), motion=False, out=out)
    assert report.control_granted and not report.motion_tested
    assert [type(r).__name__ for r in sim.requests] == ["RequestControl"]
    assert "--yes" in out.getvalue()


async def test_no_bluetooth_stack_is_an_actionable_link_error() -> None:
    """Linux without bluetoothd/D-Bus: bleak's BlueZ backend fails with a plain OSError."""
    from retrotread.scan import scan
    from tests.ble_fake import FakeBleakScanner

    class NoStack(FakeBleakScanner):
        air = FakeAir()

        async def start(self) -> None:
            raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(LinkError, match="bluetoothd"):
        await BleLink("Treadmill", scanner_backend=NoStack).connect()
    with pytest.raises(LinkError, match="bluetoothd"):
        await scan(1.0, scanner_backend=NoStack)
