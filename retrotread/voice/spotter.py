"""Keyword spotting with pocketsphinx 5 in keyphrase (KWS) mode, in two stages.

pocketsphinx's wheel ships a US English acoustic model and the CMU pronouncing
dictionary, so nothing is downloaded at run time.

1. Candidates: KWS mode does not transcribe; it watches the (noise-suppressed) audio for
   each keyphrase and proposes it when its score clears the phrase's threshold (a
   probability, e.g. ``1e-20``: lower proposes more, true and false).
2. Checks, on each candidate: the word as the recognizer aligned it must last at least
   ``min_word_s`` (short bursts of other speech and footsteps align onto "stop" too);
   it must fall in a short run of voice activity (``UtteranceGate``: a command is short
   and stands apart), and, with ``require_speech``, in one at all; and, with
   ``net_threshold`` (the default), a small classifier on a pretrained speech embedding
   (``NetVerifier``, :mod:`~retrotread.voice.stopnet`) must score the candidate's audio
   as "stop"; or, with ``verify_threshold`` (the older way), the keyword must be found
   again when the candidate's own window of audio is decoded on its own (``Verifier``);
   or, with ``asr_before_s``, Moonshine speech recognition, trained on human speech, must
   transcribe "stop" in the candidate's window (``AsrVerifier``,
   :mod:`~retrotread.voice.asr`).

Where Moonshine installs, ``--voice-stop`` listens with the run spotter instead
(:mod:`~retrotread.voice.runs`, :mod:`~retrotread.voice.default`); elsewhere with this
keyword spotter and the learned classifier.

``NetSpotter`` is the learned classifier used as the detector itself, on a sliding
window (measured by the benchmark, not the default).

The aligned word's length depends on the noise as much as on the word: noise before the
word is absorbed into its /s/, so the same "stop" aligns about 0.1 s longer at 10 dB
than in clean audio. A long shortest word therefore drops clean stops first (the
benchmark once heard fewer stops at 20 dB than at 10 dB for that reason).

Only a candidate that passes every check becomes a command. The defaults come from
``benchmarks/voice.py``, chosen as docs/voice-model.md ("Measured") tells.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from retrotread.errors import VoiceUnavailableError
from retrotread.events import UserCommand
from retrotread.voice import EXTRA_HINT, VOICE_COMMANDS, stopnet
from retrotread.voice.activity import Activity, Chunker, SileroActivity, SpeechRuns
from retrotread.voice.asr import AsrVerifier, Hears

NOISE_SUPPRESSION = 4
"""WebRTC noise suppression level (0 off .. 4 strongest): the benchmark's noise-robustness
comes mostly from it (belt hum, footsteps and fans are steady or low)."""
MAX_UTTERANCE_S = 2.0
"""A spoken command's longest run of speech ("please stop the belt" said slowly)."""
END_SILENCE_S = 0.3
"""Silence that ends a run of speech (and so releases a command)."""
RELEASE_AFTER_S: float | None = None
"""Early release: a held command is also released this long after the end of its word
(as the recognizer aligned it) if the speech since the word lasted at most
``MAX_EXTRA_SPEECH_S`` and the run so far is short; None: only at the end of the run.
0.7 s (with 0.7 s of speech) was chosen on validation and cut the held-out p99 from
1.35 s to 0.73 s, but raised false stops in speech from 9.4 to 15.0 per hour, so the
default stays None (docs/voice-model.md, "Latency")."""
MAX_EXTRA_SPEECH_S = 0.0
"""Early release: the most voice activity allowed after the word."""
STOP_THRESHOLD = 1e-30
"""The first stage's keyphrase threshold for "stop", chosen on the benchmark's tuning set
of commit f5367f5 (looser than the 1e-25 of the re-decoding days: the learned verifier
refuses most of what it lets through)."""
PAUSE_THRESHOLD = 1e-20
MIN_WORD_S = 0.15
"""Second stage: a keyphrase candidate whose aligned word lasts less than this is dropped
(pocketsphinx aligns "stop" onto short bursts of other speech; a spoken "stop" lasts
0.15-0.5 s). Chosen with the threshold on the benchmark's tuning set of commit f5367f5."""
VOICE_ACTIVITY = Activity.WEBRTC
"""Which voice activity the utterance gate follows (retrotread/voice/activity.py)."""
REQUIRE_SPEECH = True
"""Drop a keyphrase heard outside any run of voice activity (footsteps, belt noise)
instead of trusting the recognizer over voice activity."""
VERIFY_THRESHOLD: float | None = None
"""Second stage, the older way: the keyword threshold of the re-decoding verifier
(``Verifier``, 1e-18 until the learned verifier replaced it); None: not used. When set, it
is used instead of the learned verifier."""
NET_VERIFY_THRESHOLD: float | None = 0.9
"""Second stage: the learned verifier (``NetVerifier``) keeps a candidate whose audio it
scores at least this P(stop); None turns it off. Chosen on the benchmark's tuning set of
commit f5367f5; two later choices on a validation split (0.34 h, then 2 h of speech)
kept it (docs/voice-model.md, "Measured"). 0.99 gave about 1 false stop per hour on
held-out but heard 40 % at 10 dB."""
ASR_BEFORE_S: float | None = 0.3
"""Second stage of the default spotter where Moonshine speech recognition is installed
(the moonshine-cpp wheel: Linux x86-64): the recognizer hears this much audio before the
aligned word (``AsrVerifier``), instead of the learned classifier; None: the classifier
everywhere. Elsewhere the classifier (``NET_VERIFY_THRESHOLD``) stays. Chosen on the
validation split and switched to by the benchmark's fixed rule in the fifth choice
(docs/voice-model.md): on held-out 74.2 % heard at 10 dB and 2.8 false stops per hour of
speech, against the classifier's 68.3 % and 9.4, with its p99 latency within 0.1 s of the
classifier's."""
ASR_HEARS = Hears.CLEANED
"""Which audio Moonshine transcribes: after WebRTC's noise suppression, as the first stage
hears it (the default until now), as it came in, or both (docs/voice-model.md, "A seventh
choice": Moonshine learned from real, noisy recordings, not suppressed ones)."""
VERIFY_BEFORE_S = 0.3
"""The verifier hears this much audio before the word as the recognizer aligned it..."""
VERIFY_SPAN_S = 1.2
"""...and at most this much in all (the word, what follows it, up to the release)."""
HISTORY_S = 4.0
"""Audio (cleaned, and raw) kept for the verifier (a candidate waits at most ~2.5 s for its run to
end)."""
FRAME_S = 0.01
"""pocketsphinx's frame step (100 frames per second)."""
CMN = "live"
DEFAULT_WORDS: Mapping[str, float] = {"stop": STOP_THRESHOLD}


