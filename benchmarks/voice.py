"""Hands-free stop: how well the two-stage spotter hears "stop", and how rarely it hears it
in speech that has none.

    .venv/bin/python -m benchmarks.voice                 # full (about half an hour)
    .venv/bin/python -m benchmarks.voice --quick         # a smoke run, a few minutes
    .venv/bin/python -m benchmarks.voice --grid 1e-30:0.2,1e-20:0:any --json voice.json

Speech is synthesized by espeak-ng (4 speeds, random pitch) and mixed with generated
treadmill noise (tests/voice_audio.py) at a signal-to-noise ratio over the voiced part of
the speech. A configuration is (stage 1 keyphrase threshold, stage 2 shortest word,
whether the word must fall in a run of voice activity, the threshold of the re-decoding
verifier or of the learned verifier, or none), or the learned detector alone on a
sliding window (retrotread/voice/stopnet.py, docs/voice-model.md).

Three disjoint splits (``TRAINING``, ``VALIDATION``, ``HELD_OUT``): no voice (base voice
with variant), no multi-word stop phrase, no non-stop text and no noise seed in common,
and no espeak-ng variant of the validation or held-out voices is heard in training:
* training (scripts/train-stop-model.py only): en-us and en-gb-x-gbclan, each plain and
  with 21 variants (m1 m4 m5 m7 m8 f1 f5 klatt2-5 croak Andy Annie Alicia Michael Storm
  john linda aunty edward), speeds 110-230, pitches 20-85; phrases "stop", "please stop",
  "stop the belt", "stop the treadmill", "stop there", "all right stop"; every fourth
  non-stop text of each kind from the first; seeds from 300000;
* validation (the choice): voices en-029+m6, en-gb-x-rp+klatt6, en-us+grandma,
  en-029+shelby, en-gb-x-rp+travis (two base voices and five variants the new model never
  heard; variants the first model never heard either); phrases "stop",
  "just stop", "stop that"; every fourth text from the third; seeds + 100000; every
  configuration of ``GRID``, 90 utterances per SNR; 2 h of non-stop audio: besides its
  share of the common texts, 36 texts of its own (``VALIDATION_TEXTS``, spoken by no
  other split) and, for the non-stop speech only, five more voices no other split uses
  (en-029+Gene, en-gb-x-rp+steph, en-us+victor, en-gb-x-rp+paul, en-us+Lee): 61 texts x
  10 voices x 4 speeds, about 2.4 h before any combination repeats;
* held-out (the report): voices en, en+m3, en-gb-scotland+f2, en-us+f4, en-us-nyc,
  en-gb-x-gbcwmd+m2; phrases "stop stop", "okay stop", "stop now", "hey stop", "stop it",
  "stop, please"; the odd-numbered texts; seeds from 0; the chosen configuration only
  (``--compare``: and the current default), 240 utterances per SNR, 1.4 h of non-stop
  audio (1.02 h until the tenth choice), and both latency measurements.
The first learned model (stop_model.npz, the default configuration ``CURRENT``) was
trained on five voices (en-us, en-gb-x-rp, en-us+f3, en-029, en+klatt) and their texts:
its validation rows are somewhat optimistic (it heard the two validation base voices and
"stop" alone, and the texts overlap its training half), which favours keeping it.

Measured on each set:
* detection: "stop" alone or in a short phrase, each between 0.8 s and 1.2 s of noise;
  a hit is any "stop" detection in the clip;
* false stops per hour: a continuous stream of non-stop speech (the bundled profiles'
  announcements without the word, conversation with near words, numbers) with 0.4-1.6 s
  gaps, noise at 20, 10 and 5 dB by turns, never reset: detections / hours of audio;
  and treadmill noise alone;
* confusables: single words near "stop" (top, shop, step back, stomp ...): how many of
  them the spotter takes for "stop" (not a target: a false stop only stops);
* latency (held-out, chosen configuration): for 60 utterances ending in "stop" at 10 dB,
  paced in real time, through the real listener thread and an asyncio loop: (end of the
  audio block that released the word - end of the word, in audio time) + (that block
  read -> the callback on the loop, wall time: noise suppression, recognition, hand-over);
* end of word -> Stop on the wire (held-out, chosen configuration): 20 workouts on the
  simulator in real time (benchmarks.common.REACTION_PROFILE), the clip paced like a
  microphone once the person walks backward; the first Stop the simulator decodes after
  the word's end.

The choice (``choose``, on the validation table only, fixed before the validation and
held-out runs): the best 10 dB detection among configurations with at most 3 false stops
per hour (ties: fewer false stops); when none has, the fewest false stops among those
that hear at least 90 % of the stops at 10 dB. False stops per hour, for the choice and
the target, are the worse of non-stop speech and noise alone. (The cap was 1 per hour
while validation had 0.34 h of speech, too little to resolve it.) The default changes
only if the chosen configuration, on held-out, hears at least as many stops at 10 dB as
the default and has no more false stops per hour of speech; and (added before the fifth
choice's run, when a verifier slower than the default's could be chosen) with
``--compare`` the default's latency is measured in the same run, and the chosen
configuration's p99, end of word to the command and to Stop on the wire, must each be at
most ``LATENCY_SLACK_S`` (0.2 s) above the default's. Since the fifth choice the
default was Moonshine checking the keyword spotter (``ASR``: held-out 74.2 % at 10 dB,
2.8 false stops per hour of speech); since the ninth, the run spotter (``DEFAULT``), and a
switch must beat its held-out row. The sixth choice (fixed before its run) adds
"near misses" (``asr0.3pP``: also keep a candidate when the recognizer gave "stop" a
probability of at least P at some step) at P 0.5, 0.3, 0.2 and 0.1, chosen among
Moonshine rows only (the classifier rows of the fifth choice all heard less at 10 dB).
The seventh choice (fixed before its run, the same rules): Moonshine on the
noise-suppressed audio (the default) against Moonshine on the raw audio (``asr0.3raw``)
and on the raw audio, then the cleaned (``asr0.3either``), ``--grid
1e-30:0.15:asr,1e-30:0.15:asr0.3raw,1e-30:0.15:asr0.3either --compare``.
The eighth choice (the utterance gate following Silero VAD instead of WebRTC's voice
activity, ``--grid 1e-30:0.15:asr,1e-30:0.15:asr:silero --compare``) was stopped before
its validation table and folded into the ninth, so that one rule chooses among all of
them. The ninth choice (fixed before its run, the same rules): the default; the default
with the gate following Silero VAD; no keyword spotting, Silero's short runs of speech
each transcribed by Moonshine on the raw audio (``runs``) or on the cleaned audio
(``runs:clean``); ``--grid 1e-30:0.15:asr,1e-30:0.15:asr:silero,runs,runs:clean
--compare``.
The tenth choice (fixed before its run): the run spotter as it is (``runs``), hearing
the raw audio, then the cleaned (``runs:either``), and each with near misses at P 0.2,
0.1 and 0.05 (``runs:p0.1``, ``runs:either:p0.1`` ...); ``--grid
runs,runs:either,runs:p0.2,runs:p0.1,runs:p0.05,runs:either:p0.2,runs:either:p0.1,runs:either:p0.05
--compare``. The rows share Silero's runs and each window's transcript (``Group``), so
their CPU is not comparable: each is charged the shared noise suppression. Two rules
change for it, before the run: the choice's cap (``FALSE_PER_HOUR_CAP``) is the target,
1 false stop per hour, not 3 (the run spotter already meets it on validation, 1.0 per
hour, and a choice above the target would be refused by the switch rule on held-out);
and the held-out non-stop audio is 1.4 h (``--hours``), so that it holds at least an
hour of speech (1.02 h of audio held 0.77 h of speech). Chosen: ``runs:either:p0.2``
(validation 80.0 % at 10 dB, 1.0 false stop per hour); on held-out 93.3 % at 10 dB but 4
false stops in 1.43 h where the default had none, so the default stays
(docs/voice-model.md, "A tenth choice").
The eleventh choice (``--chosen runs:either --held-out fresh --compare``) was stopped
a minute after its start, before any result, and folded into the twelfth. The twelfth
choice (fixed before its run): a diagnosis of the tenth's held-out false stops found
each a transcript of six or more words ("The stop package was opened in"), where every
validation stop Moonshine heard was at most three; a command is a short phrase, so
``:w4`` (``AsrVerifier.max_words``) takes no transcript of more than 4 words ("please
stop the belt" is 4). Grid: ``runs``, ``runs:either``, ``runs:w4``, ``runs:either:w4``,
and ``runs:either`` with near misses at P 0.2, 0.1 and 0.05, each with ``:w4``. The same
rules as the tenth (the choice's cap 1 false stop per hour; the switch rule unchanged);
reported on ``FRESH``, a second held-out set made after the tenth's held-out run had
been seen and before this grid was run, with the default beside it: ``--grid
runs,runs:either,runs:w4,runs:either:w4,runs:either:p0.2:w4,runs:either:p0.1:w4,runs:either:p0.05:w4
--held-out fresh --compare``. Chosen: ``runs:either:p0.05:w4`` (validation 88.9 % at
10 dB, no false stop in 2.02 h); on FRESH 90.0 % at 10 dB and 2.1 false stops per hour
against the default's 82.1 % and 13.1 per hour, p99 +83 ms: switched (``SHORT_RUNS``).
The thirteenth choice (fixed before its run, the same rules): a diagnosis of the
twelfth's FRESH results (afterwards) found 6 of its 7 false stops in one re-run were
near misses alone (the transcript had no "stop"; P 0.06 to 0.22), five in transcripts of
4 words and one in an empty transcript, where every stop heard by a near miss alone at
10 dB was a transcript of 1 to 3 words but one (empty). ``:nN``
(``AsrVerifier.near_max_words``): a near miss counts only in a transcript of 1 to N
words. Grid: the default, and the default with ``:n3``, with ``:n2``, and with ``:n3``
at P 0.03: ``--grid
runs:either:p0.05:w4,runs:either:p0.05:w4:n3,runs:either:p0.05:w4:n2,runs:either:p0.03:w4:n3
--held-out third --compare``, reported on ``THIRD``, a third held-out set made for it.
Chosen: ``runs:either:p0.03:w4:n3`` (validation 90.0 % at 10 dB, 1 false stop in 2.02
h); on THIRD 98.3 % at 10 dB and no false stop in 1.45 h against the default's 97.1 % and
1, p99 +99 ms: switched (``NEAR_SHORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import percentile, poisson_95, wilson_95
from retrotread.events import VoiceHeard
from retrotread.voice import stopnet
from retrotread.voice.activity import Activity
from retrotread.voice.asr import AsrVerifier, Hears, Transcriber, Transcript
from retrotread.voice.audio import ArraySource
from retrotread.voice.listener import Detection, VoiceListener
from retrotread.voice.runs import RunSpotter
from retrotread.voice.spotter import KeywordSpotter, NetSpotter
from tests import voice_audio as va

SNRS_DB = (20.0, 10.0, 5.0, 0.0)
BLOCK = 1600  # 100 ms, as the listener reads
USEFUL = 0.9  # detection at 10 dB below which a configuration is not worth shipping


@dataclass(frozen=True)
class Config:
    """One spotter configuration: the first stage's keyphrase threshold and the second
    stage's shortest word."""

    threshold: float
    min_word_s: float
    require_speech: bool = True
    verify_threshold: float | None = None
    net_threshold: float | None = None
    """The learned classifier (retrotread/voice/stopnet.py) as the verifier, at this P(stop)
    (instead of the re-decoding); with ``threshold`` 0, the classifier is the detector
    itself on a sliding window (``NetSpotter``)."""
    hold: bool = False
    """Sliding detector only: wait for the run of speech to end."""
    model: str = ""
    """The learned model's file in retrotread/voice/ ("": the default, stopnet.MODEL_PATH)."""
    asr_before_s: float | None = None
    """Moonshine speech recognition (retrotread/voice/asr.py) as the verifier, hearing
    this much audio before the aligned word (instead of any other verifier)."""
    asr_min_stop_p: float | None = None
    """With Moonshine: also keep a candidate whose decoder gave "stop" at least this
    probability at some step (``AsrVerifier.min_stop_p``)."""
    asr_hears: Hears = Hears.CLEANED
    """With Moonshine: which audio it transcribes (``AsrVerifier.hears``)."""
    activity: Activity = Activity.WEBRTC
    """The voice activity the utterance gate follows (retrotread/voice/activity.py)."""
    asr_max_words: int | None = None
    """With Moonshine: a transcript of more words than this is no command
    (``AsrVerifier.max_words``)."""
    asr_near_max_words: int | None = None
    """With Moonshine: a near miss counts only in a transcript of 1 to this many words
    (``AsrVerifier.near_max_words``)."""
    runs: bool = False
    """No keyword spotting: Silero VAD's short runs of speech, each transcribed by
    Moonshine hearing ``asr_hears`` (retrotread/voice/runs.py ``RunSpotter``)."""

    @property
    def whole(self) -> bool:
        """Whether the spotter gives its detections itself (no shared first stage)."""
        return self.net_threshold is not None and self.threshold == 0

    @property
    def model_path(self) -> Path | None:
        return Path(stopnet.__file__).with_name(self.model) if self.model else None

    def spotter(self) -> KeywordSpotter | NetSpotter | RunSpotter:
        if self.runs:
            return RunSpotter(va.RATE_HZ, hears=self.asr_hears,
                              min_stop_p=self.asr_min_stop_p, max_words=self.asr_max_words,
                              near_max_words=self.asr_near_max_words)
        if self.net_threshold is not None and self.threshold == 0:
            return NetSpotter(va.RATE_HZ, threshold=self.net_threshold, hold=self.hold,
                              model_path=self.model_path)
        return KeywordSpotter(va.RATE_HZ, {"stop": self.threshold}, min_word_s=self.min_word_s,
                              require_speech=self.require_speech,
                              verify_threshold=self.verify_threshold,
                              net_threshold=self.net_threshold, net_model=self.model_path,
                              asr_before_s=self.asr_before_s,
                              asr_min_stop_p=self.asr_min_stop_p,
                              asr_hears=self.asr_hears, voice_activity=self.activity)

    def first_stage_key(self) -> tuple[Any, ...]:
        """Configurations with equal keys get the same first-stage detections (the
        second stage only filters them), so the benchmark runs that stage once for them.
        Run-spotter configurations share Silero's runs (they differ only in how Moonshine
        judges each run)."""
        if self.runs:
            return ("runs",)
        return (self.threshold, self.min_word_s, self.require_speech, self.activity)

    def first_stage(self, *, cleaned: bool = False) -> KeywordSpotter | RunSpotter:
        """The keyword spotter of this configuration without a second stage; for the run
        spotter, Silero's short runs, unjudged (``cleaned``: keeping noise-suppressed
        audio too, for another configuration of the group)."""
        if self.runs:
            return RunSpotter(va.RATE_HZ, verify=False,
                              hears=Hears.EITHER if cleaned else Hears.RAW)
        return KeywordSpotter(va.RATE_HZ, {"stop": self.threshold}, min_word_s=self.min_word_s,
                              require_speech=self.require_speech, verify_threshold=None,
                              net_threshold=None, voice_activity=self.activity)

    def __str__(self) -> str:
        if self.runs:
            return ("Silero VAD's short runs of speech, each transcribed by Moonshine "
                    f"(hearing {self.asr_hears.value})"
                    + (f", or P(stop) >= {self.asr_min_stop_p:g}"
                       if self.asr_min_stop_p is not None else "")
                    + (f" in 1 to {self.asr_near_max_words} words"
                       if self.asr_near_max_words is not None else "")
                    + (f", at most {self.asr_max_words} words"
                       if self.asr_max_words is not None else ""))
        model = f" ({self.model})" if self.model else ""
        if self.net_threshold is not None and self.threshold == 0:
            return (f"learned detector{model}, sliding, P >= {self.net_threshold:g}"
                    + (", held to the end of the run" if self.hold else ", at once"))
        return (f"{self.threshold:g}, word >= {self.min_word_s:g} s"
                + (", in speech" if self.require_speech else "")
                + (f", re-decoded at {self.verify_threshold:g}"
                   if self.verify_threshold is not None else "")
                + (f", learned verifier{model} P >= {self.net_threshold:g}"
                   if self.net_threshold is not None else "")
                + (f"{', then' if self.net_threshold is not None else ','} Moonshine ASR "
                   f"verifier ({self.asr_before_s:g} s before)"
                   if self.asr_before_s is not None else "")
                + (f", or P(stop) >= {self.asr_min_stop_p:g}"
                   if self.asr_min_stop_p is not None else "")
                + (f", on {self.asr_hears.value}"
                   if self.asr_hears is not Hears.CLEANED else "")
                + (f", runs of speech by {self.activity.value}"
                   if self.activity is not Activity.WEBRTC else ""))


