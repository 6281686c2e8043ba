"""The profile format: quantities, bundled profiles, validation messages, schema, CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrotread.envelope import (
    BACKWARD_CEILING_KMH,
    FORWARD_CEILING_DEFAULT_KMH,
    RAMP_BACKWARD_KMH_PER_S,
    RAMP_FORWARD_KMH_PER_S,
    Direction,
    MachineLimits,
)
from retrotread.errors import ProfileError
from retrotread.profile import (
    Profile,
    ProfileProblem,
    QuantityError,
    Speed,
    load_profile,
    load_profile_text,
    parse_duration,
    parse_ramp,
    parse_speed,
    profile_json_schema,
)
from retrotread.units import KMH_PER_MPH

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
BROKEN = Path(__file__).resolve().parent / "broken_profiles"
BUNDLED = sorted(PROFILES.glob("*.yaml"))
BROKEN_FILES = sorted(BROKEN.glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../profile.schema.json"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_profile_text(text, "x.yaml")
    return [str(problem) for problem in caught.value.problems]


# --- quantities ------------------------------------------------------------------------------
@pytest.mark.parametrize(("given_", "expected"), [
    ("1.5 mph", Speed(1.5, "mph")),
    ("2.4 km/h", Speed(2.4, "km/h")),
    ("2.4 kmh", Speed(2.4, "km/h")),
    ("2.4kph", Speed(2.4, "km/h")),
    ("2.4 KM/H", Speed(2.4, "km/h")),
    ("3mph", Speed(3.0, "mph")),
    (".5 mph", Speed(0.5, "mph")),
    (1.2, Speed(1.2, None)),
    (2, Speed(2.0, None)),
    ("1.5", Speed(1.5, None)),
])
def test_parse_speed_good(given_: object, expected: Speed) -> None:
    assert parse_speed(given_) == expected


@pytest.mark.parametrize(("given_", "message"), [
    ("2 furlongs", "unknown speed unit 'furlongs'"),
    ("0 mph", "above 0"),
    (-1, "above 0"),
    (0, "above 0"),
    ("fast", "is not a speed"),
    ("", "is not a speed"),
    (True, "should be a number"),
    (float("inf"), "finite"),
    ([1, 2], "not a list"),
    ("1.5 mph mph", "unknown speed unit"),
])
def test_parse_speed_bad(given_: object, message: str) -> None:
    with pytest.raises(QuantityError, match=message):
        parse_speed(given_)


def test_speed_conversion_is_exact() -> None:
    assert Speed(1.5, "mph").kmh() == 1.5 * KMH_PER_MPH
    assert Speed(2.4, "km/h").kmh("mph") == 2.4
    assert Speed(2.4, None).kmh("km/h") == 2.4
    assert Speed(1.0, None).kmh("mph") == KMH_PER_MPH
    assert Speed(2.0, None).describe("mph") == "2.0 mph"
    assert Speed(2.25, "km/h").describe() == "2.25 km/h"


@pytest.mark.parametrize(("given_", "seconds"), [
    ("90s", 90.0),
    (90, 90.0),
    (45.5, 45.5),
    ("90", 90.0),
    ("2m30s", 150.0),
    ("2m 30s", 150.0),
    ("2 min", 120.0),
    ("1.5 min", 90.0),
    ("5 minutes", 300.0),
    ("90 sec", 90.0),
    ("1h", 3600.0),
    ("1h30m", 5400.0),
    ("1 hour", 3600.0),
    ("0s", 0.0),
])
def test_parse_duration_good(given_: object, seconds: float) -> None:
    assert parse_duration(given_) == seconds


@pytest.mark.parametrize(("given_", "message"), [
    ("1:30", r"ambiguous .*write 1m30s"),
    ("0:45", "ambiguous"),
    ("1:00:00", r"write 1h00m00s"),
    ("a while", "is not a duration"),
    ("2m30", "is not a duration"),
    ("30 furlongs", "is not a duration"),
    ("-5s", "negative"),
    (-5, "negative"),
    (None, "should be a number"),
    (False, "should be a number"),
    ({"m": 1}, "not a mapping"),
])
def test_parse_duration_bad(given_: object, message: str) -> None:
    with pytest.raises(QuantityError, match=message):
        parse_duration(given_)


@pytest.mark.parametrize(("given_", "kmh_per_s"), [
    ("0.3 km/h/s", 0.3),
    ("0.3 kmh/s", 0.3),
    ("0.3 km/h per s", 0.3),
    ("0.3", 0.3),
    (0.3, 0.3),
    ("0.2 mph/s", 0.2 * KMH_PER_MPH),
])
def test_parse_ramp_good(given_: object, kmh_per_s: float) -> None:
    assert parse_ramp(given_) == pytest.approx(kmh_per_s, abs=1e-12)


@pytest.mark.parametrize(("given_", "message"), [
    ("quickly", "is not a ramp"),
    (0, "above 0"),
    ("0.3 furlong/s", "unknown speed unit"),
])
def test_parse_ramp_bad(given_: object, message: str) -> None:
    with pytest.raises(QuantityError, match=message):
        parse_ramp(given_)


# --- bundled profiles ------------------------------------------------------------------------
def test_there_are_bundled_profiles() -> None:
    names = {path.stem for path in BUNDLED}
    assert {"first-session", "intervals", "retro-warmup", "retro-cooldown", "knee-friendly",
            "build-up-week1", "build-up-week4"} <= names


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == MODELINE
    assert profile.path == str(path)
    specs = profile.flatten()
    assert [spec.index for spec in specs] == list(range(len(specs)))
    assert profile.total_seconds() < 40 * 60
    assert 0 < profile.backward_seconds() <= 15 * 60
    envelope = profile.envelope(MachineLimits())
    for spec in specs:
        assert spec.speed_kmh <= envelope.backward_ceiling_kmh + 0.01 or (
            spec.direction is Direction.FORWARD)
    assert specs[0].direction is Direction.FORWARD  # every workout starts facing forward


def test_first_session() -> None:
    profile = load_profile(PROFILES / "first-session.yaml")
    assert 120 <= profile.backward_seconds() <= 180
    assert profile.turnaround.ready == "hold"
    backward = [s for s in profile.flatten() if s.direction is Direction.BACKWARD]
    assert len(backward) >= 2, "short bouts"
    for spec in backward:
        assert spec.speed_kmh == pytest.approx(KMH_PER_MPH)  # 1.0 mph
        assert spec.cue is not None and "hold the rails" in spec.cue.lower()
    phases = [s.phase for s in profile.flatten()]
    assert phases[0] == "warmup" and phases[-1] == "cooldown"


def test_build_up_weeks_increase() -> None:
    weeks = [load_profile(PROFILES / f"build-up-week{n}.yaml") for n in range(1, 5)]
    backward = [week.backward_seconds() for week in weeks]
    assert backward == sorted(backward) and len(set(backward)) == 4
    assert 600 <= backward[-1] <= 900


def test_intervals_alternate() -> None:
    profile = load_profile(PROFILES / "intervals.yaml")
    assert 5 * 60 <= profile.backward_seconds() <= 10 * 60
    main = [s for s in profile.flatten() if s.phase == "main"]
    directions = [s.direction for s in main]
    assert all(a is not b for a, b in itertools.pairwise(directions))


def test_knee_friendly_is_stricter() -> None:
    profile = load_profile(PROFILES / "knee-friendly.yaml")
    envelope = profile.envelope(MachineLimits())
    assert profile.units == "km/h"
    assert profile.safety.backward_max_kmh == 2.4
    assert envelope.backward_ceiling_kmh == 2.4 < BACKWARD_CEILING_KMH
    assert envelope.ramp_backward_kmh_per_s == 0.3 < RAMP_BACKWARD_KMH_PER_S
    assert envelope.ramp_forward_kmh_per_s == 0.6 < RAMP_FORWARD_KMH_PER_S


# --- the model -------------------------------------------------------------------------------
SHORTHAND = """
name: S
segments:
  - forward: 2m30s
    speed: 2.5 mph
  - backward: 90s
    speed: 1.0
