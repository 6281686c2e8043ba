"""The next session's profile from the history (``retrotread next``).

The guidance: start with 2-3 minutes of backward walking, build up gradually towards
10-15 minutes, and value consistency over intensity. The rules (``ProgressionRules``,
written out in ``profiles/rules/progression.yaml``) turn that into a decision per session:

- no history: the starting amount;
- a long gap since the last session: step back;
- the last session was cut short, had a watchdog stop or a heart-rate limit: hold (the
  same amount again); if that keeps happening, step back;
- otherwise: add one step, up to the goal. At the goal, optionally raise the backward
  speed a little per session, up to a maximum that is never above 2.0 mph.

:func:`decide` is a pure function of the history, the rules and the date; :func:`next_profile`
turns its decision into a profile (a dict that ``load_profile`` accepts).
"""

from __future__ import annotations

import argparse
import datetime
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from retrotread.envelope import BACKWARD_CEILING_MPH, FORWARD_CEILING_DEFAULT_MPH
from retrotread.errors import ProfileError, RetrotreadError, RulesError
from retrotread.formatting import minutes_text
from retrotread.units import kmh_to_mph

MIN_BACKWARD_SPEED_MPH = 0.5
MIN_SEGMENT_S = 5.0


class EntryLike(Protocol):
    """What the progression needs of a past session (``history.HistoryEntry`` has it)."""

    @property
    def started(self) -> datetime.datetime | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def backward_s(self) -> float: ...
    @property
    def planned_backward_s(self) -> float | None: ...
    @property
    def prescribed_backward_s(self) -> float | None: ...
    @property
    def backward_speed_kmh(self) -> float | None: ...
    @property
    def watchdog_stop(self) -> bool: ...
    @property
    def heart_rate_limited(self) -> bool: ...


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class ProgressionRules:
    """The rules, in seconds and mph. Defaults follow the guidance (see the module doc)."""

    start_backward_s: float = 120.0
    goal_backward_s: float = 900.0
    step_s: float = 60.0
    step_back_s: float = 120.0
    grid_s: float = 30.0
    min_backward_s: float = 60.0
    long_gap_days: int = 14
    cut_short_fraction: float = 0.9
    holds_before_step_back: int = 2
    bout_max_s: float = 180.0
    bouts_min: int = 2
    backward_speed_start_mph: float = 1.0
    backward_speed_step_mph: float = 0.1
    backward_speed_max_mph: float = 1.5
    recovery_s: float = 90.0
    recovery_speed_mph: float = 2.0
    warmup_s: float = 180.0
    warmup_speed_mph: float = 2.0
    cooldown_s: float = 180.0
    cooldown_speed_mph: float = 1.8
    hold_rails_until_s: float = 300.0
    """Ask to hold the rails while the backward total is below this."""

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.backward_speed_start_mph <= self.backward_speed_max_mph:
            problems.append("backward speed: start must be above 0 and at most max")
        if self.backward_speed_max_mph > BACKWARD_CEILING_MPH + 1e-9:
            problems.append(f"backward speed: max {self.backward_speed_max_mph} mph is above "
                            f"the backward ceiling of {BACKWARD_CEILING_MPH} mph")
        if self.backward_speed_start_mph < MIN_BACKWARD_SPEED_MPH:
            problems.append(f"backward speed: start must be at least {MIN_BACKWARD_SPEED_MPH} mph")
        if self.backward_speed_step_mph < 0 or self.backward_speed_step_mph > 0.2 + 1e-9:
            problems.append("backward speed: step must be between 0 and 0.2 mph")
        for name in ("recovery_speed_mph", "warmup_speed_mph", "cooldown_speed_mph"):
            value = getattr(self, name)
            if not 0 < value <= FORWARD_CEILING_DEFAULT_MPH:
                problems.append(f"{name}: {value} mph must be above 0 and at most "
                                f"{FORWARD_CEILING_DEFAULT_MPH} mph")
        if not MIN_SEGMENT_S <= self.grid_s <= 300:
            problems.append("grid: between 5 s and 5 min")
        if not 0 < self.min_backward_s <= self.start_backward_s <= self.goal_backward_s:
            problems.append("backward time: need 0 < min <= start <= goal")
        if self.goal_backward_s > 3600:
            problems.append("backward time: goal at most 60 min")
        if not 0 < self.step_s <= 300:
            problems.append("step: above 0 and at most 5 min")
        if self.step_back_s < 0:
            problems.append("step_back: not negative")
        if self.long_gap_days < 1:
            problems.append("long_gap: at least 1 day")
        if not 0 < self.cut_short_fraction <= 1:
            problems.append("cut_short_fraction: between 0 and 1")
        if self.holds_before_step_back < 1:
            problems.append("holds_before_step_back: at least 1")
        if self.bout_max_s < 30 or self.bouts_min < 1:
            problems.append("bouts: bout_max at least 30 s, bouts_min at least 1")
        for name in ("recovery_s", "warmup_s", "cooldown_s"):
            if getattr(self, name) != 0 and getattr(self, name) < MIN_SEGMENT_S:
                problems.append(f"{name}: 0 (none) or at least {MIN_SEGMENT_S:.0f} s")
        if problems:
            raise RulesError("progression rules: " + "; ".join(problems))


