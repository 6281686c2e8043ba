"""`retrotread plan` notes only speed changes a person would notice, as information."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrotread.cli import main
from retrotread.envelope import MachineLimits
from retrotread.plan import compile_plan
from retrotread.profile import load_profile
from retrotread.resources import bundled_profiles
from retrotread.runner import build_envelope
from retrotread.sim.presets import PRESETS


@pytest.mark.parametrize("name", sorted(bundled_profiles()))
@pytest.mark.parametrize("preset", ["generic", "coarse"])
def test_bundled_profiles_have_no_rounding_notes(name: str, preset: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """3.22 km/h run as 3.20 on a 0.1 km/h machine is rounding, not news."""
    assert main(["plan", name, "--device", f"sim:{preset}"]) == 0
    out = capsys.readouterr().out
    assert "note:" not in out
    assert "outside the envelope" not in out
    # ...although the plan does round: the speeds are on the machine's step.
    limits = PRESETS[preset]
    profile = load_profile(bundled_profiles()[name])
    plan = compile_plan(profile, build_envelope(
        profile, MachineLimits(limits.min_kmh, limits.max_kmh, limits.increment_kmh), None))
    step = round(limits.increment_kmh * 100)
    assert all(round(s.end_kmh * 100) % step == 0 for s in plan.steps if s.kind == "hold")


def test_a_change_the_person_would_notice_is_noted_once_as_information(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "intervals", "--backward-max", "1.0", "--units", "km/h"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("note:")]
    assert notes == ["note: Backward interval: runs at 1.60 km/h (0.99 mph) instead of "
                     "1.93 km/h (1.20 mph) (the backward limit for this run)"]


def test_a_speed_below_the_machine_floor_is_noted(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text("name: Slow\nsegments:\n  - forward: 1 min\n    speed: 2.0 mph\n"
                    "  - backward: 1 min\n    speed: 0.2 mph\n", encoding="utf-8")
    assert main(["plan", str(path), "--device", "sim:coarse"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    assert "runs at 1.00 km/h" in notes[0] and "the machine's lowest speed" in notes[0]
    assert "outside" not in notes[0]
