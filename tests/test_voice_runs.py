"""RunSpotter (retrotread/voice/runs.py): Silero's short runs of speech, each transcribed by
Moonshine, on synthesized speech and generated treadmill noise."""

from __future__ import annotations

import numpy as np
import pytest

from retrotread.events import UserCommand
from retrotread.voice import asr, default
from retrotread.voice.runs import PAD_S, RunSpotter
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
    spotter = default.run_spotter(va.RATE_HZ)  # as --voice-stop listens
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
    spotter = default.run_spotter(va.RATE_HZ)
    for k, snr in enumerate((10.0, 5.0, 0.0)):
        noise = va.treadmill_noise(20.0, seed=40 + k) * va.SPEECH_LEVEL / 10 ** (snr / 20)
        assert spot(spotter, np.clip(noise, -32768, 32767).astype(np.int16)) == []
    assert spotter.candidates == 0 and spotter.verifier.checked == 0


def test_the_benchmark_s_default_is_what_voice_stop_listens_with() -> None:
    from benchmarks.voice import DEFAULT

    assert DEFAULT.runs and DEFAULT.asr_hears is default.RUNS_HEAR
    assert DEFAULT.asr_min_stop_p == default.RUNS_MIN_STOP_P
    assert DEFAULT.asr_max_words == default.RUNS_MAX_WORDS
    assert DEFAULT.asr_near_max_words == default.RUNS_NEAR_MAX_WORDS
    listening = default.default_spotter(va.RATE_HZ)
    assert isinstance(listening, RunSpotter) and listening.verifier is not None
    assert listening.verifier.hears is default.RUNS_HEAR
    assert listening.verifier.min_stop_p == default.RUNS_MIN_STOP_P
    assert listening.verifier.max_words == default.RUNS_MAX_WORDS
    assert listening.verifier.near_max_words == default.RUNS_NEAR_MAX_WORDS



def test_unjudged_runs_give_the_windows_the_spotter_itself_would_judge(
        synth: va.Synth) -> None:  # noqa: F811
    clip = va.scene(synth.speak("just stop", va.Voice("en-us", 160)), snr_db=10, seed=34,
                    after_s=1.0)
    whole = RunSpotter(va.RATE_HZ, hears=asr.Hears.EITHER)
    runs = RunSpotter(va.RATE_HZ, hears=asr.Hears.EITHER, verify=False)
    assert whole.verifier is not None and runs.verifier is None
    judged: list[list[np.ndarray]] = []
    keep = whole.verifier.keep
    whole.verifier.keep = (  # type: ignore[method-assign]
        lambda run, *windows: judged.append(list(windows)) is None and keep(run, *windows))
    heard, found, windows = [], [], []
    for i in range(0, len(clip.audio), 1600):
        heard += whole.feed(clip.audio[i:i + 1600])
        new = runs.feed(clip.audio[i:i + 1600])
        found += new
        windows += [runs.windows(run, asr.Hears.EITHER) for run in new]
    (run,) = found
    (hit,) = heard  # the same run, judged
    assert (run.end_sample, run.word_start_sample) == (hit.end_sample, hit.word_start_sample)
    assert run.confidence == 0.0 < hit.confidence
    ((raw, cleaned),) = windows
    assert len(judged) == 1 and len(judged[0]) in (1, 2)  # the cleaned only if raw missed
    assert all(np.array_equal(a, b) for a, b in zip(judged[0], (raw, cleaned), strict=False))
    assert not np.array_equal(raw, cleaned)  # the noise suppressor's output
    assert len(raw) == round(run.duration_s * va.RATE_HZ) + 2 * round(PAD_S * va.RATE_HZ)
    with pytest.raises(ValueError, match="noise-suppressed"):
        RunSpotter(va.RATE_HZ, verify=False).windows(run, asr.Hears.EITHER)


def test_a_near_miss_counts_only_when_asked_for() -> None:
    assert RunSpotter(va.RATE_HZ).verifier.min_stop_p is None  # type: ignore[union-attr]
    near = RunSpotter(va.RATE_HZ, min_stop_p=0.1)
    assert near.verifier is not None and near.verifier.min_stop_p == 0.1
    assert near.verifier.near_max_words is None
    from benchmarks.voice import parse_config
    short = parse_config("runs:either:p0.03:w4:n3")
    assert (short.asr_min_stop_p, short.asr_max_words, short.asr_near_max_words) == (0.03, 4, 3)
    spotter = short.spotter()
    assert isinstance(spotter, RunSpotter) and spotter.verifier is not None
    assert spotter.verifier.near_max_words == 3 and spotter.verifier.min_stop_p == 0.03


