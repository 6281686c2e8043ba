"""Wiring for one workout: device -> link -> treadmill -> envelope -> plan -> session.

A thin layer: it opens things, connects the event subscribers (session log, display or
line printer, cues, MQTT) and closes everything again. The decisions live in the
session, the envelope and the watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from retrotread.clock import Clock, LoopClock, ScaledClock
from retrotread.devices import DeviceSpec
from retrotread.envelope import (
    BACKWARD_CEILING_KMH,
    BACKWARD_CEILING_LOWEST_KMH,
    Envelope,
    MachineLimits,
)
from retrotread.errors import RetrotreadError, UsageError
from retrotread.events import Event, EventBus, Outcome, TurnaroundPhase
from retrotread.formatting import Units
from retrotread.ftms import codec
from retrotread.gatt import GattServer, Link
from retrotread.quirks import Quirks
from retrotread.session import SegmentInfo, Session, SessionResult, SessionSettings
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.treadmill import Treadmill
from retrotread.units import mph_to_kmh
from retrotread.watchdog import WatchdogLimits

if TYPE_CHECKING:
    from retrotread.heart_rate import HeartRateStrap
    from retrotread.sim.strap import SimulatedHeartRateStrap

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    device: DeviceSpec
    speedup: float = 1.0
    log_path: Path | None = None
    ui: bool = True
    units: str = "mph"
    voice: bool | None = None  # speak cues; None: on for a real machine, off for the simulator
    bell: bool = True
    backward_max_mph: float | None = None
    ready_gate: str | None = None  # override the profile's turnaround gate
    mqtt_url: str | None = None
    mqtt_config: Path | None = None
    name: str | None = None  # this treadmill's name on a shared broker (and on screens)
    sim_noise_kmh: float = 0.03
    hr_strap: DeviceSpec | None = None  # a heart-rate strap: ble:NAME, or sim (simulator only)
    companion: bool | None = None  # the companion page; None: on for a real machine
    companion_bind: str | None = None  # HOST[:PORT]; default all interfaces, port 8421+
    companion_required: bool = False  # dead-man: a paired page is part of the safety chain
    voice_stop: bool = False  # listen for a spoken "stop" (retrotread.voice)
    mic: str | None = None  # the microphone for voice_stop: index or name; None: default
    out: TextIO = field(default_factory=lambda: sys.stdout)


EXIT_CODES = {
    Outcome.COMPLETED: 0,
    Outcome.STOPPED_BY_USER: 0,
    Outcome.INTERRUPTED: 130,
    Outcome.WATCHDOG: 3,
    Outcome.SAFETY_KEY: 3,
    Outcome.ERROR: 1,
}


class LinkFactory:
    """Opens a fresh link to the device each time it is called (reconnects need one)."""

    def __init__(self, device: DeviceSpec, sim: GattServer | None) -> None:
        self.device = device
        self.sim = sim

    def __call__(self) -> Link:
        if self.device.kind == "sim":
            from retrotread.links.loopback import LoopbackLink

            assert self.sim is not None
            return LoopbackLink(self.sim, name=self.device.target)
        if self.device.kind == "dircon":
            from retrotread.links.dircon import DirconLink

            return DirconLink(self.device.target, self.device.port)
        from retrotread.links.ble import BleLink

        return BleLink(self.device.target)


def machine_limits(treadmill: Treadmill) -> MachineLimits:
    """The machine's speed range, made stricter (never looser) by its quirk file."""
    return limits_of(treadmill.speed_range, treadmill.quirks)


def limits_of(sr: codec.SpeedRange | None, quirks: Quirks) -> MachineLimits:
    """A Supported Speed Range (None: not reported), made stricter by ``quirks``."""
    if sr is None:
        log.warning("the machine did not report its speed range; assuming 0.5-20 km/h by 0.1")
        limits = MachineLimits()
    else:
        limits = MachineLimits(min_kmh=sr.min_kmh, max_kmh=sr.max_kmh,
                               increment_kmh=sr.increment_kmh or 0.1)
    if quirks.min_speed_kmh is not None and quirks.min_speed_kmh > limits.min_kmh:
        limits = dataclasses.replace(limits, min_kmh=quirks.min_speed_kmh)
    if quirks.increment_kmh is not None and quirks.increment_kmh > limits.increment_kmh:
        limits = dataclasses.replace(limits, increment_kmh=quirks.increment_kmh)
    return limits


