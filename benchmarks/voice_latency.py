"""Where the voice stop's latency goes, in audio time, and a gate that bounds it.

    .venv/bin/python -m benchmarks.voice_latency breakdown     # validation, 10 and 5 dB
    .venv/bin/python -m benchmarks.voice_latency grid          # validation: gate settings
    .venv/bin/python -m benchmarks.voice_latency held-out      # once: chosen vs today

``breakdown`` feeds the VALIDATION split's words that end in "stop" (benchmarks.voice),
one after another 1.5 s apart over treadmill noise (as ``measure_latency`` does), to the
default spotter in 100 ms blocks as the listener reads, with no real-time pacing, and
notes for each detected word the sample at which (a) the first stage (pocketsphinx)
reported the candidate and (b) the utterance gate released it, both against the word's
true end (the synthesized span). The compute time per block (about 35 ms at p50,
benchmarks.voice) is not in these numbers: they are audio time only.

``grid`` measures gate settings (``release_after_s``, ``max_extra_speech_s``; see
retrotread/voice/spotter.py ``UtteranceGate``) on the validation split with the
benchmark's own ``evaluate`` (detection, non-stop speech, noise alone) and the audio-time
latency above; the choice rule is fixed in ``pick``. ``held-out`` runs the chosen setting
and today's gate once on HELD_OUT: detection, false stops, and ``measure_latency`` in
real time.

``grid --asr`` (added after Moonshine became fast, before its run) measures gate settings
with Moonshine speech recognition as the second stage instead of the classifier, with
``--validation-hours 2`` (the benchmark's validation length since the third choice) and
``--settings end,0.7:0.7`` (today's gate and the setting the first grid chose); the rule
is ``pick``, unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import percentile
from benchmarks.voice import (
    BLOCK,
    CURRENT,
    HELD_OUT,
    VALIDATION,
    Config,
    Result,
    Split,
    evaluate,
    measure_latency,
    stop_utterances,
)
from retrotread.voice import spotter as sp
from tests import voice_audio as va

GAP_S = 1.5  # between words, as measure_latency
SNRS = (10.0, 5.0)


@dataclass(frozen=True)
class GateConfig(Config):
    """A benchmark configuration (today's: ``CURRENT``) with the gate's early release."""

    release_after_s: float | None = None
    max_extra_speech_s: float = 0.0

    def spotter(self) -> Any:
        return self._gated(super().spotter())

    def first_stage(self) -> sp.KeywordSpotter:
        return self._gated(super().first_stage())

    def first_stage_key(self) -> tuple[Any, ...]:
        # the gate is part of the first stage: another gate, other candidates
        return (*super().first_stage_key(), self.release_after_s, self.max_extra_speech_s)

    def _gated(self, spotter: Any) -> Any:
        spotter.gate = sp.UtteranceGate(
            va.RATE_HZ, max_utterance_s=sp.MAX_UTTERANCE_S, end_silence_s=sp.END_SILENCE_S,
            require_speech=sp.REQUIRE_SPEECH, release_after_s=self.release_after_s,
            max_extra_speech_s=self.max_extra_speech_s)
        return spotter

    def __str__(self) -> str:
        if self.release_after_s is None:
            return "today's gate (end of run)"
        return (f"run end or {self.release_after_s:g} s after the word with "
                f"<= {self.max_extra_speech_s:g} s more speech")


TODAY = GateConfig(CURRENT.threshold, CURRENT.min_word_s, net_threshold=CURRENT.net_threshold,
                   model=CURRENT.model)


def words(split: Split, count: int) -> list[tuple[str, va.Voice]]:
    """``count`` of the split's utterances that end in "stop"."""
    pool = stop_utterances(split, 4 * count)
    return [(p, v) for p, v in pool if p in split.ends_with_stop][:count]


def trace(synth: va.Synth, config: GateConfig, split: Split, snr_db: float,
          count: int, seed: int) -> dict[str, Any]:
    """Per detected word: samples from its true end to the first stage's report and to
    the gate's release (audio time)."""
    parts = [synth.speak(p, v) for p, v in words(split, count)]
    audio, spans = va.sequence(parts, snr_db=snr_db, seed=seed, gap_s=GAP_S)
    spotter = config.spotter()
    gate = spotter.gate
    reports: dict[int, int] = {}  # word start sample -> sample at which it was reported
    inner = gate.spotted

    def spotted(hits: list[sp.Spotted]) -> list[sp.Spotted]:
        for hit in hits:
            reports.setdefault(hit.word_start_sample, hit.end_sample)
        return inner(hits)

    gate.spotted = spotted  # type: ignore[method-assign]
    detections: list[sp.Spotted] = []
    for i in range(0, len(audio), BLOCK):
        detections += spotter.feed(audio[i:i + BLOCK])
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    report_s, gate_s, total_s, seen = [], [], [], set()
    early = 0
    for d in detections:
        k = int(np.searchsorted(starts, d.word_start_sample + round(0.5 * va.RATE_HZ))) - 1
        if k < 0 or k in seen or d.end_sample - ends[k] > 3 * va.RATE_HZ:
            continue
        seen.add(k)
        reported = reports.get(d.word_start_sample, d.end_sample)
        report_s.append((reported - ends[k]) / va.RATE_HZ)
        gate_s.append((d.end_sample - reported) / va.RATE_HZ)
        total_s.append((d.end_sample - ends[k]) / va.RATE_HZ)
        early += d.end_sample < ends[k]
    return {"snr_db": snr_db, "words": len(parts), "detected": len(total_s),
            "report_s": report_s, "gate_s": gate_s, "total_s": total_s,
            "candidates": spotter.candidates, "gate_rejected": gate.rejected,
            "no_speech": gate.no_speech,
            "verifier_refused": getattr(spotter.verifier, "refused", 0)}


def stats(values: list[float]) -> str:
    return " | ".join(f"{percentile(values, p):.2f}" for p in (50, 90, 99)) + \
        f" | {max(values):.2f}" if values else "- | - | - | -"


def breakdown(synth: va.Synth, config: GateConfig, count: int,
              split: Split = VALIDATION) -> list[dict[str, Any]]:
    return [trace(synth, config, split, snr, count, seed=split.seed_base + 80_000 + int(snr))
            for snr in SNRS]


def breakdown_table(config: GateConfig, traces: list[dict[str, Any]]) -> str:
    lines = [f"{config}: audio time from the end of the word, s (p50 | p90 | p99 | max)", "",
             "| SNR | detected | (a) word end -> report | (b) report -> release "
             "| total |", "|---|---|---|---|---|"]
    for t in traces:
        lines.append(f"| {t['snr_db']:g} dB | {t['detected']}/{t['words']} | "
                     f"{stats(t['report_s'])} | {stats(t['gate_s'])} | {stats(t['total_s'])} |")
    pooled = {k: [x for t in traces for x in t[k]] for k in ("report_s", "gate_s", "total_s")}
    lines.append(f"| both | {sum(t['detected'] for t in traces)}/"
                 f"{sum(t['words'] for t in traces)} | {stats(pooled['report_s'])} | "
                 f"{stats(pooled['gate_s'])} | {stats(pooled['total_s'])} |")
    lines.append("counts: " + "; ".join(
        f"{t['snr_db']:g} dB: {t['candidates']} candidates, gate dropped {t['gate_rejected']}"
        f" (long run) + {t['no_speech']} (no speech), verifier refused "
        f"{t['verifier_refused']}" for t in traces))
    return "\n".join(lines)


GRID = (TODAY, *(GateConfig(TODAY.threshold, TODAY.min_word_s,
                            net_threshold=TODAY.net_threshold, model=TODAY.model,
                            release_after_s=x, max_extra_speech_s=y)
                 for x, y in ((0.3, 0.1), (0.3, 0.3), (0.5, 0.1), (0.5, 0.25), (0.5, 0.5),
                              (0.7, 0.25), (0.7, 0.5), (0.7, 0.7))))
"""Gate settings tried on validation (fixed before their false stops were measured; the
speech limits widened after a 40-word latency look at 0.3 s / 0.1 s, which bounded
nothing: voice activity stays on after the word): release 0.3, 0.5 or 0.7 s after the
word's end with at most 0.1 to 0.5 s of speech since (a limit equal to the wait: the
bound alone, whatever the speech), and today's gate."""


def pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule, fixed before the validation run: the lowest p99 total latency (audio
    time, 10 and 5 dB pooled) among settings whose false stops in the validation non-stop
    speech are no more than today's gate's on the same speech, and whose 10 dB detection
    is at most 2 points below today's; ties: the lower p50, then today's gate."""
    today = next(r for r in rows if r["config"] == str(TODAY))
    ok = [r for r in rows if r["false_stops"] <= today["false_stops"]
          and r["rate_10"] >= today["rate_10"] - 0.02]
    return min(ok, key=lambda r: (r["p99_s"], r["p50_s"], r is not today))


def with_moonshine(config: GateConfig) -> GateConfig:
    """The same gate setting with Moonshine speech recognition as the second stage."""
    return replace(config, net_threshold=None, model="", asr_before_s=0.3)


def validate(synth: va.Synth, configs: list[GateConfig], words_per_snr: int,
             t0: float, hours: float = 0.34) -> list[dict[str, Any]]:
    """Each setting on the validation split: the benchmark's own detection and false-stop
    measurement (``evaluate``, ``hours`` of non-stop audio), and the audio-time latency of
    ``breakdown``."""
    results: dict[Config, Result] = evaluate(
        synth, VALIDATION, list(configs), utterances=90, hours=hours, noise_minutes=5.0,
        announcements=va.collect_announcements(), t0=t0)
    rows = []
    for c in configs:
        traces = breakdown(synth, c, words_per_snr)
        total = [x for t in traces for x in t["total_s"]]
        r = results[c]
        rows.append({"config": str(c), "release_after_s": c.release_after_s,
                     "max_extra_speech_s": c.max_extra_speech_s,
                     "rates": {f"{s:g}": r.rate(s) for s in r.trials}, "rate_10": r.rate(10.0),
                     "false_stops": r.false_stops, "false_per_hour": r.false_per_hour,
                     "speech_h": r.false_audio_s / 3600, "noise_false": r.noise_false_stops,
                     "confusables": f"{r.confusable_hits}/{r.confusables}",
                     "detected": f"{len(total)}/{sum(t['words'] for t in traces)}",
                     "p50_s": percentile(total, 50), "p90_s": percentile(total, 90),
                     "p99_s": percentile(total, 99), "max_s": max(total)})
        print(f"  {c}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return rows


def grid_table(rows: list[dict[str, Any]], chosen: dict[str, Any] | None) -> str:
    lines = ["| gate | 20 dB | 10 dB | 5 dB | 0 dB | false stops / h speech | / h noise | "
             "near words | words (10+5 dB) | latency p50 | p90 | p99 | max |",
             "|---|" + "---|" * 12]
    for r in rows:
        mark = " (chosen)" if chosen is not None and r["config"] == chosen["config"] else ""
        rates = " | ".join(f"{100 * r['rates'][k]:.1f} %" for k in ("20", "10", "5", "0"))
        lines.append(f"| {r['config']}{mark} | {rates} | {r['false_per_hour']:.1f} "
                     f"({r['false_stops']}) | {r['noise_false']} | {r['confusables']} | "
                     f"{r['detected']} | {r['p50_s']:.2f} | {r['p90_s']:.2f} | "
                     f"{r['p99_s']:.2f} | {r['max_s']:.2f} |")
    return "\n".join(lines)


def held_out(synth: va.Synth, chosen: GateConfig, part: str, latency_words: int,
             t0: float) -> dict[str, Any]:
    """Once, on HELD_OUT: the chosen setting and today's gate; ``part`` "evaluate" (the
    benchmark's detection and false stops) or "latency" (``measure_latency``, real time)."""
    configs: list[Config] = [chosen, TODAY]
    if part == "evaluate":
        results = evaluate(synth, HELD_OUT, configs, utterances=240, hours=1.02,
                           noise_minutes=10.0, announcements=va.collect_announcements(),
                           t0=t0)
        return {str(c): {"rates": {f"{s:g}": r.rate(s) for s in r.trials},
                         "false_stops": r.false_stops, "false_per_hour": r.false_per_hour,
                         "speech_h": r.false_audio_s / 3600,
                         "noise_false": r.noise_false_stops,
                         "confusables": f"{r.confusable_hits}/{r.confusables}"}
                for c, r in results.items()}
    utterances = stop_utterances(HELD_OUT, 3 * latency_words)
    out = {}
    for c in configs:
        out[str(c)] = measure_latency(synth, utterances, c, latency_words)
        print(f"  {c}: {out[str(c)]} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
              flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("breakdown", "grid", "held-out"))
    parser.add_argument("--words", type=int, default=150, help="words per SNR (breakdown)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir())
                                              / "retrotread-voice-bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--part", default="0/1",
                        help="grid: run the K-th of N parts (K/N), to spread it over cores; "
                        "held-out: evaluate or latency")
    parser.add_argument("--chosen", default=None,
                        help="held-out: the setting chosen on validation, "
                        "RELEASE_AFTER_S:MAX_EXTRA_SPEECH_S")
    parser.add_argument("--latency-words", type=int, default=150)
    parser.add_argument("--asr", action="store_true",
                        help="grid: Moonshine speech recognition as the second stage "
                        "instead of the learned classifier")
    parser.add_argument("--settings", default=None,
                        help="grid: only these settings, RELEASE_AFTER_S:MAX_EXTRA_SPEECH_S,"
                        "... ('end' for today's gate)")
    parser.add_argument("--validation-hours", type=float, default=0.34,
                        help="grid: non-stop audio on validation (the first grid used 0.34)")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="grid: pick from these parts' JSON files instead of running")
    args = parser.parse_args(argv)
    missing = va.tools_missing()
    if missing:
        print(f"benchmarks.voice_latency: {missing}", file=sys.stderr)
        return 2
    synth = va.Synth(Path(args.cache))
    t0 = time.perf_counter()
    if args.what == "breakdown":
        traces = breakdown(synth, TODAY, args.words)
        print(breakdown_table(TODAY, traces))
        if args.json:
            args.json.write_text(json.dumps(traces))
    elif args.what == "grid":
        if args.merge:
            rows = [row for path in args.merge for row in json.loads(path.read_text())]
            rows.sort(key=lambda r: [str(c) for c in GRID].index(r["config"]))
            print(grid_table(rows, pick(rows)))
        else:
            k, n = (int(x) for x in args.part.split("/"))
            grid = list(GRID)
            if args.settings:
                wanted = {None if x == "end" else tuple(float(v) for v in x.split(":"))
                          for x in args.settings.split(",")}
                grid = [c for c in grid if (None if c.release_after_s is None else
                                            (c.release_after_s, c.max_extra_speech_s))
                        in wanted]
            if args.asr:
                grid = [with_moonshine(c) for c in grid]
            rows = validate(synth, grid[k::n], args.words, t0, args.validation_hours)
            print(grid_table(rows, None))
            if args.json:
                args.json.write_text(json.dumps(rows))
    else:
        after, extra = (float(x) for x in args.chosen.split(":"))
        chosen = GateConfig(TODAY.threshold, TODAY.min_word_s,
                            net_threshold=TODAY.net_threshold, model=TODAY.model,
                            release_after_s=after, max_extra_speech_s=extra)
        out = held_out(synth, chosen, args.part, args.latency_words, t0)
        print(json.dumps(out, indent=1))
        if args.json:
            args.json.write_text(json.dumps(out))
    print(f"({(time.perf_counter() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
