"""Where the listener's sound comes from: one blocking :meth:`AudioSource.read` at a time.

* :class:`Microphone`: a real input through sounddevice (PortAudio), mono, 16-bit.
* :class:`ArraySource`: a numpy array (or a WAV file, :meth:`ArraySource.from_wav`), for
  tests and benchmarks; optionally paced at real time like a microphone.

Every source yields mono ``int16`` blocks at its ``sample_rate_hz`` and ``None`` at the end
of the stream. A microphone that fails while it is read raises
:class:`~retrotread.errors.MicrophoneLostError`.
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from retrotread.errors import MicrophoneLostError, VoiceUnavailableError
from retrotread.voice import EXTRA_HINT

log = logging.getLogger(__name__)

RATE_HZ = 16_000
"""The rate the recognizer's acoustic model and the noise suppressor work at; the
microphone is opened at it (PortAudio's 'default'/'pulse' inputs convert)."""
BLOCK_S = 0.1
"""Audio per read: the listener's reaction step (detection waits for the block's end)."""


class AudioSource(Protocol):
    sample_rate_hz: int

    def read(self) -> np.ndarray | None:
        """The next block (mono int16), blocking until it is there; None at the end."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- arrays
def load_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV file as (mono int16 samples, sample rate); channels are averaged."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        rate = wav.getframerate()
        channels = wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data.astype(np.int16), rate


class ArraySource:
    """Plays ``samples`` block by block. ``realtime``: each read waits until its block
    would have been heard (as a microphone does); otherwise reads return at once."""

    def __init__(self, samples: np.ndarray, sample_rate_hz: int, *, block_s: float = BLOCK_S,
                 realtime: bool = False,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.samples = np.asarray(samples, dtype=np.int16)
        self.sample_rate_hz = int(sample_rate_hz)
        self.block = max(1, round(block_s * self.sample_rate_hz))
        self.realtime = realtime
        self.position = 0
        """Samples handed out so far: the audio time of the end of the last block."""
        self._now = now
        self._started: float | None = None
        self._closed = threading.Event()

    @classmethod
    def from_wav(cls, path: Path | str, **kwargs: Any) -> ArraySource:
        samples, rate = load_wav(path)
        return cls(samples, rate, **kwargs)

    @property
    def position_s(self) -> float:
        return self.position / self.sample_rate_hz

    def read(self) -> np.ndarray | None:
        if self._closed.is_set() or self.position >= len(self.samples):
            return None
        end = min(self.position + self.block, len(self.samples))
        if self.realtime:
            if self._started is None:
                self._started = self._now()
            due = self._started + end / self.sample_rate_hz
            if self._closed.wait(max(0.0, due - self._now())):
                return None
        block = self.samples[self.position:end]
        self.position = end
        return block

    def close(self) -> None:
        self._closed.set()


# --------------------------------------------------------------------------- microphones
def sounddevice_module() -> Any:
    """Import sounddevice, or say plainly what is missing (the extra, or PortAudio)."""
    try:
        import sounddevice
    except ImportError as exc:
        raise VoiceUnavailableError(
            f"the voice stop needs the sounddevice package ({EXTRA_HINT})") from exc
    except OSError as exc:  # sounddevice imports, but cannot load the PortAudio library
        raise VoiceUnavailableError(
            "the voice stop needs the PortAudio library to reach a microphone "
            f"(Debian/Ubuntu: apt install libportaudio2): {exc}") from exc
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_rate_hz: int
    is_default: bool = False

    def __str__(self) -> str:
        mark = "*" if self.is_default else " "
        return (f"{mark} {self.index:>3}  {self.name}  ({self.channels} ch, "
                f"{self.default_rate_hz} Hz)")


def list_inputs() -> list[InputDevice]:
    """Every audio input PortAudio sees; ``is_default`` marks the system's default."""
    sd = sounddevice_module()
    try:
        devices = sd.query_devices()
        default = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise VoiceUnavailableError(f"cannot list audio inputs: {exc}") from exc
    return [
        InputDevice(index, str(info["name"]), int(info["max_input_channels"]),
                    int(info["default_samplerate"]), index == default)
        for index, info in enumerate(devices)
        if int(info["max_input_channels"]) > 0
    ]


def find_input(spec: str | None, inputs: list[InputDevice]) -> InputDevice:
    """``--mic``: an index, or a unique part of a name (case-insensitive); None: the
    system's default input."""
    if not inputs:
        raise VoiceUnavailableError("no microphone: no audio input was found "
                                    "(retrotread mics lists them)")
    if spec is None:
        for device in inputs:
            if device.is_default:
                return device
        return inputs[0]
    text = spec.strip()
    if text.isdigit():
        for device in inputs:
            if device.index == int(text):
                return device
        raise VoiceUnavailableError(f"no audio input with index {text} "
                                    "(retrotread mics lists them)")
    matches = [device for device in inputs if text.lower() in device.name.lower()]
    if len(matches) == 1:
        return matches[0]
    exact = [device for device in matches if device.name.lower() == text.lower()]
    if len(exact) == 1:
        return exact[0]
    if not matches:
        raise VoiceUnavailableError(f"no audio input named like {text!r} "
                                    "(retrotread mics lists them)")
    names = ", ".join(f"{device.index}: {device.name}" for device in matches)
    raise VoiceUnavailableError(f"--mic {text!r} matches several inputs ({names}); "
                                "give the index")


class Microphone:
    """A real input, mono int16, read in blocks of ``block_s`` (blocking reads)."""

    def __init__(self, device: InputDevice, *, block_s: float = BLOCK_S) -> None:
        sd = sounddevice_module()
        self.device = device
        self._sd = sd
        rate = RATE_HZ
        try:
            sd.check_input_settings(device=device.index, channels=1, dtype="int16",
                                    samplerate=rate)
        except Exception as exc:
            raise VoiceUnavailableError(
                f"the microphone {device.name!r} cannot record mono 16-bit audio at "
                f"{rate} Hz ({exc}); pick an input that converts, such as 'default' or "
                "'pulse' (retrotread mics)") from exc
        self.sample_rate_hz = rate
        self.block = max(1, round(block_s * rate))
        try:
            self._stream = sd.RawInputStream(device=device.index, channels=1, dtype="int16",
                                             samplerate=rate, blocksize=self.block)
            self._stream.start()
        except Exception as exc:
            raise VoiceUnavailableError(f"cannot open the microphone {device.name!r}: "
                                        f"{exc}") from exc
        self._closed = False
        self.overflows = 0
        """Reads that found PortAudio's buffer overflowed (audio lost before them)."""

    def read(self) -> np.ndarray | None:
        if self._closed:
            return None
        try:
            data, overflowed = self._stream.read(self.block)
        except Exception as exc:
            if self._closed:
                return None
            raise MicrophoneLostError(f"the microphone {self.device.name!r} failed: "
                                      f"{exc}") from exc
        if overflowed:
            self.overflows += 1
            if self.overflows == 1:  # once: it says the listener fell behind, not a fault
                log.warning("microphone %r: audio was lost while the listener was busy "
                            "(input overflow); it may miss a word said meanwhile",
                            self.device.name)
        return np.frombuffer(bytes(data), dtype=np.int16)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.abort()
            self._stream.close()
        except Exception:  # closing a device that is already gone
            pass


def open_microphone(spec: str | None) -> Microphone:
    """The microphone ``--mic`` names (or the default input), opened and running."""
    return Microphone(find_input(spec, list_inputs()))
