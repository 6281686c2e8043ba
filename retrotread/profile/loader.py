"""Load a profile: YAML (with line numbers) -> pydantic -> one located message per problem.

ruamel.yaml reads the file in YAML 1.2 (so ``1:30`` stays text instead of becoming the
sexagesimal number 90, and ``no`` stays text), keeping the line and column of every node.
Each pydantic error location (``("segments", 2, "speed")``) is walked back through that
tree to the offending value, so a message reads::

    profiles/x.yaml:14:7: segments[2].speed: 2.5 mph is above the backward ceiling of 2.0 mph
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from retrotread.errors import ProfileError
from retrotread.profile.model import (
    ITEM_TAGS,
    RULES_ERROR,
    Loc,
    Profile,
    ProfileDoc,
    RepeatDoc,
    SafetyDoc,
    SegmentDoc,
    TurnaroundDoc,
    format_loc,
    item_kind,
)

_LIST_FIELDS = frozenset({"segments", "warmup", "cooldown"})
_SHORTHAND_KEYS = ("forward", "backward")


@dataclass(frozen=True)
class ProfileProblem:
    """One problem in a profile file, located at the offending value (1-based)."""

    path: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else (
            f"{where}: {self.message}")


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile file; raises :class:`ProfileError` listing every problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError([ProfileProblem(name, None, None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(
            [ProfileProblem(name, None, None, "", f"cannot read the file ({exc})")]
        ) from None
    return load_profile_text(text, name)


def load_profile_text(text: str, path: str = "<string>") -> Profile:
    """Validate a profile given as YAML text; ``path`` names it in messages."""
    tree = _parse_yaml(text, path)
    if tree is None:
        raise ProfileError([ProfileProblem(
            path, 1, 1, "", "the file is empty; a profile needs at least name: and segments:")])
    if not isinstance(tree, CommentedMap):
        kind = "a list" if isinstance(tree, CommentedSeq) else f"the value {tree!r}"
        raise ProfileError([ProfileProblem(
            path, 1, 1, "",
            f"a profile is a mapping of keys (name:, segments:, ...), not {kind}")])
    try:
        document = ProfileDoc.model_validate(_plain(tree))
    except ValidationError as exc:
        raise ProfileError(_problems(exc.errors(), tree, path)) from None
    return document.to_profile(path)


def _parse_yaml(text: str, path: str) -> Any:
    yaml = YAML(typ="rt")  # round trip: YAML 1.2, keeps line/column, refuses duplicate keys
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise ProfileError([ProfileProblem(path, line, column, "", _yaml_message(exc))]) from None
    except YAMLError as exc:
        raise ProfileError([ProfileProblem(path, 1, 1, "", f"YAML error: {exc}")]) from None


def _yaml_message(exc: MarkedYAMLError) -> str:
    problem = (exc.problem or "").strip()
    if problem.startswith("found duplicate key"):
        key = problem.split('"')[1] if '"' in problem else "?"
        return f"duplicate key '{key}' (each key may appear once in a mapping)"
    parts = [part for part in (exc.context, problem) if part]
    return "YAML syntax error: " + (", ".join(parts) if parts else str(exc).splitlines()[0])


def _plain(node: Any) -> Any:
    """The ruamel tree as plain dicts, lists and scalars (pydantic sees ordinary types)."""
    if isinstance(node, dict):
        return {_plain(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


# --- pydantic errors -> located problems -----------------------------------------------------
def _problems(
    errors: Iterable[ErrorDetails], tree: CommentedMap, path: str,
) -> list[ProfileProblem]:
    problems: list[ProfileProblem] = []
    for error in errors:
        if error["type"] == RULES_ERROR:
            for loc, message in error.get("ctx", {}).get("problems", []):
                problems.append(_located(tree, path, tuple(loc), message, key=False))
            continue
        loc = _strip_tags(error["loc"])
        unknown = error["type"] == "extra_forbidden"
        problems.append(_located(tree, path, loc, _message(error, loc, tree), key=unknown))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    return problems


def _located(tree: CommentedMap, path: str, loc: Loc, message: str, *, key: bool) -> ProfileProblem:
    line, column = _position(tree, loc, key=key)
    return ProfileProblem(path, line, column, format_loc(loc), message)


def _strip_tags(loc: tuple[int | str, ...]) -> Loc:
    """Drop the union tags pydantic adds after a list index (``segments, 2, 'segment'``)."""
    out: list[int | str] = []
    for part in loc:
        if out and isinstance(out[-1], int) and part in ITEM_TAGS:
            continue
        out.append(part)
    return tuple(out)


def _position(tree: CommentedMap, loc: Loc, *, key: bool) -> tuple[int, int]:
    """1-based line and column of the value at ``loc`` (of its key if ``key``); where the
    location does not exist (a missing key), the nearest enclosing node."""
    line, column = tree.lc.line, tree.lc.col
    node: Any = tree
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, CommentedMap):
            name = part
            if name not in node and name in ("duration", "direction"):
                name = next((k for k in _SHORTHAND_KEYS if k in node), name)
            if name not in node:
                break
            line, column = node.lc.key(name) if (key and last) else node.lc.value(name)
            node = node[name]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, column = node.lc.item(part)
            node = node[part]
        else:
            break
    return line + 1, column + 1


def _node_at(tree: CommentedMap, loc: Loc) -> Any:
    node: Any = tree
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _known_keys(tree: CommentedMap, loc: Loc) -> tuple[list[str], str]:
    """The keys valid in the mapping at ``loc``, and a note on what that mapping is."""
    model: type[BaseModel]
    note = ""
    if not loc:
        model = ProfileDoc
    elif loc == ("turnaround",):
        model = TurnaroundDoc
    elif loc == ("safety",):
        model = SafetyDoc
    elif item_kind(_node_at(tree, loc)) == "repeat block":
        model, note = RepeatDoc, "a repeat block has only repeat: and segments:"
    else:
        model = SegmentDoc
    return list(model.model_fields), note


def _message(error: ErrorDetails, loc: Loc, tree: CommentedMap) -> str:
    kind = error["type"]
    field = loc[-1] if loc else ""
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    given = error.get("input")
    if kind == "extra_forbidden":
        known, note = _known_keys(tree, loc[:-1])
        if note:
            return f"unknown key '{field}': {note}"
        close = difflib.get_close_matches(str(field), known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
        return f"unknown key '{field}'{hint}"
    if kind == "missing":
        if field == "segments":
            return ("missing: a repeat block needs segments:" if len(loc) > 1
                    else "missing: a profile needs a list of segments")
        if field == "speed":
            return "missing: every segment needs a speed, like 'speed: 1.0 mph'"
        return "missing (this key is required)"
    if kind in ("literal_error", "enum"):
        return f"{given!r} is not allowed; use {ctx.get('expected', '')}"
    if kind == "string_type":
        return f"should be text, not {given!r}"
    if kind == "list_type":
        what = "a list of segments (lines starting with '- ')" if field in _LIST_FIELDS else (
            "a list")
        return f"should be {what}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"should be a mapping of keys (key: value), not {given!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"should be a whole number, not {given!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"should be true or false, not {given!r}"
    if kind in ("too_short", "string_too_short"):
        if field in _LIST_FIELDS or kind == "too_short":
            return "is empty; it needs at least one segment"
        return "should not be empty"
    message = error["msg"]
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