PREVIOUS = Config(1e-25, 0.2, verify_threshold=1e-18)
"""The keyphrase spotter with the re-decoding verifier: the default before the learned
verifier (chosen by this grid) replaced it."""
FIRST_MODEL = "stop_model.npz"
CURRENT = Config(1e-30, 0.15, net_threshold=0.9, model=FIRST_MODEL)
"""The default before the validation split: the first learned model (stop_model.npz,
trained on 5 voices) behind a loose first stage."""
WIDE_MODEL = "stop_model_wide.npz"
"""The model trained on many voices (scripts/train-stop-model.py, ``TRAINING``)."""
GRID = (CURRENT, Config(1e-30, 0.15, net_threshold=0.99, model=FIRST_MODEL),
        *(Config(1e-30, 0.15, net_threshold=p, model=WIDE_MODEL) for p in (0.9, 0.95, 0.99)))
"""Tried on the validation set (all behind the same first stage): the first learned
model at P 0.9 (the default) and 0.99; the wide model at P 0.9, 0.95 and 0.99. Earlier
grids (docs/voice-model.md): the re-decoding verifier (``PREVIOUS``), the wide model at
P 0.5, (1e-25, 0.25 s, no re-decoding), re-decoding at 1e-20, 1e-15 and 1e-10, the
learned detector on a sliding window."""
ASR = Config(1e-30, 0.15, asr_before_s=0.3)
"""Moonshine speech recognition (trained on human speech) as the verifier (``--grid
1e-30:0.15:asr``). Run over the 2 h of validation speech with the wheel's C library
(docs/voice-model.md, "A fourth choice"): it heard the most, but its p99 latency was
2.7 s; since then it runs about five times faster (retrotread/voice/ortformat.py), and
the fifth choice measured it again and switched the default to it."""
RUNS = Config(0.0, 0.0, runs=True, asr_hears=Hears.RAW, activity=Activity.SILERO)
"""No keyword spotting: Silero VAD's short runs of speech, each transcribed by Moonshine on
the raw audio (``--grid runs``; retrotread/voice/runs.py). Chosen in the ninth choice."""
SHORT_RUNS = Config(0.0, 0.0, runs=True, asr_hears=Hears.EITHER, activity=Activity.SILERO,
                    asr_min_stop_p=0.05, asr_max_words=4)
