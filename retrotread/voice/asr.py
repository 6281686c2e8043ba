"""A second stage that learned from human speech: Moonshine speech recognition.

The ``moonshine-cpp`` wheel (PyPI, MIT licence) ships Moonshine AI's English "base"
speech-to-text model (an ONNX encoder and decoder in ORT format, about 63 MB, in its
``models/base-en`` folder) and a tokenizer file; nothing is downloaded for English.
Moonshine was trained on real (human) speech, where our own classifier
(:mod:`~retrotread.voice.stopnet`) only ever heard espeak-ng voices (docs/voice-model.md,
"Other recognizers considered").

Only the wheel's model files are used, run here by onnxruntime (the one the learned
classifier already uses), not by the wheel's own C library: the files keep their weights
as int8 and unpack them on every decoder step (about 120 ms per word piece), so they are
loaded as ordinary ONNX models (:mod:`~retrotread.voice.ortformat`), whose weights
onnxruntime unpacks once, at load: a window costs about a fifth of the time
(docs/voice-model.md, "A faster Moonshine"). Decoding is greedy, at most
``TOKENS_PER_S`` word pieces per second of audio, as Moonshine's own reference code does.

``AsrVerifier`` transcribes a first-stage candidate's short window of audio and keeps it
when the transcript has the word "stop" (not "stopped", "top" or "shop"). It runs on the
caller's thread (the listener's), one candidate at a time, on one core.

The model files are checked against the SHA-256 sums below before they are read: the
conversion relies on exactly these files, and a missing or damaged model is a
:class:`~retrotread.errors.VoiceUnavailableError` before the belt moves.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.util
import math
import re
from dataclasses import dataclass
from enum import Enum
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
STOP_WORD = re.compile(r"\bstop\b", re.IGNORECASE)
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
"""A word of a transcript, for counting ("it's" is one word, "2.4" two)."""
TOKENS_PER_S = 6
"""The most word pieces decoded per second of audio (Moonshine's reference decoder uses
the same bound: a second of speech is never more than a few words)."""
START_TOKEN, END_TOKEN = 1, 2
"""Moonshine's decoder starts from ``<s>`` and stops at ``</s>`` (ids 1 and 2 in its
tokenizer)."""
SPACE = "\u2581"
"""The tokenizer's mark for a space before a word piece."""


def available() -> bool:
    """Whether Moonshine can be tried here: the moonshine-cpp wheel (Linux x86-64 only) and
    onnx are installed (found without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("moonshine_cpp", "onnx"))


def bundled_model_dir() -> Path:
    """Where the moonshine-cpp wheel keeps its English model (found without importing the
    package, which would load its own C library and onnxruntime)."""
    spec = importlib.util.find_spec("moonshine_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise VoiceUnavailableError(
            f"the speech-recognition verifier needs the moonshine-cpp package ({EXTRA_HINT})")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "base-en"


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


def read_tokens(path: Path) -> list[bytes]:
    """The tokenizer file: for each token id in turn, its length (LEB128) and its bytes."""
    raw = path.read_bytes()
    tokens: list[bytes] = []
    at = 0
    while at < len(raw):
        length = shift = 0
        while True:
            byte = raw[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        tokens.append(raw[at:at + length])
        at += length
    return tokens


def _session(model: bytes) -> Any:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one core: the listener's thread
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=options,
                                providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=1)
def _load(model_dir: Path) -> tuple[list[bytes], Any, Any]:
    """The tokenizer and the two sessions, read once per process (the conversion takes a
    few seconds; the sessions are safe to share). Only called after ``check_model``."""
    from retrotread.voice import ortformat
    encoder, decoder = (_session(ortformat.to_onnx(model_dir / name))
                        for name in ("encoder_model.ort", "decoder_model_merged.ort"))
    _give_back_memory()
    return read_tokens(model_dir / "tokenizer.bin"), encoder, decoder


def _give_back_memory() -> None:
    """Loading passes several copies of the model through the heap (about 280 MB that
    glibc keeps after they are freed); hand it back to the system. Moonshine's wheel
    exists only for Linux (glibc); elsewhere this does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


STOP_PIECES = frozenset({(SPACE + "stop").encode(), (SPACE + "Stop").encode()})
"""The tokenizer's pieces for the word "stop" starting a word (ids 5040 and 22303)."""


@dataclass(frozen=True)
class Transcript:
    text: str
    stop_p: float
    """The highest probability the decoder gave a word-initial "stop" piece at any step of
    its greedy path (a "stop" it nearly said counts, for ``AsrVerifier.min_stop_p``)."""