# YAML key -> (field, kind). Durations take "90s", "1 min"...; speeds "1.0 mph", "1.6 km/h".
_KEYS: dict[str, tuple[str, str]] = {
    "start_backward": ("start_backward_s", "duration"),
    "goal_backward": ("goal_backward_s", "duration"),
    "step": ("step_s", "duration"),
    "step_back": ("step_back_s", "duration"),
    "round_to": ("grid_s", "duration"),
    "min_backward": ("min_backward_s", "duration"),
    "long_gap_days": ("long_gap_days", "int"),
    "cut_short_below": ("cut_short_fraction", "fraction"),
    "holds_before_step_back": ("holds_before_step_back", "int"),
    "bout_max": ("bout_max_s", "duration"),
    "bouts_min": ("bouts_min", "int"),
    "hold_rails_below": ("hold_rails_until_s", "duration"),
}
_SPEED_KEYS = {"start": "backward_speed_start_mph", "step": "backward_speed_step_mph",
               "max": "backward_speed_max_mph"}
_PART_KEYS = {"recovery": ("recovery_s", "recovery_speed_mph"),
              "warmup": ("warmup_s", "warmup_speed_mph"),
              "cooldown": ("cooldown_s", "cooldown_speed_mph")}


def _to_mph(value: Any, where: str) -> float:
    from retrotread.profile import parse_speed  # lazy: keeps `retrotread --help` quick

    try:
        return round(kmh_to_mph(parse_speed(value).kmh("mph")), 4)
    except (ValueError, TypeError) as exc:
        raise RulesError(f"progression rules: {where}: {exc}") from None


def _to_seconds(value: Any, where: str) -> float:
    from retrotread.profile import parse_duration

    try:
        return float(parse_duration(value))
    except (ValueError, TypeError) as exc:
        raise RulesError(f"progression rules: {where}: {exc}") from None


def rules_from_dict(data: dict[str, Any]) -> ProgressionRules:
    """Rules from their YAML form (see ``profiles/rules/progression.yaml``)."""
    if not isinstance(data, dict):
        raise RulesError("progression rules: expected a mapping of keys")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _KEYS:
            name, kind = _KEYS[key]
            if kind == "duration":
                values[name] = _to_seconds(value, key)
            elif kind == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise RulesError(f"progression rules: {key}: a whole number, not {value!r}")
                values[name] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise RulesError(f"progression rules: {key}: a number, not {value!r}")
                values[name] = float(value)
        elif key == "backward_speed":
            if not isinstance(value, dict):
                raise RulesError("progression rules: backward_speed: a mapping (start, step, max)")
            for sub, item in value.items():
                if sub not in _SPEED_KEYS:
                    raise RulesError(f"progression rules: backward_speed.{sub}: unknown key")
                values[_SPEED_KEYS[sub]] = _to_mph(item, f"backward_speed.{sub}")
        elif key in _PART_KEYS:
            if not isinstance(value, dict) or set(value) - {"duration", "speed"}:
                raise RulesError(f"progression rules: {key}: a mapping with duration and speed")
            duration_field, speed_field = _PART_KEYS[key]
            if "duration" in value:
                values[duration_field] = (0.0 if value["duration"] in (0, "0")
                                          else _to_seconds(value["duration"], f"{key}.duration"))
            if "speed" in value:
                values[speed_field] = _to_mph(value["speed"], f"{key}.speed")
        elif key in ("name", "description"):
            continue
        else:
            known = ", ".join(sorted([*_KEYS, "backward_speed", *_PART_KEYS]))
            raise RulesError(f"progression rules: unknown key {key!r} (known: {known})")
    return ProgressionRules(**values)