"""The run spotter hearing the raw audio, then the cleaned; near misses at P 0.05; no
transcript of more than 4 words (``--grid runs:either:p0.05:w4``). Chosen in the twelfth
choice."""
NEAR_SHORT = Config(0.0, 0.0, runs=True, asr_hears=Hears.EITHER, activity=Activity.SILERO,
                    asr_min_stop_p=0.03, asr_max_words=4, asr_near_max_words=3)
"""``SHORT_RUNS`` with near misses at P 0.03 counted only in transcripts of 1 to 3 words
(``--grid runs:either:p0.03:w4:n3``). Chosen in the thirteenth choice."""
DEFAULT = NEAR_SHORT
"""What ``--voice-stop`` listens with where Moonshine installs (retrotread/voice/default.py
``default_spotter``): what ``--compare`` reports next to the chosen configuration, and
what the switch rule compares against. Until the fifth choice: ``CURRENT``; from the
fifth to the ninth: ``ASR``; from the ninth to the twelfth: ``RUNS``."""


@dataclass(frozen=True)
class Split:
    """Who speaks what, and over which noise: the training, validation and held-out sets
    share no voice, no multi-word stop phrase, no non-stop text and no noise seed."""

    name: str
    voices: tuple[str, ...]
    phrases: tuple[str, ...]
    ends_with_stop: tuple[str, ...]
    texts_from: int  # non-stop texts: every ``texts_every``-th one of each kind, from here
    seed_base: int
    texts_every: int = 2
    own_texts: tuple[str, ...] = ()
    """Non-stop texts this split alone speaks (besides its share of the common ones)."""
    speech_voices: tuple[str, ...] = ()
    """Voices that speak this split's non-stop texts besides ``voices`` (in no other
    split)."""
    common_texts: bool = True
    """Whether it speaks a share of the common non-stop texts (``FRESH``: only its own)."""


TRAINING_VARIANTS = ("", "+m1", "+m4", "+m5", "+m7", "+m8", "+f1", "+f5", "+klatt2",
                     "+klatt3", "+klatt4", "+klatt5", "+croak", "+Andy", "+Annie", "+Alicia",
                     "+Michael", "+Storm", "+john", "+linda", "+aunty", "+edward")
"""espeak-ng variants the model trains on: none of the validation's (m6, klatt6, grandma,
shelby, travis) or the held-out's (m3, f2, f4, m2)."""
TRAINING = Split("training", tuple(f"{base}{variant}" for base in ("en-us", "en-gb-x-gbclan")
                                   for variant in TRAINING_VARIANTS),
                 ("stop", "please stop", "stop the belt", "stop the treadmill", "stop there",
                  "all right stop"), ("stop", "please stop", "all right stop"), 0, 300_000,
                 texts_every=4)
"""What scripts/train-stop-model.py hears: 2 base voices x 22 variants (and speeds,
pitches), a quarter of the
non-stop texts, noise seeds from 300000."""
VALIDATION_TEXTS = (
    "Could you top up my water, please?", "The shop on the corner closes at six.",
    "I stepped on a pebble on the way here.", "Let's take the stairs next time.",
    "He dropped the keys behind the sofa.", "What's on the telly tonight?",
    "The stock cube goes in the soup.", "Put the mop back in the cupboard.",
    "Tap the screen twice to wake it up.", "I'm a bit out of breath already.",
    "Slow and steady, that's the way.", "Hold on, my shoelace is loose.",
    "The post came early this morning.", "Did you see the score last night?",
    "Turn the music down a little.", "I'll pop to the bakery later.",
    "A spot of rain is forecast for Sunday.", "Sixty seconds left on this one.",
    "Remember to drink some water.", "My left foot is a little sore.",
    "The window is stuck again.", "We should get a bigger fan.",
    "Keep your back straight and look ahead.", "It's quarter past seven already.",
    "She plays tennis on Saturdays.", "Which way is the wind blowing?",
    "This treadmill is quieter than the old one.", "Let me know when you're done.",
    "I'd like a cup of tea afterward.", "The cat is sleeping on the chair.",
    "Try to relax your shoulders.", "Nine, eight, seven, six, five.",
    "Three hundred and forty calories so far.", "Forty-two minutes and counting.",
    "Two point one miles per hour.", "The meeting moved to Thursday at four.",
)
"""Non-stop texts only the validation split speaks (with near words: top, shop, stepped,
dropped, stock, mop, tap, pop, spot)."""
VALIDATION = Split("validation", ("en-029+m6", "en-gb-x-rp+klatt6", "en-us+grandma",
                                  "en-029+shelby", "en-gb-x-rp+travis"),
                   ("stop", "just stop", "stop that"), ("stop", "just stop"), 2, 100_000,
                   texts_every=4, own_texts=VALIDATION_TEXTS,
                   speech_voices=("en-029+Gene", "en-gb-x-rp+steph", "en-us+victor",
                                  "en-gb-x-rp+paul", "en-us+Lee"))
"""Where the configuration and the model are chosen: base voices (en-029, en-gb-x-rp) and
variants (m6, klatt6, grandma, shelby, travis) the new model never heard (the first model
heard the two base voices, with other variants), phrases other than "stop" alone that
neither heard, another quarter of the texts, other seeds."""
HELD_OUT = Split("held-out", ("en", "en+m3", "en-gb-scotland+f2", "en-us+f4", "en-us-nyc",
                              "en-gb-x-gbcwmd+m2"),
                 ("stop stop", "okay stop", "stop now", "hey stop", "stop it", "stop, please"),
                 ("stop stop", "okay stop", "hey stop"), 1, 0)
