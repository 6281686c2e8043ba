"""`retrotread next`: the progression rules over a simulated month, and end to end."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
from pathlib import Path

import pytest

from retrotread.cli import main
from retrotread.envelope import BACKWARD_CEILING_KMH, Direction, MachineLimits
from retrotread.history import HistoryEntry, load_history
from retrotread.plan import compile_plan
from retrotread.profile import Profile, load_profile, load_profile_text
from retrotread.progression import (
    ProgressionRules,
    RulesError,
    decide,
    load_rules,
    next_profile,
    profile_yaml,
    rules_as_dict,
    rules_from_dict,
    split_bouts,
)
from retrotread.units import kmh_to_mph, mph_to_kmh
from tests.test_history import real_logs, record_session_sync, retime  # noqa: F401

RULES_FILE = Path(__file__).parent.parent / "profiles" / "rules" / "progression.yaml"
START = datetime.date(2025, 3, 3)  # a Monday
RAMP_OVERHEAD_S = 6.0  # per backward bout, what the plan adds for ramps


def as_profile(profile: dict[str, object]) -> Profile:
    """The generated profile must load like any hand-written one."""
    return load_profile_text(profile_yaml(profile), "<next>")


def perform(profile: Profile, day: datetime.date, *, outcome: str = "completed",
            share: float = 1.0, watchdog: bool = False, heart_rate: bool = False
            ) -> HistoryEntry:
    """A synthetic history entry for doing ``profile`` on ``day``."""
    backward = [s for s in profile.flatten() if s.direction is Direction.BACKWARD]
    planned = profile.backward_seconds() + RAMP_OVERHEAD_S * len(backward)
    started = backward if outcome == "completed" else backward[: max(1, len(backward) // 2)]
    return HistoryEntry(
        id=f"{day:%Y%m%d}-080000-next",
        path=None,
        started=datetime.datetime.combine(day, datetime.time(8), tzinfo=datetime.UTC),
        profile_name=profile.name,
        outcome=outcome,
        backward_s=planned * share,
        planned_backward_s=planned,
        prescribed_backward_s=sum(s.duration_s for s in started),
        backward_speed_kmh=max(s.speed_kmh for s in backward),
        watchdog_stop=watchdog,
        heart_rate_limited=heart_rate,
    )


def backward_minutes(profile: Profile) -> float:
    return profile.backward_seconds() / 60


def backward_mph(profile: Profile) -> float:
    return round(max(kmh_to_mph(s.speed_kmh) for s in profile.flatten()
                     if s.direction is Direction.BACKWARD), 2)


def check_safe(profile: Profile, rules: ProgressionRules) -> None:
    plan = compile_plan(profile, profile.envelope(MachineLimits()))
    for step in plan.steps:
        if step.direction is Direction.BACKWARD:
            assert max(step.start_kmh, step.end_kmh) <= BACKWARD_CEILING_KMH
    for spec in profile.flatten():
        if spec.direction is Direction.BACKWARD:
            assert spec.duration_s <= rules.bout_max_s
            assert spec.speed_kmh <= mph_to_kmh(rules.backward_speed_max_mph) + 1e-6


# ------------------------------------------------------------------ a simulated month


def test_a_month_of_sessions() -> None:
    """Mon/Wed/Fri for five weeks, with setbacks, then a 16-day break."""
    rules = ProgressionRules()
    days = [START + datetime.timedelta(days=d)
            for d in (0, 2, 4, 7, 9, 11, 14, 16, 18, 21, 23, 25, 28, 44)]
    events: dict[int, dict[str, object]] = {
        4: {"outcome": "stopped_by_user", "share": 0.5},        # cut short
        6: {"outcome": "watchdog", "share": 0.3, "watchdog": True},
        7: {"heart_rate": True},                                # completed, but HR limit
    }
    history: list[HistoryEntry] = []
    planned: list[float] = []
    actions: list[str] = []
    for i, day in enumerate(days):
        actions.append(decide(history, rules, day).action)
        profile = as_profile(next_profile(history, rules, day))
        check_safe(profile, rules)
        planned.append(backward_minutes(profile))
        assert backward_mph(profile) == 1.0  # below the goal, the speed stays put
        history.append(perform(profile, day, **events.get(i, {})))  # type: ignore[arg-type]
    assert planned == [2, 3, 4, 5, 6, 6, 7, 7, 6, 7, 8, 9, 10, 8]
    assert actions == ["start", "progress", "progress", "progress", "progress", "hold",
                       "progress", "hold", "step_back", "progress", "progress", "progress",
                       "progress", "gap"]


def test_up_to_the_goal_then_a_little_faster_never_past_the_max() -> None:
    rules = ProgressionRules()
    history: list[HistoryEntry] = []
    minutes, speeds = [], []
    day = START
    for _ in range(25):
        profile = as_profile(next_profile(history, rules, day))
        check_safe(profile, rules)
        minutes.append(backward_minutes(profile))
        speeds.append(backward_mph(profile))
        history.append(perform(profile, day))
        day += datetime.timedelta(days=2)
    assert minutes[:14] == list(range(2, 16))
    assert minutes[14:] == [15] * 11  # the goal: 15 minutes, no more
    assert max(minutes) == 15
    assert speeds[:14] == [1.0] * 14
    assert speeds[14:20] == [1.1, 1.2, 1.3, 1.4, 1.5, 1.5]
    assert max(speeds) == 1.5
    assert minutes == sorted(minutes)  # consistency: never a jump back without a reason


def test_order_of_the_history_does_not_matter() -> None:
    rules = ProgressionRules()
    first = as_profile(next_profile([], rules, START))
    entries = [perform(first, START), perform(first, START + datetime.timedelta(days=2),
                                             outcome="stopped_by_user", share=0.4)]
    day = START + datetime.timedelta(days=4)
    assert decide(entries, rules, day) == decide(list(reversed(entries)), rules, day)
    assert decide(entries, rules, day).action == "hold"


def test_a_completed_session_with_too_little_backward_time_counts_as_cut_short() -> None:
    rules = ProgressionRules()
    profile = as_profile(next_profile([], rules, START))
    skipped = perform(profile, START, share=0.7)  # completed, but bouts were skipped
    decision = decide([skipped], rules, START + datetime.timedelta(days=2))
    assert decision.action == "hold"
    assert "cut short" in decision.reason


def test_speed_steps_back_after_a_long_gap_but_not_below_the_start() -> None:
    rules = ProgressionRules()
    entry = dataclasses.replace(
        perform(as_profile(next_profile([], rules, START)), START),
        backward_speed_kmh=mph_to_kmh(1.3), prescribed_backward_s=900.0)
    later = decide([entry], rules, START + datetime.timedelta(days=30))
    assert later.action == "gap"
    assert later.backward_s == 900 - 120
    assert later.backward_speed_mph == pytest.approx(1.2)
    slow = dataclasses.replace(entry, backward_speed_kmh=mph_to_kmh(1.0))
    assert decide([slow], rules, START + datetime.timedelta(days=30)).backward_speed_mph == 1.0


def test_a_short_history_never_goes_below_the_minimum() -> None:
    rules = ProgressionRules()
    profile = as_profile(next_profile([], rules, START))
    bad = [perform(profile, START + datetime.timedelta(days=d), outcome="watchdog",
                   watchdog=True) for d in (0, 1, 2, 3)]
    decision = decide(bad, rules, START + datetime.timedelta(days=5))
    assert decision.action == "step_back"
    assert decision.backward_s == rules.min_backward_s
    check_safe(as_profile(next_profile(bad, rules, START + datetime.timedelta(days=5))), rules)


def test_bouts() -> None:
    rules = ProgressionRules()
    assert split_bouts(120, rules) == [60, 60]
    assert split_bouts(420, rules) == [140, 140, 140]
    assert split_bouts(900, rules) == [180] * 5
    for total in range(60, 3601, 30):
        bouts = split_bouts(total, rules)
        assert sum(bouts) == total
        assert all(5 <= b <= rules.bout_max_s for b in bouts), (total, bouts)


# ------------------------------------------------------------------ the rules file


def test_the_rules_file_is_the_built_in_default() -> None:
    assert load_rules(RULES_FILE) == ProgressionRules()
    assert load_rules(None) == ProgressionRules()
    assert rules_from_dict(rules_as_dict(ProgressionRules())) == ProgressionRules()


def test_rules_that_leave_the_envelope_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="above the backward ceiling"):
        rules_from_dict({"backward_speed": {"max": "2.1 mph"}})
    with pytest.raises(RulesError, match="above the backward ceiling"):
        rules_from_dict({"backward_speed": {"max": "3.3 km/h"}})
    assert rules_from_dict({"backward_speed": {"max": "2.0 mph"}}).backward_speed_max_mph == 2.0
    with pytest.raises(RulesError, match="unknown key 'stepp'"):
        rules_from_dict({"stepp": "1 min"})
    with pytest.raises(RulesError, match="goal"):
        rules_from_dict({"start_backward": "20 min"})
    with pytest.raises(RulesError, match="step"):
        rules_from_dict({"step": "1:30"})
    bad = tmp_path / "rules.yaml"
    bad.write_text("goal_backward: 90 min\n")
    with pytest.raises(RulesError, match=r"rules\.yaml"):
        load_rules(bad)


def test_faster_rules_still_stay_under_two_mph() -> None:
    rules = rules_from_dict({"backward_speed": {"start": "1.8 mph", "step": "0.2 mph",
                                                "max": "2.0 mph"},
                             "goal_backward": "3 min", "start_backward": "3 min"})
    history: list[HistoryEntry] = []
    day = START
    for _ in range(5):
        profile = as_profile(next_profile(history, rules, day))
        check_safe(profile, rules)
        assert backward_mph(profile) <= 2.0
        history.append(perform(profile, day))
        day += datetime.timedelta(days=2)
    assert backward_mph(profile) == 2.0


# ------------------------------------------------------------------ end to end


def test_next_from_real_simulator_logs(real_logs: dict[str, Path],  # noqa: F811
                                       tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    shutil.copy(real_logs["first"], folder)  # first-session.yaml: 2.5 min backward, done
    out = tmp_path / "next.yaml"
    assert main(["next", "--dir", str(folder), "-o", str(out), "--today", "2025-03-03",
                 "--rules", str(RULES_FILE), "--include-simulated"]) == 0
    assert "went well" in capsys.readouterr().err
    first_next = load_profile(out)
    assert first_next.backward_seconds() == 210  # 2.5 + 1 min
    assert first_next.name == "Next session: 3.5 min backward"

    # Walk it on the simulator; the next one adds another minute.
    log = folder / "20250305-080000-next.jsonl"
    record_session_sync(out, log)
    retime(log, datetime.datetime(2025, 3, 5, 8, 0, tzinfo=datetime.UTC))
    (_, walked) = load_history(folder)
    assert walked.outcome == "completed"
    assert walked.prescribed_backward_s == 210
    assert walked.backward_s == pytest.approx(210, abs=20)
    assert main(["next", "--dir", str(folder), "-o", str(out), "--today", "2025-03-07",
                 "--include-simulated"]) == 0
    assert load_profile(out).backward_seconds() == 270

    # A session stopped by the watchdog: hold.
    shutil.copy(real_logs["fault"], folder / "20250308-080000-first-session.jsonl")
    retime(folder / "20250308-080000-first-session.jsonl",
           datetime.datetime(2025, 3, 8, 8, 0, tzinfo=datetime.UTC))
    assert main(["next", "--dir", str(folder), "--today", "2025-03-09",
                 "--include-simulated"]) == 0
    captured = capsys.readouterr()
    assert "hold" in captured.err and "watchdog" in captured.err
    held = load_profile_text(captured.out, "<stdout>")
    assert held.backward_seconds() == 150  # what first-session.yaml asked for


def test_next_with_no_history_writes_a_first_session(tmp_path: Path) -> None:
    out = tmp_path / "first.yaml"
    assert main(["next", "--dir", str(tmp_path / "none"), "-o", str(out)]) == 0
    profile = load_profile(out)
    assert profile.backward_seconds() == 120
    assert all(s.speed_kmh <= mph_to_kmh(1.0) + 1e-6 for s in profile.flatten()
               if s.direction is Direction.BACKWARD)
