"""The speech-recognition second stage (retrotread/voice/asr.py): the real Moonshine model
the moonshine-cpp wheel ships, real espeak-ng speech over generated treadmill noise,
behind the real first stage. Rates are measured by benchmarks/voice.py, not here."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from retrotread.errors import VoiceUnavailableError
from retrotread.events import UserCommand
from retrotread.voice import asr
from retrotread.voice.audio import ArraySource
from retrotread.voice.listener import Detection, VoiceListener
from retrotread.voice.spotter import CascadeVerifier, KeywordSpotter, Spotted
from tests import voice_audio as va
from tests.test_faults import until
from tests.test_voice import synth  # noqa: F401  (the session's espeak-ng fixture)
from tests.test_voice_net import feed_all


@pytest.fixture(scope="module")
def transcriber() -> asr.Transcriber:
    return asr.Transcriber()


def test_the_transcriber_hears_stop_and_not_its_near_words(
        synth: va.Synth, transcriber: asr.Transcriber) -> None:  # noqa: F811
    def text(word: str, voice: str) -> str:
        clip = va.scene(synth.speak(word, va.Voice(voice, 160)), snr_db=None, seed=1,
                        before_s=0.2, after_s=0.2)
        return transcriber.text(clip.audio)

    stops = [text("stop", v) for v in ("en-us", "en-gb-x-rp", "en+m3")]
    assert sum(bool(asr.STOP_WORD.search(t)) for t in stops) >= 2, stops
    for word in ("top", "shop"):
        heard = [text(word, v) for v in ("en-us", "en-gb-x-rp")]
        assert not any(asr.STOP_WORD.search(t) for t in heard), (word, heard)


def test_the_asr_verifier_keeps_stops_and_refuses_top_and_shop(synth: va.Synth) -> None:  # noqa: F811
    heard = 0
    for k, voice in enumerate(("en-us", "en-gb-x-rp", "en+m3")):
        clip = va.scene(synth.speak("stop", va.Voice(voice, 150)), snr_db=10, seed=20 + k)
        spotter = KeywordSpotter(va.RATE_HZ, {"stop": 1e-30}, min_word_s=0.15,
                                 net_threshold=None, asr_before_s=0.3)
        hits = [hit for i in range(0, len(clip.audio), 1600)
                for hit in spotter.feed(clip.audio[i:i + 1600])]
        heard += bool(hits)
        assert isinstance(spotter.verifier, asr.AsrVerifier)
        for hit in hits:  # the detection says how sure Moonshine was, not pocketsphinx
            assert hit.confidence == spotter.verifier.last_confidence
            assert 0.0 < hit.confidence <= 1.0
        assert spotter.verifier.checked >= 1
    assert heard >= 2, f"heard {heard} of 3"
    spotter = KeywordSpotter(va.RATE_HZ, {"stop": 1e-30}, min_word_s=0.15, net_threshold=None,
                             asr_before_s=0.3)
    for k, word in enumerate(("top", "shop")):
        clip = va.scene(synth.speak(word, va.Voice("en-us", 150)), snr_db=20, seed=30 + k)
        spotter.reset()
        assert feed_all(spotter, clip.audio) == [], (word, spotter.verifier)


def test_the_cascade_asks_the_recognizer_only_what_the_classifier_lets_through(
        synth: va.Synth) -> None:  # noqa: F811
    clip = va.scene(synth.speak("stop", va.Voice("en-us", 150)), snr_db=10, seed=7,
                    before_s=2.2)
    loose = KeywordSpotter(va.RATE_HZ, {"stop": 1e-30}, min_word_s=0.15, net_threshold=0.3,
                           asr_before_s=0.3)
    assert feed_all(loose, clip.audio)
    assert isinstance(loose.verifier, CascadeVerifier) and loose.verifier.asr.checked >= 1
    closed = KeywordSpotter(va.RATE_HZ, {"stop": 1e-30}, min_word_s=0.15, net_threshold=1.01,
                            asr_before_s=0.3)
    assert feed_all(closed, clip.audio) == []
    assert isinstance(closed.verifier, CascadeVerifier)
    assert closed.verifier.checked >= 1 and closed.verifier.asr.checked == 0


async def test_the_recognizer_runs_on_the_listener_thread_and_only_stops(
        synth: va.Synth) -> None:  # noqa: F811
    audio, _spans = va.sequence([synth.speak("stop")] * 2, snr_db=20, seed=9, gap_s=1.5)
    loop = asyncio.get_running_loop()
    verified_on: set[int] = set()
    spotter = KeywordSpotter(va.RATE_HZ, {"stop": 1e-30}, min_word_s=0.15, net_threshold=None,
                             asr_before_s=0.3)
    verifier = spotter.verifier
    assert isinstance(verifier, asr.AsrVerifier)
    keep = verifier.keep

    def watched(spotted: Spotted, window: np.ndarray) -> bool:
        verified_on.add(threading.get_ident())
        return keep(spotted, window)

    verifier.keep = watched  # type: ignore[method-assign,assignment]
    delivered: list[Detection] = []
    listener = VoiceListener(ArraySource(audio, va.RATE_HZ), spotter, loop=loop,
                             on_detection=lambda d, lat: delivered.append(d),
                             on_lost=lambda message: pytest.fail(message))
    listener.start()
    await until(lambda: not listener.alive, timeout_s=60)
    await asyncio.sleep(0.05)
    assert verified_on and threading.get_ident() not in verified_on
    assert delivered and all(d.command is UserCommand.STOP for d in delivered)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_a_missing_or_damaged_model_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    # (the conversion relies on exactly these files: a damaged one never reaches it)
    model = tmp_path / "base-en"
    shutil.copytree(asr.bundled_model_dir(), model)
    encoder = model / "encoder_model.ort"
    if damage == "missing":
        encoder.unlink()
    elif damage == "truncated":
        encoder.write_bytes(encoder.read_bytes()[:1000])
    else:
        encoder.write_bytes(b"\0" * encoder.stat().st_size)
    with pytest.raises(VoiceUnavailableError, match=r"encoder_model\.ort"):
        asr.AsrVerifier(model_dir=model)


def _ort_session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def test_the_converted_model_computes_what_the_shipped_file_computes(
        synth: va.Synth, tmp_path: Path) -> None:  # noqa: F811
    """Loaded as ONNX, the weights are unpacked once, at load; the numbers must not change (beyond
    float rounding from onnxruntime's own fusions), for the encoder and for a decoder step
    with and without its cache."""
    from retrotread.voice import ortformat
    model_dir = asr.bundled_model_dir()
    transcriber = asr.Transcriber()
    tokens, encoder, decoder = asr._load(model_dir.resolve())
    shipped_encoder = _ort_session(model_dir / "encoder_model.ort")
    shipped_decoder = _ort_session(model_dir / "decoder_model_merged.ort")
    clip = va.scene(synth.speak("please stop", va.Voice("en-us", 150)), snr_db=10, seed=3)
    audio = (clip.audio[:19_200].astype(np.float32) / 32768.0)[None]
    hidden = encoder.run(None, {"input_values": audio})[0]
    expected = shipped_encoder.run(None, {"input_values": audio})[0]
    np.testing.assert_allclose(hidden, expected, atol=1e-4, rtol=1e-4)
    feed = {name: transcriber._empty for name in transcriber._past}
    feed.update(encoder_hidden_states=hidden, input_ids=np.array([[asr.START_TOKEN]]),
                use_cache_branch=np.array([False]))
    names = [o.name for o in decoder.get_outputs()]
    for step in range(2):
        ours = decoder.run(None, feed)
        theirs = shipped_decoder.run(None, feed)
        for name, a, b in zip(names, ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-3, err_msg=name)
        assert np.argmax(ours[0][0, -1]) == np.argmax(theirs[0][0, -1])
        for name, value in zip(names[1:], ours[1:], strict=True):
            if step == 0 or ".decoder." in name:
                feed[name.replace("present", "past_key_values", 1)] = value
        feed.update(input_ids=np.array([[int(np.argmax(ours[0][0, -1]))]]),
                    use_cache_branch=np.array([True]))
    # and no unpacking is left for the decoder to do on every step: onnxruntime's
    # optimized graph (as loaded) reads no int8 weight
    import onnx
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(ortformat.to_onnx(model_dir / "decoder_model_merged.ort"),
                         sess_options=options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))

    def int8_weights(graph) -> list[str]:  # type: ignore[no-untyped-def]
        found = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    found += int8_weights(attr.g)
        return found

    shipped = onnx.load_from_string(ortformat.to_onnx(model_dir / "decoder_model_merged.ort"))
    assert int8_weights(shipped.graph), "the shipped decoder keeps int8 weights"
    assert not int8_weights(optimized.graph)
    assert len(tokens) == 32_000 and tokens[asr.END_TOKEN] == b"</s>"


def test_the_decoding_agrees_with_moonshine_s_own_library_on_stop(
        synth: va.Synth, transcriber: asr.Transcriber) -> None:  # noqa: F811
    """The reference: the C library in the same wheel decodes the same files (it lets a
    transcript run longer: its tails repeat, so only the "stop" decision is compared)."""
    import ctypes

    from moonshine_cpp import moonshine_cpp
    lib = moonshine_cpp.moonshine_lib
    model_dir = asr.bundled_model_dir()
    handle = lib.moonshine_load_model(*(str(model_dir / name).encode() for name in (
        "encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")), 1)
    assert handle != -1

    def reference(audio: np.ndarray) -> str:
        data = np.ascontiguousarray(audio.astype(np.float32) / 32768.0)
        out = ctypes.c_char_p(0)
        assert lib.moonshine_transcribe(handle, data.ctypes.data_as(
            ctypes.POINTER(ctypes.c_float)), ctypes.c_size_t(len(data)), ctypes.byref(out)) == 0
        text = (out.value or b"").decode()
        lib.moonshine_free_text(out)
        return text

    try:
        decisions = []
        for k, (phrase, voice) in enumerate([("stop", "en-us"), ("please stop", "en+m3"),
                                             ("shop", "en-gb-x-rp"), ("the top shelf", "en-us"),
                                             ("stop the belt", "en-us+f4")]):
            clip = va.scene(synth.speak(phrase, va.Voice(voice, 160)), snr_db=10, seed=40 + k,
                            before_s=0.3, after_s=0.3)
            window = clip.audio[:19_200]
            ours, theirs = transcriber.text(window), reference(window)
            decisions.append(bool(asr.STOP_WORD.search(ours)))
            assert decisions[-1] == bool(asr.STOP_WORD.search(theirs)), (phrase, ours, theirs)
        assert decisions == [True, True, False, False, True]
    finally:
        lib.moonshine_free_model(handle)


def test_how_close_the_decoder_came_to_saying_stop(
        synth: va.Synth, transcriber: asr.Transcriber) -> None:  # noqa: F811
    def decode(text: str) -> asr.Transcript:
        clip = va.scene(synth.speak(text, va.Voice("en-us", 160)), snr_db=20, seed=5,
                        before_s=0.2, after_s=0.2)
        return transcriber.decode(clip.audio)

    said = decode("stop")
    assert asr.STOP_WORD.search(said.text) and said.stop_p > 0.5
    assert decode("one two three").stop_p < 0.01
    stomp = decode("stomp")
    clip = np.zeros(16_000, np.int16)
    strict = asr.AsrVerifier()
    loose = asr.AsrVerifier(min_stop_p=stomp.stop_p)
    strict.transcriber = loose.transcriber = transcriber
    assert not strict.keep(None, clip) and not loose.keep(None, clip)  # silence
    for text in ("stop", "stomp", "shop"):
        window = va.scene(synth.speak(text, va.Voice("en-us", 160)), snr_db=20, seed=5,
                          before_s=0.2, after_s=0.2).audio
        # a looser verifier keeps everything the strict one keeps, and the near miss
        assert loose.keep(None, window) >= strict.keep(None, window)
    assert loose.checked - loose.refused >= strict.checked - strict.refused


def test_the_benchmark_decodes_a_window_once_for_all_its_moonshine_rows(
        synth: va.Synth) -> None:  # noqa: F811
    from benchmarks.voice import Group, parse_config
    greedy, near = parse_config("1e-30:0.15:asr"), parse_config("1e-30:0.15:asr0.3p0.2")
    (group,) = Group.of([greedy, near])
    first, second = (group.verifiers[c] for c in (greedy, near))
    assert isinstance(first, asr.AsrVerifier) and isinstance(second, asr.AsrVerifier)
    assert first.transcriber is second.transcriber
    window = va.scene(synth.speak("stop", va.Voice("en-us", 160)), snr_db=20, seed=5,
                      before_s=0.2, after_s=0.2).audio
    assert first.keep(None, window) and second.keep(None, window)
    assert first.last_confidence == second.last_confidence
    assert len(first.transcriber.recent) == 1  # type: ignore[attr-defined]


def test_the_benchmark_reads_which_audio_the_recognizer_hears() -> None:
    from benchmarks.voice import parse_config
    plain, raw = parse_config("1e-30:0.15:asr"), parse_config("1e-30:0.15:asr0.3raw")
    either = parse_config("1e-30:0.15:asr0.3either")
    assert (plain.asr_hears, raw.asr_hears, either.asr_hears) == (
        asr.Hears.CLEANED, asr.Hears.RAW, asr.Hears.EITHER)
    assert raw.asr_before_s == plain.asr_before_s == either.asr_before_s == 0.3
    assert raw.asr_min_stop_p is None
    near = parse_config("1e-30:0.15:asr0.3p0.2raw")
    assert near.asr_min_stop_p == 0.2 and near.asr_hears is asr.Hears.RAW
    assert raw.first_stage_key() == plain.first_stage_key()  # one first stage for all
    assert "raw audio" in str(raw) and "raw" not in str(plain)


def test_with_two_windows_the_second_is_decoded_only_when_the_first_has_no_stop(
        synth: va.Synth, transcriber: asr.Transcriber) -> None:  # noqa: F811
    decoded: list[str] = []

    class Counting:
        def decode(self, audio: np.ndarray) -> asr.Transcript:
            transcript = transcriber.decode(audio)
            decoded.append(transcript.text)
            return transcript

    verifier = asr.AsrVerifier(hears=asr.Hears.EITHER)
    verifier.transcriber = Counting()  # type: ignore[assignment]
    said = va.scene(synth.speak("stop", va.Voice("en-us", 160)), snr_db=20, seed=5,
                    before_s=0.2, after_s=0.2).audio
    silence = np.zeros(16_000, np.int16)
    assert verifier.keep(None, said, silence) and len(decoded) == 1
    assert verifier.keep(None, silence, said) and len(decoded) == 3
    assert verifier.last_confidence is not None and verifier.last_confidence > 0.5
    assert not verifier.keep(None, silence, silence) and len(decoded) == 5
    assert (verifier.checked, verifier.refused) == (3, 1)


class Canned:
    """Stands in for Moonshine's decoder to test the rule that judges its transcripts:
    each window's "audio" is its index into ``said``."""

    def __init__(self, *said: asr.Transcript) -> None:
        self.said = said

    def decode(self, audio: np.ndarray) -> asr.Transcript:
        return self.said[int(audio[0])]


@pytest.mark.parametrize(("text", "stop_p", "kept"), [
    ("Stop the machine", 0.9, True),        # said: any length within the cap
    ("Please stop the belt now", 0.9, False),  # 5 words: over the cap of 4
    ("Top gear", 0.1, True),                # a near miss in 2 words
    ("Start right here", 0.1, True),        # ... in 3
    ("Tap over the panel", 0.1, False),     # ... in 4: too long for a near miss
    ("", 0.1, False),                       # ... in none: no word to have misheard
    ("Top gear", 0.01, False),              # not near enough
])
def test_a_near_miss_counts_only_in_a_short_transcript(
        text: str, stop_p: float, kept: bool) -> None:
    canned = Canned(asr.Transcript(text, stop_p))
    verifier = asr.AsrVerifier(hears=asr.Hears.RAW, min_stop_p=0.05, max_words=4,
                               near_max_words=3, transcriber=canned)  # type: ignore[arg-type]
    assert verifier.keep(None, np.zeros(1, np.int16)) is kept
    verifier.near_max_words = None  # without the rule: any near miss the cap allows
    assert verifier.keep(None, np.zeros(1, np.int16)) is (
        kept or (stop_p >= 0.05 and len(asr.WORD.findall(text)) <= 4))