FRESH_TEXTS = (
    "Can you grab the remote from the sofa?", "The store shuts early on Sundays.",
    "Mind the step by the back door.", "I left my socks in the dryer.",
    "That story made me laugh.", "Swap the batteries in the clock.",
    "The stove is still warm.", "There's a stack of post on the table.",
    "My stomach is rumbling already.", "Fasten the strap on your watch.",
    "We need a stamp for this letter.", "Scott's train gets in at nine.",
    "Don't slouch, chin up.", "Pop the kettle on, would you?",
    "The cop waved the traffic through.", "Hop over the puddle.",
    "Stub your toe again and you'll learn.", "I'll mop the floor later.",
    "Drop me a message when you get home.", "A little stiff in the hips today.",
    "Let's listen to the radio for a bit.", "The garden needs watering tonight.",
    "I can feel my heart beating faster.", "Is the window open upstairs?",
    "Half way there, keep it up.", "Look over your shoulder now and then.",
    "Small steps, and keep your weight back.", "Your posture looks much better.",
    "Breathing nice and slow.", "We'll walk forward for the last part.",
    "Nearly done with this interval.", "The next part is a little faster.",
    "Thirty seconds, then we turn around.", "Backward again for two minutes.",
    "Eighteen minutes and forty seconds.", "One thousand two hundred steps.",
    "Point eight miles so far.", "Ninety-five beats per minute.",
    "Four, three, two, one.", "Seven hundred and twelve metres.",
    "Table for four at half past eight.", "My cousin moved to Leeds in March.",
    "The bus was late again this morning.", "Have you seen my reading glasses?",
    "It smells like rain outside.",
)
"""Non-stop texts only ``FRESH`` speaks, written after the tenth choice (near words:
store, step, socks, story, swap, stove, stack, stomach, strap, stamp, Scott, pop, cop,
hop, stub, mop, drop, stiff; cue-like sentences in new words; numbers)."""
FRESH = Split("fresh held-out", ("en-us+iven2", "en+belinda", "en-gb-scotland+robert",
                                 "en-029+max", "en-us-nyc+anika", "en-gb-x-gbcwmd+quincy"),
              ("wait stop", "no stop", "stop here", "stop this", "stop the machine",
               "stop right there"), ("wait stop", "no stop"), 0, 500_000,
              own_texts=FRESH_TEXTS, common_texts=False,
              speech_voices=("en-gb-x-rp+adam", "en-us+benjamin", "en+Denis", "en-us+zac"))
"""A second held-out set, made after the tenth choice's held-out run had been seen:
voices (variants), stop phrases, non-stop texts and noise seeds no other split uses and
no choice has heard. Reported on with ``--held-out fresh``."""
THIRD_TEXTS = (
    "The stall sells fresh bread on Fridays.", "Stir the porridge so it doesn't stick.",
    "A stitch in my side again.", "Top marks for effort today.",
    "Pull up a stool and sit down.", "Put the laptop on the desk.",
    "I need new stockings for the wedding.", "The stairs are steep in that house.",
    "Shop around for a better price.", "She hopped off the bus at the market.",
    "Scotland was lovely in the spring.", "The stone wall needs fixing.",
    "Steady now, one foot behind the other.", "A drop of milk, no sugar.",
    "The stamp collection is in the attic.", "Stuff the cushions back in their covers.",
    "Spot the difference between these two.", "The pop concert sold out in minutes.",
    "Strong coffee keeps me going.", "Stand tall and breathe out slowly.",
    "Can you top up the bird feeder?", "The story ends on a cliffhanger.",
    "Sticky tape is in the second drawer.", "Stomping around won't help anyone.",
    "Tom's bakery does the best scones.", "Don't stoop, lift with your legs.",
    "A short rest and then we go again.", "Your stride is getting longer.",
    "Swap hands on the rail if you like.", "Mop up that spill before someone slips.",
    "Keep both hands on the rails.", "The belt is slowing for the turn.",
    "Face the console for the last stretch.", "One more minute of walking backward.",
    "Good pace, hold it there.", "Lean forward a touch and relax.",
    "Twenty-three minutes and ten seconds.", "Three point four kilometres so far.",
    "One hundred and eight beats per minute.", "Six, five, four, three, two, one.",
    "Fifteen hundred steps today.", "My sister is coming over on Sunday.",
    "Did you remember to lock the car?", "The football starts at eight tonight.",
    "I fancy pasta for dinner.", "The neighbours are painting their fence.",
)
"""Non-stop texts only ``THIRD`` speaks, written after the twelfth choice's run and
before the thirteenth's (near words: stall, stir, stick, stitch, top, stool, laptop,
stockings, stairs, shop, hopped, Scotland, stone, steady, drop, stamp, stuff, spot, pop,
strong, stand, story, sticky, stomping, Tom, stoop, short, stride, swap, mop; cue-like
sentences in new words; numbers; conversation)."""
THIRD = Split("third held-out", ("en-us+f3", "en-gb-x-rp+david", "en-gb-x-gbclan+grandpa",
                                 "en-us-nyc+Mike", "en-029+norbert", "en-gb-scotland+caleb"),
              ("stop walking", "oh stop", "stop for now", "can you stop", "stop it please",
               "hold on stop"), ("oh stop", "hold on stop"), 0, 700_000,
              own_texts=THIRD_TEXTS, common_texts=False,
              speech_voices=("en+Alex", "en-us+iven3", "en-gb-x-rp+michel",
                             "en-gb-x-gbcwmd+Jacky"))
"""A third held-out set, made after the twelfth choice had used ``FRESH`` and its misses
and false stops had been read: voices, stop phrases, non-stop texts and noise seeds no
other split uses and no choice has heard. Reported on with ``--held-out third``."""
HELD_OUT_SETS = {"held-out": HELD_OUT, "fresh": FRESH, "third": THIRD}

CONVERSATION = (
    "How far have we gone today?", "I think that's about half a mile.",
    "Can you turn the fan up a little?", "My knees feel fine, thanks for asking.",
    "Top of the hour, time for the news.", "I need to go to the shop after this.",
    "Step back from the edge, please.", "Keep going, you're doing great.",
    "What time is dinner tonight?", "The dog wants to go out.",
    "Did you call your mother back?", "This song is one of my favourites.",
    "Walking backward is harder than it looks.", "My calves are burning a bit.",
    "Hand me the water bottle.", "Let's try a little faster next week.",
    "Put it on the top shelf.", "The stock market was up again.",
    "I'll drop you off at the station.", "Scott said he'd come by later.",
    "That's a good spot for the plant.", "Don't stomp so loudly, the neighbours.",
    "Hop on when you're ready.", "We have too much stuff in the garage.",
    "Start the kettle, would you?", "Sorry, I didn't catch that.",
    "Is it raining outside?", "Breathe in, and breathe out.",
    "Okay, a few more minutes.", "Look at the heart rate on the tablet.",
    "The belt sounds a bit noisy today.", "Remind me to oil the treadmill.",
    "Could you pass the towel?", "I'm going to lean on the rails for a second.",
    "How many steps is that?", "Shut the door, it's cold.",
    "The phone is ringing in the kitchen.", "Next time we should stretch first.",
    "I feel much better than last week.", "Tell me when it's time to turn around.",
)

NUMBERS = (
    "one two three four five six seven eight nine ten",
    "eleven twelve thirteen fourteen fifteen sixteen", "twenty, thirty, forty, fifty",
    "It is 10:45 now.", "I walked 2.4 miles in 38 minutes.", "The code is 4 7 1 9.",
    "Heart rate 132 beats per minute.", "That's 1.5 miles per hour backward.",
    "Room 305, second floor.", "We need 12 eggs and 3 lemons.",
    "Call me at 555 0192.", "Set it to 6 percent incline.",
)

EXTRA_CUES = (
    "Safety key pulled: the workout is over.", "Stand on the side rails and press r to begin.",
    "Already at the backward ceiling (2.0 mph).", "Hold the rails.",
)

_HAS_STOP = re.compile(r"stop", re.IGNORECASE)