def build_envelope(profile: Any, machine: MachineLimits,
                   backward_max_mph: float | None) -> Envelope:
    envelope: Envelope = profile.envelope(machine)
    if backward_max_mph is not None:
        # 1.0 and 2.0 mph are allowed, but fall between FTMS steps (0.01 km/h): keep them on
        # the allowed steps, as a profile's safety.backward_max is (1.61 and 3.21 km/h).
        ceiling_kmh = min(max(mph_to_kmh(backward_max_mph), BACKWARD_CEILING_LOWEST_KMH),
                          BACKWARD_CEILING_KMH)
        user = Envelope.build(machine, backward_ceiling_kmh=ceiling_kmh)
        envelope = dataclasses.replace(
            envelope,
            backward_ceiling_kmh=min(envelope.backward_ceiling_kmh, user.backward_ceiling_kmh),
        )
    return envelope


def segment_infos(profile: Any) -> list[SegmentInfo]:
    return [
        SegmentInfo(spec.index, spec.label, spec.direction, spec.speed_kmh, spec.duration_s,
                    getattr(spec, "cue", None))
        for spec in profile.flatten()
    ]


def session_settings(profile: Any, ready_gate: str | None, *, simulated: bool,
                     speedup: float = 1.0, units: str = Units.MPH) -> SessionSettings:
    turnaround = getattr(profile, "turnaround", None)
    kwargs: dict[str, Any] = {"wait_for_ready_at_start": not simulated,
                              "units": Units(units)}
    heart_rate_max_bpm = getattr(getattr(profile, "safety", None), "heart_rate_max_bpm", None)
    if heart_rate_max_bpm is not None:
        kwargs["heart_rate_max_bpm"] = heart_rate_max_bpm
    if speedup > 10:
        # A sped-up demo: keep the real tick period at 10 ms or more, so that the loop's
        # ordinary scheduling jitter is not mistaken for a stall.
        kwargs["tick_hz"] = 10.0 / (speedup / 10)
    if turnaround is not None:
        for ours, theirs in (("hold_s", "hold_s"), ("countdown_s", "countdown_s"),
                             ("announce_s", "announce_s"), ("ready_gate", "ready")):
            value = getattr(turnaround, theirs, None)
            if value is not None:
                kwargs[ours] = getattr(value, "value", value)
    if ready_gate is not None:
        kwargs["ready_gate"] = ready_gate
    return SessionSettings(**kwargs)


class _FollowsThePerson(Protocol):
    def person_faces(self, direction: Any) -> None: ...


def follow_the_person(sim: _FollowsThePerson) -> Callable[[Event], None]:
    """A bus subscriber that tells the simulator (treadmill or strap) which way the person
    faces (its heart model works harder backward); a real treadmill cannot know this."""

    def on_event(event: Event) -> None:
        if isinstance(event, TurnaroundPhase) and event.phase == "start":
            sim.person_faces(event.to_direction)

    return on_event


@contextlib.asynccontextmanager
async def running_simulator(clock: Clock, preset: str, noise_kmh: float = 0.0, *,
                            heart_rate: bool = True) -> AsyncIterator[SimulatedTreadmill]:
    sim = SimulatedTreadmill(clock, preset, speed_noise_kmh=noise_kmh, heart_rate=heart_rate)
    task = asyncio.ensure_future(sim.run())
    try:
        yield sim
    finally:
        sim.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running_strap(clock: Clock,
                        treadmill: SimulatedTreadmill) -> AsyncIterator[SimulatedHeartRateStrap]:
    """A simulated heart-rate strap on the simulated treadmill's person, notifying."""
    from retrotread.sim.strap import SimulatedHeartRateStrap

    strap = SimulatedHeartRateStrap(clock, treadmill=treadmill)
    task = asyncio.ensure_future(strap.run())
    try:
        yield strap
    finally:
        strap.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def connect_treadmill(link_factory: Callable[[], Link], clock: Clock) -> Treadmill:
    """Connect, and apply the machine's quirk file (``hardware/quirks``) if one matches."""
    from retrotread.quirks import match_quirks

    link = link_factory()
    treadmill = Treadmill(link, clock)
    try:
        await treadmill.connect()
    except BaseException:
        with contextlib.suppress(Exception):
            await link.close()
        raise
    try:
        treadmill.quirks = match_quirks(treadmill.device_info, link.description)
    except RetrotreadError as exc:
        log.warning("quirk files ignored: %s", exc)
    if treadmill.quirks.reply_timeout_s is not None:
        treadmill.reply_timeout_s = max(treadmill.reply_timeout_s,
                                        treadmill.quirks.reply_timeout_s)
    for note in treadmill.quirks.informational():
        log.info("%s (quirk file): %s", link.description, note)
    return treadmill


