"""A second stage that learned from human speech: Moonshine speech recognition.

The ``moonshine-cpp`` wheel (PyPI, MIT licence) ships Moonshine AI's English "base"
speech-to-text model (an ONNX encoder and decoder in ORT format, about 63 MB, in its
``models/base-en`` folder) with its own onnxruntime and a small C library; nothing is
downloaded for English. Moonshine was trained on real (human) speech, where our own
classifier (:mod:`~retrotread.voice.stopnet`) only ever heard espeak-ng voices
(docs/voice-model.md, "Other recognizers considered").

``AsrVerifier`` transcribes a first-stage candidate's short window of audio and keeps it
when the transcript has the word "stop" (not "stopped", "top" or "shop"). It runs on the
caller's thread (the listener's), one candidate at a time.

The C library aborts the whole process when it is handed a damaged model file, so the
files are checked against the SHA-256 sums below before they are loaded: a missing or
damaged model is a :class:`~retrotread.errors.VoiceUnavailableError`, never a crash.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from retrotread.errors import VoiceUnavailableError
from retrotread.voice import EXTRA_HINT

MODEL_FILES = {
    "encoder_model.ort": "9d1a19e044cbf89a207723d1adb667de89a5671a1e3e611b8ebe721b2c31219c",
    "decoder_model_merged.ort":
        "370e0c1f161d68dc1c2264c1a82024fb123380da3b73f47f05531d1e8d3308c3",
    "tokenizer.bin": "04670d78994d030185c3dd843c60591788fed0a56cc6750747bd326825f13ca9",
}
"""The English base model as moonshine-cpp 0.1.4 ships it."""
MODEL_TYPE_BASE = 1  # moonshine-cpp's MOONSHINE_MODEL_TYPE_BASE
STOP_WORD = re.compile(r"\bstop\b", re.IGNORECASE)


def _library() -> Any:
    try:
        from moonshine_cpp import moonshine_cpp
    except (ImportError, OSError) as exc:
        raise VoiceUnavailableError(
            f"the speech-recognition verifier needs the moonshine-cpp package ({EXTRA_HINT})"
        ) from exc
    return moonshine_cpp


def bundled_model_dir() -> Path:
    """Where the moonshine-cpp wheel keeps its English model."""
    return Path(_library().__file__).with_name("models") / "base-en"


def check_model(model_dir: Path) -> None:
    """Raise VoiceUnavailableError unless every model file is there, unchanged."""
    for name, digest in MODEL_FILES.items():
        path = model_dir / name
        try:
            with path.open("rb") as f:
                actual = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            raise VoiceUnavailableError(
                f"no speech-recognition model: {path} is missing (reinstall moonshine-cpp: "
                f"{EXTRA_HINT})") from exc
        if actual != digest:
            raise VoiceUnavailableError(
                f"the speech-recognition model file {path} is damaged or not the expected "
                f"version (reinstall moonshine-cpp: {EXTRA_HINT})")


class Transcriber:
    """Moonshine base English: 16 kHz audio in, text out."""

    def __init__(self, model_dir: Path | None = None) -> None:
        self._lib = _library().moonshine_lib
        model_dir = Path(model_dir) if model_dir is not None else bundled_model_dir()
        check_model(model_dir)
        paths = [str(model_dir / name).encode() for name in
                 ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")]
        self._handle = self._lib.moonshine_load_model(*paths, MODEL_TYPE_BASE)
        if self._handle == -1:
            raise VoiceUnavailableError(f"the speech-recognition model in {model_dir} "
                                        "would not load")

    def text(self, audio: np.ndarray) -> str:
        """The transcript of ``audio`` (int16 samples, or floats on the same scale)."""
        data = np.ascontiguousarray(np.asarray(audio, dtype=np.float32) / 32768.0)
        if not len(data):
            return ""
        out = ctypes.c_char_p(0)
        error = self._lib.moonshine_transcribe(
            self._handle, data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            ctypes.c_size_t(len(data)), ctypes.byref(out))
        if error != 0:
            raise VoiceUnavailableError(f"speech recognition failed (error {error})")
        text = (out.value or b"").decode("utf-8", "replace")
        self._lib.moonshine_free_text(out)
        return text

    def __del__(self) -> None:
        if getattr(self, "_handle", -1) != -1:
            self._lib.moonshine_free_model(self._handle)
            self._handle = -1


class AsrVerifier:
    """Second stage: keep a candidate when Moonshine's transcript of its window of audio
    has the word "stop"."""

    def __init__(self, *, before_s: float = 0.3, model_dir: Path | None = None) -> None:
        self.before_s = float(before_s)
        """How much audio before the aligned word it hears."""
        self.transcriber = Transcriber(model_dir)
        self.checked = 0
        self.refused = 0
        self.last_text = ""

    def keep(self, spotted: Any, audio: np.ndarray) -> bool:
        self.checked += 1
        self.last_text = self.transcriber.text(audio)
        if STOP_WORD.search(self.last_text):
            return True
        self.refused += 1
        return False