@dataclass(frozen=True)
class Spotted:
    word: str
    command: UserCommand
    confidence: float
    """How sure the spotter is that the word was said (0..1): the second stage's
    probability when it gives one (Moonshine's for the "stop" piece, the classifier's
    P(stop)), else pocketsphinx's posterior for the word."""
    duration_s: float
    """How long the word lasted, as the recognizer aligned it."""
    end_sample: int
    """Samples fed since the start of the stream up to the end of the block that
    completed the detection."""
    word_start_sample: int = 0
    """Where the recognizer aligned the start of the word, in samples since the start of
    the stream (the verifier's window starts just before it)."""


class Spotter(Protocol):
    """What the listener needs of a spotter: feed blocks of 16-bit audio, get "stop"s."""

    sample_rate_hz: int

    def feed(self, samples: np.ndarray) -> list[Spotted]: ...

    def reset(self) -> None: ...


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


class Denoiser:
    """WebRTC's high-pass filter and noise suppression (the webrtc-noise-gain package),
    on 10 ms chunks of 16 kHz audio; a block's remainder waits for the next block."""

    RATE_HZ = 16_000
    CHUNK = 160

    def __init__(self, level: int = NOISE_SUPPRESSION) -> None:
        try:
            from webrtc_noise_gain import AudioProcessor
        except ImportError as exc:
            raise VoiceUnavailableError(
                f"the voice stop needs the webrtc-noise-gain package ({EXTRA_HINT})") from exc
        self._processor = AudioProcessor(0, level)
        self._chunker = Chunker(self.CHUNK)

    def process(self, samples: np.ndarray) -> Cleaned:
        """The cleaned audio of the whole 10 ms chunks so far, WebRTC's voice activity for
        each of them, and the raw samples they were made from."""
        raw = self._chunker.take(samples)
        data = raw.tobytes()
        step = self.CHUNK * 2
        results = [self._processor.Process10ms(data[i:i + step])
                   for i in range(0, len(data), step)]
        audio_out = np.frombuffer(b"".join(r.audio for r in results), dtype=np.int16)
        return Cleaned(audio_out, [bool(r.is_speech) for r in results], raw)