async def run_profile(
    profile: Any,
    *,
    link_factory: Callable[[], Link],
    clock: Clock,
    bus: EventBus,
    simulated: bool,
    profile_path: str | None = None,
    backward_max_mph: float | None = None,
    ready_gate: str | None = None,
    settings: SessionSettings | None = None,
    on_session: Callable[[Session], None] | None = None,
    speedup: float = 1.0,
    heart_rate_link_factory: Callable[[], Link] | None = None,
    stall_clock: Clock | None = None,
    units: str = Units.MPH,
) -> SessionResult:
    """Connect, build the envelope and plan for this machine, and run the session.

    With ``heart_rate_link_factory``, a heart-rate strap on that link is the session's
    heart-rate source (Treadmill Data's is then ignored); a strap that cannot be reached
    is a warning, not an error. ``stall_clock``: the real clock when ``clock`` is sped up
    (the stalled-loop rule is judged in real time, at the real machine's 10 Hz)."""
    from retrotread.heart_rate import connect_strap
    from retrotread.plan import compile_plan

    treadmill = await connect_treadmill(link_factory, clock)
    session: Session | None = None
    strap: HeartRateStrap | None = None
    try:
        envelope = build_envelope(profile, machine_limits(treadmill), backward_max_mph)
        plan = compile_plan(profile, envelope)

        async def reconnect() -> Treadmill:
            return await connect_treadmill(link_factory, clock)

        session = Session(
            plan=plan,
            segments=segment_infos(profile),
            envelope=envelope,
            treadmill=treadmill,
            clock=clock,
            bus=bus,
            settings=settings or session_settings(profile, ready_gate, simulated=simulated,
                                                  speedup=speedup, units=units),
            profile_name=profile.name,
            profile_path=profile_path,
            simulated=simulated,
            reconnect=reconnect,
            watchdog_limits=WatchdogLimits(reply_timeout_s=treadmill.reply_timeout_s),
            stall_clock=stall_clock,
        )
        if heart_rate_link_factory is not None:
            strap = await connect_strap(heart_rate_link_factory, clock,
                                        session.observe_heart_rate)
            if strap is not None:
                session.external_heart_rate = True
                log.info("heart rate from the strap %s", strap.description)
        if on_session is not None:
            on_session(session)
        return await session.run()
    finally:
        if strap is not None:
            with contextlib.suppress(Exception):
                await strap.close()
        # A reconnect replaces the session's treadmill: close whichever links are open.
        opened = {id(treadmill): treadmill}
        if session is not None:
            opened.update((id(each), each) for each in session.treadmills)
        for each in opened.values():
            with contextlib.suppress(Exception):
                await each.close()


async def speech_note_for(voice: bool, out: TextIO) -> str | None:
    """With speech on, check that it can be heard; if not, say so now, before the belt
    moves (the page shows the same note). Returns the note, or None."""
    if not voice:
        return None
    from retrotread.cues import speech_problem

    problem = await asyncio.to_thread(speech_problem)
    if problem is None:
        return None
    note = (f"Spoken cues are OFF on this computer: {problem}. Watch the screen, or turn "
            "on sound on the companion page.")
    print(f"WARNING: {note}", file=out)
    return note