def load_rules(path: str | Path | None) -> ProgressionRules:
    """Rules from a YAML file, or the bundled ``profiles/rules/progression.yaml`` (package
    data, the same values as :class:`ProgressionRules`' defaults) when ``path`` is None."""
    if path is None:
        from retrotread.resources import RULES, bundled_path

        path = bundled_path(*RULES)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"cannot read the progression rules {path}: {exc}") from None
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(text) or {}
    try:
        return rules_from_dict(data)
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- deciding
@dataclass(frozen=True)
class Decision:
    action: str  # start | progress | at_goal | hold | step_back | gap
    backward_s: float
    backward_speed_mph: float
    reason: str


def _grid_down(seconds: float, grid: float) -> float:
    return math.floor(seconds / grid + 1e-9) * grid


def _grid_nearest(seconds: float, grid: float) -> float:
    return math.floor(seconds / grid + 0.5) * grid


def session_level(entry: EntryLike, rules: ProgressionRules) -> float:
    """The backward time a past session prescribed (what it asked of the person)."""
    if entry.outcome == "completed" and entry.prescribed_backward_s:
        return _grid_nearest(entry.prescribed_backward_s, rules.grid_s)
    from_profile = getattr(entry, "profile_backward_s", None)
    if from_profile:
        return _grid_nearest(from_profile, rules.grid_s)
    if entry.planned_backward_s:
        # The plan's backward time includes a few seconds of ramps per bout: round down.
        return _grid_down(entry.planned_backward_s, rules.grid_s)
    return _grid_down(max(entry.prescribed_backward_s or 0.0, entry.backward_s), rules.grid_s)


def setbacks(entry: EntryLike, rules: ProgressionRules) -> list[str]:
    """Why a session should not be built upon (empty: it went well)."""
    why = []
    if entry.heart_rate_limited:
        why.append("the heart-rate limit acted")
    if entry.watchdog_stop:
        why.append("the watchdog stopped the belt")
    planned = entry.planned_backward_s
    if entry.outcome != "completed":
        why.append(f"it was cut short ({entry.outcome.replace('_', ' ')})")
    elif planned and entry.backward_s < rules.cut_short_fraction * planned:
        why.append(f"it was cut short ({minutes_text(entry.backward_s)} of "
                   f"{minutes_text(planned)} backward)")
    return why


def _speed_of(entry: EntryLike, rules: ProgressionRules) -> float:
    if entry.backward_speed_kmh is None:
        return rules.backward_speed_start_mph
    mph = round(kmh_to_mph(entry.backward_speed_kmh), 1)
    return min(max(mph, rules.backward_speed_start_mph), rules.backward_speed_max_mph)


def _minutes(seconds: float) -> str:
    """A planned amount, as short as exact: ``5 min``, ``7.5 min``."""
    return minutes_text(seconds, digits=None)