class Cleaned(NamedTuple):
    """What ``Denoiser.process`` gives for one block."""

    audio: np.ndarray
    """After the high-pass filter and noise suppression (about 6 ms behind ``raw``: the
    suppressor's own delay, measured by cross-correlation)."""
    speech: list[bool]
    """WebRTC's voice activity, one flag per 10 ms chunk."""
    raw: np.ndarray
    """The same chunks as they came in."""


class UtteranceGate:
    """Keeps a spotted "stop" only if it was said as a short utterance.

    Keyword spotting alone hears "stop" inside ordinary sentences ("Start the kettle",
    "What time is it"): the benchmark counted hundreds per hour. A command is short and
    stands apart: WebRTC's voice activity marks where speech runs (a run ends after
    ``end_silence_s`` of no speech), and a detection is released when its run ends, if
    the run lasted at most ``max_utterance_s``; a longer run drops it. The price: about
    ``end_silence_s`` of latency, and "stop" inside a long sentence is not taken.

    With ``release_after_s``, a held detection is also released ``release_after_s`` after
    the end of its word (as the recognizer aligned it) when voice activity since that end
    lasted at most ``max_extra_speech_s`` and the run so far is no longer than
    ``max_utterance_s``: a run that noise keeps alive, or a slow end of voice activity,
    no longer delays the command, while speech that goes on after the word still holds it
    (and a long run still drops it).
    """

    def __init__(self, rate_hz: int, *, max_utterance_s: float, end_silence_s: float,
                 require_speech: bool = False, release_after_s: float | None = None,
                 max_extra_speech_s: float = 0.0) -> None:
        self.require_speech = require_speech
        self.release_after = (None if release_after_s is None
                              else round(release_after_s * rate_hz))
        self.max_extra_speech = round(max_extra_speech_s * rate_hz)
        self.rate_hz = rate_hz
        self._speech_ends: deque[int] = deque()  # ends of recent chunks of speech
        self._chunk = 160  # samples per voice-activity flag (set by ``chunks``)
        self.late = rate_hz  # a word reported up to 1 s after its run ended still counts
        self.no_speech = 0
        self.max_samples = round(max_utterance_s * rate_hz)
        self.end_silence = round(end_silence_s * rate_hz)
        self.runs = SpeechRuns(self.end_silence)
        self.pending: list[Spotted] = []
        self.rejected = 0
        self._last_run: tuple[int, int] | None = None  # (length, end) of the last run

    def chunks(self, flags: list[bool], chunk: int) -> list[Spotted]:
        """Advance over voice-activity flags; detections released by a run that ended."""
        released: list[Spotted] = []
        self._chunk = chunk
        for speech in flags:
            ended = self.runs.step(speech, chunk)
            if speech and self.release_after is not None:
                self._speech_ends.append(self.runs.position)
                self._forget_old_speech()
            if ended is not None:
                released += self._end_run(*ended)
            if self.pending and self.release_after is not None:
                released += self._early()
        if self.pending and self.run_too_long():
            self.rejected += len(self.pending)
            self.pending = []
        return released

    def run_too_long(self) -> bool:
        """Whether the current run is already longer than a command."""
        so_far = self.runs.so_far()
        return so_far is not None and so_far > self.max_samples

    def _forget_old_speech(self) -> None:
        """Keep only the speech of the last 2 x ``max_utterance_s`` (bounded memory on a
        stream that never ends, whether or not a detection is held)."""
        horizon = self.runs.position - 2 * self.max_samples
        while self._speech_ends and self._speech_ends[0] < horizon:
            self._speech_ends.popleft()

    def _early(self) -> list[Spotted]:
        """The first held detection whose word ended ``release_after`` ago with little
        speech since, if the run so far is short."""
        assert self.release_after is not None
        self._forget_old_speech()
        if self.run_too_long():
            return []
        position = self.runs.position
        for held in self.pending:
            word_end = held.word_start_sample + round(held.duration_s * self.rate_hz)
            if position - word_end < self.release_after:
                continue
            extra = self._chunk * sum(1 for end in self._speech_ends
                                      if end - self._chunk >= word_end)
            if extra <= self.max_extra_speech:
                self.pending = []
                return [replace(held, end_sample=position)]
        return []

    def _end_run(self, start: int, end: int) -> list[Spotted]:
        length = end - start
        self._last_run = (length, self.runs.position)
        pending, self.pending = self.pending, []
        if length > self.max_samples:
            self.rejected += len(pending)
            return []
        return [replace(s, end_sample=self.runs.position) for s in pending[:1]]

    def spotted(self, hits: list[Spotted]) -> list[Spotted]:
        """Detections from the recognizer: held until their run ends."""
        if not hits:
            return []
        if self.runs.start is not None:
            self.pending += hits
            return self._early() if self.release_after is not None else []
        # The run already ended (the recognizer reports a word up to ~0.8 s late), or voice
        # activity missed the word.
        last, position = self._last_run, self.runs.position
        if (last is not None and position - last[1] <= 2 * self.end_silence
                and last[0] > self.max_samples):
            self.rejected += len(hits)
            return []
        if self.require_speech and (last is None or position - last[1] > self.late):
            self.no_speech += len(hits)
            return []
        return [replace(s, end_sample=position) for s in hits[:1]]

    def reset(self) -> None:
        self.runs.reset()
        self.pending = []
        self._last_run = None
        self._speech_ends.clear()


