"""The simulated treadmill and the FTMS client, in-process (virtual time) and over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from retrotread import gatt
from retrotread.clock import LoopClock
from retrotread.errors import ControlPointError, ControlPointTimeoutError
from retrotread.ftms import codec
from retrotread.links.loopback import LoopbackLink
from retrotread.sim.belt import Belt
from retrotread.sim.presets import PRESETS, Quirk
from retrotread.sim.treadmill import MachineState, SimulatedTreadmill
from retrotread.treadmill import StatusEvent, Telemetry, Treadmill


# ---------------------------------------------------------------- belt physics (pure)
def test_belt_accelerates_at_its_own_rate_and_integrates_distance_exactly() -> None:
    belt = Belt(acceleration_kmh_per_s=1.0, deceleration_kmh_per_s=1.5)
    belt.set_target(3.0)
    belt.advance_to(1.5)
    assert belt.speed_kmh == pytest.approx(1.5)
    belt.advance_to(3.0)
    assert belt.speed_kmh == pytest.approx(3.0)
    # 0 -> 3 km/h in 3 s: area = 4.5 km/h*s = 1.25 m
    assert belt.distance_m == pytest.approx(1.25)
    belt.advance_to(13.0)  # 10 s at 3 km/h = 8.333 m
    assert belt.distance_m == pytest.approx(1.25 + 30 / 3.6)
    belt.set_target(0.0)
    belt.advance_to(20.0)  # 3 -> 0 at 1.5 km/h/s: 2 s, area 3 km/h*s
    assert belt.speed_kmh == 0.0
    assert belt.distance_m == pytest.approx(1.25 + 30 / 3.6 + 3 / 3.6)
    assert belt.moving_time_s == pytest.approx(15.0)


def test_belt_is_the_same_whether_advanced_once_or_in_small_steps() -> None:
    coarse, fine = Belt(), Belt()
    for belt in (coarse, fine):
        belt.set_target(4.2)
    coarse.advance_to(60.0)
    for k in range(1, 601):
        fine.advance_to(k * 0.1)
    assert fine.speed_kmh == pytest.approx(coarse.speed_kmh)
    assert fine.distance_m == pytest.approx(coarse.distance_m)


def test_belt_noise_is_reproducible_and_never_negative() -> None:
    a, b = Belt(noise_kmh=0.5, seed=7), Belt(noise_kmh=0.5, seed=7)
    for belt in (a, b):
        belt.set_target(0.3)
        belt.advance_to(10)
    samples_a = [a.measured_kmh() for _ in range(100)]
    assert samples_a == [b.measured_kmh() for _ in range(100)]
    assert min(samples_a) >= 0.0
    assert len(set(samples_a)) > 1


# ---------------------------------------------------------------- in-process, virtual time
@contextlib.asynccontextmanager
async def simulator(preset: str = "generic", **kwargs: object) -> AsyncIterator[SimulatedTreadmill]:
    sim = SimulatedTreadmill(LoopClock(), preset, **kwargs)  # type: ignore[arg-type]
    task = asyncio.ensure_future(sim.run())
    try:
        yield sim
    finally:
        sim.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Recorder:
    def __init__(self, treadmill: Treadmill) -> None:
        self.telemetry: list[Telemetry] = []
        self.status: list[StatusEvent] = []
        treadmill.on_telemetry(self.telemetry.append)
        treadmill.on_status(self.status.append)

    def statuses(self) -> list[codec.MachineStatus]:
        return [event.status for event in self.status]


async def wait_speed(treadmill: Treadmill, speed: float, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        latest = treadmill.latest
        if latest is not None and latest.data.speed_kmh == pytest.approx(speed, abs=0.011):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"speed never reached {speed}: last {treadmill.latest}")


async def drive_full_workout(treadmill: Treadmill, recorder: Recorder) -> None:
    """Start, speed changes, pause, resume, stop; every reply and status checked."""
    assert treadmill.speed_range is not None
    assert treadmill.speed_range.min_kmh == 0.5
    assert treadmill.speed_range.max_kmh == 20.0
    assert treadmill.feature is not None
    assert codec.TargetSettingFeature.SPEED in treadmill.feature.target
    ok = codec.ResultCode.SUCCESS
    assert (await treadmill.command(codec.RequestControl())).result == ok
    assert treadmill.has_control
    assert (await treadmill.command(codec.StartOrResume())).result == ok
    response = await treadmill.command(codec.SetTargetSpeed(speed_kmh=3.0))
    assert response == codec.ControlPointResponse(codec.ControlPointOp.SET_TARGET_SPEED, ok)
    await wait_speed(treadmill, 3.0)
    await treadmill.set_target_speed(2.4)
    await wait_speed(treadmill, 2.4)
    await treadmill.pause()
    await wait_speed(treadmill, 0.0)
    await treadmill.start()  # resume
    await wait_speed(treadmill, 2.4)
    await treadmill.stop()
    await wait_speed(treadmill, 0.0)
    await asyncio.sleep(0.5)
    statuses = recorder.statuses()
    expected = [
        codec.StartedOrResumedByUser(),
        codec.TargetSpeedChanged(speed_kmh=3.0),
        codec.TargetSpeedChanged(speed_kmh=2.4),
        codec.StoppedOrPausedByUser(action=codec.StopPause.PAUSE),
        codec.StartedOrResumedByUser(),
        codec.StoppedOrPausedByUser(action=codec.StopPause.STOP),
    ]
    assert statuses == expected
    distances = [t.data.total_distance_m for t in recorder.telemetry]
    assert distances == sorted(distances)  # type: ignore[type-var]
    assert recorder.telemetry[-1].data.total_distance_m is not None


@pytest.mark.looptime
async def test_client_drives_the_simulator_in_process() -> None:
    async with simulator() as sim:
        treadmill = Treadmill(LoopbackLink(sim), LoopClock())
        recorder = Recorder(treadmill)
        await treadmill.connect()
        assert treadmill.device_info.manufacturer == "retrotread"
        await drive_full_workout(treadmill, recorder)
        assert sim.state is MachineState.STOPPED
        await treadmill.close()


@pytest.mark.looptime
async def test_treadmill_data_is_split_into_notifications_of_at_most_20_bytes() -> None:
    async with simulator() as sim:
        sizes: list[int] = []
        link = LoopbackLink(sim)
        await link.connect()
        await link.subscribe(gatt.TREADMILL_DATA, lambda raw: sizes.append(len(raw)))
        await asyncio.sleep(5.5)
        assert sizes and max(sizes) <= 20
        assert len(sizes) >= 2 * 5  # every record needs more than one packet
        await link.close()


@pytest.mark.looptime
async def test_an_hour_of_belt_time_in_virtual_time() -> None:
    async with simulator() as sim:
        treadmill = Treadmill(LoopbackLink(sim), LoopClock())
        await treadmill.connect()
        await treadmill.request_control()
        await treadmill.start()
        await treadmill.set_target_speed(5.0)
        await asyncio.sleep(3600)
        assert treadmill.latest is not None
        # 5 km/h for an hour, less ~2.25 m lost while accelerating from 0.5 km/h.
        assert treadmill.latest.data.total_distance_m == pytest.approx(5000, abs=5)
        assert treadmill.latest.data.elapsed_time_s == pytest.approx(3600, abs=2)


@pytest.mark.looptime
async def test_control_must_be_requested_first_and_bad_requests_get_result_codes() -> None:
    async with simulator() as sim:
        treadmill = Treadmill(LoopbackLink(sim), LoopClock())
        await treadmill.connect()
        with pytest.raises(ControlPointError) as not_permitted:
            await treadmill.start()
        assert not_permitted.value.result_code == codec.ResultCode.CONTROL_NOT_PERMITTED
        assert "request control first" in str(not_permitted.value)
        await treadmill.request_control()
        with pytest.raises(ControlPointError) as out_of_range:
            await treadmill.set_target_speed(25.0)
        assert out_of_range.value.result_code == codec.ResultCode.INVALID_PARAMETER
        with pytest.raises(ControlPointError) as unsupported:
            await treadmill.command(codec.SetTargetHeartRate(heart_rate_bpm=120))
        assert unsupported.value.result_code == codec.ResultCode.OP_CODE_NOT_SUPPORTED
        # A second central cannot take control while the first holds it.
        other = Treadmill(LoopbackLink(sim), LoopClock())
        await other.connect()
        with pytest.raises(ControlPointError) as taken:
            await other.request_control()
        assert taken.value.result_code == codec.ResultCode.CONTROL_NOT_PERMITTED


@pytest.mark.looptime
async def test_raw_writes_get_att_errors_and_invalid_parameters() -> None:
    async with simulator() as sim:
        link = LoopbackLink(sim)
        await link.connect()
        from retrotread.errors import GattError

        with pytest.raises(GattError) as no_cccd:
            await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x00")
        assert no_cccd.value.code == gatt.ATT_CCCD_IMPROPERLY_CONFIGURED
        replies: list[bytes] = []
        await link.subscribe(gatt.FITNESS_MACHINE_CONTROL_POINT, replies.append)
        await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x00")
        with pytest.raises(GattError) as busy:  # reply still pending
            await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x07")
        assert busy.value.code == gatt.ATT_PROCEDURE_ALREADY_IN_PROGRESS
        await asyncio.sleep(0.2)
        await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x02\x2c")  # truncated uint16
        await asyncio.sleep(0.2)
        await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x08\x07")  # bad stop/pause
        await asyncio.sleep(0.2)
        await link.write(gatt.FITNESS_MACHINE_CONTROL_POINT, b"\x42")  # unknown op code
        await asyncio.sleep(0.2)
        assert replies == [
            bytes([0x80, 0x00, 0x01]),
            bytes([0x80, 0x02, 0x03]),
            bytes([0x80, 0x08, 0x03]),
            bytes([0x80, 0x42, 0x02]),
        ]


@pytest.mark.looptime
async def test_console_actions_send_status_notifications() -> None:
    async with simulator() as sim:
        treadmill = Treadmill(LoopbackLink(sim), LoopClock())
        recorder = Recorder(treadmill)
        await treadmill.connect()
        sim.console_start()
        await asyncio.sleep(1)
        sim.console_speed_up()
        sim.console_speed_down()
        sim.console_speed_down()
        sim.console_stop()
        sim.console_start()
        sim.pull_safety_key()
        await asyncio.sleep(1)
        assert recorder.statuses() == [
            codec.StartedOrResumedByUser(),
            codec.TargetSpeedChanged(speed_kmh=1.0),
            codec.TargetSpeedChanged(speed_kmh=0.5),
            codec.TargetSpeedChanged(speed_kmh=0.5),
            codec.StoppedOrPausedByUser(action=codec.StopPause.STOP),
            codec.StartedOrResumedByUser(),
            codec.StoppedBySafetyKey(),
        ]
        await treadmill.request_control()
        with pytest.raises(ControlPointError) as refused:
            await treadmill.start()
        assert refused.value.result_code == codec.ResultCode.OPERATION_FAILED


@pytest.mark.looptime
async def test_faults_late_and_lost_replies_refusals_and_link_drop() -> None:
    async with simulator() as sim:
        treadmill = Treadmill(LoopbackLink(sim), LoopClock(), reply_timeout_s=2.0)
        await treadmill.connect()
        await treadmill.request_control()
        loop = asyncio.get_running_loop()
        sim.faults.reply_delay_s = 1.5
        began = loop.time()
        await treadmill.start()
        assert loop.time() - began == pytest.approx(1.5, abs=0.01)
        sim.faults.reply_delay_s = None
        sim.faults.replies_lost = True
        with pytest.raises(ControlPointTimeoutError, match="no reply"):
            await treadmill.set_target_speed(2.0)
        sim.faults.replies_lost = False
        sim.faults.refuse_commands = codec.ResultCode.OPERATION_FAILED
        with pytest.raises(ControlPointError):
            await treadmill.set_target_speed(2.0)
        sim.faults.refuse_commands = None
        sim.faults.telemetry_stopped = True
        await asyncio.sleep(0.5)
        before = treadmill.latest
        await asyncio.sleep(5)
        assert treadmill.latest is before
        sim.drop_links()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert treadmill.link.disconnected.is_set()
        assert not treadmill.has_control


@pytest.mark.looptime
async def test_runaway_and_kmh_read_as_mph_show_in_telemetry() -> None:
    async with simulator() as sim:
        treadmill = Treadmill(LoopbackLink(sim), LoopClock())
        await treadmill.connect()
        await treadmill.request_control()
        await treadmill.start()
        sim.faults.kmh_read_as_mph = True
        await treadmill.set_target_speed(3.0)
        await wait_speed(treadmill, 4.83)
        sim.faults.kmh_read_as_mph = False
        sim.start_runaway(12.0)
        await treadmill.set_target_speed(2.0)  # ignored by the runaway belt
        await wait_speed(treadmill, 12.0)


@pytest.mark.looptime
@pytest.mark.parametrize("name", sorted(PRESETS))
async def test_every_preset_starts_and_reaches_a_speed(name: str) -> None:
    preset = PRESETS[name]
    async with simulator(name) as sim:
        treadmill = Treadmill(LoopbackLink(sim), LoopClock(), reply_timeout_s=2.0)
        await treadmill.connect()
        await treadmill.request_control()
        await treadmill.start()
        target = 3.0
        await treadmill.set_target_speed(target)
        await wait_speed(treadmill, target, timeout_s=60)
        await treadmill.stop()
        await wait_speed(treadmill, 0.0, timeout_s=60)
        if Quirk.REQUEST_CONTROL_AFTER_STOP in preset.quirks:
            assert not treadmill.has_control
            with pytest.raises(ControlPointError):
                await treadmill.start()


# ---------------------------------------------------------------- across a real socket
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sim_process() -> AsyncIterator[int]:
    """``retrotread sim`` in another process, on a free loopback port."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrotread.cli", "sim", "--port", str(port),
         "--telemetry-hz", "5", "--noise", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving FTMS over DIRCON" in line, line
    yield port  # type: ignore[misc]
    proc.terminate()
    proc.wait(timeout=10)


async def test_client_drives_retrotread_sim_in_another_process_over_tcp(sim_process: int) -> None:
    from retrotread.links.dircon import DirconLink

    treadmill = Treadmill(DirconLink("127.0.0.1", sim_process), LoopClock())
    recorder = Recorder(treadmill)
    await treadmill.connect()
    try:
        assert treadmill.device_info.model == "Simulated FTMS treadmill"
        await drive_full_workout(treadmill, recorder)
    finally:
        await treadmill.close()
