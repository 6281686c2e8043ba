"""Which spotter ``--voice-stop`` listens with, chosen by the benchmark's fixed rules
(benchmarks/voice.py; docs/voice-model.md, "A ninth choice").

Where Moonshine speech recognition installs (the moonshine-cpp wheel: Linux x86-64), the
run spotter (:mod:`~retrotread.voice.runs`): Silero VAD finds each short run of speech
and Moonshine transcribes it whole. Elsewhere the keyword spotter
(:mod:`~retrotread.voice.spotter`) with the learned classifier checking each candidate.
"""

from __future__ import annotations

from retrotread.voice import spotter
from retrotread.voice.asr import Hears
from retrotread.voice.asr import available as asr_available
from retrotread.voice.runs import RunSpotter
from retrotread.voice.spotter import KeywordSpotter, Spotter

RUNS_HEAR: Hears | None = Hears.RAW
"""Where Moonshine installs: the run spotter, Moonshine hearing this audio (the raw
audio, as chosen); None: the keyword spotter with Moonshine checking its candidates
(``spotter.ASR_BEFORE_S``), the default of the fifth to the eighth choice. Switched to by
the ninth choice's fixed rules: on held-out 88.3 % of the stops heard at 10 dB, no
false stop in 0.77 h of speech, p99 0.60 s from the end of the word to the command,
against 74.2 %, 2.8 per hour and 1.27 s."""
RUNS_MIN_STOP_P: float | None = None
"""The run spotter also takes a run for "stop" when Moonshine gave "stop" at least this
probability at some step though it wrote another word (``AsrVerifier.min_stop_p``);
None: only the transcript counts. The tenth choice measured ``RUNS_HEAR = Hears.EITHER``
with 0.2 here: on held-out 93.3 % at 10 dB, but 4 false stops in 1.43 h of audio where
these settings had none (docs/voice-model.md, "A tenth choice"); not switched."""
RUNS_MAX_WORDS: int | None = None
"""A transcript of more words than this is not a command (``AsrVerifier.max_words``);
None: any length."""


def default_spotter(sample_rate_hz: int) -> Spotter:
    """The spotter ``--voice-stop`` listens with."""
    if asr_available():
        if RUNS_HEAR is not None:
            return RunSpotter(sample_rate_hz, hears=RUNS_HEAR, min_stop_p=RUNS_MIN_STOP_P,
                              max_words=RUNS_MAX_WORDS)
        if spotter.ASR_BEFORE_S is not None:
            return KeywordSpotter(sample_rate_hz, net_threshold=None,
                                  asr_before_s=spotter.ASR_BEFORE_S,
                                  asr_hears=spotter.ASR_HEARS,
                                  voice_activity=spotter.VOICE_ACTIVITY)
    return KeywordSpotter(sample_rate_hz, voice_activity=spotter.VOICE_ACTIVITY)