def decide(history: Sequence[EntryLike], rules: ProgressionRules,
           today: datetime.date) -> Decision:
    """What the next session should ask for, from the past sessions (any order)."""
    dated = sorted((e for e in history if e.started is not None),
                   key=lambda e: e.started)  # type: ignore[arg-type, return-value]
    if not dated:
        return Decision("start", rules.start_backward_s, rules.backward_speed_start_mph,
                        f"first session: start with {_minutes(rules.start_backward_s)} backward")
    last = dated[-1]
    assert last.started is not None
    level = max(rules.min_backward_s, min(rules.goal_backward_s, session_level(last, rules)))
    speed = _speed_of(last, rules)
    gap = (today - last.started.astimezone().date()).days
    if gap > rules.long_gap_days:
        backward = max(rules.min_backward_s, level - rules.step_back_s)
        slower = max(rules.backward_speed_start_mph,
                     round(speed - rules.backward_speed_step_mph, 1))
        return Decision("gap", backward, slower,
                        f"{gap} days since the last session: step back to "
                        f"{_minutes(backward)} backward")
    why = setbacks(last, rules)
    if why:
        held = 1
        for earlier in reversed(dated[:-1]):
            if not setbacks(earlier, rules):
                break
            held += 1
        if held >= rules.holds_before_step_back:
            backward = max(rules.min_backward_s, level - rules.step_s)
            slower = max(rules.backward_speed_start_mph,
                         round(speed - rules.backward_speed_step_mph, 1))
            return Decision("step_back", backward, slower,
                            f"{held} sessions in a row did not go to plan (last: "
                            f"{'; '.join(why)}): step back to {_minutes(backward)} backward")
        return Decision("hold", level, speed,
                        f"hold at {_minutes(level)} backward: the last session: {'; '.join(why)}")
    if level < rules.goal_backward_s:
        backward = min(rules.goal_backward_s, level + rules.step_s)
        return Decision("progress", backward, speed,
                        f"the last session went well: {_minutes(level)} -> "
                        f"{_minutes(backward)} backward")
    faster = min(rules.backward_speed_max_mph, round(speed + rules.backward_speed_step_mph, 1))
    reason = f"at the goal of {_minutes(rules.goal_backward_s)} backward"
    if faster > speed:
        reason += f": backward speed {speed:.1f} -> {faster:.1f} mph"
    else:
        reason += ": keep it up (consistency over intensity)"
    return Decision("at_goal", rules.goal_backward_s, faster, reason)


# --------------------------------------------------------------------------- the profile
def _duration_text(seconds: float) -> str:
    seconds = round(seconds)
    minutes, rest = divmod(seconds, 60)
    if minutes and rest:
        return f"{minutes}m{rest}s"
    return f"{minutes} min" if minutes else f"{rest}s"