async def start_companion(options: RunOptions, session_holder: list[Session],
                          narration: Any, banner: str, speech_note: str | None,
                          out: TextIO) -> Any:
    """Serve the companion page and print its URL and a QR code of it."""
    import segno

    from retrotread.companion import CompanionServer, parse_bind

    host, port = parse_bind(options.companion_bind or "")
    server = CompanionServer(lambda: session_holder[0] if session_holder else None,
                             narration=narration, host=host, port=port, banner=banner,
                             speech_note=speech_note)
    await server.start()
    url = server.url()
    print(f"companion page: {url}", file=out)
    print("Open it on a phone or tablet where you look (scan the code). The link is the "
          "pairing key for this run: do not share it.", file=out)
    with contextlib.suppress(Exception):  # a terminal that cannot draw it still has the URL
        segno.make(url, error="m").terminal(out=out, compact=True)
    if options.companion_required:
        print("--companion-required: while the belt moves, losing every companion page "
              "for more than 3 s pauses the belt.", file=out)
    return server


async def run_workout(profile_path: Path, options: RunOptions) -> int:
    """``retrotread run``: everything a person sees, on the chosen device."""
    from retrotread.profile import load_profile
    from retrotread.recorder import SessionRecorder, default_log_dir, format_summary, new_log_path

    profile = load_profile(profile_path)
    clock: Clock = ScaledClock(options.speedup) if options.speedup != 1.0 else LoopClock()
    bus = EventBus()
    out = options.out
    simulated = options.device.simulated
    if options.speedup != 1.0 and not simulated:
        raise UsageError("--speedup only works with the simulator (--device sim)")
    strap_spec = options.hr_strap
    if strap_spec is not None and strap_spec.simulated and not simulated:
        raise UsageError("--hr-strap sim only works with the simulator (--device sim); "
                              "use --hr-strap ble:NAME for a real strap")
    if strap_spec is not None and strap_spec.kind not in ("sim", "ble"):
        raise UsageError(f"--hr-strap {strap_spec}: a heart-rate strap is ble:NAME "
                              "or sim")
    voice_stop = None
    if options.voice_stop:  # before anything moves: no microphone or no model is exit 2
        from retrotread.voice.listener import open_voice_stop

        voice_stop = open_voice_stop(options.mic, bus=bus, clock=clock)
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    log_path = options.log_path or new_log_path(profile.name, now)
    if options.log_path is None:
        log_path = default_log_dir() / log_path.name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    banner = ("SIMULATED TREADMILL (no hardware): --device sim"
              if simulated else f"{options.device}")
    if options.name:
        banner = f"{options.name} · {banner}"  # the screens, the page and MQTT show it
    print(f"retrotread: {profile.name} on {banner}", file=out)
    if not simulated:
        print("Clip the safety key to your clothing. It is the only true emergency stop; "
              "this program never replaces it.", file=out)
    if strap_spec is not None:
        print(f"heart rate: strap {'(simulated)' if strap_spec.simulated else strap_spec}",
              file=out)
    if voice_stop is not None:
        checked = f", {voice_stop.how}" if voice_stop.how else ""
        print(f"voice stop: listening on {voice_stop.description}{checked} "
              "(say \"stop\"; it adds to the safety key, never replaces it)", file=out)
    print(f"session log: {log_path}", file=out)

    companion_on = options.companion if options.companion is not None else not simulated
    if options.companion_required and not companion_on:
        raise RetrotreadError("--companion-required needs the companion page: drop "
                              "--no-companion (or add --companion)")
    session_holder: list[Session] = []
    loop = asyncio.get_running_loop()

    def install(session: Session) -> None:
        session_holder.append(session)
        if options.companion_required:
            from retrotread.watchdog import CompanionRule

            session.companion_rule = CompanionRule()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, session.interrupt, f"received {sig.name}")
        if voice_stop is not None:
            voice_stop.start(session, loop)

    with SessionRecorder(log_path, clock) as recorder:
        bus.subscribe(recorder)
        flusher = asyncio.ensure_future(recorder.flush_loop())
        ui_task: asyncio.Future[Any] | None = None
        extra_tasks: list[asyncio.Future[Any]] = []
        key_reader: Any = None
        extra_closers: list[Callable[[], Any]] = []
        try:
            from retrotread.cues import CuePlayer
            from retrotread.presentation import Narration

            narration = Narration()  # what is said, once, for speech, screen and page
            bus.subscribe(narration)
            voice = options.voice if options.voice is not None else not simulated
            cues = CuePlayer(bell=options.bell, voice=voice, out=out)
            narration.add(cues)
            speech_note = await speech_note_for(voice, out)
            if companion_on:
                companion = await start_companion(options, session_holder, narration,
                                                  banner, speech_note, out)
                extra_closers.append(companion.close)
            if voice_stop is not None:
                from retrotread.voice.listener import host_speaking_probe

                voice_stop.host_speaking = host_speaking_probe(cues)
            if options.ui:
                from retrotread.display import KeyReader, LiveDisplay

                display = LiveDisplay(
                    lambda: session_holder[0].snapshot(banner) if session_holder else None,
                    units=options.units, narrator=narration.narrator,
                )
                ui_task = asyncio.ensure_future(display.run())
                key_reader = KeyReader(
                    lambda command, source: (session_holder[0].request(command, source)
                                             if session_holder else False))
                key_reader.__enter__()
            else:
                from retrotread.display import EventPrinter, KeyReader

                # Without the display, keys still work on a terminal, and commands can be
                # piped in (one character per command: r, space, s, +, -).
                key_reader = KeyReader(
                    lambda command, source: (session_holder[0].request(command, source)
                                             if session_holder else False),
                    accept_pipes=True)
                key_reader.__enter__()

                bus.subscribe(EventPrinter(out, units=options.units,
                                           segment_count=len(profile.flatten())))
            if options.mqtt_url or options.mqtt_config:
                from retrotread.mqtt import MqttBridge, MqttSettings

                mqtt_settings = MqttSettings.from_sources(
                    url=options.mqtt_url, config_file=options.mqtt_config).named(options.name)
                bridge = MqttBridge(
                    mqtt_settings,
                    command_handler=lambda command, source: (
                        session_holder[0].request(command, source) if session_holder else False),
                )
                bus.subscribe(bridge.publish_event)
                bridge_task = asyncio.ensure_future(bridge.run())

                def bridge_ended(_task: asyncio.Future[Any], bridge: Any = bridge) -> None:
                    if bridge.refused:  # the name is in use on the broker: say so
                        print(f"retrotread: MQTT off: {bridge.refused}", file=out)

                bridge_task.add_done_callback(bridge_ended)
                extra_tasks.append(bridge_task)

                async def feed_snapshots() -> None:
                    from retrotread.presentation import present

                    while True:
                        await asyncio.sleep(1.0)
                        if session_holder:
                            snapshot = session_holder[0].snapshot(banner)
                            bridge.update_snapshot(
                                snapshot, present(snapshot, narration.narrator.said))

                extra_tasks.append(asyncio.ensure_future(feed_snapshots()))
            async with contextlib.AsyncExitStack() as stack:
                sim = None
                if simulated:
                    sim = await stack.enter_async_context(
                        running_simulator(clock, options.device.target, options.sim_noise_kmh))
                    bus.subscribe(follow_the_person(sim))
                strap_links: LinkFactory | None = None
                if strap_spec is not None:
                    strap_server = None
                    if strap_spec.simulated:
                        assert sim is not None
                        strap_server = await stack.enter_async_context(
                            running_strap(clock, sim))
                        bus.subscribe(follow_the_person(strap_server))
                    strap_links = LinkFactory(strap_spec, strap_server)
                result = await run_profile(
                    profile,
                    link_factory=LinkFactory(options.device, sim),
                    clock=clock,
                    bus=bus,
                    simulated=simulated,
                    profile_path=str(profile_path),
                    backward_max_mph=options.backward_max_mph,
                    ready_gate=options.ready_gate,
                    on_session=install,
                    speedup=options.speedup,
                    heart_rate_link_factory=strap_links,
                    stall_clock=LoopClock() if options.speedup != 1.0 else None,
                    units=options.units,
                )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            if key_reader is not None:
                key_reader.__exit__(None, None, None)
            if voice_stop is not None:
                await voice_stop.close()
            for task in [ui_task, flusher, *extra_tasks]:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for closer in extra_closers:
                with contextlib.suppress(Exception):
                    await closer()
    from retrotread.recorder import read_events, summarize

    print(format_summary(summarize(read_events(log_path)), units=options.units), file=out)
    return EXIT_CODES.get(result.outcome, 1)