"""
EXPLICIT = """
name: S
units: mph
segments:
  - direction: forward
    duration: 150
    speed: 2.5
  - direction: backward
    duration: 1.5 min
    speed: 1.0 mph
"""


def test_shorthand_and_explicit_are_equivalent() -> None:
    short, explicit = load_profile_text(SHORTHAND), load_profile_text(EXPLICIT)
    assert short.flatten() == explicit.flatten()
    first, second = short.flatten()
    assert (first.direction, first.duration_s, first.label) == (
        Direction.FORWARD, 150.0, "Forward 2.5 mph")
    assert (second.direction, second.duration_s) == (Direction.BACKWARD, 90.0)


def test_defaults() -> None:
    profile = load_profile_text(SHORTHAND)
    assert profile.path == "<string>"
    assert (profile.name, profile.description, profile.level, profile.units) == (
        "S", "", "beginner", "mph")
    t = profile.turnaround
    assert (t.announce_s, t.ready, t.hold_s, t.countdown_s) == (10.0, "hold", 10.0, 3.0)
    assert profile.safety.backward_max_kmh is None
    envelope = profile.envelope(MachineLimits())
    assert envelope.backward_ceiling_kmh == BACKWARD_CEILING_KMH
    assert envelope.forward_ceiling_kmh == FORWARD_CEILING_DEFAULT_KMH
    assert envelope.ramp_backward_kmh_per_s == RAMP_BACKWARD_KMH_PER_S


def test_repeat_expansion_and_phases() -> None:
    profile = load_profile_text("""