class Verifier:
    """Second stage: re-decode a candidate's window of audio on its own, with the keyword
    mode at a stricter threshold (``threshold``) and the cepstral mean taken over the
    window itself (batch CMN) instead of the running estimate the stream uses; the
    candidate stands only when the keyword is found again."""

    name = "keyword re-decoding"
    """What checks the candidates, as the start-up line says it."""

    def __init__(self, ps: Any, hmm: Path, dictionary: Path, words: list[str], *,
                 sample_rate_hz: int, threshold: float) -> None:
        self.words = list(words)
        with tempfile.TemporaryDirectory(prefix="retrotread-verify-") as tmp:
            keyfile = Path(tmp) / "keyphrases.kws"
            keyfile.write_text("".join(f"{word} /{threshold:g}/\n" for word in self.words))
            self._decoder = ps.Decoder(hmm=str(hmm), dict=str(dictionary), kws=str(keyfile),
                                       samprate=sample_rate_hz, loglevel="FATAL")
        self._decoder.config["cmn"] = "batch"
        self._decoder.reinit_feat()
        self.checked = 0
        self.refused = 0

    def heard(self, audio: np.ndarray) -> set[str]:
        """The keywords found in ``audio`` (int16, the denoised stream)."""
        self._decoder.start_utt()
        self._decoder.process_raw(np.ascontiguousarray(audio, dtype=np.int16).tobytes(),
                                  False, True)
        self._decoder.end_utt()
        if self._decoder.hyp() is None:
            return set()
        return {segment.word.strip().lower() for segment in self._decoder.seg()} \
            & set(self.words)

    def keep(self, spotted: Spotted, audio: np.ndarray) -> bool:
        self.checked += 1
        if spotted.word in self.heard(audio):
            return True
        self.refused += 1
        return False


