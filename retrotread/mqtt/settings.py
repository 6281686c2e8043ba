"""Where the broker is and how to log in: the settings, the broker URL, the config file,
the session's name on a shared broker, and telling a refused login from other failures."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from retrotread.errors import MqttConfigError

log = logging.getLogger(__name__)

ENV_USERNAME = "RETROTREAD_MQTT_USERNAME"
ENV_PASSWORD = "RETROTREAD_MQTT_PASSWORD"
BACKOFF_FIRST_S = 0.5
"""After losing the broker, wait this long before connecting again, doubling each time..."""
BACKOFF_MAX_S = 10.0
"""... up to this."""


_TOPIC_PREFIX_RE = re.compile(r"^[^#+\s]+(/[^#+\s]+)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def check_name(name: str) -> str:
    """A treadmill's name on a shared broker (``--name``): one topic level, no spaces."""
    if not _NAME_RE.match(name):
        raise MqttConfigError(
            f"the name {name!r} cannot be used: 1-32 letters, digits, '-' or '_', starting "
            "with a letter or digit (for example 'garage' or 'clinic-2')")
    return name


def prefix_for_name(name: str) -> str:
    """Where a named treadmill publishes: ``retrotread/NAME``."""
    return f"retrotread/{check_name(name)}"


@dataclass(frozen=True)
class MqttSettings:
    """Where the broker is and how to talk to it. Build with :meth:`from_sources`."""

    url: str = "mqtt://localhost:1883"
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    password_file: Path | None = None
    ca_file: Path | None = None
    client_id: str | None = None
    topic_prefix: str = "retrotread"
    discovery_prefix: str | None = "homeassistant"  # None: no Home Assistant discovery
    queue_size: int = 1000
    units: str = "km/h"  # what `retrotread monitor` shows; Home Assistant always gets km/h
    name: str | None = None
    """The treadmill's name (``--name``): several on one broker each publish under their
    own ``retrotread/NAME`` prefix, as their own Home Assistant device."""

    def named(self, name: str | None) -> MqttSettings:
        """These settings for the treadmill called ``name`` (None: unchanged)."""
        if name is None:
            return self
        return dataclasses.replace(self, name=check_name(name),
                                   topic_prefix=prefix_for_name(name))

    def __post_init__(self) -> None:
        self.endpoint()  # validates the URL
        for name in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, name)
            if value is None and name == "discovery_prefix":
                continue
            if not isinstance(value, str) or not _TOPIC_PREFIX_RE.match(value):
                raise MqttConfigError(
                    f"MQTT {name} {value!r} is not a valid topic prefix: use words separated "
                    "by '/', without spaces, '+' or '#' (for example 'retrotread' or 'home/tm')")
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise MqttConfigError(f"MQTT queue_size must be a positive integer, "
                                  f"not {self.queue_size!r}")
        if self.units not in ("km/h", "mph"):
            raise MqttConfigError(f"MQTT units must be 'km/h' or 'mph', not {self.units!r}")

    # -- derived values
    def endpoint(self) -> tuple[str, int, bool]:
        """``(host, port, tls)`` from the URL; raises :class:`MqttConfigError` if it is bad."""
        return parse_broker_url(self.url)[:3]

    @property
    def host(self) -> str:
        return self.endpoint()[0]

    @property
    def port(self) -> int:
        return self.endpoint()[1]

    @property
    def tls(self) -> bool:
        return self.endpoint()[2]

    @property
    def node_id(self) -> str:
        """The Home Assistant device id: stable across runs, so entities keep their history."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.topic_prefix).strip("_") or "retrotread"

    def topic(self, leaf: str) -> str:
        return f"{self.topic_prefix}/{leaf}"

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            try:
                text = Path(self.password_file).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise MqttConfigError(
                    f"cannot read the MQTT password file {self.password_file}: "
                    f"{exc.strerror or exc}") from exc
            return text.rstrip("\r\n")
        return None

    @classmethod
    def from_sources(cls, url: str | None = None, config_file: Path | str | None = None,
                     environ: Mapping[str, str] | None = None) -> MqttSettings:
        """Settings from a TOML file (an ``[mqtt]`` table, or top-level keys), then the
        environment (``RETROTREAD_MQTT_USERNAME`` / ``RETROTREAD_MQTT_PASSWORD``), then
        ``url`` (the ``--mqtt`` option), each overriding the one before."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(_read_config_file(Path(config_file)))
        if env.get(ENV_USERNAME):
            values["username"] = env[ENV_USERNAME]
        if env.get(ENV_PASSWORD):
            values["password"] = env[ENV_PASSWORD]
            values.pop("password_file", None)
        if url is not None:
            values["url"] = url
        if "url" not in values:
            raise MqttConfigError(
                "no MQTT broker given: pass --mqtt mqtt://HOST:PORT or set url in the "
                "[mqtt] table of the config file")
        user_in_url = parse_broker_url(values["url"])[3]
        if user_in_url is not None and "username" not in values:
            values["username"] = user_in_url
        for key in ("password_file", "ca_file"):
            if values.get(key) is not None:
                values[key] = Path(values[key]).expanduser()
        settings = cls(**values)
        if settings.ca_file is not None and not settings.tls:
            log.warning("MQTT ca_file is set but the URL %s is not mqtts://; TLS is off",
                        settings.url)
        if settings.ca_file is not None and not settings.ca_file.is_file():
            raise MqttConfigError(f"the MQTT CA file {settings.ca_file} does not exist")
        settings.resolved_password()  # fail now, not at the first connection
        return settings


