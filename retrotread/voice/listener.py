"""The listening thread, and its wiring to a session.

:class:`VoiceListener` reads its :class:`~retrotread.voice.audio.AudioSource` on a thread
of its own, so neither a blocking microphone nor the recognizer's work can delay the
control loop; each detection reaches the asyncio loop through ``call_soon_threadsafe``.

While the host itself speaks (``host_speaking()``), and for ``hold_off_s`` of audio after,
the audio is not recognized: several announcements contain the word "stop" ("Turning
around soon: the belt will stop."). A word the person says during an announcement is
therefore not heard; they say it again after it.

:class:`VoiceStop` turns detections into ``Session.request(command, CommandSource.VOICE)``,
logs each one (a ``voice`` record) and announces a microphone that is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrotread.clock import Clock
from retrotread.errors import MicrophoneLostError
from retrotread.events import Announcement, CommandSource, EventBus, UserCommand, VoiceHeard
from retrotread.voice.audio import AudioSource
from retrotread.voice.default import default_spotter
from retrotread.voice.spotter import Spotter

if TYPE_CHECKING:
    from retrotread.session import Session

log = logging.getLogger(__name__)

HOLD_OFF_S = 0.6
"""Audio still ignored after the host stops speaking: the speaker's and the room's tail,
and the audio still buffered between the speaker and the microphone."""
SILENT_MIC_S = 3.0
"""A microphone that delivers nothing for this long is treated as lost."""


@dataclass(frozen=True)
class Detection:
    word: str
    command: UserCommand
    confidence: float
    frame_end_s: float
    """The listener's clock (monotonic) when the block that completed the word was read:
    the end of that audio frame, as near as the program can know it."""
    audio_end_s: float
    """The end of that block in the stream's own time (seconds of audio since the start)."""


def never_speaking() -> bool:
    return False


def host_speaking_probe(cues: Any) -> Callable[[], bool]:
    """Whether the session's speech is playing now, from a cue player.

    Uses the player's ``speaking()`` when it has one; otherwise whether its espeak-ng
    process is still running (``CuePlayer._process``)."""
    speaking = getattr(cues, "speaking", None)
    if callable(speaking):
        return speaking

    def espeak_running() -> bool:
        process = getattr(cues, "_process", None)
        return process is not None and process.poll() is None

    return espeak_running


