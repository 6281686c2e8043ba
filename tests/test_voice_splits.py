"""The voice benchmark's splits (benchmarks/voice.py): every voice is the voice it names,
and the splits (training, validation and three held-out sets) share no voice, stop
phrase, non-stop text or noise seed range."""

from __future__ import annotations

import numpy as np

from benchmarks import voice as bv
from tests import voice_audio as va
from tests.test_voice import synth  # noqa: F401  (the session's espeak-ng fixture)

SPLITS = (bv.TRAINING, bv.VALIDATION, bv.HELD_OUT, bv.FRESH, bv.THIRD)


def test_every_variant_changes_the_voice(synth: va.Synth) -> None:  # noqa: F811
    """espeak-ng falls back to the plain voice for a variant it does not know (its file
    names are case-sensitive: ``+iven2``, not ``+Iven2``), which would quietly make a
    split's voices fewer than it says."""
    for name in sorted({v for s in SPLITS for v in (*s.voices, *s.speech_voices)
                        if "+" in v}):
        base = name.partition("+")[0]
        plain, varied = (synth.speak("wait stop now", va.Voice(v, 175, 50))
                         for v in (base, name))
        # sox dithers when it converts, so the same voice differs by a few steps
        same = len(plain) == len(varied) and int(
            np.abs(plain.astype(np.int32) - varied).max()) <= 16
        assert not same, name
    fallback = synth.speak("wait stop now", va.Voice("en-us+Iven2", 175, 50))
    plain = synth.speak("wait stop now", va.Voice("en-us", 175, 50))
    assert len(fallback) == len(plain)
    assert int(np.abs(fallback.astype(np.int32) - plain).max()) <= 16  # the check works


def test_the_splits_share_no_voice_phrase_text_or_seed() -> None:
    announcements = ["The belt will slow down now.", "Turn around, walk backward."]
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            pair = f"{a.name} / {b.name}"
            assert not {*a.voices, *a.speech_voices} & {*b.voices, *b.speech_voices}, pair
            assert not (set(a.phrases) & set(b.phrases)) - {"stop"}, pair
            assert not set(bv.nonstop_texts(announcements, a)) & set(
                bv.nonstop_texts(announcements, b)), pair
            assert abs(a.seed_base - b.seed_base) >= 100_000, pair
    for split, texts in ((bv.FRESH, bv.FRESH_TEXTS), (bv.THIRD, bv.THIRD_TEXTS)):
        own = bv.nonstop_texts(announcements, split)
        assert own == list(texts) and len(own) >= 40, split.name
        assert all(p in split.phrases for p in split.ends_with_stop), split.name
        assert all(p.endswith("stop") for p in split.ends_with_stop), split.name