NET_BEFORE_S = 1.0
"""The learned verifier hears this much before the aligned word (at least)."""


class NetVerifier:
    """Second stage: the learned classifier (:mod:`~retrotread.voice.stopnet`) scores
    every 1.96 s window of the candidate's audio; the candidate stands when the best
    window's P(stop) reaches ``threshold``."""

    name = "the learned classifier"
    """What checks the candidates, as the start-up line says it."""

    def __init__(self, threshold: float, *, model_path: Path | None = None) -> None:
        self.threshold = float(threshold)
        self.net = stopnet.StopNet(model_path or stopnet.MODEL_PATH)
        self.last_confidence: float | None = None
        """P(stop) of the last candidate judged."""
        self.checked = 0
        self.refused = 0

    def keep(self, spotted: Spotted, audio: np.ndarray) -> bool:
        self.checked += 1
        self.last_confidence = self.net.best(audio)
        if self.last_confidence >= self.threshold:
            return True
        self.refused += 1
        return False


class SecondStage(Protocol):
    """A verifier: keeps or refuses a first-stage candidate, judged on its audio."""

    name: str
    checked: int
    refused: int

    def keep(self, spotted: Spotted, audio: np.ndarray) -> bool: ...


class CascadeVerifier:
    """Second stage in two steps: the learned classifier at a loose ``threshold`` first
    (cheap), then speech recognition (``AsrVerifier``, about half a second of CPU) only on
    what the classifier let through. Judged on the classifier's window; the recognizer
    hears the part of it from ``before_s`` before the word, ``VERIFY_SPAN_S`` long."""

    name = "the learned classifier, then Moonshine speech recognition"
    """What checks the candidates, as the start-up line says it."""

    def __init__(self, threshold: float, *, model_path: Path | None = None,
                 before_s: float = VERIFY_BEFORE_S) -> None:
        self.net = NetVerifier(threshold, model_path=model_path)
        self.asr = AsrVerifier(before_s=before_s)
        self.last_confidence: float | None = None
        """Moonshine's P("stop") for the last candidate it kept."""
        self.word_at = 0
        """Where the candidate's word starts in the window ``KeywordSpotter.window`` gave
        last (samples)."""
        self.checked = 0
        self.refused = 0

    def keep(self, spotted: Spotted, audio: np.ndarray) -> bool:
        self.checked += 1
        if self.net.keep(spotted, audio):
            rate = Denoiser.RATE_HZ
            start = max(0, self.word_at - round(self.asr.before_s * rate))
            if self.asr.keep(spotted, audio[start:start + round(
                    (VERIFY_SPAN_S - VERIFY_BEFORE_S + self.asr.before_s) * rate)]):
                self.last_confidence = self.asr.last_confidence
                return True
        self.refused += 1
        return False


