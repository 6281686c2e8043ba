"""Speech and treadmill noise for the voice-stop tests and benchmark.

Speech is synthesized by espeak-ng (a Debian package; scripts/install-espeak.sh) and
resampled to 16 kHz by sox; clips are cached on disk by their parameters. Noise is made
here, from a seeded random generator, so every run hears the same sound:

* belt hum: a motor tone (45-65 Hz and its harmonics), slowly wobbling, plus a low,
  brownish rumble of belt and deck;
* footsteps: a thump (a damped 60-120 Hz tone) and a short scuff (band noise) every
  0.6-0.9 s, as a person walks backward;
* a fan: broadband pinkish noise.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE_HZ = 16_000

VOICES = ("en-us", "en", "en-gb-x-rp", "en-us+f3", "en+m3", "en-029", "en-gb-scotland+f2",
          "en-us+f4", "en+klatt", "en-us-nyc")
"""espeak-ng voices (language + variant): men, women, several accents."""
SPEEDS_WPM = (130, 150, 175, 200)
"""espeak-ng's default is 175 words per minute."""

STOP_PHRASES = ("stop", "please stop", "stop the belt", "stop stop", "okay stop",
                "stop now")
ENDS_WITH_STOP = ("stop", "please stop", "stop stop", "okay stop")
"""Phrases whose last word is "stop": the end of the speech is the end of the word."""
CONFUSABLES = ("top", "shop", "step back", "drop", "stock", "hop", "stuff", "Scott",
               "spot", "stomp")


def tools_missing() -> str | None:
    """What is missing to synthesize speech, or None."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (scripts/install-espeak.sh, "
                "or apt-get install espeak-ng sox)")
    return None


@dataclass(frozen=True)
class Voice:
    name: str = "en-us"
    speed_wpm: int = 175
    pitch: int = 50


class Synth:
    """espeak-ng -> 16 kHz mono int16 numpy arrays, cached in ``cache_dir``."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def speak(self, text: str, voice: Voice = Voice()) -> np.ndarray:
        key = hashlib.sha1(f"{text}|{voice}".encode()).hexdigest()[:20]
        path = self.cache_dir / f"{key}.npy"
        if path.exists():
            return np.load(path)
        wav = subprocess.run(
            ["espeak-ng", "-v", voice.name, "-s", str(voice.speed_wpm), "-p", str(voice.pitch),
             "--stdout", "--", text],
            capture_output=True, check=True).stdout
        raw = subprocess.run(
            ["sox", "-t", "wav", "-", "-t", "raw", "-r", str(RATE_HZ), "-e", "signed",
             "-b", "16", "-c", "1", "-"], input=wav, capture_output=True, check=True).stdout
        samples = trim(np.frombuffer(raw, dtype=np.int16).copy())
        np.save(path, samples)
        return samples

    def cue(self, text: str) -> np.ndarray:
        """An announcement as the session says it (CuePlayer: espeak-ng's defaults)."""
        return self.speak(text, Voice())


