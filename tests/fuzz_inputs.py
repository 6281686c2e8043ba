"""Hostile inputs for the profile loader and the session-log reader, and what must hold.

Shared by the fuzz tests (a few thousand examples in CI) and ``benchmarks/fuzz_profiles.py``
(100,000 and more). Two sources of profile text: YAML built from the profile grammar with
hostile scalars and keys, and mutations (cuts, insertions, swaps, tabs, NUL bytes...) of
the bundled profiles and of ``tests/broken_profiles/``. Session logs: a realistic log,
then cut, corrupted, reordered, or given odd JSON values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from retrotread.errors import ProfileError
from retrotread.profile import ProfileProblem, load_profile_text
from retrotread.recorder import (
    LOG_FORMAT,
    SessionLogError,
    format_summary,
    read_session,
    summarize,
)

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [path.read_text(encoding="utf-8") for path in
         sorted((ROOT / "profiles").glob("*.yaml"))
         + sorted((ROOT / "tests" / "broken_profiles").glob("*.yaml"))]
FUZZ_PATH = "fuzz.yaml"

# Text that must never appear in a message: internals, parser and Python leftovers.
INTERNAL = ("Traceback", "ordereddict", "Tagged", "Commented", "ScalarFloat", "object at 0x",
            "<class", ".None", "pydantic", "Input should", "ruamel", "\\x00", "\n")

# --- profile text from the grammar -----------------------------------------------------------
TOP_KEYS = ["name", "description", "level", "units", "turnaround", "safety", "warmup",
            "segments", "cooldown"]
SEGMENT_KEYS = ["forward", "backward", "direction", "duration", "speed", "label", "cue",
                "hold_rails", "repeat", "segments"]
TURNAROUND_KEYS = ["announce", "ready", "hold", "countdown"]
SAFETY_KEYS = ["backward_max", "ramp_backward", "ramp_forward", "heart_rate_max"]
ODD_KEYS = ["sped", "<<", "? x", "1", "~", "'q'", "true", "- a", "&k key", "*k", "!t key",
            "[a]", "{a: 1}", "é", "x" * 300]
SCALARS = [
    "1.5 mph", "2.4 km/h", "2", "1.0", "0", "-1", "1e400", "-1e400", "1e-300 mph", "1e308",
    "9" * 16, "9" * 400, "9" * 4400, ".inf", "-.inf", ".nan", "~", "null", "true", "no",
    "90s", "2m30s", "1:30", "1:02:03", "1h", "46h", "2 h", "5s", "0.5s", "forward",
    "backward", "hold", "key", "beginner", "mph", "kmh", "0.3 km/h/s", "'quoted'",
    '"dq\\x00"', '"\\ud800"', "&a 1", "*a", "!tag x", "!!str 5", "!!python/object:os.system",
    "[1, 2]", "{a: 1}", "[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]", "2024-01-01",
    "0x1F", "0o17", "1_000", "", "- x", "\t", "'unterminated", "{", "]", "|", ">", "%",
    "@", "`", "é", "\u2028", "\x00", "\x85", "\ufeff", "a: b", "#", "? ", "---", "...",
    "1.5 mph mph", "2 furlongs", "1,5 mph", "+1.5 mph", ".5", "5.", "1e5 s",
]


PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))
"""Mostly printable: control characters are refused at once, so they would hide the rest
(they still come from SCALARS, SNIPPETS and the mutations)."""


GOOD_SEGMENTS = [
    ("map", [("forward", "2 min"), ("speed", "2.5 mph")]),
    ("map", [("backward", "90s"), ("speed", "1.2")]),
    ("map", [("direction", "backward"), ("duration", "45s"), ("speed", "1.0 mph"),
             ("hold_rails", "true")]),
    ("map", [("repeat", "3"), ("segments", ("seq", [("map", [("backward", "30s"),
                                                             ("speed", "1.9 mph")])]))]),
]


def _scalar() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(SCALARS), st.text(PRINTABLE, max_size=20))


def _mapping(keys: list[str], value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    key = st.one_of(st.sampled_from(keys), st.sampled_from(ODD_KEYS))
    return st.lists(st.tuples(key, value), max_size=6).map(lambda pairs: ("map", pairs))


def _items(depth: int) -> st.SearchStrategy[Any]:
    value: st.SearchStrategy[Any] = _scalar()
    if depth > 0:
        value = st.one_of(_scalar(), _items(depth - 1))
    segment = st.one_of(_mapping(SEGMENT_KEYS, value), st.sampled_from(GOOD_SEGMENTS))
    return st.one_of(
        st.lists(segment, max_size=4).map(lambda items: ("seq", items)),
        _scalar(),
    )


def _render(node: Any, indent: int, flow: bool) -> str:
    """YAML text with scalars inserted raw (unquoted), so hostile tokens reach the parser."""
    if isinstance(node, str):
        return node
    kind, content = node
    pad = " " * indent
    if flow or not content:
        if kind == "map":
            inner = ", ".join(f"{k}: {_render(v, 0, True)}" for k, v in content)
            return "{" + inner + "}"
        return "[" + ", ".join(_render(v, 0, True) for v in content) + "]"
    lines = []
    if kind == "map":
        for key, value in content:
            if isinstance(value, str):
                lines.append(f"{pad}{key}: {value}")
            else:
                lines.append(f"{pad}{key}:\n{_render(value, indent + 2, False)}")
    else:
        for value in content:
            text = _render(value, indent + 2, False)
            lines.append(f"{pad}- {text.lstrip()}" if not isinstance(value, str)
                         else f"{pad}- {value}")
    return "\n".join(lines)


@st.composite
def grammar_profiles(draw: st.DrawFn) -> str:
    items = _items(2)
    values = {
        "turnaround": _mapping(TURNAROUND_KEYS, _scalar()),
        "safety": _mapping(SAFETY_KEYS, _scalar()),
        "warmup": items, "segments": items, "cooldown": items,
    }
    keys = draw(st.lists(st.one_of(st.sampled_from(TOP_KEYS), st.sampled_from(ODD_KEYS)),
                         max_size=9))
    if draw(st.booleans()):  # most often a profile-shaped document
        keys = ["name", "segments", *keys]
    pairs = [(key, draw(values.get(key, _scalar()))) for key in keys]
    flow = draw(st.booleans()) and draw(st.booleans())
    return _render(("map", pairs), 0, flow) + "\n"


# --- mutations of real files -----------------------------------------------------------------
SNIPPETS = ["\t", "\x00", "&a ", "*a", "!x ", "<<: *a\n", "9" * 30, "[" * 60, "{", ": ",
            "- ", "\n  ", "'", '"', "#", "---\n", "\ufffd", "\r", "\u2029", "~", "e-300"]


@st.composite
def mutated_profiles(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "cut", "swap", "dup",
                                     "tab", "repeat"]))
        at = draw(st.integers(0, max(0, len(text))))
        if kind == "insert":
            text = text[:at] + draw(st.one_of(st.sampled_from(SNIPPETS),
                                              st.text(PRINTABLE, max_size=8))) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "replace" and text:
            text = text[:at] + draw(st.one_of(PRINTABLE, st.characters())) + text[at + 1:]
        elif kind == "cut":
            text = text[:at]
        elif kind in ("swap", "dup", "tab") and text:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            elif kind == "dup":
                lines.insert(i, lines[j])
            else:
                lines[i] = "\t" + lines[i].lstrip(" ")
            text = "\n".join(lines)
        elif kind == "repeat":  # a bigger file: the same block many times
            text = text + text[at:] * draw(st.integers(2, 30))
    return text


def profile_inputs() -> st.SearchStrategy[str]:
    return st.one_of(grammar_profiles(), mutated_profiles())


def check_profile_text(text: str) -> str:
    """Load ``text``; anything but a profile or a clean ProfileError fails. Returns
    'ok' or 'refused'."""
    try:
        load_profile_text(text, FUZZ_PATH)
    except ProfileError as exc:
        assert exc.problems, "a ProfileError without problems"
        for problem in exc.problems:
            assert isinstance(problem, ProfileProblem), problem
            line = str(problem)
            assert line.startswith(f"{FUZZ_PATH}:"), line
            assert len(line) < 600, line
            assert line.isprintable(), repr(line)  # prints on any terminal
            line.encode("utf-8")  # no lone surrogates
            for internal in INTERNAL:
                assert internal not in line, (internal, line)
        return "refused"
    return "ok"


# --- session logs ----------------------------------------------------------------------------
def _base_log() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [
        {"type": "log_header", "format": LOG_FORMAT, "version": 1,
         "wall_time": "2026-01-01T10:00:00+00:00"},
        {"type": "session_started", "t": 0.0, "profile_name": "Intervals", "device": "sim",
         "simulated": True, "total_s": 600.0},
        {"type": "segment_started", "t": 0.0, "index": 0, "label": "Forward"},
    ]
    for i in range(12):
        records.append({"type": "telemetry", "t": float(i), "speed_kmh": 1.6 + i / 10,
                        "distance_m": i * 4, "heart_rate_bpm": 100 + i,
                        "facing": "backward" if i > 5 else "forward"})
        if i % 4 == 0:
            records.append({"type": "command", "t": float(i), "op": "SetTargetSpeed",
                            "speed_kmh": 1.6, "facing": "backward"})
    records += [
        {"type": "segment_started", "t": 6.0, "index": 1, "label": "Backward"},
        {"type": "watchdog", "t": 8.0, "trigger": "link", "action": "stop", "detail": "x"},
        {"type": "user", "t": 9.0, "command": "stop", "source": "remote", "accepted": True},
        {"type": "session_finished", "t": 12.0, "outcome": "stopped", "reason": "you",
         "elapsed_s": 12.0, "backward_s": 6.0, "distance_m": 44.0, "stop_sent": True},
    ]
    return records


ODD_JSON = ["1e400", "-1e400", "NaN", "Infinity", "9" * 400, "9" * 5000, "null", "true",
            '"text"', "[]", "{}", "[" * 3000 + "]" * 3000, '{"a": ' * 2000 + "1" + "}" * 2000,
            '"\\ud800"', "-0", "1.5e-320", '"' + "x" * 5000 + '"']


@st.composite
def session_logs(draw: st.DrawFn) -> bytes:
    records = _base_log()
    for _ in range(draw(st.integers(0, 4))):  # odd values in real records
        record = draw(st.sampled_from(records))
        key = draw(st.sampled_from([*sorted(record), "t", "index", "speed_kmh", "type"]))
        record[key] = ("RAW", draw(st.sampled_from(ODD_JSON)))
    lines = [_encode_with_raw(record) for record in records]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["shuffle", "swap", "drop", "dup", "junk"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "shuffle":
            lines = draw(st.permutations(lines))
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "drop" and len(lines) > 1:
            del lines[i]
        elif kind == "dup":
            lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))])
        else:
            lines.insert(i, draw(st.sampled_from([*ODD_JSON, "", "{", '{"t": 1}', "\x00"])))
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 3))):  # byte damage: cut, flip, insert
        kind = draw(st.sampled_from(["cut", "flip", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "cut":
            data = data[:at]
        elif kind == "flip" and data:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        else:
            data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
    return data


def _encode_with_raw(record: dict[str, Any]) -> str:
    raws = {key: value[1] for key, value in record.items()
            if isinstance(value, tuple) and value[:1] == ("RAW",)}
    plain = {key: (f"@@{key}@@" if key in raws else value) for key, value in record.items()}
    text = json.dumps(plain)
    for key, raw in raws.items():
        text = text.replace(json.dumps(f"@@{key}@@"), raw)
    return text


def check_session_log(path: Path, data: bytes) -> str:
    """Read a log written with ``data``: records or a SessionLogError, and the summary of
    whatever was read never fails. Returns 'read' or 'refused'."""
    path.write_bytes(data)
    try:
        records = read_session(path)
    except SessionLogError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)
        return "refused"
    summary = summarize(records)
    for units in ("mph", "km/h"):
        assert format_summary(summary, units)
    return "read"