_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "url": (str,), "username": (str,), "password": (str,), "password_file": (str,),
    "ca_file": (str,), "client_id": (str,), "topic_prefix": (str,),
    "discovery_prefix": (str, bool), "queue_size": (int,), "units": (str,),
}


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise MqttConfigError(f"cannot read the MQTT config file {path}: "
                              f"{exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MqttConfigError(f"{path}: not valid TOML: {exc}") from exc
    table = data.get("mqtt", data)
    if not isinstance(table, dict):
        raise MqttConfigError(f"{path}: [mqtt] must be a table")
    unknown = sorted(set(table) - set(_CONFIG_TYPES))
    if unknown:
        raise MqttConfigError(f"{path}: unknown MQTT setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(_CONFIG_TYPES)}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        types = _CONFIG_TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise MqttConfigError(f"{path}: MQTT setting {key} must be "
                                  f"{' or '.join(t.__name__ for t in types)}, not {value!r}")
        values[key] = value
    if values.get("discovery_prefix") is False:
        values["discovery_prefix"] = None
    elif values.get("discovery_prefix") is True:
        values.pop("discovery_prefix")
    return values


def parse_broker_url(url: str) -> tuple[str, int, bool, str | None]:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> ``(host, port, tls, username)``.

    A password in the URL is refused: it would show in the shell history and the process
    list. Use the environment or a password file.
    """
    if not isinstance(url, str) or "://" not in url:
        raise MqttConfigError(f"MQTT broker URL {url!r} needs a scheme: "
                              "mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise MqttConfigError(f"MQTT broker URL {url!r}: scheme must be mqtt:// or mqtts://, "
                              f"not {parts.scheme}://")
    if parts.password is not None:
        raise MqttConfigError(
            f"do not put the MQTT password in the URL (it would show in the shell history "
            f"and the process list): set {ENV_PASSWORD} or password_file in the config file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttConfigError(f"MQTT broker URL {url!r}: expected only a host and a port "
                              "(the topic prefix is a separate setting)")
    try:
        port = parts.port
    except ValueError as exc:
        raise MqttConfigError(f"MQTT broker URL {url!r}: the port must be a number "
                              "from 1 to 65535") from exc
    host = parts.hostname
    if not host:
        raise MqttConfigError(f"MQTT broker URL {url!r} has no host name")
    tls = scheme == "mqtts"
    if port is None:
        port = 8883 if tls else 1883
    if port == 0:
        raise MqttConfigError(f"MQTT broker URL {url!r}: port 0 is not a broker port")
    username = unquote(parts.username) if parts.username else None
    return host, port, tls, username




def is_auth_failure(exc: BaseException) -> bool:
    """The broker refused our user name or password (or this user may not connect)."""
    if not isinstance(exc, aiomqtt.MqttCodeError):
        return False
    rc = exc.rc
    value = getattr(rc, "value", rc)
    return isinstance(value, int) and value in (4, 5, 134, 135)  # 3.1.1 and MQTT 5 codes


AUTH_HINT = (f"check {ENV_USERNAME} / {ENV_PASSWORD} (or username / password_file in the "
              "config file) and the broker's password file and ACL")
