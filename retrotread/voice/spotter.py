"""Keyword spotting with pocketsphinx 5 in keyphrase (KWS) mode.

pocketsphinx's wheel ships a US English acoustic model and the CMU pronouncing
dictionary, so nothing is downloaded at run time. KWS mode does not transcribe: it
watches the audio for each keyphrase and reports it when its score clears the phrase's
threshold (a probability, e.g. ``1e-20``: lower finds more, and also false alarms more).
The default threshold comes from ``benchmarks/voice.py`` (README, "Hands-free stop").
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrotread.errors import VoiceUnavailableError
from retrotread.events import UserCommand
from retrotread.voice import EXTRA_HINT, VOICE_COMMANDS

STOP_THRESHOLD = 1e-20
"""The keyphrase threshold for "stop", chosen from the benchmark's sweep."""
PAUSE_THRESHOLD = 1e-20
DEFAULT_WORDS: Mapping[str, float] = {"stop": STOP_THRESHOLD}


@dataclass(frozen=True)
class Spotted:
    word: str
    command: UserCommand
    confidence: float
    """pocketsphinx's posterior for the word (0..1)."""
    end_sample: int
    """Samples fed since the start of the stream up to the end of the block that
    completed the detection."""


def pocketsphinx_module() -> Any:
    try:
        import pocketsphinx
    except ImportError as exc:
        raise VoiceUnavailableError(
            f"the voice stop needs the pocketsphinx package ({EXTRA_HINT})") from exc
    return pocketsphinx


def model_paths(model_dir: Path | None = None) -> tuple[Path, Path]:
    """(acoustic model directory, pronouncing dictionary) of the English model that the
    pocketsphinx wheel ships, or of ``model_dir`` laid out the same way."""
    root = Path(model_dir) if model_dir is not None else (
        Path(pocketsphinx_module().get_model_path()) / "en-us")
    hmm, dictionary = root / "en-us", root / "cmudict-en-us.dict"
    if not (hmm / "mdef").is_file() or not dictionary.is_file():
        raise VoiceUnavailableError(
            f"no speech model: the English model is missing from {root} "
            f"(reinstall pocketsphinx: {EXTRA_HINT})")
    return hmm, dictionary


class KeywordSpotter:
    """Feed audio, get the keyphrases heard. Not thread-safe: one thread feeds it."""

    def __init__(self, sample_rate_hz: int, words: Mapping[str, float] = DEFAULT_WORDS, *,
                 model_dir: Path | None = None) -> None:
        unknown = set(words) - set(VOICE_COMMANDS)
        if unknown or not words:
            raise ValueError(f"the spotter listens only for {sorted(VOICE_COMMANDS)}, "
                             f"not {sorted(unknown) or 'nothing'}")
        ps = pocketsphinx_module()
        hmm, dictionary = model_paths(model_dir)
        self.sample_rate_hz = int(sample_rate_hz)
        self.words = dict(words)
        with tempfile.TemporaryDirectory(prefix="retrotread-kws-") as tmp:
            keyfile = Path(tmp) / "keyphrases.kws"
            keyfile.write_text("".join(f"{word} /{threshold:g}/\n"
                                       for word, threshold in self.words.items()))
            try:
                self._decoder = ps.Decoder(hmm=str(hmm), dict=str(dictionary),
                                           kws=str(keyfile), samprate=self.sample_rate_hz,
                                           loglevel="FATAL")
            except (RuntimeError, ValueError) as exc:
                raise VoiceUnavailableError(f"the speech model would not load: {exc}") from exc
        self.fed_samples = 0
        self._decoder.start_utt()

    def feed(self, samples: np.ndarray) -> list[Spotted]:
        """Process one block; the keyphrases completed in it (usually none)."""
        block = np.ascontiguousarray(samples, dtype=np.int16)
        self._decoder.process_raw(block.tobytes(), False, False)
        self.fed_samples += len(block)
        if self._decoder.hyp() is None:
            return []
        spotted = []
        for segment in self._decoder.seg():
            word = segment.word.strip().lower()
            if word in self.words:
                spotted.append(Spotted(word, VOICE_COMMANDS[word], float(segment.prob),
                                       self.fed_samples))
        self.reset()  # report each keyphrase once
        return spotted

    def reset(self) -> None:
        """Forget partial words (after a detection, and after a gap in the audio)."""
        self._decoder.end_utt()
        self._decoder.start_utt()
