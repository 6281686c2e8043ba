"""``retrotread doctor``: probe one FTMS machine and suggest a quirk file.

It connects to one machine with the same FTMS client a workout uses and reports
what it can do (features, speed and incline range, Device Information, whether Request
Control is granted). Only with ``--yes`` (the user's word that the belt is empty and the
safety key is clipped) does it move the belt, never above 1.0 mph: a speed set before
Start (was it used?), one small speed change, Pause, a link closed and reopened with the
belt at its floor (did it stop by itself?), Stop; it watches the replies, the status
notifications and the telemetry, and suggests a quirk file. What it leaves untested
(:data:`NOT_TESTED`) it says, with the reason. hardware/README.md describes each step.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from retrotread import gatt
from retrotread.clock import Clock, LoopClock
from retrotread.errors import (
    ControlPointError,
    RetrotreadError,
    TreadmillError,
)
from retrotread.formatting import kmh_text, speed_range_text
from retrotread.ftms import codec
from retrotread.quirks import Quirks, dump_quirk_file, load_quirks, matching_files
from retrotread.treadmill import CommandReply, StatusEvent, Treadmill
from retrotread.units import KMH_PER_MPH

START_SPEED_LIMIT_KMH = math.floor(1.0 * KMH_PER_MPH * 100) / 100  # 1.60: a ceiling, rounded down
SPEED_TOLERANCE_KMH = 0.06
SETTLED_SAMPLES = 4
SETTLED_SPREAD_KMH = 0.12
"""Reported speeds jitter (a real belt's sensor, the simulator's noise): a settled belt is
4 samples within 0.12 km/h of each other."""
LINK_DROP_S = 2.0
"""How long the link stays closed in the link-drop test."""
RECONNECT_ATTEMPTS = 3
LINK_DROP_WATCH_S = 8.0
"""After reconnecting, how long the belt has to stop by itself."""
NOT_TESTED = (
    "whether Start sent to a moving belt pauses it: never sent, by doctor or by a workout "
    "(retrotread never sends Start to a moving belt, so the answer would change nothing, "
    "and what an unknown machine does then, pause, restart its program or jump to a preset "
    "speed, is not worth finding out with the belt running)",
)


@dataclass
class ProbeStep:
    """One command of the probe and what followed it."""

    what: str
    result: str
    reply_s: float | None = None
    observed: str = ""


@dataclass
class DoctorReport:
    link: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    machine_features: list[str] = field(default_factory=list)
    target_features: list[str] = field(default_factory=list)
    speed_range: tuple[float, float, float] | None = None
    incline_range: tuple[float, float, float] | None = None
    has_treadmill_data: bool = False
    control: str = "not tried"
    control_granted: bool = False
    motion_tested: bool = False
    belt_test_finished: bool = False
    """The belt test ran to its end (else its quirks are incomplete: see the notes)."""
    steps: list[ProbeStep] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    not_tested: list[str] = field(default_factory=list)
    """Behaviours the belt test leaves out, each with the reason."""
    max_reply_s: float | None = None
    quirks: Quirks = field(default_factory=Quirks)
    known_quirk_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["quirks"] = self.quirks.as_dict()
        return record


def _flag_names(value: Any) -> list[str]:
    return [member.name.lower() for member in type(value) if member in value and member.name]


class _Probe:
    """Moves the belt a little, watching replies, status and telemetry."""

    def __init__(self, treadmill: Treadmill, clock: Clock, report: DoctorReport,
                 say: Callable[[str], None]) -> None:
        self.t = treadmill
        self.clock = clock
        self.report = report
        self.say = say
        self.started = False
        self.statuses: list[codec.MachineStatus] = []
        self.reply_times: list[float] = []
        self._sent_at: float | None = None
        self._telemetry_seen = asyncio.Event()
        treadmill.on_telemetry(lambda _telemetry: self._telemetry_seen.set())
        treadmill.on_status(self._on_status)
        treadmill.on_command_sent(self._on_sent)
        treadmill.on_command(self._on_reply)

    def _on_status(self, event: StatusEvent) -> None:
        self.statuses.append(event.status)
        self.report.statuses.append(type(event.status).__name__)

    def _on_sent(self, time_s: float, _request: codec.ControlPointRequest) -> None:
        self._sent_at = time_s

    def _on_reply(self, reply: CommandReply) -> None:
        if reply.response is not None and self._sent_at is not None:
            self.reply_times.append(reply.time_s - self._sent_at)

    async def command(self, what: str, request: codec.ControlPointRequest) -> ProbeStep:
        before = len(self.reply_times)
        try:
            await self.t.command(request)
            result = "success"
        except ControlPointError as exc:
            try:
                reason = codec.ResultCode(exc.result_code).name.lower()
            except ValueError:
                reason = f"result code 0x{exc.result_code:02x}"
            result = f"refused: {reason}"
        except TreadmillError as exc:  # includes ControlPointTimeoutError
            result = f"failed: {exc}"
        reply_s = self.reply_times[-1] if len(self.reply_times) > before else None
        step = ProbeStep(what, result, reply_s)
        self.report.steps.append(step)
        timing = f" in {reply_s:.2f} s" if reply_s is not None else ""
        self.say(f"  {what}: {result}{timing}")
        return step

    def speed(self) -> float | None:
        latest = self.t.latest
        return latest.data.speed_kmh if latest is not None else None

    async def wait_for_speed(self, target: float, timeout_s: float,
                             since_s: float | None = None) -> float | None:
        """Seconds until telemetry (newer than ``since_s``) shows ``target`` (None if it
        never does)."""
        start = self.clock.now()
        while self.clock.now() - start <= timeout_s:
            latest = self.t.latest
            fresh = latest is not None and (since_s is None or latest.time_s > since_s)
            speed = self.speed() if fresh else None
            if speed is not None and abs(speed - target) <= SPEED_TOLERANCE_KMH:
                return self.clock.now() - start
            await asyncio.sleep(0.25)
        return None

    async def settle(self, timeout_s: float) -> float | None:
        """The speed once telemetry shows a moving belt holding still (the mean of
        :data:`SETTLED_SAMPLES` samples within :data:`SETTLED_SPREAD_KMH`, so that the
        reported speed's own jitter does not hide a settled belt)."""
        start = self.clock.now()
        samples: list[float] = []
        last_time: float | None = None
        while self.clock.now() - start <= timeout_s:
            latest = self.t.latest
            if latest is not None and latest.time_s != last_time:
                last_time = latest.time_s
                samples.append(latest.data.speed_kmh or 0.0)
                tail = samples[-SETTLED_SAMPLES:]
                if (len(tail) == SETTLED_SAMPLES and min(tail) > 0.05
                        and max(tail) - min(tail) <= SETTLED_SPREAD_KMH):
                    return round(sum(tail) / len(tail), 2)
            await asyncio.sleep(0.25)
        return samples[-1] if samples else None

    async def start_belt(self, what: str) -> float | None:
        """Start (the belt is stopped) and return the speed it settles at (None: it did
        not start)."""
        if not self.t.has_control:
            await self.command("Request Control", codec.RequestControl())
        self.started = True
        self.say("  starting the belt (the belt is empty; the safety key is clipped)")
        step = await self.command(what, codec.StartOrResume())
        if step.result != "success":
            return None
        started = await self.settle(15.0)
        step.observed = f"belt settled at {kmh_text(started, 2)}" if started else "belt never moved"
        self.say(f"    {step.observed}")
        if started is None or started <= 0.05:
            self.report.notes.append("Start was answered but the belt did not move within 15 s")
            return None
        return started

    async def run(self) -> None:
        t, report = self.t, self.report
        sr = t.speed_range
        if sr is None:
            report.notes.append("no Supported Speed Range: not moving a belt of unknown range")
            return
        increment = sr.increment_kmh or 0.1
        # 0. never start a moving belt
        await self.wait_for_telemetry(5.0)
        speed = self.speed()
        if speed is None:
            report.notes.append("no Treadmill Data within 5 s: not moving the belt blind")
            return
        if speed > 0.1:
            report.notes.append(f"the belt is already moving ({kmh_text(speed, 2)}): stop it first")
            return
        # 1. the real floor: the lowest speed the machine accepts (belt still stopped)
        floor = round(sr.min_kmh, 2)
        accepted: float | None = None
        while floor <= START_SPEED_LIMIT_KMH + 1e-9:
            step = await self.command(f"Set Target Speed {kmh_text(floor, 2)} (belt stopped)",
                                      codec.SetTargetSpeed(speed_kmh=floor))
            if step.result == "success":
                accepted = floor
                break
            if "invalid_parameter" not in step.result:
                break
            floor = round(floor + increment, 2)
        if accepted is None:
            report.notes.append(
                f"no speed from {sr.min_kmh:.2f} to {kmh_text(START_SPEED_LIMIT_KMH, 2)} was "
                "accepted: its floor is above 1.0 mph, too fast to start backward walking")
            return
        if accepted > sr.min_kmh + 1e-9:
            report.quirks = _replace(report.quirks, min_speed_kmh=accepted)
            report.notes.append(f"advertised minimum {kmh_text(sr.min_kmh, 2)} was refused; "
                                f"the real floor is {kmh_text(accepted, 2)}")
        high = round(accepted + increment, 2)
        if high > START_SPEED_LIMIT_KMH + 1e-9:
            high = accepted
        # 2. a speed set before Start, as far above the floor as 1.0 mph allows, so that
        #    the belt plainly shows whether Start used it
        before_start = round(accepted + increment * math.floor(
            (START_SPEED_LIMIT_KMH - accepted) / increment + 1e-6), 2)
        echoed = False
        if before_start > accepted:
            mark = len(self.statuses)
            await self.command(f"Set Target Speed {kmh_text(before_start, 2)} (belt stopped)",
                               codec.SetTargetSpeed(speed_kmh=before_start))
            await asyncio.sleep(0.5)  # its Target Speed Changed status, if it sends one
            echoed = any(isinstance(s, codec.TargetSpeedChanged) and s.speed_kmh is not None
                         and abs(s.speed_kmh - before_start) <= 0.01
                         for s in self.statuses[mark:])
        else:
            report.not_tested.append(
                f"whether Start uses the speed set before it: {kmh_text(accepted, 2)} is its only "
                "speed at or below 1.0 mph")
        # 3. Start
        started = await self.start_belt("Start or Resume")
        if started is None:
            return
        fastest_set = max(before_start, accepted)
        if started > fastest_set + SPEED_TOLERANCE_KMH:
            report.notes.append(
                f"Start ran the belt at {kmh_text(started, 2)}, faster than any speed doctor set "
                f"({kmh_text(fastest_set, 2)}): stopped at once; not fit for backward walking "
                "until that is understood")
            self.say(f"  {report.notes[-1]}")
            return
        if before_start > accepted and (
                abs(started - before_start) > abs(started - accepted)):
            if echoed:
                report.quirks = _replace(report.quirks, start_at_own_minimum=True)
                report.notes.append(
                    f"the machine confirmed {kmh_text(before_start, 2)} before Start, then ran at "
                    f"{kmh_text(started, 2)}: Start runs at its own minimum (the speed is sent "
                    "after Start anyway)")
            else:
                report.quirks = _replace(report.quirks, must_start_before_speed=True)
                report.notes.append(
                    f"the speed set before Start ({kmh_text(before_start, 2)}) was not taken (the "
                    f"belt ran at {kmh_text(started, 2)}): send the speed only after Start")
        # 4. a small speed change, both ways, ending at the floor
        targets = (high, accepted) if abs(started - accepted) <= SPEED_TOLERANCE_KMH else (
            accepted, high, accepted)
        for target in targets:
            step = await self.command(f"Set Target Speed {kmh_text(target, 2)}",
                                      codec.SetTargetSpeed(speed_kmh=target))
            took = await self.wait_for_speed(target, 8.0)
            step.observed = (f"telemetry reached it in {took:.1f} s" if took is not None
                             else f"telemetry never showed it (still {self.speed()} km/h)")
            self.say(f"    {step.observed}")
            if took is None:
                report.notes.append(f"Set Target Speed {target:.2f} was answered "
                                    f"'{step.result}' but the belt did not follow")
        # 5. Pause: does the machine pause, or end the workout?
        self.statuses.clear()
        step = await self.command("Pause", codec.StopOrPause(action=codec.StopPause.PAUSE))
        stopped = await self.wait_for_speed(0.0, 15.0)
        await asyncio.sleep(1.0)
        actions = [s.action for s in self.statuses if isinstance(s, codec.StoppedOrPausedByUser)]
        if codec.StopPause.STOP in actions:
            report.quirks = _replace(report.quirks, ignores_pause=True)
            report.notes.append("Pause ended the workout (status: stopped): a turnaround "
                                "must restart it, not resume it")
        step.observed = (f"belt stopped in {stopped:.1f} s" if stopped is not None
                         else "the belt did not stop within 15 s")
        self.say(f"    {step.observed}")
        if stopped is None:
            return
        # 6. the link drops with the belt at its floor and nobody on it
        report.belt_test_finished = await self.drop_link_test(accepted)

    async def drop_link_test(self, floor_kmh: float) -> bool:
        """Start again at the floor, close the link, reconnect: did the belt stop itself?
        (False: the test could not be done.)

        Done only here, with nobody on the belt, at the lowest speed: if the machine keeps
        the belt running, it runs empty at its floor for the few seconds until the doctor
        is back and sends Stop."""
        t, report = self.t, self.report
        await self.command(f"Set Target Speed {kmh_text(floor_kmh, 2)} (belt stopped)",
                           codec.SetTargetSpeed(speed_kmh=floor_kmh))
        running = await self.start_belt("Start or Resume (for the link-drop test)")
        if running is None:
            return False
        self.say(f"  closing the link with the belt at {kmh_text(running, 2)} (nobody on it), "
                 f"reconnecting in {LINK_DROP_S:g} s")
        dropped_s = self.clock.now()
        with contextlib.suppress(RetrotreadError, OSError):
            await t.close()
        await asyncio.sleep(LINK_DROP_S)
        for attempt in range(1, RECONNECT_ATTEMPTS + 1):
            try:
                await t.connect()
                break
            except (RetrotreadError, OSError) as exc:
                with contextlib.suppress(RetrotreadError, OSError):
                    await t.close()
                if attempt < RECONNECT_ATTEMPTS:
                    self.say(f"    reconnecting failed ({exc}); trying again")
                    await asyncio.sleep(LINK_DROP_S)
                    continue
                report.notes.append(
                    f"could not reconnect after the link-drop test ({exc}): THE BELT MAY "
                    "STILL BE RUNNING: stop it at the console or pull the safety key")
                self.say(f"  {report.notes[-1]}")
                self.started = False  # nothing more can be sent
                return False
        stopped = await self.wait_for_speed(0.0, LINK_DROP_WATCH_S, since_s=dropped_s)
        if stopped is not None:
            report.quirks = _replace(report.quirks, stops_on_disconnect=True)
            report.notes.append("the belt stopped by itself when the link was closed")
            self.say("    the belt stopped by itself when the link was closed")
        else:
            report.notes.append("the belt kept running when the link was closed: only the "
                                "safety key or the console stops it when the link is lost")
            self.say("    the belt kept running without the link")
        return True

    async def wait_for_telemetry(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._telemetry_seen.wait()

    async def stop(self) -> None:
        """Stop the belt, then see whether control survived the stop."""
        if not self.t.has_control:  # after the link-drop test: take control back first
            await self.command("Request Control", codec.RequestControl())
        self.statuses.clear()
        await self.command("Stop", codec.StopOrPause(action=codec.StopPause.STOP))
        stopped = await self.wait_for_speed(0.0, 15.0)
        await asyncio.sleep(1.0)
        if stopped is None:
            self.report.notes.append("the belt did not stop within 15 s of Stop: stop it at "
                                     "the console")
        lost = any(isinstance(s, codec.ControlPermissionLost) for s in self.statuses)
        if lost or not self.t.has_control:
            self.report.quirks = _replace(self.report.quirks,
                                          request_control_before_every_command=True)
            self.report.notes.append("control was lost after Stop: request control again "
                                     "before commands")


def _replace(quirks: Quirks, **changes: Any) -> Quirks:
    import dataclasses

    return dataclasses.replace(quirks, **changes)


async def doctor(
    link: gatt.Link,
    *,
    clock: Clock | None = None,
    motion: bool = False,
    name: str | None = None,
    out: TextIO | None = None,
    quirk_dirs: list[Path] | None = None,
) -> DoctorReport:
    """Probe one machine over ``link`` and return what was found (printing as it goes)."""
    stream = out if out is not None else sys.stdout
    clock = clock or LoopClock()

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    treadmill = Treadmill(link, clock, reply_timeout_s=5.0)
    report = DoctorReport(link=link.description, name=name)
    say(f"connecting to {link.description} ...")
    await treadmill.connect()
    try:
        info = treadmill.device_info
        report.manufacturer, report.model = info.manufacturer, info.model
        report.serial_number = info.serial_number
        if treadmill.feature is not None:
            report.machine_features = _flag_names(treadmill.feature.machine)
            report.target_features = _flag_names(treadmill.feature.target)
        sr, ir = treadmill.speed_range, treadmill.inclination_range
        if sr is not None:
            report.speed_range = (sr.min_kmh, sr.max_kmh, sr.increment_kmh)
        if ir is not None:
            report.incline_range = (ir.min_pct, ir.max_pct, ir.increment_pct)
        report.has_treadmill_data = True  # connect() insists on it
        try:
            known = matching_files(info, name, load_quirks(quirk_dirs))
            report.known_quirk_files = [f.id for f in known]
        except RetrotreadError as exc:
            report.notes.append(f"quirk files: {exc}")
        _print_identity(report, say)
        probe = _Probe(treadmill, clock, report, say)
        step = await probe.command("Request Control", codec.RequestControl())
        report.control = step.result
        report.control_granted = step.result == "success"
        if motion and report.control_granted:
            report.motion_tested = True
            report.not_tested.extend(NOT_TESTED)
            say("probing with the belt moving (never above 1.0 mph; stay off the belt "
                "until the end):")
            try:
                await probe.run()
            finally:
                if probe.started:
                    with contextlib.suppress(RetrotreadError):
                        await asyncio.shield(probe.stop())
        elif motion:
            report.notes.append("control not granted: the belt was not moved")
        else:
            say("  (not moving the belt: add --yes once the belt is empty and the safety "
                "key is clipped, to test Start, a speed change, Pause, a link drop and Stop)")
        if probe.reply_times:
            report.max_reply_s = round(max(probe.reply_times), 3)
            typical_s = statistics.median(probe.reply_times)
            if report.max_reply_s > 0.5:
                # Three times the typical reply and half as much again as the slowest, in
                # whole seconds: a busy computer or link adding a few tenths of a second
                # to one reply must not change the suggested file.
                suggested = float(max(2, math.ceil(typical_s * 3),
                                      math.ceil(report.max_reply_s * 1.5)))
                report.quirks = _replace(report.quirks, reply_timeout_s=suggested)
                report.notes.append(f"slow control point replies ({typical_s:.2f} s typical, "
                                    f"up to {report.max_reply_s:.2f} s)")
    finally:
        with contextlib.suppress(RetrotreadError, OSError):
            await treadmill.close()
    _print_findings(report, say)
    return report


def _print_identity(report: DoctorReport, say: Callable[[str], None]) -> None:
    say(f"  manufacturer: {report.manufacturer or '?'}   model: {report.model or '?'}   "
        f"serial: {report.serial_number or '?'}")
    say(f"  features: {', '.join(report.machine_features) or '?'}")
    say(f"  can be set: {', '.join(report.target_features) or '?'}")
    if report.speed_range:
        lo, hi, inc = report.speed_range
        say(f"  speed range: {speed_range_text(lo, hi, 'km/h')} by {inc:.2f} "
            f"({speed_range_text(lo, hi, 'mph')})")
    else:
        say("  speed range: not reported")
    if report.incline_range:
        lo, hi, inc = report.incline_range
        say(f"  incline range: {lo:.1f}-{hi:.1f} % by {inc:.1f}")
    if report.known_quirk_files:
        say(f"  known quirk files: {', '.join(report.known_quirk_files)}")


def _print_findings(report: DoctorReport, say: Callable[[str], None]) -> None:
    say("findings:")
    say(f"  Request Control: {report.control}")
    for note in report.notes:
        say(f"  - {note}")
    for what in report.not_tested:
        say(f"  not tested: {what}")
    quirks = report.quirks.as_dict()
    if quirks:
        say("  suggested quirks: " + ", ".join(f"{k}={v}" for k, v in quirks.items()))
    elif report.belt_test_finished:
        say("  no quirks found")
    elif report.motion_tested:
        say("  no quirks found so far: the belt test did not finish (see above)")


def suggested_quirk_yaml(report: DoctorReport) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-",
                  f"{report.manufacturer or ''} {report.model or report.name or ''}".lower())
    return dump_quirk_file(
        slug.strip("-") or "unknown-machine",
        description=f"{report.manufacturer or '?'} {report.model or '?'} "
                    "(written by retrotread doctor; review before sharing)",
        source=f"retrotread doctor over {report.link}"
               + ("" if report.belt_test_finished else " (belt test not done or not "
                  "finished: quirks incomplete)"),
        manufacturer=report.manufacturer,
        model=report.model,
        name=report.name,
        quirks=report.quirks,
        comments=["Suggested by `retrotread doctor`. Check it, add what you know (firmware",
                  "version, console behaviour), and contribute it: see hardware/README.md.",
                  "", *[f"doctor: {note}" for note in report.notes]],
    )


def add_doctor_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Probe a machine: features, speed and incline range, Device Information, whether "
        "Request Control is granted. With --yes it also moves the belt, never above 1.0 "
        "mph, for about half a minute: Start after a speed set before it, a small speed "
        "change, Pause, the link closed for 2 s with the belt at its floor (does it stop by "
        "itself?), and Stop; it reports how each was answered and what it found. Use --yes "
        "ONLY with nobody on the belt and the safety key clipped, and stay off the belt until "
        "it has finished.")
    p.add_argument("--device", required=True, metavar="DEVICE",
                   help="ble:ADDRESS_OR_NAME, dircon://HOST:PORT, or sim[:PRESET]")
    p.add_argument("--yes", action="store_true",
                   help="I confirm the belt is empty and the safety key is clipped: "
                   "allow the probe to move the belt")
    p.add_argument("--write-quirk", type=Path, default=None, metavar="FILE",
                   help="write a suggested quirk file (YAML) here")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.add_argument("--dump", type=Path, default=None, metavar="FILE.json",
                   help="also write a machine capture: the GATT table, every value read and "
                   "a timed trace of notifications, indications and control point writes "
                   "(replayable with retrotread.links.replay; see docs/machine-captures.md)")


