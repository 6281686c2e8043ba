"""Machine quirks: per-machine behaviour the FTMS client must work around.

A quirk file (``hardware/quirks/*.yaml``, or the user's own directory) says which
machines it is for (regular expressions on the Device Information manufacturer and model
and on the advertised name) and what they do::

    id: example-walking-pad
    description: An under-desk pad that ignores speed until it is started.
    verified: false          # true only when someone ran `retrotread doctor` on one
    source: doctor report, firmware 1.2.3
    match:
      manufacturer: "^Example"
      model: "WP-?1"
      name: "^EX-WP"
    quirks:
      must_start_before_speed: true
      min_speed_kmh: 1.0

Each field is read by the client (see :class:`Quirks`); two are informational only
(``start_at_own_minimum``, ``stops_on_disconnect``): the runner logs them.

Every pattern given must match (``re.search``, case-insensitive); a file with an empty
``match`` matches nothing. When several files match, the *safer* value of each quirk
wins: a flag set anywhere stays set, the highest minimum speed, the coarsest increment,
the longest reply time-out.

``retrotread doctor --write-quirk FILE`` writes a suggested file from what it measured.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retrotread.errors import QuirkFileError


@dataclass(frozen=True)
class Quirks:
    """What the FTMS client should do differently for one machine (defaults: nothing)."""

    request_control_before_every_command: bool = False
    """The machine drops control (after a stop, or at random): send Request Control first."""
    must_start_before_speed: bool = False
    """Set Target Speed is ignored until the belt runs: send it again after Start."""
    ignores_pause: bool = False
    """Pause stops the workout instead: a turnaround must restart, not resume."""
    start_at_own_minimum: bool = False
    """Start runs the belt at the machine's own minimum, whatever speed was set before.
    Informational: a session always sends its speed after Start (and starts at the floor,
    never above 1.0 mph), so nothing changes; the runner logs it."""
    stops_on_disconnect: bool = False
    """The belt stopped by itself when the app closed the link. Informational: the
    session acts as if the belt may still run (a radio that fades out is not a clean
    disconnect, and the machine may notice it only seconds later); the runner logs it."""
    min_speed_kmh: float | None = None
    """The real minimum, when it is above the advertised Supported Speed Range minimum."""
    increment_kmh: float | None = None
    """The real speed step, when coarser than the advertised one."""
    reply_timeout_s: float | None = None
    """Control point replies are slow: wait this long (instead of the default 2 s)."""

    def merged(self, other: Quirks) -> Quirks:
        """Both sets of quirks at once, the safer value of each winning."""

        def highest(a: float | None, b: float | None) -> float | None:
            values = [v for v in (a, b) if v is not None]
            return max(values) if values else None

        return Quirks(
            request_control_before_every_command=(self.request_control_before_every_command
                                                  or other.request_control_before_every_command),
            must_start_before_speed=self.must_start_before_speed or other.must_start_before_speed,
            ignores_pause=self.ignores_pause or other.ignores_pause,
            start_at_own_minimum=self.start_at_own_minimum or other.start_at_own_minimum,
            stops_on_disconnect=self.stops_on_disconnect or other.stops_on_disconnect,
            min_speed_kmh=highest(self.min_speed_kmh, other.min_speed_kmh),
            increment_kmh=highest(self.increment_kmh, other.increment_kmh),
            reply_timeout_s=highest(self.reply_timeout_s, other.reply_timeout_s),
        )

    @property
    def any(self) -> bool:
        return self != Quirks()

    def informational(self) -> list[str]:
        """What the set informational quirks say, in words (nothing changes for them)."""
        return [text for flag, text in (
            (self.start_at_own_minimum, "Start runs the belt at the machine's own minimum "
             "(the session sends its speed after every Start anyway)"),
            (self.stops_on_disconnect, "the belt stops by itself when the app disconnects "
             "(a fading radio may still leave it running for a while: keep the key clipped)"),
        ) if flag]

    def as_dict(self) -> dict[str, Any]:
        """Only the quirks that are set (for YAML and reports)."""
        return {key: value for key, value in dataclasses.asdict(self).items()
                if value not in (None, False)}


# ---------------------------------------------------------------------- file format
class _QuirksModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_control_before_every_command: bool = False
    must_start_before_speed: bool = False
    ignores_pause: bool = False
    start_at_own_minimum: bool = False
    stops_on_disconnect: bool = False
    min_speed_kmh: float | None = Field(default=None, gt=0, le=30)
    increment_kmh: float | None = Field(default=None, gt=0, le=5)
    reply_timeout_s: float | None = Field(default=None, gt=0, le=30)


class _MatchModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    manufacturer: str | None = None
    model: str | None = None
    name: str | None = None

    @field_validator("manufacturer", "model", "name")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class _QuirkFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    description: str = ""
    verified: bool = False
    source: str = ""
    match: _MatchModel
    quirks: _QuirksModel = Field(default_factory=_QuirksModel)


@dataclass(frozen=True)
class QuirkFile:
    path: Path | None
    id: str
    description: str
    verified: bool
    source: str
    manufacturer: re.Pattern[str] | None
    model: re.Pattern[str] | None
    name: re.Pattern[str] | None
    quirks: Quirks

    def matches(self, manufacturer: str | None, model: str | None, name: str | None) -> bool:
        checks = [(self.manufacturer, manufacturer), (self.model, model), (self.name, name)]
        given = [(pattern, value) for pattern, value in checks if pattern is not None]
        if not given:
            return False
        return all(value is not None and pattern.search(value) for pattern, value in given)


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern, re.IGNORECASE) if pattern is not None else None


def parse_quirk_file(data: Any, path: Path | None = None) -> QuirkFile:
    where = str(path) if path is not None else "<quirk file>"
    try:
        model = _QuirkFileModel.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise QuirkFileError(f"{where}: {problems}") from None
    return QuirkFile(
        path=path,
        id=model.id,
        description=model.description,
        verified=model.verified,
        source=model.source,
        manufacturer=_compile(model.match.manufacturer),
        model=_compile(model.match.model),
        name=_compile(model.match.name),
        quirks=Quirks(**model.quirks.model_dump()),
    )


MAX_QUIRK_FILE_BYTES = 64 * 1024
"""A quirk file is a few lines; a larger one is refused unread."""


def load_quirk_file(path: Path) -> QuirkFile:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        with path.open("rb") as file:
            raw = file.read(MAX_QUIRK_FILE_BYTES + 1)  # never more, whatever the file is
        if len(raw) > MAX_QUIRK_FILE_BYTES:
            raise QuirkFileError(f"{path}: larger than {MAX_QUIRK_FILE_BYTES // 1024} KiB: "
                                 "not a quirk file")
        data = YAML(typ="safe").load(raw.decode("utf-8", "replace"))
    except OSError as exc:
        raise QuirkFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except YAMLError as exc:
        raise QuirkFileError(f"{path}: not valid YAML: {exc}") from None
    return parse_quirk_file(data, path)


def default_quirk_dirs() -> list[Path]:
    """The bundled quirk files (package data; ``hardware/quirks`` in a clone) and the
    user's own (``~/.config/retrotread/quirks``)."""
    from platformdirs import user_config_path

    from retrotread.resources import QUIRKS, bundled_path

    dirs = [bundled_path(QUIRKS), user_config_path("retrotread") / "quirks"]
    return [d for d in dirs if d.is_dir()]


