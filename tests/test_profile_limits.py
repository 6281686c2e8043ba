"""Hostile and careless profiles cost one clear line, never time, memory or a traceback.

Each input here is one that showed a problem (issue 16): the alias bomb, the huge file,
the deep nesting, the long numbers, the NUL byte, the 46-hour typo.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from retrotread.errors import ProfileError
from retrotread.profile import ProfileProblem, load_profile, load_profile_text
from retrotread.profile.loader import MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parent.parent
BROKEN = ROOT / "tests" / "broken_profiles"
HOSTILE = [BROKEN / name for name in (
    "yaml-anchors-billion-laughs.yaml", "yaml-alias-segment.yaml", "yaml-merge-key.yaml",
    "nesting-too-deep.yaml", "duration-310-digits.yaml", "integer-5000-digits.yaml",
    "speed-long-digits-text.yaml", "speed-exponent.yaml", "key-is-mapping.yaml",
    "key-is-null.yaml", "yaml-tag.yaml", "nul-byte.yaml", "yaml-tab-indent.yaml",
    "workout-46-hours.yaml",
)]
VALID_SEGMENT = "  - {forward: 1 min, speed: 2.0 mph}\n"


def refusal(path: Path) -> list[ProfileProblem]:
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    return caught.value.problems


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.stem)
def test_hostile_profile_is_refused_small(path: Path) -> None:
    tracemalloc.start()
    try:
        problems = refusal(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"{path.name}: {peak} bytes"
    for problem in problems:
        text = str(problem)
        assert "\n" not in text
        assert text.startswith(f"{path}:{problem.line}:{problem.column}: ")
        for internal in ("ordereddict", "Tagged", "None", "Error", "<", "\\x"):
            assert internal not in text, text


def test_billion_laughs_is_refused_at_the_first_anchor() -> None:
    [problem] = refusal(BROKEN / "yaml-anchors-billion-laughs.yaml")
    assert (problem.line, problem.column) == (3, 4)  # `a: &a` (line 1 is the expectation)
    assert "anchors and aliases" in problem.message


def test_file_larger_than_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    padding = "# " + "x" * 76 + "\n"
    big.write_text("name: Big\nsegments:\n" + VALID_SEGMENT
                   + padding * (MAX_FILE_BYTES // len(padding) + 1), encoding="utf-8")
    [problem] = refusal(big)
    assert str(problem) == (
        f"{big}:1:1: the file is larger than 256 KiB, the most a profile may be (a bundled "
        "profile is about 2 KiB); is it the right file?")
    with pytest.raises(ProfileError, match="larger than 256 KiB"):
        load_profile_text(big.read_text(encoding="utf-8"), "big.yaml")


def test_endless_file_is_read_only_up_to_the_limit() -> None:
    [problem] = refusal(Path("/dev/zero"))
    assert "larger than 256 KiB" in problem.message


def test_file_just_under_the_limit_loads(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yaml"
    text = "name: Padded\nsegments:\n" + VALID_SEGMENT
    ok.write_text(text + "#" * (MAX_FILE_BYTES - len(text) - 1) + "\n", encoding="utf-8")
    assert load_profile(ok).name == "Padded"


def test_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: Caf\xe9\nsegments:\n" + VALID_SEGMENT.encode())
    [problem] = refusal(bad)
    assert str(problem) == f"{bad}:1:10: the file is not UTF-8 text (save it as UTF-8)"


def test_every_problem_in_one_pass_ceiling_included() -> None:
    text = ("name: Several\nsegments:\n  - forward: 90s\n    speed: 2.0 mph\n    colour: red\n"
            "  - backward: 60s\n    speed: 2.5 mph\n  - backward: 1 min\n    speed: fast\n")
    with pytest.raises(ProfileError) as caught:
        load_profile_text(text, "x.yaml")
    lines = [str(p) for p in caught.value.problems]
    assert lines == [
        "x.yaml:5:5: segments[0].colour: unknown key 'colour' (known keys: forward, backward, "
        "direction, duration, speed, label, cue, hold_rails)",
        "x.yaml:7:12: segments[1].speed: 2.5 mph is above the backward ceiling of 2.0 mph",
        "x.yaml:9:12: segments[2].speed: 'fast' is not a speed; write a number and a unit, "
        "like '1.5 mph' or '2.4 km/h'",
    ]


def test_own_ceiling_and_total_time_with_other_mistakes() -> None:
    text = ("name: Several\nunits: km/h\nsafety:\n  backward_max: 1.5 mph\nsegments:\n"
            "  - repeat: 2\n    segments:\n      - {backward: 31 min, speed: 2.6}\n"
            "  - {forward: 1 min, speed: 2, cue: [not, text]}\n")
    with pytest.raises(ProfileError) as caught:
        load_profile_text(text, "x.yaml")
    text_out = str(caught.value)
    assert "segments[0].segments[0].speed: 2.6 km/h is above the backward ceiling of 1.5 mph" \
        in text_out
    assert "segments: the profile plans 1 h 2 min of backward walking" in text_out
    assert "segments[1].cue: should be text, not a list" in text_out


def test_tab_indentation_message() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile_text("name: x\nsegments:\n  - forward: 90s\n\t speed: 1 mph\n", "t.yaml")
    assert str(caught.value) == (
        "t.yaml:4:1: YAML does not allow tabs for indentation: use spaces (line 4)")


def test_four_hours_is_the_most() -> None:
    four = "name: Long\nsegments:\n  - repeat: 2\n    segments:\n      - {forward: 2 h, speed: 2}\n"
    assert load_profile_text(four).total_seconds() == 4 * 3600
    with pytest.raises(ProfileError, match="4 h 1 min of walking in all; 4 h is the most"):
        load_profile_text(four + "  - {forward: 1 min, speed: 2}\n")


def test_message_with_newlines_stays_one_line() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile_text('name: x\nlevel: "expert\\nline two"\nsegments:\n' + VALID_SEGMENT)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.slow
def test_cli_validate_hostile_files_one_line_each() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "retrotread.cli", "validate", *map(str, HOSTILE)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(HOSTILE), result.stderr
    assert [line.split(":", 1)[0] for line in lines] == [str(p) for p in HOSTILE]