@dataclass
class Result:
    config: Config
    hits: dict[float, int] = field(default_factory=dict)
    trials: dict[float, int] = field(default_factory=dict)
    by_voice: dict[tuple[float, str], list[int]] = field(default_factory=dict)
    """Per (SNR, voice): [stops heard, stops said] (where the curve falls off)."""
    false_stops: int = 0
    false_audio_s: float = 0.0
    speech_s: float = 0.0
    texts: int = 0
    confusable_hits: int = 0
    confusables: int = 0
    confusable_words: dict[str, int] = field(default_factory=dict)
    noise_false_stops: int = 0
    noise_minutes: float = 0.0
    candidates: int = 0  # first-stage proposals in the non-stop speech
    too_short: int = 0  # of them, dropped by the second stage
    cpu_s: float = 0.0  # the spotter's CPU time (its thread's) over detection and speech
    fed_s: float = 0.0  # audio fed meanwhile

    @property
    def cpu_per_audio_s(self) -> float:
        return self.cpu_s / self.fed_s if self.fed_s else math.nan

    def rate(self, snr: float) -> float:
        return self.hits.get(snr, 0) / max(1, self.trials.get(snr, 0))

    @property
    def false_per_hour(self) -> float:
        return self.false_stops / (self.false_audio_s / 3600) if self.false_audio_s else math.nan

    @property
    def noise_per_hour(self) -> float:
        return self.noise_false_stops / (self.noise_minutes / 60) if self.noise_minutes \
            else math.nan

    @property
    def worst_per_hour(self) -> float:
        """False stops per hour, the worse of talking and of noise alone."""
        return max(self.false_per_hour, self.noise_per_hour)


class RememberingTranscriber:
    """A Moonshine transcriber that remembers its last answers by the audio's digest, so
    several verifiers asked about one window, one after another, decode it once."""

    def __init__(self, transcriber: Transcriber) -> None:
        self.transcriber = transcriber
        self.recent: dict[bytes, Transcript] = {}

    def decode(self, audio: np.ndarray) -> Transcript:
        key = hashlib.blake2b(np.ascontiguousarray(audio).tobytes(), digest_size=16).digest()
        if key not in self.recent:
            if len(self.recent) >= 64:
                self.recent.clear()
            self.recent[key] = self.transcriber.decode(audio)
        return self.recent[key]


class Group:
    """Configurations measured together on the same audio. Keyword-spotter configurations
    that differ only in their second stage share one first stage (the second stage only
    filters the first stage's candidates, so each configuration gets exactly the
    detections it would get alone); each is charged the whole first stage's CPU time plus
    its own verifier's. CPU is the process's time (the speech recognizer runs its own
    onnxruntime threads; nothing else runs meanwhile)."""

    def __init__(self, configs: list[Config]) -> None:
        self.configs = configs
        first = configs[0]
        self.whole = first.whole
        if self.whole:
            assert len(configs) == 1
            self.spotter: KeywordSpotter | NetSpotter | RunSpotter = first.spotter()
            self.verifiers: dict[Config, Any] = {}
        elif first.runs:
            runs = first.first_stage(cleaned=any(c.asr_hears.needs_cleaned
                                                 for c in configs))
            self.spotter = runs
            self.verifiers = {c: RunSpotter.make_verifier(hears=c.asr_hears,
                                                    min_stop_p=c.asr_min_stop_p,
                                                    max_words=c.asr_max_words,
                                                    near_max_words=c.asr_near_max_words)
                              for c in configs}
        else:
            stage1 = first.first_stage()
            assert isinstance(stage1, KeywordSpotter)
            self.spotter = stage1
            self.verifiers = {c: stage1.make_verifier(
                verify_threshold=c.verify_threshold, net_threshold=c.net_threshold,
                net_model=c.model_path, asr_before_s=c.asr_before_s,
                asr_min_stop_p=c.asr_min_stop_p, asr_hears=c.asr_hears)
                for c in configs}
        shared = None  # Moonshine verifiers here hear the same windows: decode once
        for verifier in self.verifiers.values():
            if isinstance(verifier, AsrVerifier):
                shared = shared or RememberingTranscriber(verifier.transcriber)
                verifier.transcriber = shared  # type: ignore[assignment]

    def windows(self, candidate: Any, verifier: Any) -> list[np.ndarray]:
        """What ``verifier`` judges ``candidate`` on (right after the ``feed`` that gave
        it)."""
        if isinstance(self.spotter, RunSpotter):
            return self.spotter.windows(candidate, verifier.hears)
        assert isinstance(self.spotter, KeywordSpotter)
        return self.spotter.windows(candidate, verifier)

    @staticmethod
    def of(configs: list[Config]) -> list[Group]:
        groups: dict[Any, list[Config]] = {}
        for c in configs:
            key = c if c.whole else c.first_stage_key()
            groups.setdefault(key, []).append(c)
        return [Group(cs) for cs in groups.values()]

    def spot(self, audio: np.ndarray, *, reset: bool = True,
             results: dict[Config, Result] | None = None) -> dict[Config, list[int]]:
        """Per configuration, the end samples (in ``audio``) of its detections."""
        spotter = self.spotter
        if reset:
            spotter.reset()
        start = spotter.fed_samples
        found: dict[Config, list[int]] = {c: [] for c in self.configs}
        own = dict.fromkeys(self.configs, 0.0)
        shared = 0.0
        for i in range(0, len(audio), BLOCK):
            cpu0 = time.process_time()
            candidates = spotter.feed(audio[i:i + BLOCK])
            shared += time.process_time() - cpu0
            if not candidates:
                continue
            if self.whole:
                found[self.configs[0]] += [h.end_sample - start for h in candidates]
                continue
            for c, verifier in self.verifiers.items():
                cpu0 = time.process_time()
                found[c] += [h.end_sample - start for h in candidates
                             if verifier is None
                             or verifier.keep(h, *self.windows(h, verifier))]
                own[c] += time.process_time() - cpu0
        if results is not None:
            for c in self.configs:
                results[c].cpu_s += shared + own[c]
                results[c].fed_s += len(audio) / va.RATE_HZ
        return found


def stop_utterances(split: Split, count: int) -> list[tuple[str, va.Voice]]:
    rng = np.random.default_rng(7 + split.seed_base)
    combos = list(itertools.product(split.voices, va.SPEEDS_WPM, split.phrases))
    rng.shuffle(combos)
    chosen = [combos[i % len(combos)] for i in range(count)]
    return [(phrase, va.Voice(voice, speed, int(rng.integers(35, 70))))
            for voice, speed, phrase in chosen]


def nonstop_texts(announcements: list[str], split: Split) -> list[str]:
    """The split's share of the non-stop texts (every ``texts_every``-th one of each
    kind)."""
    common = (announcements, EXTRA_CUES, CONVERSATION, NUMBERS) if split.common_texts else ()
    return [t for kind in common
            for t in kind[split.texts_from::split.texts_every] if not _HAS_STOP.search(t)] \
        + [t for t in split.own_texts if not _HAS_STOP.search(t)]