class VoiceListener:
    """Reads ``source`` on a thread, gates it while the host speaks, spots keywords, and
    calls ``on_detection(detection, latency_s)`` / ``on_lost(message)`` on ``loop``."""

    def __init__(
        self,
        source: AudioSource,
        spotter: Spotter,
        *,
        loop: asyncio.AbstractEventLoop,
        on_detection: Callable[[Detection, float], None],
        on_lost: Callable[[str], None],
        host_speaking: Callable[[], bool] = never_speaking,
        hold_off_s: float = HOLD_OFF_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.spotter = spotter
        self.loop = loop
        self.on_detection = on_detection
        self.on_lost = on_lost
        self.host_speaking = host_speaking
        self.hold_off_s = hold_off_s
        self.now = now
        self.blocks = 0
        self.gated_blocks = 0
        self.detections = 0
        self.last_block_s: float | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._gate_until_sample = -1
        self._gated = False
        self._probe_failed = False

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self.last_block_s = self.now()
        self._thread = threading.Thread(target=self._run, name="retrotread-voice",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the thread to end (a finite source ends by itself); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop_soon(self) -> None:
        """Ask the thread to end after its current read (never blocks)."""
        self._stopping.set()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        with contextlib.suppress(Exception):
            self.source.close()
        self.join(timeout_s)

    # ------------------------------------------------------------------ the thread
    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the workout is over
            self._stopping.set()

    def _host_is_speaking(self) -> bool:
        try:
            return bool(self.host_speaking())
        except Exception:
            if not self._probe_failed:
                self._probe_failed = True
                log.exception("cannot tell whether the host is speaking; treating it as "
                              "speaking, so recognition pauses")
            return True

    def _run(self) -> None:
        rate = self.spotter.sample_rate_hz
        position = 0
        try:
            while not self._stopping.is_set():
                block = self.source.read()
                frame_end_s = self.now()
                if block is None:
                    break
                self.last_block_s = frame_end_s
                self.blocks += 1
                position += len(block)
                if self._host_is_speaking():
                    self._gate_until_sample = position + round(self.hold_off_s * rate)
                if position - len(block) < self._gate_until_sample:
                    # Any part of this block may hold the host's speech: do not recognize.
                    self.gated_blocks += 1
                    self._gated = True
                    continue
                if self._gated:
                    self._gated = False
                    self.spotter.reset()
                for spotted in self.spotter.feed(block):
                    self.detections += 1
                    detection = Detection(spotted.word, spotted.command, spotted.confidence,
                                          frame_end_s, position / rate)
                    self._post(self._deliver, detection)
        except MicrophoneLostError as exc:
            if not self._stopping.is_set():
                self._post(self.on_lost, str(exc))
        except Exception as exc:
            log.exception("the voice listener failed")
            if not self._stopping.is_set():
                self._post(self.on_lost, f"the voice listener failed: {exc}")

    def _deliver(self, detection: Detection) -> None:
        """On the loop's thread."""
        if self._stopping.is_set():
            return
        self.on_detection(detection, self.now() - detection.frame_end_s)


class VoiceStop:
    """A listener wired to a session: each detection is a ``request`` from
    ``CommandSource.VOICE`` and a ``voice`` record; a lost microphone is announced (level
    warning, so spoken, belled and shown) and the workout goes on."""

    def __init__(self, source: AudioSource, spotter: Spotter, *, bus: EventBus,
                 clock: Clock, host_speaking: Callable[[], bool] = never_speaking,
                 hold_off_s: float = HOLD_OFF_S, silent_mic_s: float = SILENT_MIC_S) -> None:
        self.source = source
        self.spotter = spotter
        self.bus = bus
        self.clock = clock
        self.host_speaking = host_speaking
        self.hold_off_s = hold_off_s
        self.silent_mic_s = silent_mic_s
        self.session: Session | None = None
        self.listener: VoiceListener | None = None
        self.lost = False
        self._watch: asyncio.Future[None] | None = None

    @property
    def description(self) -> str:
        device = getattr(self.source, "device", None)
        return repr(device.name) if device is not None else "an audio stream"

    @property
    def how(self) -> str | None:
        """How the spotter listens, as the start-up line says it: its own ``name``, or
        what checks its candidates (its second stage's name), if anything."""
        named = getattr(self.spotter, "name", None)
        if named:
            return str(named)
        checker = getattr(getattr(self.spotter, "verifier", None), "name", None)
        return f'each "stop" checked by {checker}' if checker else None

    def start(self, session: Session | None,
              loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Listen for ``session`` (call on the loop's thread, once the session exists)."""
        self.session = session
        loop = loop or asyncio.get_running_loop()
        self.listener = VoiceListener(self.source, self.spotter, loop=loop,
                                      on_detection=self._on_detection, on_lost=self._on_lost,
                                      host_speaking=self.host_speaking,
                                      hold_off_s=self.hold_off_s)
        self.listener.start()
        self._watch = asyncio.ensure_future(self._watch_silence())

    async def _watch_silence(self) -> None:
        """A microphone whose reads hang (some drivers, when it is unplugged) says
        nothing at all: no audio for ``silent_mic_s`` counts as lost."""
        listener = self.listener
        assert listener is not None
        while not self.lost:
            await asyncio.sleep(min(1.0, self.silent_mic_s / 3))
            last = listener.last_block_s
            if listener.alive and last is not None and listener.now() - last > self.silent_mic_s:
                self._on_lost(f"no sound from the microphone for {self.silent_mic_s:.0f} s")

    def _on_detection(self, detection: Detection, latency_s: float) -> None:
        accepted = (self.session.request(detection.command, CommandSource.VOICE,
                                         confidence=detection.confidence,
                                         latency_s=latency_s)
                    if self.session is not None else False)
        self.bus.emit(VoiceHeard(self.clock.now(), detection.word, detection.command,
                                 detection.confidence, latency_s, accepted))

    def _on_lost(self, message: str) -> None:
        if self.lost:
            return
        self.lost = True
        log.warning("voice stop: %s", message)
        text = (f"Microphone lost ({message}): voice commands are off. "
                "Use the keys or the safety key.")
        if self.session is not None:
            self.session.announce(text, "warning")
        else:
            self.bus.emit(Announcement(self.clock.now(), text, "warning"))
        if self.listener is not None:
            self.listener.stop_soon()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.listener is not None:
            listener = self.listener
            await asyncio.get_running_loop().run_in_executor(None, listener.stop)
        else:
            self.source.close()


def open_voice_stop(mic: str | None, *, bus: EventBus, clock: Clock,
                    host_speaking: Callable[[], bool] = never_speaking) -> VoiceStop:
    """``--voice-stop``: open the microphone and load the model now, before the belt
    moves; raises VoiceUnavailableError (a one-line reason) when either is missing."""
    from retrotread.voice.audio import open_microphone

    microphone = open_microphone(mic)
    try:
        spotter = default_spotter(microphone.sample_rate_hz)
    except BaseException:
        microphone.close()
        raise
    return VoiceStop(microphone, spotter, bus=bus, clock=clock, host_speaking=host_speaking)