def test_the_benchmark_judges_silero_s_runs_once_for_all_its_run_rows(
        synth: va.Synth) -> None:  # noqa: F811
    """benchmarks/voice.py shares Silero's runs (and each window's transcript) among
    run-spotter configurations; each gets exactly the detections its own spotter gets."""
    from benchmarks.voice import Group, parse_config
    configs = [parse_config(code) for code in ("runs", "runs:either", "runs:p0.05",
                                               "runs:either:p0.05")]
    assert configs[3].asr_hears is asr.Hears.EITHER and configs[3].asr_min_stop_p == 0.05
    assert configs[0].asr_min_stop_p is None and "P(stop) >= 0.05" in str(configs[2])
    (group,) = Group.of(configs)
    assert isinstance(group.spotter, RunSpotter) and group.spotter.verifier is None
    assert group.spotter.denoiser is not None  # a row hears the cleaned audio
    assert len({id(v.transcriber) for v in group.verifiers.values()}) == 1
    alone = {c: c.spotter() for c in configs}
    detections = {c: 0 for c in configs}
    for k, (phrase, snr) in enumerate((("stop", 5.0), ("hey stop", 0.0), ("shop", 10.0),
                                       ("stop it", 10.0), ("okay stop", 0.0))):
        clip = va.scene(synth.speak(phrase, va.Voice("en-gb-scotland+f2", 175)),
                        snr_db=snr, seed=70 + k, after_s=1.0)
        shared = group.spot(clip.audio)
        for config, spotter in alone.items():
            assert isinstance(spotter, RunSpotter)
            spotter.reset()
            start = spotter.fed_samples
            own = [end - start for end in spot(spotter, clip.audio)]
            assert own == shared[config], (phrase, snr, str(config))
            detections[config] += len(own)
    assert detections[configs[0]] >= 2  # the stops heard, not only silence compared
    # each looser row hears at least what the stricter one hears
    assert detections[configs[0]] <= detections[configs[1]] <= detections[configs[3]]
    assert detections[configs[0]] <= detections[configs[2]] <= detections[configs[3]]


def test_a_long_transcript_is_no_command() -> None:
    """``max_words``: "stop" in a transcript of more words is not taken (a command is a
    short phrase), near miss or not."""
    texts: list[str] = []

    class Scripted:
        def decode(self, audio: np.ndarray) -> asr.Transcript:
            return asr.Transcript(texts.pop(0), 0.3)

    quiet = np.zeros(1600, np.int16)
    capped = RunSpotter.make_verifier(max_words=4, min_stop_p=0.2)
    capped.transcriber = Scripted()  # type: ignore[assignment]
    free = RunSpotter.make_verifier()
    free.transcriber = Scripted()  # type: ignore[assignment]
    for text, words in (("Stop.", 1), ("Please stop the belt.", 4), ("Okay, it's stop", 3),
                        ("The stop package was opened in", 6), ("Stopped at 2.4 miles", 5)):
        assert len(asr.WORD.findall(text)) == words, text
        texts[:] = [text, text]
        assert capped.keep(None, quiet) is (words <= 4), text
        assert free.keep(None, quiet) is bool(asr.STOP_WORD.search(text)), text
    # the cap applies to each hearing: a long raw transcript, then a short cleaned one
    either = RunSpotter.make_verifier(hears=asr.Hears.EITHER, max_words=4)
    either.transcriber = Scripted()  # type: ignore[assignment]
    texts[:] = ["The stop package was opened in", "stop now"]
    assert either.keep(None, quiet, quiet) and not texts
    from benchmarks.voice import parse_config
    config = parse_config("runs:either:p0.1:w4")
    assert (config.asr_hears, config.asr_min_stop_p, config.asr_max_words) == (
        asr.Hears.EITHER, 0.1, 4)
    assert "at most 4 words" in str(config) and parse_config("runs").asr_max_words is None
    spotter = config.spotter()
    assert isinstance(spotter, RunSpotter) and spotter.verifier is not None
    assert spotter.verifier.max_words == 4
