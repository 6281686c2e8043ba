"""Workout profiles: the YAML format, its validation and the flattened segment list.

``load_profile(path)`` returns a :class:`Profile` or raises
:class:`~retrotread.errors.ProfileError` with one located message per problem.
The format is documented in ``profiles/README.md``.
"""

from __future__ import annotations

from retrotread.profile.loader import (
    ProfileProblem,
    load_profile,
    load_profile_text,
)
from retrotread.profile.model import (
    Level,
    Profile,
    ProfileDoc,
    SafetySettings,
    SegmentSpec,
    TurnaroundSettings,
    profile_json_schema,
)
from retrotread.profile.quantities import (
    QuantityError,
    Speed,
    parse_duration,
    parse_ramp,
    parse_speed,
)

__all__ = [
    "Level",
    "Profile",
    "ProfileDoc",
    "ProfileProblem",
    "QuantityError",
    "SafetySettings",
    "SegmentSpec",
    "Speed",
    "TurnaroundSettings",
    "load_profile",
    "load_profile_text",
    "parse_duration",
    "parse_ramp",
    "parse_speed",
    "profile_json_schema",
]
