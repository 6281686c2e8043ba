"""``retrotread doctor --yes`` finds every quirk the simulator plays (issue 12).

For each simulator preset the quirk file doctor suggests is compared with the preset's
own quirk set, through :data:`DETECTED_AS` (which quirk-file field each simulated
behaviour shows up as). In-process over the loopback link in virtual time, and once over
real Direct Connect TCP with the simulator in another process, as a user would run it.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import pytest

from retrotread.doctor import NOT_TESTED, START_SPEED_LIMIT_KMH, doctor, suggested_quirk_yaml
from retrotread.ftms import codec
from retrotread.links.loopback import LoopbackLink
from retrotread.quirks import Quirks, load_quirk_file, load_quirks, match_quirks
from retrotread.runner import running_simulator
from retrotread.sim.presets import PRESETS, MachinePreset, Quirk
from tests.test_signals import Lines, free_port, spawn

QUIRK_DIR = Path(__file__).parent.parent / "retrotread" / "data" / "quirks"

DETECTED_AS: dict[Quirk, str | None] = {
    Quirk.MUST_START_BEFORE_SPEED: "must_start_before_speed",
    Quirk.START_AT_OWN_MINIMUM: "start_at_own_minimum",
    Quirk.IGNORES_PAUSE: "ignores_pause",
    Quirk.MIN_SPEED_ABOVE_ADVERTISED: "min_speed_kmh",
    Quirk.SLOW_REPLIES: "reply_timeout_s",
    Quirk.STOPS_ON_DISCONNECT: "stops_on_disconnect",
    Quirk.REQUEST_CONTROL_AFTER_STOP: "request_control_before_every_command",
    Quirk.START_TOGGLES_PAUSE: None,  # never tested: Start is never sent to a moving belt
}
"""The quirk-file field each simulated behaviour shows up as (None: stated not tested)."""


def test_every_simulated_quirk_is_detected_or_stated_not_tested() -> None:
    assert set(DETECTED_AS) == set(Quirk)
    fields = set(Quirks.__dataclass_fields__)
    assert {f for f in DETECTED_AS.values() if f is not None} <= fields
    assert any("Start sent to a moving belt" in why for why in NOT_TESTED)


def expected_fields(preset: MachinePreset) -> set[str]:
    return {f for q in preset.quirks if (f := DETECTED_AS[q]) is not None}


def check_suggestion(preset: MachinePreset, text: str, path: Path) -> Quirks:
    """The suggested file names the preset's quirks, no more, no fewer, with the right
    values; a bundled sim-*.yaml file for the preset says the same."""
    path.write_text(text, encoding="utf-8")
    suggested = load_quirk_file(path)
    assert set(suggested.quirks.as_dict()) == expected_fields(preset), text
    if Quirk.MIN_SPEED_ABOVE_ADVERTISED in preset.quirks:
        assert suggested.quirks.min_speed_kmh == pytest.approx(preset.min_kmh + 0.5)
    if Quirk.SLOW_REPLIES in preset.quirks:  # the simulator answers in 0.8 s
        assert suggested.quirks.reply_timeout_s is not None
        assert suggested.quirks.reply_timeout_s == 3.0  # 3 x 0.8 s, in whole seconds
    assert suggested.matches(preset.manufacturer, preset.model, None)
    bundled = match_quirks(suggested_info(preset), None, load_quirks(QUIRK_DIR))
    assert bundled == suggested.quirks, f"update {QUIRK_DIR}/sim-{preset.name}.yaml"
    return suggested.quirks


def suggested_info(preset: MachinePreset) -> object:
    from retrotread.treadmill import DeviceInfo

    return DeviceInfo(preset.manufacturer, preset.model)


@pytest.mark.looptime(noop_cycles=1)
@pytest.mark.parametrize("name", sorted(PRESETS))
async def test_doctor_suggests_the_quirks_each_preset_plays(name: str, tmp_path: Path) -> None:
    from retrotread.clock import LoopClock

    preset = PRESETS[name]
    out = io.StringIO()
    clock = LoopClock()
    async with running_simulator(clock, name, noise_kmh=0.03) as sim:
        report = await doctor(LoopbackLink(sim, name=name), clock=clock, motion=True,
                              out=out, quirk_dirs=[QUIRK_DIR])
        await asyncio.sleep(10)  # the belt comes to rest after the last Stop
        sim.belt.advance_to(sim.clock.now())
        assert sim.belt.speed_kmh == 0.0
    text = out.getvalue()
    assert report.motion_tested, text
    check_suggestion(preset, suggested_quirk_yaml(report), tmp_path / "suggested.yaml")
    if not preset.quirks and preset.min_kmh <= START_SPEED_LIMIT_KMH:
        assert report.belt_test_finished and "\n  no quirks found" in text
    # safe: never above 1.0 mph, no Start to a moving belt, and the last word is Stop
    speeds = [r.speed_kmh for r in sim.requests if isinstance(r, codec.SetTargetSpeed)]
    assert all(s <= START_SPEED_LIMIT_KMH for s in speeds)
    last = sim.requests[-1]
    if sim.preset.min_kmh <= START_SPEED_LIMIT_KMH:
        assert isinstance(last, codec.StopOrPause) and last.action is codec.StopPause.STOP
        assert "not tested: whether Start sent to a moving belt pauses it" in text
    else:  # fast-minimum: refused before the belt moved
        assert not any(isinstance(r, codec.StartOrResume) for r in sim.requests)
        assert "above 1.0 mph" in text and "did not finish" in text
        assert not report.belt_test_finished


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_doctor_over_direct_connect_finds_the_walking_pad_quirks(tmp_path: Path) -> None:
    """As the issue ran it: ``retrotread sim --preset walking-pad`` in one process (with
    its default speed noise), ``retrotread doctor --yes --write-quirk`` in another, over
    real TCP; the link-drop test closes and reopens a real socket."""
    port = free_port()
    sim = spawn("sim", "--preset", "walking-pad", "--port", str(port), "--telemetry-hz", "4")
    try:
        Lines(sim.stdout).wait_for("serving FTMS over DIRCON")
        path = tmp_path / "walking-pad.yaml"
        result = subprocess.run(
            [sys.executable, "-m", "retrotread",
             "doctor", "--device", f"dircon://127.0.0.1:{port}", "--yes",
             "--write-quirk", str(path)],
            capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        quirks = check_suggestion(PRESETS["walking-pad"], path.read_text(encoding="utf-8"),
                                  tmp_path / "copy.yaml")
        assert quirks.stops_on_disconnect and quirks.start_at_own_minimum
        assert "the belt stopped by itself when the link was closed" in result.stdout
    finally:
        sim.terminate()
        sim.wait(timeout=10)


@pytest.mark.looptime(noop_cycles=1)
async def test_doctor_says_so_when_it_cannot_come_back_after_the_link_drop() -> None:
    """The machine stays out of reach after the link-drop test (and keeps its belt
    running): doctor tries a few times, then tells the person to stop the belt at the
    console or pull the key, instead of claiming anything about it."""
    from retrotread.clock import LoopClock

    clock = LoopClock()
    out = io.StringIO()
    async with running_simulator(clock, "generic") as sim:
        starts: list[float] = []

        def on_request(time_s: float, request: codec.ControlPointRequest) -> None:
            if isinstance(request, codec.StartOrResume):
                starts.append(time_s)
                if len(starts) == 2:  # the Start of the link-drop test
                    sim.faults.refuse_connections = True

        sim.request_listeners.append(on_request)
        report = await doctor(LoopbackLink(sim), clock=clock, motion=True, out=out)
        assert sim.belt.speed_kmh > 0  # nobody could stop it: the message is true
    text = out.getvalue()
    assert "THE BELT MAY STILL BE RUNNING" in text
    assert text.count("reconnecting failed") == 2
    assert not report.quirks.stops_on_disconnect and not report.belt_test_finished


@pytest.mark.looptime(noop_cycles=1)
async def test_a_belt_that_starts_faster_than_anything_set_is_stopped_at_once() -> None:
    from retrotread.clock import LoopClock

    clock = LoopClock()
    out = io.StringIO()
    async with running_simulator(clock, "generic") as sim:
        sim.faults.runaway_kmh = 3.0  # Start runs the belt at 3 km/h, whatever was set
        report = await doctor(LoopbackLink(sim), clock=clock, motion=True, out=out)
    text = out.getvalue()
    assert "faster than any speed doctor set" in text
    kinds = [type(r).__name__ for r in sim.requests]
    # nothing after the Start but the Stop: no speed change, no Pause, no link drop
    assert kinds[kinds.index("StartOrResume") + 1:] == ["StopOrPause"], kinds
    assert report.notes