def trim(samples: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """Cut leading and trailing silence (below ``floor`` of the peak)."""
    level = np.abs(samples.astype(np.float64))
    loud = np.nonzero(level > floor * max(level.max(), 1.0))[0]
    if len(loud) == 0:
        return samples
    return samples[loud[0]:loud[-1] + 1]


# --------------------------------------------------------------------------- noise
def _shaped_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE_HZ)
    freqs[0] = freqs[1]
    spectrum *= freqs ** (-exponent / 2)
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def treadmill_noise(duration_s: float, seed: int) -> np.ndarray:
    """Belt hum, footsteps and a fan, float64 at unit RMS."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * RATE_HZ)
    t = np.arange(n) / RATE_HZ
    motor_hz = rng.uniform(45, 65)
    wobble = 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t)
    hum = sum(np.sin(2 * np.pi * motor_hz * k * wobble * t + rng.uniform(0, 2 * np.pi)) / k
              for k in (1, 2, 3, 4))
    rumble = _shaped_noise(rng, n, 2.0)
    fan = _shaped_noise(rng, n, 1.0)
    steps = np.zeros(n)
    when = rng.uniform(0, 0.5)
    thump_t = np.arange(round(0.25 * RATE_HZ)) / RATE_HZ
    scuff_n = round(0.06 * RATE_HZ)
    while when < duration_s:
        start = round(when * RATE_HZ)
        thump = np.sin(2 * np.pi * rng.uniform(60, 120) * thump_t) * np.exp(-thump_t / 0.04)
        scuff = rng.standard_normal(scuff_n) * np.exp(-np.arange(scuff_n) / (0.015 * RATE_HZ))
        gain = rng.uniform(0.6, 1.4)
        end = min(n, start + len(thump))
        steps[start:end] += 3.0 * gain * thump[: end - start]
        end = min(n, start + scuff_n)
        steps[start:end] += 0.8 * gain * scuff[: end - start]
        when += rng.uniform(0.6, 0.9)
    noise = 0.8 * hum / 1.2 + 0.6 * rumble + 0.5 * fan + steps
    return noise / np.sqrt(np.mean(noise**2))


def active_rms(speech: np.ndarray) -> float:
    """RMS of the speech over its voiced 20 ms frames (louder than -30 dB of the peak)."""
    x = speech.astype(np.float64)
    frame = RATE_HZ // 50
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    energy = np.mean(frames**2, axis=1)
    if not len(energy):
        return float(np.sqrt(np.mean(x**2)))
    voiced = energy[energy > energy.max() * 1e-3]
    return float(np.sqrt(np.mean(voiced)))


@dataclass(frozen=True)
class Scene:
    audio: np.ndarray  # int16
    speech_start: int  # samples
    speech_end: int


SPEECH_LEVEL = 3000.0
"""Active speech RMS in the mix (about -20 dBFS): room for loud footsteps."""


def scene(speech: np.ndarray, *, snr_db: float | None, seed: int, before_s: float = 0.8,
          after_s: float = 1.2) -> Scene:
    """``speech`` with ``before_s`` and ``after_s`` of treadmill noise around it, at
    ``snr_db`` (speech active RMS over noise RMS); None: no noise at all."""
    gain = SPEECH_LEVEL / max(active_rms(speech), 1.0)
    start = round(before_s * RATE_HZ)
    total = start + len(speech) + round(after_s * RATE_HZ)
    mix = np.zeros(total)
    mix[start:start + len(speech)] = speech.astype(np.float64) * gain
    if snr_db is not None:
        mix += treadmill_noise(total / RATE_HZ, seed) * SPEECH_LEVEL / 10 ** (snr_db / 20)
    return Scene(np.clip(mix, -32768, 32767).astype(np.int16), start, start + len(speech))


def sequence(parts: list[np.ndarray], *, snr_db: float | None, seed: int,
             gap_s: float = 1.0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Several utterances one after another, ``gap_s`` apart, over one noise bed.
    Returns the audio and each utterance's (start, end) sample."""
    gap = round(gap_s * RATE_HZ)
    spans = []
    position = gap
    for part in parts:
        spans.append((position, position + len(part)))
        position += len(part) + gap
    mix = np.zeros(position)
    for part, (start, end) in zip(parts, spans, strict=True):
        mix[start:end] = part.astype(np.float64) * SPEECH_LEVEL / max(active_rms(part), 1.0)
    if snr_db is not None:
        mix += treadmill_noise(position / RATE_HZ, seed) * SPEECH_LEVEL / 10 ** (snr_db / 20)
    return np.clip(mix, -32768, 32767).astype(np.int16), spans


# --------------------------------------------------------------------------- cues
PROFILES_DIR = Path(__file__).parent.parent / "profiles"


def bundled_profiles() -> list[Path]:
    return sorted(PROFILES_DIR.glob("*.yaml"))


def collect_announcements(profiles: list[Path] | None = None) -> list[str]:
    """Every distinct announcement the session makes while running each profile to the
    end on the simulator (virtual time, looptime), in order of first appearance."""
    import asyncio

    import looptime

    from retrotread.events import Announcement
    from retrotread.profile import load_profile
    from tests.workout_harness import run_on_sim

    texts: dict[str, None] = {}
    for path in profiles or bundled_profiles():
        loop = looptime.new_event_loop(noop_cycles=1)
        try:
            run = loop.run_until_complete(run_on_sim(load_profile(path)))
        finally:
            asyncio.set_event_loop(None)
            loop.close()
        for event in run.of(Announcement):
            texts.setdefault(event.text)
    return list(texts)
