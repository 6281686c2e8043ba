"""The utterance gate's early release, on synthetic voice-activity flags (10 ms chunks of
16 kHz audio): a held "stop" is released a bounded time after its word when little
speech follows, while a long sentence is still refused (docs/voice-model.md, "Latency")."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from retrotread.events import UserCommand
from retrotread.voice.activity import SpeechRuns
from retrotread.voice.spotter import Spotted, UtteranceGate

RATE = 16_000
CHUNK = 160  # 10 ms


def word(start_s: float, duration_s: float) -> Spotted:
    return Spotted("stop", UserCommand.STOP, 0.9, duration_s, 0, round(start_s * RATE))


def gate(release_after_s: float | None, max_extra_speech_s: float = 0.1) -> UtteranceGate:
    return UtteranceGate(RATE, max_utterance_s=2.0, end_silence_s=0.3, require_speech=True,
                         release_after_s=release_after_s,
                         max_extra_speech_s=max_extra_speech_s)


def blips(seconds: float) -> list[bool]:
    """Voice activity that noise keeps flickering: 50 ms of "speech" every 250 ms, so the
    run never sees the 0.3 s of silence that would end it."""
    return ([False] * 20 + [True] * 5) * round(seconds / 0.25)


def test_a_held_stop_is_released_a_bounded_time_after_its_word() -> None:
    early, today = gate(0.5), gate(None)
    for g in (early, today):
        assert g.chunks([False] * 20 + [True] * 50, CHUNK) == []  # speech 0.2-0.7 s
        assert g.spotted([word(0.3, 0.4)]) == []  # the word ends at 0.7 s: held
    released = early.chunks(blips(1.0), CHUNK)
    assert [s.word for s in released] == ["stop"]
    assert released[0].end_sample == round(1.2 * RATE), "0.5 s after the word's end"
    # Today's gate waits for the run to end, which the flicker never lets happen, and then
    # drops the word with the run that grew too long.
    assert today.chunks(blips(1.0), CHUNK) == []
    assert today.pending and today.chunks(blips(1.0), CHUNK) == []
    assert today.rejected == 1
    # Once released, the word is not released again when the run ends.
    assert early.chunks([False] * 40, CHUNK) == []


def test_a_word_reported_late_is_released_on_the_report() -> None:
    g = gate(0.5, max_extra_speech_s=0.25)
    g.chunks([True] * 40 + blips(1.0), CHUNK)  # the word at 0-0.4 s, flicker until 1.4 s
    released = g.spotted([word(0.0, 0.4)])  # the recognizer reports it 1 s after its end
    assert [s.end_sample for s in released] == [round(1.4 * RATE)]


def test_speech_that_goes_on_after_the_word_holds_it_and_a_long_sentence_is_refused() -> None:
    g = gate(0.5, max_extra_speech_s=0.25)
    g.chunks([True] * 30, CHUNK)  # "Stop ..." (0-0.3 s) and the sentence goes on
    assert g.spotted([word(0.0, 0.3)]) == []
    assert g.chunks([True] * 150, CHUNK) == [], "1.5 s more speech: not a command"
    assert g.chunks([True] * 100 + [False] * 30, CHUNK) == []  # a 2.8 s run in all
    assert g.rejected == 1


def test_even_the_bound_alone_refuses_a_stop_late_in_a_long_run() -> None:
    g = gate(0.5, max_extra_speech_s=0.5)  # released 0.5 s after the word, whatever follows
    g.chunks([True] * 230, CHUNK)  # "... and then we had to stop" after 2 s of talk
    assert g.spotted([word(2.0, 0.3)]) == []
    assert g.chunks([True] * 20 + [False] * 60, CHUNK) == []
    assert g.rejected == 1
    # The same word alone, after silence, is released at the bound.
    g.chunks([False] * 100 + [True] * 30, CHUNK)  # speech at 4.1-4.4 s
    assert g.spotted([word(4.1, 0.3)]) == []
    released = g.chunks([True] * 60, CHUNK)  # the voice activity lingers 0.6 s
    assert [s.end_sample for s in released] == [round(4.9 * RATE)]


def test_the_early_release_remembers_a_bounded_stretch_of_speech() -> None:
    # An hour of unbroken voice activity with nothing held: what the gate keeps for the
    # early release stays within 2 x max_utterance_s, however long the stream runs.
    g = gate(0.7)
    for _ in range(60):
        g.chunks([True] * 6000, CHUNK)
    assert len(g._speech_ends) <= 2 * g.max_samples // CHUNK + 1


def test_the_benchmark_runs_one_first_stage_per_gate() -> None:
    """benchmarks/voice.py shares a first stage among configurations that differ only in
    their second stage; a gate setting is part of the first stage (it once was not, and
    every gate setting would have been measured with the default gate)."""
    from benchmarks.voice import Group
    from benchmarks.voice_latency import TODAY, GateConfig
    early = GateConfig(TODAY.threshold, TODAY.min_word_s, net_threshold=TODAY.net_threshold,
                       model=TODAY.model, release_after_s=0.7, max_extra_speech_s=0.7)
    other_verifier = GateConfig(TODAY.threshold, TODAY.min_word_s, net_threshold=0.99,
                                model=TODAY.model)
    groups = Group.of([TODAY, early, other_verifier])
    assert sorted(len(g.configs) for g in groups) == [1, 2]
    release = {getattr(g.configs[0], "release_after_s", None):
               getattr(getattr(g.spotter, "gate", None), "release_after", "no gate")
               for g in groups}
    assert release == {None: None, 0.7: round(0.7 * 16_000)}


def runs_by_hand(flags: list[bool], chunk: int, end_silence: int) -> list[tuple[int, int]]:
    """The ended runs of ``flags``, found another way: group the chunks of speech whose
    gaps are too short to end a run; a group counts once enough silence follows it."""
    quiet_chunks = -(-end_silence // chunk)  # a run ends after this many silent chunks
    speech = [i for i, s in enumerate(flags) if s]
    groups: list[list[int]] = []
    for i in speech:
        if groups and i - groups[-1][-1] - 1 < quiet_chunks:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [(g[0] * chunk, (g[-1] + 1) * chunk) for g in groups
            if len(flags) - g[-1] - 1 >= quiet_chunks]


@settings(max_examples=3000, deadline=None)
@given(flags=st.lists(st.booleans(), max_size=300), chunk=st.sampled_from([160, 512]),
       end_silence_s=st.sampled_from([0.05, 0.3, 0.5]))
def test_speech_runs_begin_and_end_where_the_flags_say(
        flags: list[bool], chunk: int, end_silence_s: float) -> None:
    """The one account of where runs of speech are, which the utterance gate and the run
    spotter share, against a count by hand."""
    end_silence = round(end_silence_s * RATE)
    runs = SpeechRuns(end_silence)
    ended = [run for flag in flags if (run := runs.step(flag, chunk)) is not None]
    assert ended == runs_by_hand(flags, chunk, end_silence)
    assert runs.position == len(flags) * chunk
    assert all(0 < end - start <= len(flags) * chunk for start, end in ended)
    so_far = runs.so_far()
    assert (so_far is None) == (runs.start is None)
    if so_far is not None:
        assert 0 < so_far <= runs.position and runs.position - runs.last_speech < end_silence
