"""Load a profile: YAML (with line numbers) -> pydantic -> one located message per problem.

ruamel.yaml reads the file in YAML 1.2 (so ``1:30`` stays text instead of becoming the
sexagesimal number 90, and ``no`` stays text), keeping the line and column of every node.
Each pydantic error location (``("segments", 2, "speed")``) is walked back through that
tree to the offending value, so a message reads::

    profiles/x.yaml:14:7: segments[2].speed: 2.5 mph is above the backward ceiling of 2.0 mph
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from ruamel.yaml.nodes import MappingNode

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
    lenient_rule_problems,
)
from retrotread.profile.quantities import MAX_NUMBER_DIGITS, shorten

# --- Limits of the file (see profiles/README.md) ---------------------------------------------
MAX_FILE_BYTES: Final = 256 * 1024
"""A bundled profile is about 2 KiB; 256 KiB is a hundred times that and still loads in
about a second."""
MAX_DEPTH: Final = 20
"""Nodes nested in nodes; the deepest profile (a repeat inside a repeat) needs 8."""

_NOT_YAML_TEXT: Final = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters YAML refuses (control characters such as NUL, lone surrogates)."""
_NUMBER_LIKE: Final = re.compile(
    r"^[-+]?(?:0[xo])?[0-9a-fA-F_.]*[0-9][0-9a-fA-F_.]*(?:[eE][-+]?[0-9]+)?$")
_NULL_WORDS: Final = frozenset({"", "~", "null", "Null", "NULL"})

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
        message = " ".join(self.message.split())  # one line, whatever the file held
        line = f"{where}: {self.field}: {message}" if self.field else f"{where}: {message}"
        # Text quoted from the file may hold control characters or lone surrogates: show
        # a replacement character, so the line prints on any terminal.
        return "".join(ch if ch.isprintable() else "\ufffd" for ch in line)


class _Refused(Exception):
    """Raised inside the YAML composer: the document uses something a profile may not."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else 1
        self.column = mark.column + 1 if mark is not None else 1
        self.message = message


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile file; raises :class:`ProfileError` listing every problem."""
    name = str(path)
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # never more, whatever the file is
    except FileNotFoundError:
        raise _error(name, None, None, "no such file") from None
    except OSError as exc:
        raise _error(name, None, None, f"cannot read the file ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise _too_big(name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _error(name, line, column,
                     "the file is not UTF-8 text (save it as UTF-8)") from None
    return load_profile_text(text, name)


def _error(path: str, line: int | None, column: int | None, message: str) -> ProfileError:
    return ProfileError([ProfileProblem(path, line, column, "", message)])


def _too_big(path: str) -> ProfileError:
    return _error(path, 1, 1, f"the file is larger than {MAX_FILE_BYTES // 1024} KiB, the most "
                  "a profile may be (a bundled profile is about 2 KiB); is it the right file?")


def load_profile_text(text: str, path: str = "<string>") -> Profile:
    """Validate a profile given as YAML text; ``path`` names it in messages."""
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise _too_big(path)
    tree = _parse_yaml(text, path)
    if tree is None:
        raise _error(path, 1, 1, "the file is empty; a profile needs at least name: and segments:")
    if not isinstance(tree, CommentedMap):
        kind = "a list" if isinstance(tree, CommentedSeq) else f"the value {_written(tree)}"
        raise _error(path, 1, 1,
                     f"a profile is a mapping of keys (name:, segments:, ...), not {kind}")
    data = _plain(tree)
    try:
        document = ProfileDoc.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_problems(exc.errors(), tree, path, data)) from None
    return document.to_profile(path)


