"""The config file: defaults for ``retrotread run`` (and ``plan``).

``~/.config/retrotread/config.toml`` (the platform's user config dir, via platformdirs;
``$RETROTREAD_CONFIG`` names another file)::

    [run]
    device = "sim"            # or "dircon://HOST:PORT", "ble:NAME"
    units = "km/h"            # shown first: "mph" or "km/h"
    backward_max = 1.5        # mph, or "2.4 km/h": only LOWERS the 2.0 mph cap (1.0 at least)
    voice = true
    ready = "hold"            # turnaround ready gate: "key" or "hold"
    mqtt = "mqtt://localhost" # publish every run to this broker

    [mqtt]                    # the same keys as an --mqtt-config file (docs/mqtt.md)
    username = "walker"
    password_file = "~/.config/retrotread/mqtt-password"

Each ``[run]`` key can also come from the environment as ``RETROTREAD_<KEY>``
(``RETROTREAD_UNITS=km/h``) and from the command line (``--units``). The command line
beats the environment, which beats the file, which beats the built-in default;
``retrotread config`` prints every effective value and where it came from.

A value that would raise a safety limit is refused like any other bad value: the file
(or variable) is named with the line and key, and ``retrotread`` exits with status 2.

Adding a key is one line: a field on :class:`RunDefaults` (its name is the ``[run]`` key,
the ``RETROTREAD_`` variable and, by default, the argparse ``dest`` of its option).
"""

from __future__ import annotations

import argparse
import enum
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retrotread.envelope import BACKWARD_CEILING_LOWEST_MPH, BACKWARD_CEILING_MPH, describe_kmh
from retrotread.errors import ConfigError
from retrotread.units import kmh_to_mph, mph_to_kmh

CONFIG_ENV = "RETROTREAD_CONFIG"
ENV_PREFIX = "RETROTREAD_"
FILE_NAME = "config.toml"
TABLES = ("run", "mqtt")
_EPS = 1e-9