def split_bouts(total_s: float, rules: ProgressionRules) -> list[float]:
    """Backward bouts adding up to ``total_s``: at least ``bouts_min``, none longer than
    ``bout_max``, in whole 5 s as far as the total allows, the longer ones first."""
    count = max(rules.bouts_min, math.ceil(total_s / rules.bout_max_s - 1e-9))
    count = max(1, min(count, int(total_s // 30) or 1))
    base = math.floor(total_s / count / MIN_SEGMENT_S) * MIN_SEGMENT_S
    bouts = [base] * count
    remainder = total_s - base * count  # less than 5 s per bout
    for i in range(int(remainder // MIN_SEGMENT_S)):
        bouts[i] += MIN_SEGMENT_S
    bouts[-1] += remainder % MIN_SEGMENT_S
    return bouts


def profile_for(decision: Decision, rules: ProgressionRules, today: datetime.date
                ) -> dict[str, Any]:
    """The profile (a plain dict) for a decision."""
    bouts = split_bouts(decision.backward_s, rules)
    speed = f"{decision.backward_speed_mph:.1f} mph"
    hold_rails = decision.backward_s < rules.hold_rails_until_s
    segments: list[dict[str, Any]] = []
    for i, bout in enumerate(bouts, start=1):
        segment: dict[str, Any] = {"backward": _duration_text(bout), "speed": speed,
                                   "label": f"Backward {i} of {len(bouts)}"}
        if hold_rails:
            segment["hold_rails"] = True
        if i == 1:
            segment["cue"] = "Short steps, land on the ball of the foot, stand tall."
        segments.append(segment)
        if i < len(bouts) and rules.recovery_s:
            segments.append({"forward": _duration_text(rules.recovery_s),
                             "speed": f"{rules.recovery_speed_mph:.1f} mph",
                             "label": "Forward recovery"})
    profile: dict[str, Any] = {
        "name": f"Next session: {_minutes(decision.backward_s)} backward",
        "description": f"Written by retrotread next on {today.isoformat()}: {decision.reason}.",
        "level": "beginner" if decision.backward_s < 600 else "intermediate",
        "units": "mph",
    }
    if rules.warmup_s:
        profile["warmup"] = [{"forward": _duration_text(rules.warmup_s),
                              "speed": f"{rules.warmup_speed_mph:.1f} mph", "label": "Warm-up",
                              "cue": "Easy pace. Clip the safety key on and keep it on."}]
    profile["segments"] = segments
    if rules.cooldown_s:
        profile["cooldown"] = [{"forward": _duration_text(rules.cooldown_s),
                                "speed": f"{rules.cooldown_speed_mph:.1f} mph",
                                "label": "Cool-down"}]
    return profile


def next_profile(history: Sequence[EntryLike], rules: ProgressionRules,
                 today: datetime.date) -> dict[str, Any]:
    """The next session's profile from the history (a dict ``load_profile`` accepts)."""
    return profile_for(decide(history, rules, today), rules, today)


def profile_yaml(profile: dict[str, Any]) -> str:
    """The profile as YAML text."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 100
    buffer = io.StringIO()
    yaml.dump(profile, buffer)
    return ("# Written by `retrotread next`; edit it freely (see profiles/README.md).\n"
            + buffer.getvalue())


def rules_as_dict(rules: ProgressionRules) -> dict[str, Any]:
    """The rules in their YAML form (the inverse of :func:`rules_from_dict`)."""
    def dur(seconds: float) -> str:
        return _duration_text(seconds)

    out: dict[str, Any] = {}
    for key, (name, kind) in _KEYS.items():
        value = getattr(rules, name)
        out[key] = dur(value) if kind == "duration" else value
    out["backward_speed"] = {sub: f"{getattr(rules, name):.1f} mph"
                             for sub, name in _SPEED_KEYS.items()}
    for key, (duration_field, speed_field) in _PART_KEYS.items():
        out[key] = {"duration": dur(getattr(rules, duration_field)),
                    "speed": f"{getattr(rules, speed_field):.1f} mph"}
    return out


assert {f.name for f in fields(ProgressionRules)} == (
    {name for name, _ in _KEYS.values()} | set(_SPEED_KEYS.values())
    | {n for pair in _PART_KEYS.values() for n in pair}), "every rule has a YAML key"


# --------------------------------------------------------------------------- CLI
def add_next_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, default=None, metavar="DIR",
                   help="log directory (default: $RETROTREAD_LOG_DIR or the user data dir)")
    p.add_argument("--rules", type=Path, default=None, metavar="FILE",
                   help="progression rules (YAML; default: the bundled "
                   "profiles/rules/progression.yaml)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                   help="write the profile here (default: standard output)")
    p.add_argument("--today", type=datetime.date.fromisoformat, default=None,
                   metavar="YYYY-MM-DD", help="plan as if today were this date")
    p.add_argument("--include-simulated", action="store_true",
                   help="count sessions on the simulator too (by default only sessions on a "
                   "real treadmill shape the next one)")


def sessions_that_count(history: Sequence[Any], *, include_simulated: bool = False
                        ) -> tuple[list[Any], list[str]]:
    """The past sessions the progression builds on, and what was left out, in words: a
    session still running (it has not ended yet), and simulated sessions unless
    ``include_simulated`` (a demo on the simulator is not training)."""
    running = [e for e in history if getattr(e, "running", False)]
    simulated = [e for e in history if not getattr(e, "running", False)
                 and getattr(e, "simulated", None) is True]
    kept = [e for e in history if e not in running
            and (include_simulated or e not in simulated)]
    left_out = []
    if running:
        left_out.append(f"{len(running)} session(s) still running ("
                        + ", ".join(e.id for e in running) + ")")
    if simulated and not include_simulated:
        left_out.append(f"{len(simulated)} simulated session(s) (--include-simulated "
                        "counts them)")
    return kept, left_out


def run_next(args: argparse.Namespace) -> int:
    import sys

    from retrotread.history import load_history
    from retrotread.profile import load_profile_text

    rules = load_rules(args.rules)
    today = args.today or datetime.date.today()
    entries, left_out = sessions_that_count(load_history(args.dir),
                                            include_simulated=args.include_simulated)
    for what in left_out:
        print(f"next: left out {what}", file=sys.stderr)
    decision = decide(entries, rules, today)
    text = profile_yaml(profile_for(decision, rules, today))
    try:
        load_profile_text(text, str(args.output or "<next>"))  # never write a bad profile
    except ProfileError as exc:  # pragma: no cover - the rules keep inside the envelope
        raise RetrotreadError(f"internal error: the next profile does not validate: {exc}"
                              ) from exc
    print(f"next: {decision.reason}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}; run it with: retrotread run {args.output}",
              file=sys.stderr)
    return 0
