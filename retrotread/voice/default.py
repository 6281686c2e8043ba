"""Which spotter ``--voice-stop`` listens with, chosen by the benchmark's fixed rules
(benchmarks/voice.py; docs/voice-model.md, "A ninth choice" to "A thirteenth choice").

Where Moonshine speech recognition installs (the moonshine-cpp wheel: Linux x86-64), the
run spotter (:mod:`~retrotread.voice.runs`): Silero VAD finds each short run of speech
and Moonshine transcribes it whole; a short transcript with "stop" (or, in 1 to 3 words,
nearly "stop") is a command. Elsewhere the keyword spotter
(:mod:`~retrotread.voice.spotter`) with the learned classifier checking each candidate.
"""

from __future__ import annotations

from retrotread.voice import spotter
from retrotread.voice.asr import Hears
from retrotread.voice.asr import available as asr_available
from retrotread.voice.runs import RunSpotter
from retrotread.voice.spotter import KeywordSpotter, Spotter

RUNS_HEAR: Hears | None = Hears.EITHER
"""Where Moonshine installs: the run spotter, Moonshine hearing this audio (the raw
audio, then, when its transcript has no "stop", the noise-suppressed audio); None: the
keyword spotter with Moonshine checking its candidates (``spotter.ASR_BEFORE_S``), the
default of the fifth to the eighth choice. The ninth choice switched to the run spotter
on the raw audio; the twelfth to the second hearing with a word cap and near misses
(docs/voice-model.md, "A twelfth choice"): on a fresh held-out set 90.0 % of the stops
heard at 10 dB and 2.1 false stops per hour, against 82.1 % and 13.1 per hour for the
raw audio alone; the thirteenth to near misses at 0.03 in transcripts of 1 to 3 words
("A thirteenth choice"): on a third held-out set 98.3 % at 10 dB and no false stop in
1.45 h, against 97.1 % and 1 for the twelfth's settings; p99 0.69 s from the end of the
word to Stop on the wire."""
RUNS_MIN_STOP_P: float | None = 0.03
"""The run spotter also takes a run for "stop" when Moonshine gave "stop" at least this
probability at some step though it wrote another word (``AsrVerifier.min_stop_p``);
None: only the transcript counts. Safe only with ``RUNS_MAX_WORDS`` and
``RUNS_NEAR_MAX_WORDS``: without the word cap the tenth choice's near misses (at 0.2)
stopped falsely 4 times in 1.43 h of held-out speech where the raw transcript alone did
not; 0.05 from the twelfth choice, 0.03 since the thirteenth."""
RUNS_MAX_WORDS: int | None = 4
"""A transcript of more words than this is not a command (``AsrVerifier.max_words``;
"please stop the belt" is 4); None: any length. Every false stop the tenth choice's
held-out run found was a transcript of six words or more."""
RUNS_NEAR_MAX_WORDS: int | None = 3
"""A near miss counts only in a transcript of 1 to this many words
(``AsrVerifier.near_max_words``); None: any the word cap allows. The thirteenth choice
(docs/voice-model.md): most false stops on the fresh held-out set were near misses in
transcripts of 4 words ("Tap over the panel") or none."""


def run_spotter(sample_rate_hz: int) -> RunSpotter:
    """The run spotter as ``--voice-stop`` sets it up (hearing ``RUNS_HEAR``, the raw
    audio when that is None)."""
    return RunSpotter(sample_rate_hz, hears=RUNS_HEAR or Hears.RAW,
                      min_stop_p=RUNS_MIN_STOP_P, max_words=RUNS_MAX_WORDS,
                      near_max_words=RUNS_NEAR_MAX_WORDS)


def default_spotter(sample_rate_hz: int) -> Spotter:
    """The spotter ``--voice-stop`` listens with."""
    if asr_available():
        if RUNS_HEAR is not None:
            return run_spotter(sample_rate_hz)
        if spotter.ASR_BEFORE_S is not None:
            return KeywordSpotter(sample_rate_hz, net_threshold=None,
                                  asr_before_s=spotter.ASR_BEFORE_S,
                                  asr_hears=spotter.ASR_HEARS,
                                  voice_activity=spotter.VOICE_ACTIVITY)
    return KeywordSpotter(sample_rate_hz, voice_activity=spotter.VOICE_ACTIVITY)