class RunDefaults(BaseModel):
    """The ``[run]`` table: one field per setting (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    device: str = Field("sim", description="sim, sim:PRESET, dircon://HOST:PORT or ble:NAME")
    units: Literal["mph", "km/h"] = Field("mph", description="units shown first")
    backward_max: float | None = Field(
        None, description="lower the backward cap, in mph (1.0 to 2.0; never raises it)")
    voice: bool | None = Field(
        None, description="speak cues with espeak-ng (unset: on for a real machine)")
    companion: bool | None = Field(
        None, description="serve the companion page (unset: on for a real machine)")
    ready: Literal["key", "hold"] | None = Field(None, description="turnaround ready gate")
    mqtt: str | None = Field(None, description="MQTT broker URL to publish every run to")
    name: str | None = Field(
        None, description="this treadmill's name on a shared MQTT broker (retrotread/NAME)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        from retrotread.errors import MqttConfigError
        from retrotread.mqtt import check_name

        if value is None:
            return None
        try:
            return check_name(value)
        except MqttConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        from retrotread.devices import parse_device
        from retrotread.errors import DeviceSpecError

        try:
            parse_device(value)
        except DeviceSpecError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("backward_max", mode="before")
    @classmethod
    def _backward_max(cls, value: object) -> float | None:
        from retrotread.profile import QuantityError, parse_speed

        if value is None:
            return None
        if isinstance(value, bool):
            raise ValueError(f"should be a speed like 1.5 or '1.5 mph', not {value!r}")
        try:
            speed = parse_speed(value)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None
        kmh = speed.kmh("mph")
        written = speed.describe("mph")
        if kmh > mph_to_kmh(BACKWARD_CEILING_MPH) + _EPS:
            raise ValueError(f"{written} is too high: a setting may only lower the backward "
                             f"ceiling ({BACKWARD_CEILING_MPH:.1f} mph is the most)")
        if kmh < mph_to_kmh(BACKWARD_CEILING_LOWEST_MPH) - _EPS:
            raise ValueError(f"{written} is too low: the backward ceiling can be lowered to "
                             f"{BACKWARD_CEILING_LOWEST_MPH:.1f} mph and no further")
        return kmh_to_mph(kmh)


RUN_KEYS = tuple(RunDefaults.model_fields)
# argparse dest of a key's option when it is not the key itself (none today).
OPTION_DEST: dict[str, str] = {}


class Origin(enum.StrEnum):
    DEFAULT = "default"
    FILE = "file"
    ENV = "environment"
    COMMAND_LINE = "command line"


@dataclass(frozen=True)
class Setting:
    value: Any
    origin: Origin
    where: str = ""  # config.toml:3, RETROTREAD_UNITS, --units

    def describe(self) -> str:
        return f"{self.origin}" + (f" ({self.where})" if self.where else "")


@dataclass
class Config:
    """The effective settings: ``run`` holds the values, ``settings`` their origins."""

    path: Path
    exists: bool
    run: RunDefaults
    settings: dict[str, Setting]
    mqtt: dict[str, Any] = field(default_factory=dict)  # the [mqtt] table, as written

    def mqtt_config_file(self) -> Path | None:
        """This file as an ``--mqtt-config`` file, when its ``[mqtt]`` table is to be used:
        it names a broker, or ``run.mqtt`` does."""
        if self.mqtt and (self.run.mqtt is not None or "url" in self.mqtt):
            return self.path
        return None


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$RETROTREAD_CONFIG``, or ``config.toml`` in the user config dir."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    from platformdirs import user_config_path

    return user_config_path("retrotread") / FILE_NAME


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    given = error.get("input")
    if kind == "literal_error":
        return f"{given!r} is not allowed; use {error.get('ctx', {}).get('expected', '')}"
    if kind == "extra_forbidden":
        return f"unknown key (known keys: {', '.join(RUN_KEYS)})"
    if kind in ("bool_type", "bool_parsing"):
        return f"should be true or false, not {given!r}"
    if kind == "string_type":
        return f"should be text, not {given!r}"
    return str(error["msg"]).removeprefix("Value error, ")


def key_line(text: str, table: str | None, key: str) -> int | None:
    """The 1-based line where ``key`` is set in ``[table]`` (None: top level, where a
    table's own ``[key]`` header counts too)."""
    current: str | None = None
    header = re.compile(r"^\s*\[+\s*([^\]\s]+)\s*\]")
    assignment = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*=')
    for number, line in enumerate(text.splitlines(), start=1):
        match = header.match(line)
        if match:
            current = match.group(1)
            if table is None and current == key:
                return number
            continue
        if current == table and assignment.match(line):
            return number
    return None


def _validate(values: Mapping[str, Any], where: Any) -> tuple[dict[str, Any], list[str]]:
    """Validated values of the keys given, and a ``where(key): key: message`` per problem."""
    try:
        model = RunDefaults.model_validate(dict(values))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else ""
            problems.append(f"{where(key)}: {key}: {_message(error)}")
        return {}, problems
    return {key: getattr(model, key) for key in values}, []


MAX_CONFIG_BYTES = 64 * 1024
"""A config file is a few lines; anything larger is refused before it is parsed."""


def _read_file(path: Path) -> tuple[str, dict[str, Any]] | None:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)  # never more, whatever the file is
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}:1: the config file is larger than "
                              f"{MAX_CONFIG_BYTES // 1024} KiB: is it the right file?")
        text = data.decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        where = f"{path}:{found.group(1)}" if found else str(path)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        raise ConfigError(f"{where}: not valid TOML: {message}") from None


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None,
                command_line: Mapping[str, Any] | None = None) -> Config:
    """The effective settings from defaults, the file, the environment and the command
    line (``command_line``: key -> value, None for an option not given). Raises
    :class:`ConfigError` with every problem, one per line."""
    env = os.environ if environ is None else environ
    path = path or config_path(env)
    settings = {key: Setting(RunDefaults.model_fields[key].default, Origin.DEFAULT)
                for key in RUN_KEYS}
    problems: list[str] = []
    mqtt: dict[str, Any] = {}
    loaded = _read_file(path)
    if loaded is not None:
        text, data = loaded
        for name, value in data.items():
            if name not in TABLES or not isinstance(value, dict):
                what = "unknown table" if name not in TABLES else "should be a table"
                problems.append(f"{path}:{key_line(text, None, name) or 1}: {name}: {what} "
                                f"(the file has [{'] and ['.join(TABLES)}] tables)")
        table = data.get("run", {})
        if isinstance(table, dict):
            values, found = _validate(
                table, lambda key: f"{path}:{key_line(text, 'run', key) or '?'}")
            problems += found
            for key, value in values.items():
                settings[key] = Setting(value, Origin.FILE,
                                        f"{path.name}:{key_line(text, 'run', key) or '?'}")
        if isinstance(data.get("mqtt"), dict):
            mqtt = dict(data["mqtt"])
    for key in RUN_KEYS:
        variable = ENV_PREFIX + key.upper()
        if env.get(variable, "") != "":
            values, found = _validate({key: env[variable]}, lambda _key, v=variable: v)
            problems += found
            if values:
                settings[key] = Setting(values[key], Origin.ENV, variable)
    for key, value in (command_line or {}).items():
        if value is None or key not in settings:
            continue
        option = "--" + OPTION_DEST.get(key, key).replace("_", "-")
        values, found = _validate({key: value}, lambda _key, o=option: o)
        problems += found
        if values:
            settings[key] = Setting(values[key], Origin.COMMAND_LINE, option)
    if problems:
        raise ConfigError("\n".join(problems))
    run = RunDefaults.model_construct(**{key: s.value for key, s in settings.items()})
    return Config(path=path, exists=loaded is not None, run=run, settings=settings, mqtt=mqtt)


def command_line_values(args: argparse.Namespace) -> dict[str, Any]:
    """The ``[run]`` keys given on the command line (None where an option was not given
    or the command has no such option)."""
    return {key: getattr(args, OPTION_DEST.get(key, key), None) for key in RUN_KEYS}


_SECRET = re.compile(r"password$", re.IGNORECASE)


def format_config(config: Config) -> str:
    """What ``retrotread config`` prints."""
    state = "" if config.exists else "  (not found: built-in defaults and the environment)"
    lines = [f"config file: {config.path}{state}", "[run]"]
    for key, setting in config.settings.items():
        value = setting.value
        shown = "auto (on for a real machine)" if value is None and key in (
            "voice", "companion") else "-" if value is None else (
            describe_kmh(mph_to_kmh(value)) if key == "backward_max" else
            str(value).lower() if isinstance(value, bool) else str(value))
        lines.append(f"  {key:<13} {shown:<24} {setting.describe()}")
    if config.mqtt:
        lines.append("[mqtt]  (file; the environment's RETROTREAD_MQTT_USERNAME/PASSWORD "
                     "and --mqtt win)")
        for key, value in config.mqtt.items():
            shown = "***" if _SECRET.search(key) else str(value)
            lines.append(f"  {key:<13} {shown}")
    return "\n".join(lines)
