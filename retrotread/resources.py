"""The data that ships inside the package: workout profiles, progression rules, quirk files.

They live in ``retrotread/data/`` and are read through :mod:`importlib.resources`, so an
installed copy (``pipx install .``, a wheel) has exactly what a clone has. In a clone,
the top-level ``profiles/`` and ``hardware/quirks/`` are links to these folders.

A profile given on the command line is a path (``profiles/my.yaml``) or the name of a
bundled profile (``first-session``): :func:`find_profile`.
"""

from __future__ import annotations

import atexit
import contextlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from retrotread.errors import ProfileError

_DATA = "data"
PROFILES = "profiles"
RULES = ("profiles", "rules", "progression.yaml")
QUIRKS = "quirks"
_SUFFIXES = (".yaml", ".yml")

_extracted = contextlib.ExitStack()  # holds extracted copies (zip installs) until exit
atexit.register(_extracted.close)


def bundled(*parts: str) -> Traversable:
    """A file or folder under ``retrotread/data/``."""
    return resources.files("retrotread").joinpath(_DATA, *parts)


def bundled_path(*parts: str) -> Path:
    """A file or folder under ``retrotread/data/`` as a real path (extracted if needed)."""
    item = bundled(*parts)
    if isinstance(item, Path):
        return item
    return _extracted.enter_context(resources.as_file(item))  # pragma: no cover - zip installs


def bundled_profiles() -> dict[str, Path]:
    """The bundled profiles by name (the file name without ``.yaml``), sorted."""
    folder = bundled_path(PROFILES)
    paths = [p for p in folder.iterdir() if p.is_file() and p.suffix in _SUFFIXES]
    return {p.stem: p for p in sorted(paths)}


def find_profile(reference: str | Path) -> Path:
    """A profile file from a path, or from the name of a bundled profile.

    An existing file wins; otherwise a bare name (no folder, with or without ``.yaml``)
    is looked up among the bundled profiles. Anything else is reported as a missing file,
    with the bundled names when the reference looked like one.
    """
    path = Path(reference)
    if path.is_file():
        return path
    text = str(reference)
    if len(path.parts) == 1:
        profiles = bundled_profiles()
        name = path.stem if path.suffix in _SUFFIXES else text
        if name in profiles:
            return profiles[name]
        raise ProfileError([f"{text}: no such file, and no bundled profile of that name "
                            f"(bundled: {', '.join(profiles)}; see `retrotread profiles`)"])
    raise ProfileError([f"{text}: no such file"])


@dataclass(frozen=True)
class ProfileListing:
    name: str
    title: str
    level: str
    total_min: float
    backward_min: float


def list_profiles() -> list[ProfileListing]:
    """Every bundled profile with its level, total and backward minutes."""
    from retrotread.profile import load_profile

    rows = []
    for name, path in bundled_profiles().items():
        profile = load_profile(path)
        rows.append(ProfileListing(name, profile.name, str(profile.level),
                                   profile.total_seconds() / 60,
                                   profile.backward_seconds() / 60))
    return rows


def format_profile_list(rows: list[ProfileListing]) -> str:
    header = f"{'name':<16} {'level':<13} {'total':>7} {'backward':>9}  title"
    lines = [header]
    lines += [f"{r.name:<16} {r.level:<13} {r.total_min:>5.1f} m {r.backward_min:>7.1f} m  "
              f"{r.title}" for r in rows]
    lines.append("run one with: retrotread run NAME   (or a path to your own YAML file)")
    return "\n".join(lines)