def progress(message: str, t0: float) -> None:
    print(f"  {message} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


def evaluate(synth: va.Synth, split: Split, configs: list[Config], *, utterances: int,
             hours: float, noise_minutes: float, announcements: list[str],
             t0: float) -> dict[Config, Result]:
    """Every configuration on the same audio of ``split``."""
    groups = Group.of(configs)
    results = {c: Result(c) for c in configs}

    # ---- detection
    chosen = stop_utterances(split, utterances)
    for snr in SNRS_DB:
        for k, (phrase, voice) in enumerate(chosen):
            clip = va.scene(synth.speak(phrase, voice), snr_db=snr,
                            seed=split.seed_base + int(snr) * 10_000 + k)
            for group in groups:
                for c, hits in group.spot(clip.audio, results=results).items():
                    results[c].trials[snr] = results[c].trials.get(snr, 0) + 1
                    results[c].hits[snr] = results[c].hits.get(snr, 0) + bool(hits)
                    tally = results[c].by_voice.setdefault((snr, voice.name), [0, 0])
                    tally[0] += bool(hits)
                    tally[1] += 1
        progress(f"{split.name}: detection at {snr:g} dB done", t0)

    # ---- confusables
    for k, (name, word) in enumerate(itertools.product(split.voices, va.CONFUSABLES)):
        clip = va.scene(synth.speak(word, va.Voice(name, 160)), snr_db=20,
                        seed=split.seed_base + 50_000 + k)
        for group in groups:
            for c, hits in group.spot(clip.audio).items():
                results[c].confusables += 1
                results[c].confusable_hits += bool(hits)
                if hits:
                    results[c].confusable_words[word] = \
                        results[c].confusable_words.get(word, 0) + 1

    # ---- false stops per hour: one continuous stream, never reset
    texts = nonstop_texts(announcements, split)
    rng = np.random.default_rng(11 + split.seed_base)
    combos = [(text, va.Voice(name, speed, int(rng.integers(35, 70))))
              for text, name, speed in itertools.product(
                  texts, split.voices + split.speech_voices, va.SPEEDS_WPM)]
    rng.shuffle(combos)
    target_s = hours * 3600
    audio_s = speech_s = 0.0
    chunk: list[np.ndarray] = []
    chunk_index = 0
    for group in groups:
        group.spotter.reset()
        group.spotter.candidates = group.spotter.too_short = 0
    for text, voice in itertools.cycle(combos):
        if audio_s >= target_s:
            break
        chunk.append(synth.speak(text, voice))
        if sum(len(c) for c in chunk) < 120 * va.RATE_HZ:
            continue
        snr = (20.0, 10.0, 5.0)[chunk_index % 3]
        stream, _spans = va.sequence(chunk, snr_db=snr, seed=split.seed_base + 90_000
                                     + chunk_index, gap_s=float(rng.uniform(0.4, 1.6)))
        for group in groups:
            for c, hits in group.spot(stream, reset=False, results=results).items():
                results[c].false_stops += len(hits)
        audio_s += len(stream) / va.RATE_HZ
        speech_s += sum(len(c) for c in chunk) / va.RATE_HZ
        chunk = []
        chunk_index += 1
        if chunk_index % 5 == 0:
            progress(f"{split.name}: non-stop speech {audio_s / 60:.0f} of "
                     f"{target_s / 60:.0f} min", t0)
    for group in groups:
        for c in group.configs:
            result = results[c]
            result.false_audio_s, result.speech_s = audio_s, speech_s
            result.texts = len(texts)
            result.candidates = group.spotter.candidates
            result.too_short = group.spotter.too_short

    for c, count in noise_only(configs, noise_minutes, split.seed_base).items():
        results[c].noise_false_stops = count
        results[c].noise_minutes = noise_minutes
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    synth = va.Synth(Path(args.cache))
    t0 = time.perf_counter()
    announcements = va.collect_announcements() if not args.quick else []
    validation: dict[Config, Result] = {}
    if args.chosen is None:
        validation = evaluate(synth, VALIDATION, args.grid,
                              utterances=args.validation_utterances,
                              hours=args.validation_hours,
                              noise_minutes=args.noise_minutes / 2,
                              announcements=announcements, t0=t0)
        chosen = choose(list(validation.values())).config
        print("\n".join(rows(validation, chosen)), file=sys.stderr, flush=True)
    else:
        chosen = args.chosen
    held: Split = HELD_OUT_SETS[args.held_out]
    reported = [chosen, *([DEFAULT] if args.compare and chosen != DEFAULT else [])]
    held_out = evaluate(synth, held, reported, utterances=args.utterances,
                        hours=args.hours, noise_minutes=args.noise_minutes,
                        announcements=announcements, t0=t0)
    print("\n".join(rows(held_out, chosen)), file=sys.stderr, flush=True)
    utterances = stop_utterances(held, args.utterances)
    ends = held.ends_with_stop
    latency = measure_latency(synth, utterances, chosen, args.latency_words, ends)
    progress("latency done", t0)
    wire = measure_to_wire(synth, utterances, chosen, args.wire_trials, ends)
    progress("wire done", t0)
    compared: dict[str, Any] = {}
    if args.compare and chosen != DEFAULT:
        compared = {"latency": measure_latency(synth, utterances, DEFAULT, args.latency_words,
                                               ends),
                    "wire": measure_to_wire(synth, utterances, DEFAULT, args.wire_trials,
                                            ends)}
        progress("the default's latency done", t0)
    return {"validation": validation, "held_out": held_out, "chosen": chosen, "split": held,
            "latency": latency, "wire": wire, "compared": compared,
            "seconds": time.perf_counter() - t0}


LATENCY_SLACK_S = 0.2
"""How much later than the default's a switched-to configuration's p99 may be (above)."""
FALSE_PER_HOUR_CAP = 1.0
"""The choice's false-stop cap (per hour, the worse of speech and noise alone): the
target. From the validation split's 2 h of speech to the ninth choice: 3."""


def choose(results: list[Result]) -> Result:
    """On the VALIDATION set (fixed before the run of commit "benchmark: 2 h of
    validation speech"), false stops per hour counted as the worse of non-stop speech and
    noise alone: among configurations with at most ``FALSE_PER_HOUR_CAP`` (3; since the
    tenth choice, 1) false stops per hour, the best detection at 10 dB; ties: fewer false
    stops per hour. (The earlier cap of 1 per hour could not be resolved by 0.34 h of
    validation speech: it rewarded silence over hearing; 2 h can tell 3 per hour from 9.)
    When none qualifies: the fewest false stops per hour among those that still hear at
    least ``USEFUL`` of the stops at 10 dB; failing that, the best detection at 10 dB."""
    ok = [r for r in results if r.worst_per_hour <= FALSE_PER_HOUR_CAP]
    if ok:
        return max(ok, key=lambda r: (r.rate(10.0), -r.worst_per_hour))
    useful = [r for r in results if r.rate(10.0) >= USEFUL]
    if useful:
        return min(useful, key=lambda r: (r.worst_per_hour, -r.rate(10.0)))
    return max(results, key=lambda r: r.rate(10.0))


def noise_only(configs: list[Config], minutes: float, seed_base: int = 0) -> dict[Config, int]:
    """False stops on treadmill noise with no speech at all, one continuous stream."""
    counts = dict.fromkeys(configs, 0)
    groups = Group.of(configs)
    for k in range(max(1, round(minutes))):
        snr = (20.0, 10.0, 5.0)[k % 3]
        noise = (va.treadmill_noise(60.0, seed=seed_base + 70_000 + k) * va.SPEECH_LEVEL
                 / 10 ** (snr / 20))
        audio = np.clip(noise, -32768, 32767).astype(np.int16)
        for group in groups:
            for c, hits in group.spot(audio, reset=False).items():
                counts[c] += len(hits)
    return counts


def measure_latency(synth: va.Synth, utterances: list[tuple[str, va.Voice]],
                    config: Config, words: int,
                    ends_with_stop: tuple[str, ...] = HELD_OUT.ends_with_stop,
                    ) -> dict[str, Any]:
    """End of word -> command on the loop, through the real listener thread, the audio
    paced in real time as a microphone delivers it (fed faster, the listener thread would
    starve the loop's thread and measure that instead)."""
    parts = [synth.speak(phrase, voice) for phrase, voice in utterances
             if phrase in ends_with_stop][:words]
    audio, spans = va.sequence(parts, snr_db=10.0, seed=77, gap_s=1.5)
    spotter = config.spotter()
    delivered: list[tuple[Detection, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = VoiceListener(ArraySource(audio, va.RATE_HZ, realtime=True), spotter,
                                 loop=loop,
                                 on_detection=lambda d, lat: delivered.append((d, lat)),
                                 on_lost=lambda message: None)
        listener.start()
        await loop.run_in_executor(None, listener.join)
        await asyncio.sleep(0.05)  # the last hand-overs

    asyncio.run(main())
    ends = np.array([end for _start, end in spans])
    totals, compute = [], []
    for detection, latency_s in delivered:
        end_sample = round(detection.audio_end_s * va.RATE_HZ)
        before = ends[ends <= end_sample]
        if not len(before):
            continue
        word_end = before[-1]
        if end_sample - word_end > 2 * va.RATE_HZ:  # not this word's detection
            continue
        audio_part = (end_sample - word_end) / va.RATE_HZ
        totals.append(audio_part + latency_s)
        compute.append(latency_s)
    return {"n": len(totals), "words": len(parts),
            "p50_s": percentile(totals, 50), "p99_s": percentile(totals, 99),
            "max_s": max(totals) if totals else math.nan,
            "compute_p50_ms": percentile(compute, 50) * 1000,
            "compute_p99_ms": percentile(compute, 99) * 1000}


async def _wire_trial(clip: va.Scene, config: Config) -> float | None:
    """One workout on the simulator in real time; the clip plays through a paced source
    (as a microphone delivers it) once the person walks backward. Seconds from the end of
    the word to the first Stop the simulator decodes, or None when the word was missed."""
    from benchmarks.common import REACTION_PROFILE
    from retrotread.clock import LoopClock
    from retrotread.devices import DeviceSpec
    from retrotread.events import CommandSource, Event, EventBus, TurnaroundPhase, UserCommand
    from retrotread.ftms import codec
    from retrotread.profile import load_profile_text
    from retrotread.runner import LinkFactory, run_profile, running_simulator
    from retrotread.session import Session, SessionSettings
    from retrotread.voice.listener import VoiceStop

    profile = load_profile_text(REACTION_PROFILE, "benchmark-voice.yaml")
    clock = LoopClock()
    bus = EventBus()
    started = asyncio.Event()
    source = ArraySource(clip.audio, va.RATE_HZ, realtime=True)
    heard: list[Event] = []

    def on_event(event: Event) -> None:
        if isinstance(event, TurnaroundPhase) and event.phase == "start":
            started.set()
        if isinstance(event, VoiceHeard):
            heard.append(event)

    bus.subscribe(on_event)
    tasks: list[asyncio.Future[None]] = []

    async def scenario(session: Session) -> None:
        await started.wait()
        await asyncio.sleep(0.3)
        voice = VoiceStop(source, config.spotter(), bus=bus,
                          clock=clock)
        voice.start(session)
        try:
            await asyncio.sleep(len(clip.audio) / va.RATE_HZ + 1.0)
        finally:
            await voice.close()
        if not heard:  # missed: end the trial
            session.request(UserCommand.STOP, CommandSource.KEY)

    async with running_simulator(clock, "generic") as sim:
        await asyncio.wait_for(run_profile(
            profile, link_factory=LinkFactory(DeviceSpec("sim", "generic"), sim), clock=clock,
            bus=bus, simulated=True, settings=SessionSettings(start_countdown_s=0.5),
            on_session=lambda session: tasks.append(asyncio.ensure_future(scenario(session))),
        ), timeout=60.0)
        for task in tasks:
            await task
        requests = list(zip(sim.request_times, sim.requests, strict=True))
    if not heard or source._started is None:
        return None
    word_end = source._started + clip.speech_end / va.RATE_HZ  # LoopClock: time.monotonic
    stops = [t for t, r in requests if isinstance(r, codec.StopOrPause)
             and r.action is codec.StopPause.STOP and t >= word_end - 1.0]
    return stops[0] - word_end if stops else None


def measure_to_wire(synth: va.Synth, utterances: list[tuple[str, va.Voice]],
                    config: Config, trials: int,
                    ends_with_stop: tuple[str, ...] = HELD_OUT.ends_with_stop,
                    ) -> dict[str, Any]:
    """End of word -> Stop on the wire, in real time, ``trials`` workouts."""
    chosen = [(p, v) for p, v in utterances if p in ends_with_stop][:trials]
    latencies: list[float] = []
    for k, (phrase, voice) in enumerate(chosen):
        clip = va.scene(synth.speak(phrase, voice), snr_db=10.0, seed=60_000 + k,
                        before_s=1.0, after_s=1.5)
        latency = asyncio.run(_wire_trial(clip, config))
        if latency is not None:
            latencies.append(latency)
    return {"n": len(latencies), "trials": len(chosen),
            "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99),
            "max_s": max(latencies) if latencies else math.nan}


def rows(results: dict[Config, Result], chosen: Config) -> list[str]:
    lines = ["| stage 1 threshold, stage 2 shortest word | "
             + " | ".join(f"stop @ {s:g} dB" for s in SNRS_DB)
             + " | false stops / h of speech | / h of noise alone | confusables taken for stop"
             " | CPU s per audio s |",
             "|---|" + "---|" * len(SNRS_DB) + "---|---|---|---|"]
    for c, r in results.items():
        mark = " (chosen)" if c == chosen else ""
        rates = " | ".join(f"{100 * r.rate(s):.1f} % ({r.hits.get(s, 0)}/{r.trials.get(s, 0)})"
                           for s in SNRS_DB)
        lines.append(f"| {c}{mark} | {rates} | {r.false_per_hour:.1f} ({r.false_stops}) | "
                     f"{r.noise_per_hour:.0f} ({r.noise_false_stops} in "
                     f"{r.noise_minutes:.0f} min) | "
                     f"{r.confusable_hits}/{r.confusables} | {r.cpu_per_audio_s:.3f} |")
    r = next(iter(results.values()))
    lines.append(f"non-stop speech: {r.false_audio_s / 3600:.2f} h of audio "
                 f"({r.speech_s / 3600:.2f} h of speech, {r.texts} texts x 4 speeds x the "
                 "set's voices), noise 20/10/5 dB by turns")
    return lines


def latency_lines(name: str, lat: dict[str, Any], wire: dict[str, Any]) -> list[str]:
    return [f"latency, end of word -> command on the loop ({name}, held-out, 10 dB, "
            f"{lat['n']} of {lat['words']} words detected): "
            f"p50 {lat['p50_s'] * 1000:.0f} ms, p99 {lat['p99_s'] * 1000:.0f} ms, "
            f"max {lat['max_s'] * 1000:.0f} ms; of it, block read -> command: "
            f"p50 {lat['compute_p50_ms']:.1f} ms, p99 {lat['compute_p99_ms']:.1f} ms",
            f"end of word -> Stop on the wire ({name}, simulator in real time, paced audio, "
            f"10 dB, {wire['n']} of {wire['trials']} workouts stopped by voice): "
            f"p50 {wire['p50_s'] * 1000:.0f} ms, p99 {wire['p99_s'] * 1000:.0f} ms, "
            f"max {wire['max_s'] * 1000:.0f} ms"]


def uncertainty_lines(result: Result) -> list[str]:
    """The chosen configuration's held-out counts with their 95 % intervals: what the
    counts can and cannot show about the targets."""
    hits, trials = result.hits.get(10.0, 0), result.trials.get(10.0, 0)
    low, high = wilson_95(hits, trials)
    hours = result.false_audio_s / 3600
    if not hours:
        return []
    f_low, f_high = (bound / hours for bound in poisson_95(result.false_stops))
    return [f"95 % intervals (held-out): stops heard at 10 dB {100 * low:.1f}-{100 * high:.1f} % "
            f"({hits}/{trials}); false stops {f_low:.1f}-{f_high:.1f} per hour "
            f"({result.false_stops} in {hours:.2f} h; none at all in {hours:.2f} h would "
            f"still allow up to {poisson_95(0)[1] / hours:.1f} per hour)"]


def by_voice_lines(result: Result) -> list[str]:
    """Stops heard per voice and SNR (the chosen configuration, held-out): which voices
    the misses come from."""
    voices = sorted({voice for _snr, voice in result.by_voice})
    if not voices:
        return []
    lines = ["", "held-out stops heard, per voice (chosen configuration):", "",
             "| voice | " + " | ".join(f"{s:g} dB" for s in SNRS_DB) + " |",
             "|---|" + "---|" * len(SNRS_DB)]
    for voice in voices:
        cells = [result.by_voice.get((snr, voice), [0, 0]) for snr in SNRS_DB]
        lines.append(f"| {voice} | " + " | ".join(f"{heard}/{said}" for heard, said in cells)
                     + " |")
    return [*lines, ""]


def table(out: dict[str, Any]) -> str:
    chosen: Config = out["chosen"]
    held: Result = out["held_out"][chosen]
    held_set: Split = out["split"]
    lines = [f"VALIDATION set ({', '.join(VALIDATION.voices)}; "
             f"phrases {VALIDATION.phrases}):", ""]
    lines += rows(out["validation"], chosen) if out["validation"] else [
        f"not run: --chosen {chosen} (chosen by an earlier run's validation table)"]
    lines += ["", f"{held_set.name.upper()} set, chosen configuration only "
              f"({', '.join(held_set.voices)}; phrases {held_set.phrases}):", ""]
    lines += rows(out["held_out"], chosen)
    lines.append(f"second stage on the held-out non-stop speech: {held.too_short} of "
                 f"{held.candidates} first-stage candidates dropped as too short")
    lines.append(f"confusables heard as stop (held-out): {held.confusable_words or 'none'}")
    lines += uncertainty_lines(held)
    lines += by_voice_lines(held)
    lat, wire = out["latency"], out["wire"]
    lines += latency_lines(str(chosen), lat, wire)
    if out.get("compared"):
        before = out["compared"]
        lines += latency_lines(f"{DEFAULT}, the default", before["latency"], before["wire"])
        slower = max(lat["p99_s"] - before["latency"]["p99_s"],
                     wire["p99_s"] - before["wire"]["p99_s"])
        lines.append(f"p99 against the default's: {slower * 1000:+.0f} ms at most "
                     f"(switch rule: <= {LATENCY_SLACK_S * 1000:.0f} ms)")
    lines.append(f"targets (held-out): >= 95 % at 10 dB: "
                 f"{'PASS' if held.rate(10.0) >= 0.95 else 'FAIL'}; "
                 f"<= 1 false stop/h: {'PASS' if held.worst_per_hour <= 1 else 'FAIL'}; "
                 f"p99 <= 1 s: {'PASS' if max(lat['p99_s'], wire['p99_s']) <= 1.0 else 'FAIL'}  "
                 f"({out['seconds'] / 60:.1f} min)")
    return "\n".join(lines)


def parse_config(text: str) -> Config:
    """THRESHOLD[:MIN_WORD_S[:VERIFY[:any|hold]]]; VERIFY is a re-decoding threshold,
    ``netP`` (the learned verifier at P(stop) >= P; ``netP@FILE.npz``: with that model
    from retrotread/voice/), ``asr[BEFORE_S]`` (Moonshine speech recognition, hearing
    BEFORE_S, default 0.3 s, before the word; ``asr0.3p0.2``: also when the recognizer gave
    "stop" a probability of at least 0.2; a trailing ``raw``, as in ``asr0.3raw``: it
    hears the audio before noise suppression; ``either``: the raw audio, then the cleaned),
    ``netP[@FILE.npz]+asr[BEFORE_S]`` (the
    classifier first, then the recognizer on what it lets through) or ``none`` (the
    default); ``any``: also outside voice activity; ``silero``: runs of speech by Silero
    VAD instead of WebRTC's voice activity. THRESHOLD 0 with ``netP``: the learned
    detector on a sliding window, ``hold`` waiting for the end of the run. ``runs``,
    ``runs:clean``, ``runs:either``: no keyword spotting, Silero's short runs of speech
    transcribed by Moonshine (hearing the raw audio, the cleaned, or both); a further
    ``:pP``, as in ``runs:either:p0.1``: also when the recognizer gave "stop" a probability
    of at least P; ``:wN``, as in ``runs:w4``: a transcript of more than N words is no
    command; ``:nN``, as in ``runs:either:p0.05:w4:n3``: a near miss counts only in a
    transcript of 1 to N words."""
    if text.startswith("runs"):
        parts = [part for part in text.removeprefix("runs").split(":") if part]
        near = [float(part[1:]) for part in parts if part.startswith("p")]
        cap = [int(part[1:]) for part in parts if part.startswith("w")]
        near_cap = [int(part[1:]) for part in parts if part.startswith("n")]
        words = [part for part in parts if part[0] not in "pwn"]
        hears = {"clean": Hears.CLEANED, "either": Hears.EITHER}[words[0]] if words \
            else Hears.RAW
        return Config(0.0, 0.0, runs=True, asr_hears=hears, activity=Activity.SILERO,
                      asr_min_stop_p=near[0] if near else None,
                      asr_max_words=cap[0] if cap else None,
                      asr_near_max_words=near_cap[0] if near_cap else None)
    threshold, word, verify, flag = [*text.split(":"), "", "", ""][:4]
    verify, _, model = verify.partition("@")
    verify, _, then = verify.partition("+")
    model, _, then2 = model.partition("+")
    then = then or then2
    net = float(verify[3:]) if verify.startswith("net") else None
    asr_text = then if then.startswith("asr") else verify if verify.startswith("asr") else ""
    hears = next((h for suffix, h in (("raw", Hears.RAW), ("either", Hears.EITHER))
                  if asr_text.endswith(suffix)), Hears.CLEANED)
    for suffix in ("raw", "either"):
        asr_text = asr_text.removesuffix(suffix)
    asr_text, _, min_p = asr_text.partition("p")
    asr = float(asr_text[3:] or 0.3) if asr_text else None
    return Config(float(threshold), float(word or 0.0), require_speech=flag != "any",
                  verify_threshold=None if verify in ("", "none") or net is not None
                  or asr is not None else float(verify), net_threshold=net,
                  hold=flag == "hold", model=model, asr_before_s=asr,
                  activity=Activity.SILERO if flag == "silero" else Activity.WEBRTC,
                  asr_min_stop_p=float(min_p) if min_p else None, asr_hears=hears)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: few utterances, minutes of non-stop speech")
    parser.add_argument("--grid", type=lambda s: [parse_config(x) for x in s.split(",")],
                        default=list(GRID),
                        help="configurations to choose among, "
                        "THRESHOLD:MIN_WORD_S[:VERIFY_THRESHOLD|none|netP[@MODEL.npz][:any]]"
                        ",...")
    parser.add_argument("--utterances", type=int, default=240, help="held-out, per SNR")
    parser.add_argument("--hours", type=float, default=1.4,
                        help="held-out non-stop audio (speech and the gaps between: 1.4 h "
                        "holds about an hour of speech)")
    parser.add_argument("--validation-utterances", type=int, default=90)
    parser.add_argument("--validation-hours", type=float, default=2.0,
                        help="validation non-stop audio (speech and the gaps between)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir())
                                              / "retrotread-voice-bench"))
    parser.add_argument("--wire-trials", type=int, default=20,
                        help="real-time workouts for end of word -> Stop on the wire")
    parser.add_argument("--noise-minutes", type=float, default=10.0,
                        help="treadmill noise without speech (held-out; half for validation)")
    parser.add_argument("--latency-words", type=int, default=60,
                        help="words ending in stop for the listener latency (real time)")
    parser.add_argument("--compare", action="store_true",
                        help="also report the current default (DEFAULT) on the held-out "
                        "set, and its latency (never used for the choice)")
    parser.add_argument("--held-out", choices=sorted(HELD_OUT_SETS), default="held-out",
                        help="the set to report on: the first held-out split; FRESH (made "
                        "after the tenth choice, judged on by the twelfth); or THIRD (made "
                        "after the twelfth, judged on by the thirteenth)")
    parser.add_argument("--chosen", type=parse_config, default=None,
                        help="skip the validation run and report this configuration (only "
                        "when an earlier run's validation table, under the same rules, "
                        "chose it)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.utterances, args.hours, args.wire_trials, args.latency_words = 30, 4 / 60, 3, 8
        args.validation_utterances, args.validation_hours, args.noise_minutes = 20, 4 / 60, 2
    missing = va.tools_missing()
    if missing:
        print(f"benchmarks.voice: {missing}", file=sys.stderr)
        return 2
    out = run(args)
    print(table(out))
    if args.json:
        def dump(results: dict[Config, Result]) -> dict[str, Any]:
            return {str(c): {"hits": {f"{s:g}": r.hits.get(s) for s in SNRS_DB},
                             "trials": {f"{s:g}": r.trials.get(s) for s in SNRS_DB},
                             "by_voice": {f"{snr:g} dB {voice}": tally
                                          for (snr, voice), tally in r.by_voice.items()},
                             "false_stops": r.false_stops, "audio_s": r.false_audio_s,
                             "false_per_hour": r.false_per_hour,
                             "confusables": r.confusable_words,
                             "noise_false_stops": r.noise_false_stops,
                             "noise_minutes": r.noise_minutes,
                             "cpu_per_audio_s": r.cpu_per_audio_s}
                    for c, r in results.items()}
        args.json.write_text(json.dumps({"validation": dump(out["validation"]),
                                         "held_out": dump(out["held_out"]),
                                         "latency": out["latency"], "wire": out["wire"],
                                         "compared": out["compared"],
                                         "chosen": str(out["chosen"]),
                                         "held_out_set": out["split"].name,
                                         "seconds": out["seconds"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
