"""Moonshine on one candidate's window: the wheel's C library against our converted model.

    .venv/bin/python -m benchmarks.moonshine_speed            # 16 phrases x 6 voices x 5 SNRs

Both decode the same model files (moonshine-cpp 0.1.4's English base) on the same 1.2 s
windows of espeak-ng speech over generated treadmill noise (tests/voice_audio.py), one
after the other on this thread:
* the C library (``moonshine_transcribe``), as the wheel ships it: its onnxruntime 1.22 runs
  the ORT format files, which unpack their int8 weights on every decoder step;
* ``retrotread.voice.asr.Transcriber``: the files read into ONNX with the weights unpacked
  once (retrotread/voice/ortformat.py), onnxruntime with one thread, at most 6 word pieces
  per second of audio.
Reported: wall time per window (p50, p99, max), whether the two agree on "stop" in the
transcript (the verifier's only question), and how often the transcripts differ at all.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import percentile
from retrotread.voice import asr
from tests import voice_audio as va

PHRASES = ("stop", "please stop", "just stop", "stop that", "stop the belt", "okay stop",
           "hey stop", "top", "shop", "stopping now", "the top shelf", "we will stop soon",
           "one two three", "keep walking backward", "what time is it", "start the kettle")
VOICES = ("en-us", "en-gb-x-rp", "en+m3", "en-029+m6", "en-us+f4", "en-gb-scotland+f2")
SNRS: tuple[float | None, ...] = (None, 20.0, 10.0, 5.0, 0.0)
WINDOW = 19_200  # 1.2 s, the verifier's span


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir())
                                              / "retrotread-voice-bench"))
    args = parser.parse_args(argv)
    missing = va.tools_missing()
    if missing:
        print(f"benchmarks.moonshine_speed: {missing}", file=sys.stderr)
        return 2
    from moonshine_cpp import moonshine_cpp
    lib = moonshine_cpp.moonshine_lib
    model_dir = asr.bundled_model_dir()
    t0 = time.perf_counter()
    handle = lib.moonshine_load_model(*(str(model_dir / name).encode() for name in (
        "encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")), 1)
    load_c = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = asr.Transcriber()
    load_ours = time.perf_counter() - t0

    def reference(audio: np.ndarray) -> str:
        data = np.ascontiguousarray(audio.astype(np.float32) / 32768.0)
        out = ctypes.c_char_p(0)
        lib.moonshine_transcribe(handle, data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                 ctypes.c_size_t(len(data)), ctypes.byref(out))
        text = (out.value or b"").decode("utf-8", "replace")
        lib.moonshine_free_text(out)
        return text

    synth = va.Synth(Path(args.cache))
    rng = np.random.default_rng(1)
    times: dict[str, list[float]] = {"C library": [], "converted": []}
    agree = texts_differ = windows = 0
    for k, phrase in enumerate(PHRASES):
        for voice in VOICES:
            for snr in SNRS:
                clip = va.scene(synth.speak(phrase, va.Voice(voice, int(rng.integers(120, 200)))),
                                snr_db=snr, seed=1000 + k, before_s=0.3, after_s=0.3)
                window = clip.audio[:WINDOW]
                t0 = time.perf_counter()
                theirs = reference(window)
                t1 = time.perf_counter()
                mine = ours.text(window)
                t2 = time.perf_counter()
                times["C library"].append(t1 - t0)
                times["converted"].append(t2 - t1)
                windows += 1
                agree += (bool(asr.STOP_WORD.search(theirs))
                          == bool(asr.STOP_WORD.search(mine)))
                texts_differ += theirs.strip() != mine
    lib.moonshine_free_model(handle)
    print(f"{windows} windows of 1.2 s; 'stop' decisions agree on {agree}/{windows}; "
          f"transcripts differ in {texts_differ} (the C library lets repeats run longer)")
    print("\n| decoder | load s | per window p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, load_s in (("C library", load_c), ("converted", load_ours)):
        values = times[name]
        print(f"| {name} | {load_s:.2f} | {percentile(values, 50) * 1000:.0f} | "
              f"{percentile(values, 99) * 1000:.0f} | {max(values) * 1000:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