class KeywordSpotter:
    """Feed audio, get the keyphrases heard. Not thread-safe: one thread feeds it."""

    def __init__(self, sample_rate_hz: int, words: Mapping[str, float] = DEFAULT_WORDS, *,
                 model_dir: Path | None = None,
                 noise_suppression: int = NOISE_SUPPRESSION,
                 max_utterance_s: float | None = MAX_UTTERANCE_S,
                 end_silence_s: float = END_SILENCE_S,
                 min_word_s: float = MIN_WORD_S,
                 require_speech: bool = REQUIRE_SPEECH,
                 verify_threshold: float | None = VERIFY_THRESHOLD,
                 net_threshold: float | None = NET_VERIFY_THRESHOLD,
                 net_model: Path | None = None,
                 asr_before_s: float | None = None,
                 asr_min_stop_p: float | None = None,
                 asr_hears: Hears = ASR_HEARS,
                 voice_activity: Activity = VOICE_ACTIVITY) -> None:
        unknown = set(words) - set(VOICE_COMMANDS)
        if unknown or not words:
            raise ValueError(f"the spotter listens only for {sorted(VOICE_COMMANDS)}, "
                             f"not {sorted(unknown) or 'nothing'}")
        if sample_rate_hz != Denoiser.RATE_HZ:
            raise VoiceUnavailableError(
                f"the voice stop needs {Denoiser.RATE_HZ} Hz audio, not {sample_rate_hz} Hz")
        self.denoiser = Denoiser(noise_suppression)
        self.activity = SileroActivity() if voice_activity is Activity.SILERO else None
        """Where the gate's runs of speech come from: Silero VAD, or (None) the
        denoiser's WebRTC voice activity."""
        self.gate = (UtteranceGate(sample_rate_hz, max_utterance_s=max_utterance_s,
                                   end_silence_s=end_silence_s,
                                   require_speech=require_speech,
                                   release_after_s=RELEASE_AFTER_S,
                                   max_extra_speech_s=MAX_EXTRA_SPEECH_S)
                     if max_utterance_s is not None else None)
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
            # The model's feat.params asks for batch CMN (a whole utterance at a time);
            # a never-ending stream needs the running estimate.
            self._decoder.config["cmn"] = CMN
            self._decoder.reinit_feat()
        self._model = (ps, hmm, dictionary)
        self.verifier = self.make_verifier(verify_threshold=verify_threshold,
                                           net_threshold=net_threshold, net_model=net_model,
                                           asr_before_s=asr_before_s,
                                           asr_min_stop_p=asr_min_stop_p,
                                           asr_hears=asr_hears)
        self._history = np.zeros(0, dtype=np.int16)  # the last HISTORY_S of cleaned audio
        self._raw_history = np.zeros(0, dtype=np.int16)  # the same span as it came in
        self._history_end = 0  # cleaned samples so far (the end of _history)
        self._utt_start = 0  # cleaned samples before the decoder's current utterance
        self.min_word_s = float(min_word_s)
        self.candidates = 0
        """Keyphrases the first stage proposed (before the duration check and the gate)."""
        self.too_short = 0
        """Of them, dropped by the duration check."""
        self.fed_samples = 0
        self._decoder.start_utt()

    def feed(self, samples: np.ndarray) -> list[Spotted]:
        """Process one block; the keyphrases completed in it (usually none)."""
        block = np.ascontiguousarray(samples, dtype=np.int16)
        self.fed_samples += len(block)
        cleaned = self.denoiser.process(block)
        self._remember(cleaned)
        block = cleaned.audio
        released = []
        if self.gate is not None:
            released = (self.gate.chunks(cleaned.speech, Denoiser.CHUNK)
                        if self.activity is None else
                        self.gate.chunks(self.activity.process(cleaned.raw),
                                         SileroActivity.CHUNK))
        if len(block):
            self._decoder.process_raw(block.tobytes(), False, False)
        if not len(block) or self._decoder.hyp() is None:
            return self._verified(released)
        spotted = []
        frame = round(FRAME_S * self.sample_rate_hz)
        for segment in self._decoder.seg():
            word = segment.word.strip().lower()
            if word not in self.words:
                continue
            self.candidates += 1
            duration_s = (segment.end_frame - segment.start_frame + 1) * FRAME_S
            if duration_s < self.min_word_s:
                self.too_short += 1
                continue
            spotted.append(Spotted(word, VOICE_COMMANDS[word], float(segment.prob),
                                   duration_s, self.fed_samples,
                                   self._utt_start + segment.start_frame * frame))
        self._restart()  # report each keyphrase once
        if self.gate is not None:
            spotted = self.gate.spotted(spotted)
        return self._verified(released + spotted)

    def _remember(self, cleaned: Cleaned) -> None:
        keep = round(HISTORY_S * self.sample_rate_hz)
        self._history = np.concatenate([self._history[-keep:], cleaned.audio])[-keep:]
        self._raw_history = np.concatenate([self._raw_history[-keep:], cleaned.raw])[-keep:]
        self._history_end += len(cleaned.audio)

    def make_verifier(self, *, verify_threshold: float | None = None,
                      net_threshold: float | None = None, net_model: Path | None = None,
                      asr_before_s: float | None = None,
                      asr_min_stop_p: float | None = None,
                      asr_hears: Hears = Hears.CLEANED) -> SecondStage | None:
        """The second stage the arguments ask for (the first that is set, in this order:
        speech recognition (after the learned classifier, when ``net_threshold`` is set
        too), re-decoding, the learned classifier), or None."""
        ps, hmm, dictionary = self._model
        if asr_before_s is not None and net_threshold is not None:
            return CascadeVerifier(net_threshold, model_path=net_model, before_s=asr_before_s)
        if asr_before_s is not None:
            return AsrVerifier(before_s=asr_before_s, min_stop_p=asr_min_stop_p,
                               hears=asr_hears)
        if verify_threshold is not None:
            return Verifier(ps, hmm, dictionary, list(self.words),
                            sample_rate_hz=self.sample_rate_hz, threshold=verify_threshold)
        if net_threshold is not None:
            return NetVerifier(net_threshold, model_path=net_model)
        return None

    def _verified(self, spotted: list[Spotted]) -> list[Spotted]:
        """The candidates the verifier keeps."""
        if self.verifier is None or not spotted:
            return spotted
        kept = []
        for candidate in spotted:
            if self.verifier.keep(candidate, *self.windows(candidate, self.verifier)):
                sure = getattr(self.verifier, "last_confidence", None)
                kept.append(candidate if sure is None else replace(candidate, confidence=sure))
        return kept

    def windows(self, candidate: Spotted, verifier: SecondStage) -> list[np.ndarray]:
        """The windows ``verifier.keep`` judges ``candidate`` on: the cleaned audio's; for
        the speech recognizer, the raw audio's, the cleaned audio's, or both (its
        ``hears``). Valid right after the ``feed`` that returned the candidate."""
        hears = verifier.hears if isinstance(verifier, AsrVerifier) else Hears.CLEANED
        return [self.window(candidate, verifier, raw=raw) for raw in hears.raw_first]

    def window(self, candidate: Spotted, verifier: SecondStage, *,
               raw: bool = False) -> np.ndarray:
        """The cleaned audio ``verifier`` judges ``candidate`` on: the word with
        ``VERIFY_BEFORE_S`` (the speech recognizer: its own ``before_s``) of audio before
        it and up to ``VERIFY_SPAN_S`` in all; the classifier hears more (below). Valid
        right after the ``feed`` that returned the candidate. ``raw``: the same span of
        the audio as it came in."""
        before_s = float(getattr(verifier, "before_s", VERIFY_BEFORE_S))
        start = candidate.word_start_sample - round(before_s * self.sample_rate_hz)
        end = min(self._history_end, start + round((VERIFY_SPAN_S - VERIFY_BEFORE_S
                                                    + before_s) * self.sample_rate_hz))
        if isinstance(verifier, NetVerifier | CascadeVerifier):
            # The classifier hears the word, what came before it and everything up to
            # the release (its windows are 1.96 s long).
            end = self._history_end
            start = min(candidate.word_start_sample - round(NET_BEFORE_S
                                                            * self.sample_rate_hz),
                        end - stopnet.WINDOW_SAMPLES - 4 * stopnet.EMBED_STRIDE
                        * stopnet.HOP)
        offset = self._history_end - len(self._history)
        if isinstance(verifier, CascadeVerifier):
            verifier.word_at = candidate.word_start_sample - max(start, offset)
        history = self._raw_history if raw else self._history
        return history[max(0, start - offset):max(0, end - offset)]

    def _restart(self) -> None:
        self._decoder.end_utt()
        self._decoder.start_utt()
        self._utt_start = self._history_end

    def reset(self) -> None:
        """Forget partial words and held detections (after a gap in the audio)."""
        self._restart()
        if self.gate is not None:
            self.gate.reset()
        if self.activity is not None:
            self.activity.reset()