def load_quirks(directory: Path | Sequence[Path] | None = None) -> list[QuirkFile]:
    """Every ``*.yaml``/``*.yml`` file in the directories (default: :func:`default_quirk_dirs`),
    sorted by file name. A broken file raises :class:`QuirkFileError` naming it."""
    if directory is None:
        dirs = default_quirk_dirs()
    elif isinstance(directory, Path):
        dirs = [directory]
    else:
        dirs = list(directory)
    files: list[QuirkFile] = []
    for folder in dirs:
        paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        files.extend(load_quirk_file(path) for path in paths)
    return files


def matching_files(device_info: Any, name: str | None,
                   files: Iterable[QuirkFile]) -> list[QuirkFile]:
    manufacturer = getattr(device_info, "manufacturer", None)
    model = getattr(device_info, "model", None)
    return [f for f in files if f.matches(manufacturer, model, name)]


def match_quirks(device_info: Any, name: str | None,
                 files: Iterable[QuirkFile] | None = None) -> Quirks:
    """The merged quirks of every file that matches this machine.

    ``device_info`` has ``manufacturer`` and ``model`` (a
    :class:`retrotread.treadmill.DeviceInfo`); ``name`` is the advertised name, if any.
    """
    result = Quirks()
    for quirk_file in matching_files(device_info, name,
                                     load_quirks() if files is None else files):
        result = result.merged(quirk_file.quirks)
    return result


def _escape(text: str) -> str:
    """``re.escape`` without escaping spaces and dashes (readable in YAML)."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def dump_quirk_file(quirk_id: str, *, description: str, source: str,
                    manufacturer: str | None, model: str | None, name: str | None,
                    quirks: Quirks, comments: Sequence[str] = ()) -> str:
    """A quirk file as YAML text (what ``doctor --write-quirk`` writes)."""
    import io

    from ruamel.yaml import YAML

    match: dict[str, str] = {}
    if manufacturer:
        match["manufacturer"] = f"^{_escape(manufacturer)}$"
    if model:
        match["model"] = f"^{_escape(model)}$"
    if name and not match:
        match["name"] = f"^{_escape(name)}"
    data = {
        "id": quirk_id,
        "description": description,
        "verified": False,
        "source": source,
        "match": match,
        "quirks": quirks.as_dict(),
    }
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096  # one line per value
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    header = "".join(f"# {line}\n" if line else "#\n" for line in comments)
    return header + buffer.getvalue()
