"""RunSpotter (retrotread/voice/runs.py): Silero's short runs of speech, each transcribed by
Moonshine, on synthesized speech and generated treadmill noise."""

from __future__ import annotations

import numpy as np
import pytest

from retrotread.events import UserCommand
from retrotread.voice import asr
from retrotread.voice.runs import RunSpotter
from tests import voice_audio as va
from tests.mosquitto import in_ci
from tests.test_voice import synth  # noqa: F401  (the session's espeak-ng fixture)


@pytest.fixture(autouse=True)
def moonshine() -> None:
    if not asr.available():
        if in_ci():  # CI installs the voice extra on Linux x86-64: it must be there
            pytest.fail("Moonshine (moonshine-cpp, onnx) is not installed")
        pytest.skip("Moonshine (moonshine-cpp) is not installed here")


def spot(spotter: RunSpotter, audio: np.ndarray, block: int = 1600) -> list[int]:
    found = []
    for i in range(0, len(audio), block):
        found += [h.end_sample for h in spotter.feed(audio[i:i + block])]
    return found


@pytest.mark.parametrize("hears", list(asr.Hears))
def test_a_short_stop_is_heard_whole(synth: va.Synth, hears: asr.Hears) -> None:  # noqa: F811
    clip = va.scene(synth.speak("please stop", va.Voice("en-us", 160)), snr_db=10, seed=31,
                    after_s=1.0)
    spotter = RunSpotter(va.RATE_HZ, hears=hears)
    hits = []
    for i in range(0, len(clip.audio), 1000):
        hits += spotter.feed(clip.audio[i:i + 1000])
    assert [h.command for h in hits] == [UserCommand.STOP]
    (hit,) = hits
    # released after the run and its end silence, from where the run began
    assert hit.end_sample > clip.speech_end
    assert abs(hit.word_start_sample - clip.speech_start) < 0.3 * va.RATE_HZ
    assert hit.confidence > 0.5 and spotter.candidates == 1
    assert spotter.verifier.hears is hears
    # the noise suppressor runs only when the recognizer hears its output
    assert (spotter.denoiser is not None) is hears.needs_cleaned
    assert [h is asr.Hears.RAW for h in asr.Hears if not h.needs_cleaned] == [True]
    assert asr.Hears.EITHER.raw_first == (True, False)


def test_stop_inside_a_long_sentence_and_other_words_are_not_commands(
        synth: va.Synth) -> None:  # noqa: F811
    spotter = RunSpotter(va.RATE_HZ)
    sentence = synth.speak("When the timer runs out the belt will slow down and stop, "
                           "then turn around", va.Voice("en-us", 175))
    clip = va.scene(sentence, snr_db=20, seed=32, after_s=1.0)
    assert spot(spotter, clip.audio) == []
    assert spotter.too_long >= 1
    for k, word in enumerate(("shop", "top", "step back")):
        near = va.scene(synth.speak(word, va.Voice("en-us", 160)), snr_db=20, seed=33 + k,
                        after_s=1.0)
        assert spot(spotter, near.audio) == [], word


def test_treadmill_noise_alone_costs_no_recognition() -> None:
    spotter = RunSpotter(va.RATE_HZ)
    for k, snr in enumerate((10.0, 5.0, 0.0)):
        noise = va.treadmill_noise(20.0, seed=40 + k) * va.SPEECH_LEVEL / 10 ** (snr / 20)
        assert spot(spotter, np.clip(noise, -32768, 32767).astype(np.int16)) == []
    assert spotter.candidates == 0 and spotter.verifier.checked == 0


def test_the_benchmark_s_default_is_what_voice_stop_listens_with() -> None:
    from benchmarks.voice import DEFAULT
    from retrotread.voice import default

    assert DEFAULT.runs and DEFAULT.asr_hears is default.RUNS_HEAR
    assert isinstance(default.default_spotter(va.RATE_HZ), RunSpotter)