NET_THRESHOLD = 0.9
NET_REFRACTORY_S = 1.5
"""After a detection, the sliding detector stays quiet this long (one "stop", one
command)."""


class NetSpotter:
    """The learned classifier as the detector itself: every new speech-embedding vector
    (each 80 ms) scores the last 1.96 s window, after the same WebRTC noise suppression as
    :class:`KeywordSpotter`. A window at ``threshold`` or above is a "stop" if it falls in
    a short run of voice activity (``UtteranceGate``); with ``hold``, it waits for the run
    to end as the keyphrase spotter does; without, it is a command at once when the run so
    far is short, so a command need not wait for the speaker to fall silent. Listens only
    for "stop". Not thread-safe: one thread feeds it."""

    def __init__(self, sample_rate_hz: int, *, threshold: float = NET_THRESHOLD,
                 hold: bool = False, model_path: Path | None = None,
                 noise_suppression: int = NOISE_SUPPRESSION,
                 max_utterance_s: float = MAX_UTTERANCE_S,
                 end_silence_s: float = END_SILENCE_S) -> None:
        if sample_rate_hz != Denoiser.RATE_HZ:
            raise VoiceUnavailableError(
                f"the voice stop needs {Denoiser.RATE_HZ} Hz audio, not {sample_rate_hz} Hz")
        self.sample_rate_hz = int(sample_rate_hz)
        self.threshold = float(threshold)
        self.hold = hold
        self.denoiser = Denoiser(noise_suppression)
        self.gate = UtteranceGate(sample_rate_hz, max_utterance_s=max_utterance_s,
                                  end_silence_s=end_silence_s, require_speech=True)
        self.net = stopnet.StopNet(model_path or stopnet.MODEL_PATH)
        self._vectors = np.zeros((0, 96), dtype=np.float32)
        self._quiet_until = 0
        self.fed_samples = 0
        self.candidates = 0
        """Windows at or above the threshold (before the voice-activity checks)."""
        self.too_short = 0  # the benchmark's counter; no duration check here

    def feed(self, samples: np.ndarray) -> list[Spotted]:
        block = np.ascontiguousarray(samples, dtype=np.int16)
        self.fed_samples += len(block)
        cleaned = self.denoiser.process(block)
        released = self.gate.chunks(cleaned.speech, Denoiser.CHUNK)
        vectors = self.net.embedder.feed(cleaned.audio)
        hits: list[Spotted] = []
        if len(vectors):
            self._vectors = np.concatenate([self._vectors, vectors])[-(stopnet.WINDOW
                                                                       + len(vectors)):]
            windows = stopnet.windows_of(self._vectors)[-len(vectors):]
            scores = self.net.model.scores(windows) if len(windows) else np.zeros(0)
            best = float(scores.max()) if len(scores) else 0.0
            if best >= self.threshold and self.fed_samples >= self._quiet_until:
                self.candidates += 1
                hits.append(Spotted("stop", VOICE_COMMANDS["stop"], best, 0.0,
                                    self.fed_samples,
                                    self.fed_samples - stopnet.WINDOW_SAMPLES))
        if hits:
            hits = self.gate.spotted(hits) if self.hold else self._now(hits)
        out = (released + hits)[:1]
        if out:
            self._quiet_until = self.fed_samples + round(NET_REFRACTORY_S
                                                         * self.sample_rate_hz)
            self.gate.pending = []
        return out

    def _now(self, hits: list[Spotted]) -> list[Spotted]:
        """Without waiting for the run to end: taken if the run so far is short, or if
        the last run ended a moment ago and was short."""
        gate = self.gate
        if gate.runs.start is not None:
            if not gate.run_too_long():
                return hits[:1]
            gate.rejected += 1
            return []
        last = gate._last_run
        if last is not None and gate.runs.position - last[1] <= gate.late \
                and last[0] <= gate.max_samples:
            return hits[:1]
        gate.no_speech += 1
        return []

    def reset(self) -> None:
        """Forget held detections (after a gap in the audio). The embeddings stay: the
        windows need 1.96 s of audio, and what was fed before the gap holds none of the
        audio that was not fed (the host's speech)."""
        self.gate.reset()
        self._quiet_until = 0