name: R
warmup:
  - {forward: 1 min, speed: 2.0 mph}
segments:
  - repeat: 2
    segments:
      - {backward: 30s, speed: 1.0 mph, cue: Go}
      - repeat: 2
        segments:
          - {forward: 10s, speed: 2 mph}
  - {forward: 20s, speed: 2.2 mph}
cooldown:
  - {forward: 1 min, speed: 1.8 mph}
""")
    specs = profile.flatten()
    assert [(s.phase, s.direction.value, s.duration_s, s.repeat_index) for s in specs] == [
        ("warmup", "forward", 60.0, None),
        ("main", "backward", 30.0, 0),
        ("main", "forward", 10.0, 0),
        ("main", "forward", 10.0, 0),
        ("main", "backward", 30.0, 1),
        ("main", "forward", 10.0, 1),
        ("main", "forward", 10.0, 1),
        ("main", "forward", 20.0, None),
        ("cooldown", "forward", 60.0, None),
    ]
    assert [s.index for s in specs] == list(range(9))
    assert specs[1].cue == "Go"
    assert profile.backward_seconds() == 60.0
    assert profile.total_seconds() == 60 + 2 * (30 + 20) + 20 + 60


def test_speeds_in_kmh_are_exact() -> None:
    profile = load_profile_text("""
name: K
units: kmh
segments:
  - {forward: 1 min, speed: 3.3}
  - {backward: 1 min, speed: 1.25 mph}
  - {forward: 1 min, speed: 2.4kph}
""")
    assert [s.speed_kmh for s in profile.flatten()] == [3.3, 1.25 * KMH_PER_MPH, 2.4]
    assert profile.units == "km/h"
    assert profile.flatten()[0].label == "Forward 3.3 km/h"


def test_two_mph_backward_is_allowed() -> None:
    profile = load_profile_text("name: C\nsegments:\n  - {backward: 1 min, speed: 2.0 mph}\n")
    assert profile.flatten()[0].speed_kmh == 2.0 * KMH_PER_MPH


def test_hold_rails_goes_into_label_and_cue() -> None:
    profile = load_profile_text("""
name: H
segments:
  - {backward: 1 min, speed: 1.0, hold_rails: true, cue: Stand tall}
  - {backward: 1 min, speed: 1.0, hold_rails: true, label: Mine}
""")
    first, second = profile.flatten()
    assert first.cue == "Hold the rails. Stand tall"
    assert "hold the rails" in first.label
    assert (second.label, second.cue) == ("Mine", "Hold the rails.")


def test_envelope_lowest_and_highest_backward_max() -> None:
    low = load_profile_text(
        "name: L\nsafety: {backward_max: 1.0 mph}\nsegments:\n  - {backward: 1 min, speed: 1.0}\n")
    high = load_profile_text(
        "name: L\nsafety: {backward_max: 2.0 mph}\nsegments:\n  - {backward: 1 min, speed: 1.0}\n")
    assert low.envelope(MachineLimits()).backward_ceiling_kmh == pytest.approx(1.61)
    assert high.envelope(MachineLimits()).backward_ceiling_kmh == BACKWARD_CEILING_KMH


def test_profile_is_frozen() -> None:
    profile = load_profile_text(SHORTHAND)
    with pytest.raises(AttributeError):
        profile.name = "other"  # type: ignore[misc]
    assert isinstance(profile, Profile)


def test_yaml_1_2_keeps_text_that_yaml_1_1_would_convert() -> None:
    # YAML 1.1 reads 1:30 as 90 (sexagesimal); ruamel in 1.2 keeps the text, which we refuse.
    (problem,) = problems_of("name: T\nsegments:\n  - {forward: 1:30, speed: 2 mph}\n")
    assert "ambiguous" in problem and "1m30s" in problem


def test_all_problems_are_collected_with_locations() -> None:
    problems = problems_of("""name: Many
