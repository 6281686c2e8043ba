"""Real machines, replayed: every capture in tests/fixtures/machines/ goes through the
real FTMS client and codec over a ReplayLink (virtual time).

Each capture was seeded from a public trace of a real treadmill (its ``source`` says
where, its ``model`` which machine). The checks that run over every capture: it loads,
the client connects to it, nothing it sent is dropped, every complete Treadmill Data
record and every status reaches the listeners, and where the source's own tool decoded
a notification (``reference``), our decoding agrees. Then one test per capture pins
down what that machine revealed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from retrotread import gatt
from retrotread.clock import LoopClock
from retrotread.errors import CaptureFileError
from retrotread.ftms import codec
from retrotread.links.replay import (
    NOTIFY,
    WRITE,
    MachineCapture,
    RecordingLink,
    ReplayLink,
    load_captures,
)
from retrotread.treadmill import DecodeProblem, StatusEvent, Telemetry, Treadmill
from retrotread.units import KMH_PER_MPH

FIXTURES = Path(__file__).parent / "fixtures" / "machines"
CAPTURES = load_captures(FIXTURES)


class Replayed:
    """A capture played through the real client, with everything it reported."""

    def __init__(self, capture: MachineCapture) -> None:
        self.capture = capture
        self.link = ReplayLink(capture, speed=1.0)
        self.treadmill = Treadmill(self.link, LoopClock())
        self.telemetry: list[Telemetry] = []
        self.status: list[StatusEvent] = []
        self.problems: list[DecodeProblem] = []
        self.treadmill.on_telemetry(self.telemetry.append)
        self.treadmill.on_status(self.status.append)
        self.treadmill.on_decode_problem(self.problems.append)

    async def run(self) -> Replayed:
        await self.treadmill.connect()
        await asyncio.wait_for(self.link.finished.wait(), 3600)
        await self.treadmill.close()
        return self


async def replay(name: str) -> Replayed:
    return await Replayed(CAPTURES[name]).run()


def test_there_are_captures_of_several_real_models() -> None:
    models = {(c.model.get("manufacturer"), c.model.get("model")) for c in CAPTURES.values()}
    assert len(models) >= 4


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_every_capture_says_what_and_where_from(name: str) -> None:
    capture = CAPTURES[name]
    assert capture.model.get("manufacturer") and capture.model.get("model")
    assert str(capture.source.get("url", "")).startswith("https://")
    assert any(s.uuid == gatt.FITNESS_MACHINE_SERVICE for s in capture.services)


@pytest.mark.looptime
@pytest.mark.parametrize("name", sorted(CAPTURES))
async def test_every_capture_replays_through_the_client_without_loss(name: str) -> None:
    run = await replay(name)
    capture = run.capture
    assert run.treadmill.decode_errors == 0, [p.message for p in run.problems]
    assert not [p for p in run.problems if p.dropped]
    data = capture.entries(gatt.TREADMILL_DATA)
    complete = [e for e in data if not int.from_bytes(e.value[:2], "little") & 1]
    assert len(run.telemetry) == len(complete)
    assert len(run.status) == len(capture.entries(gatt.FITNESS_MACHINE_STATUS))
    assert run.link.delivered + run.link.undelivered == len(
        [e for e in capture.trace if e.op == NOTIFY])
    # the client listens to Treadmill Data, the control point and the machine status;
    # anything else (Training Status, vendor characteristics) goes unheard, on purpose
    used = {gatt.TREADMILL_DATA, gatt.FITNESS_MACHINE_CONTROL_POINT,
            gatt.FITNESS_MACHINE_STATUS}
    assert run.link.undelivered == len(
        [e for e in capture.trace if e.op == NOTIFY and e.uuid not in used])


@pytest.mark.looptime
@pytest.mark.parametrize("name", sorted(n for n, c in CAPTURES.items()
                                        if any(e.reference for e in c.trace)))
async def test_our_decoding_agrees_with_the_source_tool(name: str) -> None:
    run = await replay(name)
    referenced = [e for e in run.capture.entries(gatt.TREADMILL_DATA) if e.reference]
    assert len(referenced) == len(run.telemetry)
    for entry, sample in zip(referenced, run.telemetry, strict=True):
        for field, value in entry.reference.items():
            assert getattr(sample.data, field) == pytest.approx(value), (entry, field)


# ---------------------------------------------------------------- what each one revealed
@pytest.mark.looptime
async def test_cs_wp8_sends_a_vendor_step_count_and_pads_its_statuses() -> None:
    run = await replay("citysports-cs-wp8-walk")
    steps = [s.data.step_count for s in run.telemetry]
    assert None not in steps  # flag bit 13, a uint24 step count, in every record
    peak = steps.index(max(steps))
    assert max(steps) > 0 and steps[:peak + 1] == sorted(steps[:peak + 1])
    # when the walk ends every counter drops back to 0 in the next record: a total that
    # goes down means a new session, not a negative distance
    last = run.telemetry[-1].data
    assert (last.step_count, last.total_distance_m, last.elapsed_time_s) == (0, 0, 0)
    assert all(s.data.truncated_flags == 0 and s.data.extra_bytes == b"" for s in run.telemetry)
    # energy per hour / minute sent as 0, not as "Data Not Available"
    assert {s.data.energy_per_hour_kcal for s in run.telemetry} == {0}
    assert max(s.data.speed_kmh or 0 for s in run.telemetry) == 3.0
    console = await replay("citysports-cs-wp8-console")
    kinds = [type(e.status) for e in console.status]
    assert kinds[0] is codec.StartedOrResumedByUser  # sent as 04 00 00: two stray bytes
    assert kinds[-1] is codec.StoppedOrPausedByUser  # sent as 02 01 00: one stray byte
    assert console.status[-1].status.action is codec.StopPause.STOP
    assert all(getattr(e.status, "problem", None) is None for e in console.status)
    targets = [e.status.speed_kmh for e in console.status
               if isinstance(e.status, codec.TargetSpeedChanged)]
    assert max(targets) == 6.0 and targets[0] == 1.5  # the remote's 0.5 km/h steps


@pytest.mark.looptime
async def test_n3601_sends_not_available_energy_and_a_coarse_speed_range() -> None:
    run = await replay("citysports-linker-n3601")
    assert run.treadmill.speed_range == codec.SpeedRange(1.0, 6.0, 0.5)
    feature = run.treadmill.feature
    assert feature is not None and codec.TargetSettingFeature.SPEED in feature.target
    assert codec.MachineFeature.STEP_COUNT in feature.machine
    unavailable = {frozenset(s.data.unavailable) for s in run.telemetry}
    assert unavailable == {frozenset({"energy_per_hour_kcal", "energy_per_minute_kcal"})}
    assert all(s.data.energy_per_hour_kcal is None for s in run.telemetry)
    # the app's Stop: the machine reports post-workout and "stopped", then answers
    stop_at = next(e.t_s for e in run.capture.trace
                   if e.op == WRITE and e.value == bytes([0x08, 0x01]))
    after = [e for e in run.capture.trace if e.t_s >= stop_at and e.op == NOTIFY
             and e.uuid != gatt.TREADMILL_DATA]
    assert [e.value.hex() for e in after[:3]] == ["010f", "0201", "800801"]
    assert isinstance(run.status[-1].status, codec.StoppedOrPausedByUser)


@pytest.mark.looptime
async def test_horizon_exposes_every_machine_type_and_an_all_zero_record() -> None:
    run = await replay("horizon-treadmill")
    uuids = {c.uuid for s in run.capture.services for c in s.characteristics}
    assert gatt.uuid16(0x2AD2) in uuids  # Indoor Bike Data on a treadmill
    record = run.telemetry[0].data
    assert (record.speed_kmh, record.total_distance_m, record.elapsed_time_s) == (0.0, 0, 0)
    assert record.total_energy_kcal == 0 and record.unavailable == frozenset()


@pytest.mark.looptime
async def test_fitshow_reports_its_speed_range_in_mph_labelled_km_h() -> None:
    run = await replay("fitshow-fs-bt-t4")
    # FTMS says 0.01 km/h; the machine's own manual says these are mph
    assert run.treadmill.speed_range == codec.SpeedRange(0.6, 3.8, 0.1)
    feature = run.treadmill.feature
    assert feature is not None
    assert codec.MachineFeature.POWER_MEASUREMENT in feature.machine  # claimed, not there


# ---------------------------------------------------------------- recording round trip
@pytest.mark.looptime
async def test_a_recorded_capture_replays_to_the_same_records(tmp_path: Path) -> None:
    original = await replay("citysports-linker-n3601")
    # record a replay, as doctor --dump records a real machine, then replay the recording
    clock = LoopClock()
    source = ReplayLink(CAPTURES["citysports-linker-n3601"])
    recorder = RecordingLink(source, clock)
    treadmill = Treadmill(recorder, clock)
    await treadmill.connect()
    await source.finished.wait()
    await treadmill.close()
    path = tmp_path / "again.json"
    recorder.capture(model={"manufacturer": "x", "model": "y"},
                     source={"url": "https://example.org"}).dump(path)
    again = await Replayed(MachineCapture.load(path)).run()
    assert [t.data for t in again.telemetry] == [t.data for t in original.telemetry]
    assert [e.status for e in again.status] == [e.status for e in original.status]


def test_a_broken_capture_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"format": "retrotread-machine-capture", "version": 1, "services": 3}')
    with pytest.raises(CaptureFileError, match=r"bad\.json"):
        MachineCapture.load(path)
    path.write_text('{"format": "something else"}')
    with pytest.raises(CaptureFileError, match="not a machine capture"):
        MachineCapture.load(path)


def test_doctor_dump_writes_a_capture_that_replays(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from retrotread.cli import main

    path = tmp_path / "sim.json"
    main(["doctor", "--device", "sim", "--dump", str(path)])
    assert f"wrote the machine capture {path}" in capsys.readouterr().out
    capture = MachineCapture.load(path)
    assert capture.model["model"] == "Simulated FTMS treadmill"
    assert gatt.SUPPORTED_SPEED_RANGE in capture.reads
    # the probe's Request Control and the machine's answer, in order
    control = [(e.op, e.value.hex()) for e in capture.trace
               if e.uuid == gatt.FITNESS_MACHINE_CONTROL_POINT]
    assert control[:2] == [(WRITE, "00"), (NOTIFY, "800001")]
    run = asyncio.run(Replayed(capture).run())
    assert run.treadmill.speed_range == codec.decode_speed_range(
        capture.reads[gatt.SUPPORTED_SPEED_RANGE])
    assert run.treadmill.device_info.model == "Simulated FTMS treadmill"
    assert len(run.telemetry) == len([e for e in capture.entries(gatt.TREADMILL_DATA)
                                      if not e.value[0] & 1])


def test_the_fitshow_quirk_file_follows_from_its_capture() -> None:
    from retrotread.quirks import load_quirk_file

    capture = CAPTURES["fitshow-fs-bt-t4"]
    # main keeps the bundled quirk files as package data (hardware/quirks links there)
    quirk = load_quirk_file(Path(__file__).parent.parent / "retrotread" / "data" / "quirks"
                            / "fitshow-fs-bt-t4.yaml")
    assert quirk.matches(capture.model["manufacturer"], "FS-BT-T4", None)
    advertised = codec.decode_speed_range(capture.reads[gatt.SUPPORTED_SPEED_RANGE])
    # the advertised numbers are mph: the floor and the step in km/h, rounded up
    assert quirk.quirks.min_speed_kmh is not None and quirk.quirks.increment_kmh is not None
    assert 0 <= quirk.quirks.min_speed_kmh - advertised.min_kmh * KMH_PER_MPH < 0.01
    assert 0 <= quirk.quirks.increment_kmh - advertised.increment_kmh * KMH_PER_MPH < 0.001


@pytest.mark.looptime
async def test_urevo_e1l_says_success_to_what_it_cannot_do() -> None:
    run = await replay("urevo-e1l-kinomap")
    capture = run.capture
    # its ranges: 0.96-6.43 km/h in 0.32 km/h steps (0.6-4.0 mph in 0.2 mph), and no
    # incline at all (0-0 %, step 0)
    assert run.treadmill.speed_range == codec.SpeedRange(0.96, 6.43, 0.32)
    assert run.treadmill.inclination_range == codec.InclinationRange(0.0, 0.0, 0.0)
    assert run.treadmill.device_info.model == "URTM041"
    control = [(e.op, e.value.hex()) for e in capture.trace
               if e.uuid == gatt.FITNESS_MACHINE_CONTROL_POINT]
    # the app set a 6 % incline before asking for control, twice without waiting for
    # the answer; the machine (which has no incline) answered "success" both times
    assert control[:4] == [(WRITE, "033c00"), (WRITE, "034600"),
                           (NOTIFY, "800301"), (NOTIFY, "800301")]
    assert control.index((WRITE, "00")) > 3
    # Training Status codes FTMS reserves (0x10, 0x11) as well as defined ones
    statuses = {codec.decode_training_status(e.value).status
                for e in capture.entries(gatt.TRAINING_STATUS)}
    assert {0x10, 0x11} <= statuses and codec.TrainingStatusCode.POST_WORKOUT in statuses
    # the belt's own ramp down (no command sent) is announced step by step as "Target
    # Speed Changed": a target change is not always a console button press
    ramp = [e.status.speed_kmh for e in run.status[:13]
            if isinstance(e.status, codec.TargetSpeedChanged)]
    assert len(ramp) == 13 and ramp == sorted(ramp, reverse=True) and ramp[-1] == 0.0
    # Started is padded to three bytes (04 00 00) here too
    assert any(isinstance(e.status, codec.StartedOrResumedByUser) for e in run.status)
    # a heart rate field without a sensor: 0 in every record (never a real reading)
    assert {s.data.heart_rate_bpm for s in run.telemetry} == {0}