class Transcriber:
    """Moonshine base English: 16 kHz audio in, text out."""

    def __init__(self, model_dir: Path | None = None) -> None:
        try:
            import onnx  # noqa: F401  (ortformat writes the converted models with it)
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise VoiceUnavailableError(
                f"the speech-recognition verifier needs onnx and onnxruntime ({EXTRA_HINT})"
            ) from exc
        model_dir = Path(model_dir) if model_dir is not None else bundled_model_dir()
        check_model(model_dir)
        self.tokens, self._encoder, self._decoder = _load(model_dir.resolve())
        past = [i for i in self._decoder.get_inputs() if i.name.startswith("past_key_values.")]
        self._past = [i.name for i in past]
        heads, width = past[0].shape[1], past[0].shape[3]  # (batch, heads, length, width)
        self._empty = np.zeros((1, heads, 0, width), np.float32)
        self._presents = [o.name for o in self._decoder.get_outputs()][1:]
        self._stop_ids = [i for i, piece in enumerate(self.tokens) if piece in STOP_PIECES]

    def text(self, audio: np.ndarray) -> str:
        """The transcript of ``audio`` (int16 samples, or floats on the same scale)."""
        return self.decode(audio).text

    def decode(self, audio: np.ndarray) -> Transcript:
        """The greedy transcript of ``audio``, and how close it came to saying "stop"."""
        data = np.asarray(audio, dtype=np.float32)[None] / np.float32(32768.0)
        if not data.size:
            return Transcript("", 0.0)
        stop_p = 0.0
        hidden = self._encoder.run(None, {"input_values": data})[0]
        feed: dict[str, Any] = {name: self._empty for name in self._past}
        feed["encoder_hidden_states"] = hidden
        ids: list[int] = []
        token = START_TOKEN
        for step in range(max(1, math.ceil(data.size / 16_000 * TOKENS_PER_S))):
            feed["input_ids"] = np.array([[token]], np.int64)
            feed["use_cache_branch"] = np.array([step > 0])
            logits, *presents = self._decoder.run(None, feed)
            for name, value in zip(self._presents, presents, strict=True):
                if step == 0 or ".decoder." in name:  # the encoder's keys never change
                    feed[name.replace("present", "past_key_values", 1)] = value
            scores = logits[0, -1].astype(np.float64)
            token = int(np.argmax(scores))
            odds = np.exp(scores - scores[token])
            stop_p = max(stop_p, float(odds[self._stop_ids].sum() / odds.sum()))
            if token == END_TOKEN:
                break
            ids.append(token)
        return Transcript(self.detokenize(ids), stop_p)

    def detokenize(self, ids: list[int]) -> str:
        pieces = b"".join(self.tokens[i] for i in ids if END_TOKEN < i < len(self.tokens))
        return pieces.decode("utf-8", "replace").replace(SPACE, " ").strip()


class Hears(Enum):
    """Which audio the recognizer transcribes."""

    CLEANED = "noise-suppressed audio"
    """After WebRTC's noise suppression, as the first stage hears it."""
    RAW = "raw audio"
    """As it came in: Moonshine learned from real, noisy recordings."""
    EITHER = "raw audio, then noise-suppressed"
    """The raw window first; if its transcript has no "stop", the cleaned one."""

    @property
    def raw_first(self) -> tuple[bool, ...]:
        """For each window the recognizer hears, in order: whether it is the raw audio."""
        return {Hears.CLEANED: (False,), Hears.RAW: (True,), Hears.EITHER: (True, False)}[self]

    @property
    def needs_cleaned(self) -> bool:
        """Whether any window is the noise-suppressed audio."""
        return False in self.raw_first


class AsrVerifier:
    """Second stage: keep a candidate when Moonshine's transcript of its window of audio
    (of one of its windows: ``hears``) has the word "stop"."""

    name = "Moonshine speech recognition"
    """What checks the candidates, as the start-up line says it."""

    def __init__(self, *, before_s: float = 0.3, min_stop_p: float | None = None,
                 hears: Hears = Hears.CLEANED, max_words: int | None = None,
                 near_max_words: int | None = None,
                 model_dir: Path | None = None,
                 transcriber: Transcriber | None = None) -> None:
        self.before_s = float(before_s)
        """How much audio before the aligned word it hears."""
        self.hears = hears
        """Which audio (the spotter gives ``keep`` the windows in this order)."""
        self.min_stop_p = min_stop_p
        """Also keep a candidate whose decoder gave "stop" at least this probability at
        some step, though it said another word (None: only the transcript counts)."""
        self.max_words = max_words
        """A transcript of more words than this is not a command, "stop" or not (a
        command is a short phrase; None: any length)."""
        self.near_max_words = near_max_words
        """A near miss (``min_stop_p``) counts only in a transcript of 1 to this many
        words (None: any the word cap allows)."""
        self.transcriber = transcriber or Transcriber(model_dir)
        """Moonshine (``model_dir``'s, or the bundled model), unless one is given."""
        self.checked = 0
        self.refused = 0
        self.last_text = ""
        self.last_confidence: float | None = None
        """The decoder's highest probability for "stop" on the last window judged."""

    def keep(self, spotted: Any, audio: np.ndarray, *more: np.ndarray) -> bool:
        """Whether the transcript of ``audio``, or failing that of each of ``more`` in
        turn (the same span, other audio), has "stop"."""
        self.checked += 1
        self.last_confidence = 0.0
        for window in (audio, *more):
            transcript = self.transcriber.decode(window)
            self.last_text = transcript.text
            self.last_confidence = max(self.last_confidence, transcript.stop_p)
            words = len(WORD.findall(transcript.text))
            if self.max_words is not None and words > self.max_words:
                continue
            if STOP_WORD.search(transcript.text) or self._near_miss(transcript, words):
                return True
        self.refused += 1
        return False

    def _near_miss(self, transcript: Transcript, words: int) -> bool:
        """Whether the decoder nearly said "stop" in a transcript short enough for that to
        count."""
        if self.min_stop_p is None or transcript.stop_p < self.min_stop_p:
            return False
        return self.near_max_words is None or 1 <= words <= self.near_max_words
