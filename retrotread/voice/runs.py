"""A spotter without keyword spotting: Silero VAD finds each short run of speech, and
Moonshine speech recognition transcribes the whole run; a run whose transcript has the
word "stop" is a command.

The keyword spotter (:class:`~retrotread.voice.spotter.KeywordSpotter`) asks pocketsphinx
to propose "stop" first and misses a few in noise before any check; here every short run
is heard whole ("just stop", "okay stop"), and treadmill noise, which Silero does not call
speech, costs no recognition at all. A run is released when ``end_silence_s`` of no
speech follows it, and only if it lasted at most ``max_utterance_s``: "stop" inside a
long sentence is not a command, as with the keyword spotter's gate.

Measured against the keyword spotter in docs/voice-model.md ("A ninth choice").
"""

from __future__ import annotations

import dataclasses

import numpy as np

from retrotread.voice import VOICE_COMMANDS
from retrotread.voice.activity import SileroActivity, SpeechRuns
from retrotread.voice.asr import AsrVerifier, Hears
from retrotread.voice.spotter import (
    END_SILENCE_S,
    MAX_UTTERANCE_S,
    NOISE_SUPPRESSION,
    Denoiser,
    Spotted,
)

PAD_S = 0.3
"""Audio the recognizer hears before and after the run (Silero marks speech a little
late and ends it a little early)."""


class RunSpotter:
    """Feed 16 kHz audio, get "stop"s. Not thread-safe: one thread feeds it."""

    name = ("each short run of speech (Silero VAD) transcribed by Moonshine speech "
            "recognition")
    """How it listens, as the start-up line says it."""

    def __init__(self, sample_rate_hz: int, *, hears: Hears = Hears.RAW,
                 min_stop_p: float | None = None, max_words: int | None = None,
                 near_max_words: int | None = None, verify: bool = True,
                 max_utterance_s: float = MAX_UTTERANCE_S,
                 end_silence_s: float = END_SILENCE_S,
                 noise_suppression: int = NOISE_SUPPRESSION) -> None:
        self.sample_rate_hz = int(sample_rate_hz)
        self.denoiser = Denoiser(noise_suppression) if hears.needs_cleaned else None
        """WebRTC's noise suppression, only when the recognizer hears the cleaned audio
        (Silero hears the raw audio either way)."""
        self.activity = SileroActivity()
        self.verifier = self.make_verifier(hears=hears, min_stop_p=min_stop_p,
                                           max_words=max_words,
                                           near_max_words=near_max_words) if verify else None
        """Moonshine, judging each short run; None (``verify=False``): every short run is
        a candidate, for a caller that judges them itself (``windows``)."""
        self.max_samples = round(max_utterance_s * sample_rate_hz)
        self.end_silence = round(end_silence_s * sample_rate_hz)
        self.pad = round(PAD_S * sample_rate_hz)
        self._keep = (self.max_samples + 2 * self.pad + self.end_silence
                      + 2 * SileroActivity.CHUNK)
        self._raw = np.zeros(0, dtype=np.int16)  # the last ``_keep`` samples, as they came
        self._cleaned = np.zeros(0, dtype=np.int16)  # the same, noise-suppressed (if used)
        self._kept_end = 0  # the end of ``_raw``, in samples since the start
        self.runs = SpeechRuns(self.end_silence)
        self.fed_samples = 0
        self.candidates = 0
        """Short runs of speech the recognizer transcribed."""
        self.too_short = 0  # the benchmark's counter; no duration check here
        self.too_long = 0
        """Runs longer than ``max_utterance_s`` (not transcribed)."""

    @staticmethod
    def make_verifier(*, hears: Hears = Hears.RAW, min_stop_p: float | None = None,
                      max_words: int | None = None,
                      near_max_words: int | None = None) -> AsrVerifier:
        """Moonshine as this spotter uses it: it hears each run with ``PAD_S`` either
        side."""
        return AsrVerifier(before_s=PAD_S, hears=hears, min_stop_p=min_stop_p,
                           max_words=max_words, near_max_words=near_max_words)

    def feed(self, samples: np.ndarray) -> list[Spotted]:
        block = np.ascontiguousarray(samples, dtype=np.int16)
        self.fed_samples += len(block)
        raw = block
        if self.denoiser is not None:  # the same samples, in whole 10 ms chunks
            cleaned = self.denoiser.process(block)
            raw = cleaned.raw
            self._cleaned = np.concatenate([self._cleaned, cleaned.audio])[-self._keep:]
        self._raw = np.concatenate([self._raw, raw])[-self._keep:]
        self._kept_end += len(raw)
        found: list[Spotted] = []
        chunk = SileroActivity.CHUNK
        for speech in self.activity.process(raw):
            ended = self.runs.step(speech, chunk)
            if ended is not None:
                found += self._judge(*ended)
        return found[:1]

    def _judge(self, start: int, end: int) -> list[Spotted]:
        length = end - start
        if length > self.max_samples:
            self.too_long += 1
            return []
        self.candidates += 1
        run = Spotted("stop", VOICE_COMMANDS["stop"], 0.0, length / self.sample_rate_hz,
                      self.fed_samples, start)
        if self.verifier is None:
            return [run]
        if not self.verifier.keep(run, *self.windows(run, self.verifier.hears)):
            return []
        return [dataclasses.replace(run, confidence=self.verifier.last_confidence or 0.0)]

    def windows(self, run: Spotted, hears: Hears) -> list[np.ndarray]:
        """The audio of ``run`` with ``PAD_S`` either side, once for each window ``hears``
        asks for (raw or noise-suppressed, in its order). Valid right after the ``feed``
        that returned the run."""
        start = run.word_start_sample
        end = start + round(run.duration_s * self.sample_rate_hz)
        offset = self._kept_end - len(self._raw)
        lo, hi = max(0, start - self.pad - offset), max(0, end + self.pad - offset)
        if hears.needs_cleaned and self.denoiser is None:
            raise ValueError("this spotter keeps no noise-suppressed audio")
        return [(self._raw if raw else self._cleaned)[lo:hi] for raw in hears.raw_first]

    def reset(self) -> None:
        """Forget the current run (after a gap in the audio)."""
        self.runs.reset()
        self.activity.reset()