class _GuardedComposer(Composer):  # type: ignore[misc]
    """ruamel's composer, refusing what could make a small file expensive or confusing:
    anchors and aliases (one alias can stand for a whole tree: "billion laughs"), tags,
    nesting deeper than :data:`MAX_DEPTH`, numbers longer than ``MAX_NUMBER_DIGITS`` and
    keys that are not names."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        mark = event.start_mark
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(mark, "YAML anchors and aliases (&name, *name) are not allowed in a "
                           "profile; write each segment out, or use a repeat: block")
        if self.depth >= MAX_DEPTH:
            raise _Refused(mark, f"nested more than {MAX_DEPTH} levels deep; a profile needs "
                           "at most 8 (a repeat block inside a repeat block)")
        tag = getattr(event, "ctag", None)
        if tag is not None and str(tag) != "!":
            raise _Refused(mark, f"YAML tags like '{shorten(str(tag), 20)}' are not used in "
                           "a profile; write the value alone")
        is_key = isinstance(parent, MappingNode) and index is None
        if isinstance(event, ScalarEvent):
            plain = event.style is None
            if is_key and plain and event.value in _NULL_WORDS:
                raise _Refused(mark, "a key without a name; write it like 'speed: 1.5 mph'")
            if is_key and plain and event.value == "<<":
                raise _Refused(mark, "'<<' is a YAML merge key; a profile does not use it "
                               "(write each key out)")
            digits = sum(ch.isdigit() for ch in event.value)
            if plain and digits > MAX_NUMBER_DIGITS and _NUMBER_LIKE.match(event.value):
                raise _Refused(mark, f"a number with {digits} digits; numbers in a profile "
                               f"have at most {MAX_NUMBER_DIGITS}")
        elif is_key and isinstance(event, CollectionStartEvent):
            raise _Refused(mark, "a key must be a name like 'speed', not a list or mapping")
        return super().compose_node(parent, index)


def _parse_yaml(text: str, path: str) -> Any:
    bad = _NOT_YAML_TEXT.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise _error(path, line, column,
                     f"the file holds a control character (U+{ord(bad.group()):04X}) that a "
                     "profile cannot contain; is it a text file?")
    yaml = YAML(typ="rt")  # round trip: YAML 1.2, keeps line/column, refuses duplicate keys
    yaml.Composer = _GuardedComposer
    try:
        return yaml.load(text)
    except _Refused as exc:
        raise _error(path, exc.line, exc.column, exc.message) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        column = mark.column + 1 if mark is not None else 1
        raise _error(path, line, column, _yaml_message(exc, text, line)) from None
    except (YAMLError, RecursionError, ValueError, OverflowError):
        raise _error(path, 1, 1, "YAML syntax error: the file cannot be read as YAML") from None


_YAML_PROBLEMS: Final[tuple[tuple[str, str], ...]] = (
    ("mapping values are not allowed", "a ':' where no key can start; check this line's "
     "indentation, or quote a value that contains ': '"),
    ("could not find expected ':'", "a key without ':' (write 'key: value')"),
    ("expected <block end>", "this line does not line up with the lines above it; check "
     "the indentation"),
    ("expected a single document", "the file holds more than one document ('---'); a "
     "profile is one"),
    ("found unexpected end of stream", "the file ends inside quotes or brackets; close them"),
    ("expected ',' or ']'", "a [ list is not closed with ]"),
    ("expected ',' or '}'", "a { mapping is not closed with }"),
    ("found undefined alias", "YAML anchors and aliases (&name, *name) are not allowed in a "
     "profile"),
    ("found character", "a character that cannot start a value; quote the value"),
    ("for merging", "'<<' is a YAML merge key; a profile does not use it"),
    ("expected '<document start>'", "text after the end of the profile; a profile is one "
     "mapping of keys (is a line not indented, or a '...' or '---' stray?)"),
    ("expected the node content", "a value is missing here; check the brackets and commas"),
    ("sequence entries are not allowed", "a '- ' list item where none can be; check the "
     "indentation"),
    ("while scanning a tag", "YAML tags (!name) are not used in a profile"),
    ("found unknown escape character", "an unknown escape (\\) in double quotes; use single "
     "quotes"),
    ("did not find expected", "the indentation or a '-' does not fit here; check this line"),
)


def _yaml_message(exc: MarkedYAMLError, text: str, line: int) -> str:
    problem = (exc.problem or "").strip()
    if problem.startswith("found duplicate key"):
        key = problem.split('"')[1] if '"' in problem else "?"
        return f"duplicate key '{shorten(key)}' (each key may appear once in a mapping)"
    lines = text.splitlines()
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    indent = here[: len(here) - len(here.lstrip(" \t"))]
    if "\t" in indent or "'\\t'" in problem:
        return f"YAML does not allow tabs for indentation: use spaces (line {line})"
    said = " ".join(part for part in (exc.context, problem) if part)
    for words, plain in _YAML_PROBLEMS:
        if words in said:
            return f"YAML syntax error: {plain}"
    return "YAML syntax error: this line cannot be read as YAML; check quotes and indentation"


def _plain(node: Any) -> Any:
    """The ruamel tree as plain dicts, lists and scalars (pydantic sees ordinary types)."""
    if isinstance(node, dict):
        return {_plain_key(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return _valid_text(str(node))  # text, and what YAML 1.2 reads as a date: as written


def _plain_key(key: Any) -> str:
    if isinstance(key, bool):
        return str(key).lower()
    return _valid_text(str(key))


def _valid_text(text: str) -> str:
    """``text`` with lone surrogates (a ``"\\ud800"`` escape) replaced: nothing downstream
    can encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def _written(value: Any) -> str:
    """What a person wrote, for a message: short, never a Python type name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return shorten(str(value))
    return f"'{shorten(str(value))}'"


# --- pydantic errors -> located problems -----------------------------------------------------
def _problems(
    errors: Iterable[ErrorDetails], tree: CommentedMap, path: str, data: dict[str, Any],
) -> list[ProfileProblem]:
    problems: list[ProfileProblem] = []
    rules_checked = False
    for error in errors:
        if error["type"] == RULES_ERROR:
            rules_checked = True
            for loc, message in error.get("ctx", {}).get("problems", []):
                problems.append(_located(tree, path, tuple(loc), message, key=False))
            continue
        loc = _strip_tags(error["loc"])
        unknown = error["type"] == "extra_forbidden"
        problems.append(_located(tree, path, loc, _message(error, loc, tree), key=unknown))
    if not rules_checked:  # other mistakes stopped pydantic first: check what can be checked
        seen = {(p.field, p.message) for p in problems}
        for loc, message in lenient_rule_problems(data):
            if (format_loc(loc), message) not in seen:
                problems.append(_located(tree, path, loc, message, key=False))
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
            try:
                line, column = node.lc.key(name) if (key and last) else node.lc.value(name)
            except KeyError:  # a key with no position of its own: the mapping's is close
                break
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
            return f"unknown key '{shorten(str(field))}': {note}"
        close = difflib.get_close_matches(str(field)[:100], known, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
        return f"unknown key '{shorten(str(field))}'{hint}"
    if kind == "missing":
        if field == "segments":
            return ("missing: a repeat block needs segments:" if len(loc) > 1
                    else "missing: a profile needs a list of segments")
        if field == "speed":
            return "missing: every segment needs a speed, like 'speed: 1.0 mph'"
        return "missing (this key is required)"
    if kind in ("literal_error", "enum"):
        return f"{_written(given)} is not allowed; use {ctx.get('expected', '')}"
    if kind == "string_type":
        return f"should be text, not {_written(given)}"
    if kind == "list_type":
        what = "a list of segments (lines starting with '- ')" if field in _LIST_FIELDS else (
            "a list")
        return f"should be {what}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"should be a mapping of keys (key: value), not {_written(given)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"should be a whole number, not {_written(given)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"should be true or false, not {_written(given)}"
    if kind in ("too_short", "string_too_short"):
        if field in _LIST_FIELDS or kind == "too_short":
            return "is empty; it needs at least one segment"
        return "should not be empty"
    if kind == "string_unicode":
        return "holds an escape that is not a character (like \\ud800); remove it"
    message = error["msg"]
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message.removeprefix("Input ")  # pydantic's "Input should be ...": "should be"