def run_doctor(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    from retrotread.devices import parse_device

    stream = out if out is not None else sys.stdout
    device = parse_device(args.device)
    report = asyncio.run(_doctor_device(device, motion=args.yes, out=stream,
                                        dump=getattr(args, "dump", None)))
    if args.json:
        stream.write(json.dumps(report.as_dict(), indent=2) + "\n")
    if args.write_quirk is not None:
        args.write_quirk.write_text(suggested_quirk_yaml(report), encoding="utf-8")
        print(f"wrote {args.write_quirk}", file=stream)
    return 0 if report.control_granted else 1


async def _doctor_device(device: Any, *, motion: bool, out: TextIO,
                         dump: Path | None = None) -> DoctorReport:
    clock = LoopClock()
    if device.kind == "sim":
        from retrotread.links.loopback import LoopbackLink
        from retrotread.runner import running_simulator

        async with running_simulator(clock, device.target) as sim:
            return await _doctor_link(LoopbackLink(sim, name=device.target), clock,
                                      motion=motion, out=out, dump=dump)
    if device.kind == "dircon":
        from retrotread.links.dircon import DirconLink

        return await _doctor_link(DirconLink(device.target, device.port), clock,
                                  motion=motion, out=out, dump=dump)
    from retrotread.links.ble import BleLink, is_address

    name = None if is_address(device.target) else device.target
    return await _doctor_link(BleLink(device.target), clock, motion=motion, out=out,
                              dump=dump, name=name)


async def _doctor_link(link: gatt.Link, clock: Clock, *, motion: bool, out: TextIO,
                       dump: Path | None, name: str | None = None) -> DoctorReport:
    """Run the doctor over ``link``; with ``dump``, record everything and write a capture
    (also when the probe fails half-way: what was seen until then is kept)."""
    if dump is None:
        return await doctor(link, clock=clock, motion=motion, out=out, name=name)
    from retrotread.links.replay import RecordingLink

    recorder = RecordingLink(link, clock)
    report: DoctorReport | None = None
    try:
        report = await doctor(recorder, clock=clock, motion=motion, out=out, name=name)
        return report
    finally:
        model = {"manufacturer": report.manufacturer if report else None,
                 "model": report.model if report else None, "name": name}
        source = {"tool": "retrotread doctor" + (" --yes" if motion else ""),
                  "link": link.description, "url": None,
                  "note": "recorded by retrotread doctor --dump"}
        recorder.capture(model=model, source=source).dump(dump)
        print(f"wrote the machine capture {dump}", file=out)