level: expert
segments:
  - forward: 2 min
    speed: 2 furlongs
  - backward: 1 min
    sped: 1.0
    speed: 1.0 mph
""")
    assert problems == [
        "x.yaml:2:8: level: 'expert' is not allowed; use 'beginner', 'intermediate' or "
        "'advanced'",
        "x.yaml:5:12: segments[0].speed: unknown speed unit 'furlongs' (use mph or km/h; kmh "
        "and kph work too)",
        "x.yaml:7:5: segments[1].sped: unknown key 'sped' (did you mean 'speed'?)",
    ]


def test_safety_rule_problems_are_collected() -> None:
    problems = problems_of("""name: Rules
segments:
  - {backward: 1 min, speed: 2.5 mph}
  - {forward: 1 min, speed: 4.5 mph}
  - {backward: 1 min, speed: 2.1 mph}
""")
    assert [p.split(": ", 2)[1] for p in problems] == [
        "segments[0].speed", "segments[1].speed", "segments[2].speed"]
    assert problems[0] == (
        "x.yaml:3:30: segments[0].speed: 2.5 mph is above the backward ceiling of 2.0 mph")


def test_shorthand_duration_problem_points_at_the_direction_key() -> None:
    (problem,) = problems_of("name: T\nsegments:\n  - backward: 2s\n    speed: 1.0\n")
    assert problem.startswith("x.yaml:3:15: segments[0].backward: a segment duration of 2 s")


def test_problem_structure() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile_text("name: T\nsegments:\n  - {backward: 1 min, speed: 3 mph}\n", "p.yaml")
    (problem,) = caught.value.problems
    assert isinstance(problem, ProfileProblem)
    assert (problem.path, problem.line, problem.column, problem.field) == (
        "p.yaml", 3, 30, "segments[0].speed")
    assert str(caught.value) == str(problem)


def test_missing_file() -> None:
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(BROKEN / "does-not-exist.yaml")


# --- the broken corpus -----------------------------------------------------------------------
def test_broken_corpus_is_large_enough() -> None:
    assert len(BROKEN_FILES) >= 30


def expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} needs a first line '# expect: ...'"
    return first.removeprefix("# expect: ").strip()


@pytest.mark.parametrize("path", BROKEN_FILES, ids=lambda p: p.stem)
def test_broken_profile_message(path: Path) -> None:
    expected = expectation(path)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:"), text
    first = caught.value.problems[0]
    assert isinstance(first, ProfileProblem)
    assert first.line is not None and first.column is not None
    assert f"{path}:{first.line}:{first.column}: " in text
    assert expected in text, f"expected {expected!r} in:\n{text}"


@pytest.mark.slow
def test_cli_validate() -> None:
    some = [BROKEN / name for name in ("backward-too-fast.yaml", "empty-file.yaml",
                                       "yaml-syntax-error.yaml", "unknown-key-typo.yaml")]
    bad = subprocess.run(
        [sys.executable, "-m", "retrotread.cli", "validate", *map(str, some)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert bad.returncode == 2, bad.stderr
    assert "Traceback" not in bad.stderr
    assert "backward-too-fast.yaml:7:12: segments[1].speed: 2.5 mph is above" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 4
    good = subprocess.run(
        [sys.executable, "-m", "retrotread.cli", "validate", *map(str, BUNDLED)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.count(": ok (") == len(BUNDLED)


# --- JSON Schema -----------------------------------------------------------------------------
def test_schema_structure() -> None:
    schema = profile_json_schema()
    json.dumps(schema)  # serializable
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "segments"}
    assert {"name", "description", "level", "units", "turnaround", "safety", "warmup",
            "segments", "cooldown"} == set(schema["properties"])
    segment = schema["$defs"]["SegmentDoc"]
    assert {"forward", "backward", "direction", "duration", "speed", "label", "cue",
            "hold_rails"} == set(segment["properties"])
    speed = json.dumps(segment["properties"]["speed"])
    assert '"string"' in speed and '"number"' in speed  # "1.5 mph" as people write it
    assert "null" not in json.dumps(schema)  # optional keys are left out, never null


def test_committed_schema_is_current() -> None:
    committed = json.loads((ROOT / "profile.schema.json").read_text(encoding="utf-8"))
    assert committed == profile_json_schema(), (
        "profile.schema.json is stale: run `retrotread schema -o profile.schema.json`")


def _yaml_to_plain(path: Path) -> Any:
    from ruamel.yaml import YAML

    return json.loads(json.dumps(YAML(typ="safe").load(path.read_text(encoding="utf-8"))))


@pytest.mark.parametrize("path", BUNDLED[:3], ids=lambda p: p.stem)
def test_schema_accepts_bundled_profiles(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(_yaml_to_plain(path), profile_json_schema())


def test_schema_rejects_broken_structure() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_yaml_to_plain(BROKEN / "unknown-key-typo.yaml"),
                            profile_json_schema())


def test_bundled_profiles_use_only_schema_keys() -> None:
    """Without jsonschema: every key a bundled profile uses is in the schema."""
    schema = profile_json_schema()
    defs = schema["$defs"]
    segment_keys = set(defs["SegmentDoc"]["properties"]) | set(defs["RepeatDoc"]["properties"])

    def check_items(items: list[dict[str, Any]]) -> None:
        for item in items:
            assert set(item) <= segment_keys
            check_items(item.get("segments", []))

    for path in BUNDLED:
        data = _yaml_to_plain(path)
        assert set(data) <= set(schema["properties"])
        assert set(data.get("turnaround", {})) <= set(defs["TurnaroundDoc"]["properties"])
        assert set(data.get("safety", {})) <= set(defs["SafetyDoc"]["properties"])
        for part in ("warmup", "segments", "cooldown"):
            check_items(data.get(part, []))


# --- property: rendered YAML round-trips -----------------------------------------------------
@st.composite
def segments(draw: st.DrawFn) -> list[tuple[str, int, float, str]]:
    """(direction, seconds, speed value, speed unit or '') for a valid profile."""
    count = draw(st.integers(1, 6))
    out = []
    for _ in range(count):
        direction = draw(st.sampled_from(["forward", "backward"]))
        seconds = draw(st.integers(5, 600))
        unit = draw(st.sampled_from(["mph", "km/h", "kmh", ""]))
        top_mph = 2.0 if direction == "backward" else 4.0
        top = top_mph if unit in ("mph", "") else round(top_mph * KMH_PER_MPH - 0.005, 2)
        tenths = draw(st.integers(1, int(top * 10)))
        out.append((direction, seconds, tenths / 10, unit))
    return out


def _render_duration(seconds: int, style: int) -> str:
    minutes, secs = divmod(seconds, 60)
    if style == 1:
        return f"{seconds}s"
    if style == 2 and minutes:
        return f"{minutes}m{secs}s"
    if style == 3 and not secs:
        return f"{minutes} min"
    return str(seconds)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments(), st.lists(st.integers(0, 3), min_size=6, max_size=6), st.booleans())
def test_rendered_segments_round_trip(
    items: list[tuple[str, int, float, str]], styles: list[int], explicit: bool,
) -> None:
    lines = ["name: Generated", "units: mph", "segments:"]
    for (direction, seconds, value, unit), style in zip(items, styles, strict=False):
        duration = _render_duration(seconds, style)
        speed = f"{value} {unit}".strip()
        if explicit:
            lines += [f"  - direction: {direction}", f"    duration: {duration}"]
        else:
            lines += [f"  - {direction}: {duration}"]
        lines += [f"    speed: {speed}"]
    profile = load_profile_text("\n".join(lines) + "\n")
    specs = profile.flatten()
    assert [(s.direction.value, s.duration_s) for s in specs] == [
        (direction, float(seconds)) for direction, seconds, _, _ in items]
    assert [s.speed_kmh for s in specs] == [
        value * KMH_PER_MPH if unit in ("mph", "") else value for _, _, value, unit in items]


def test_readme_example_is_a_valid_profile() -> None:
    readme = (PROFILES / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert example.startswith(MODELINE)
    profile = load_profile_text(example, "README.md")
    assert profile.safety.backward_max_kmh == pytest.approx(1.5 * KMH_PER_MPH)
    assert len(profile.flatten()) == 1 + 2 + 3 * 2 + 1
