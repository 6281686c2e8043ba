"""The config file: precedence (command line > environment > file > default), origins,
located errors with exit status 2, and safety limits that a setting can only lower."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrotread.cli import main
from retrotread.config import Origin, RunDefaults, config_path, load_config
from retrotread.errors import ConfigError

GOOD = """\
# my treadmill
[run]
device = "sim:walking-pad"
units = "km/h"
backward_max = "2.4 km/h"
voice = true
ready = "hold"

[mqtt]
url = "mqtt://127.0.0.1:1"
username = "walker"
password = "secret"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(tmp_path / "none.toml", environ={})
    assert not config.exists
    assert config.run == RunDefaults()
    assert {s.origin for s in config.settings.values()} == {Origin.DEFAULT}
    assert config.mqtt_config_file() is None


def test_file_then_environment_then_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config(path, environ={"RETROTREAD_UNITS": "mph", "RETROTREAD_VOICE": "no"},
                         command_line={"units": "km/h", "device": None, "mqtt": None})
    run = config.run
    assert run.device == "sim:walking-pad" and config.settings["device"].where == "config.toml:3"
    assert run.backward_max == pytest.approx(2.4 / 1.609344)
    assert config.settings["backward_max"].where == "config.toml:5"
    assert run.voice is False and config.settings["voice"].origin is Origin.ENV
    assert config.settings["voice"].where == "RETROTREAD_VOICE"
    assert run.units == "km/h" and config.settings["units"].origin is Origin.COMMAND_LINE
    assert config.settings["units"].where == "--units"
    assert run.ready == "hold" and config.settings["companion"].origin is Origin.DEFAULT
    assert config.mqtt == {"url": "mqtt://127.0.0.1:1", "username": "walker",
                           "password": "secret"}
    assert config.mqtt_config_file() == path  # [mqtt] names a broker: runs publish


def test_config_file_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETROTREAD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_path() == tmp_path / "retrotread" / "config.toml"
    assert config_path({"RETROTREAD_CONFIG": "~/x.toml"}) == Path.home() / "x.toml"


@pytest.mark.parametrize("value, message", [
    ("2.5", "backward_max: 2.5 mph is too high: a setting may only lower the backward "
            "ceiling (2.0 mph is the most)"),
    ('"4 km/h"', "backward_max: 4.0 km/h is too high"),
    ("0.9", "backward_max: 0.9 mph is too low: the backward ceiling can be lowered to "
            "1.0 mph and no further"),
    ("true", "backward_max: should be a speed"),
    ('"fast"', "backward_max: 'fast' is not a speed"),
])
def test_a_setting_can_only_lower_the_backward_ceiling(tmp_path: Path, value: str,
                                                      message: str) -> None:
    path = write(tmp_path, f"[run]\nunits = 'mph'\n\nbackward_max = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"{path}:4: {message}")


def test_limits_at_both_ends_are_accepted(tmp_path: Path) -> None:
    for value in ("2.0", "1.0", '"3.2 km/h"', "1.25"):
        config = load_config(write(tmp_path, f"[run]\nbackward_max = {value}\n"), environ={})
        assert 1.0 - 1e-9 <= config.run.backward_max <= 2.0 + 1e-9


def test_every_problem_in_a_bad_file_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\nunits = "furlongs"\nvoice = "maybe"\ncolour = 3\n'
                 'device = "usb:1"\n\n[companion]\nport = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    lines = str(caught.value).splitlines()
    assert f"{path}:7: companion: unknown table (the file has [run] and [mqtt] tables)" in lines
    assert f"{path}:2: units: 'furlongs' is not allowed; use 'mph' or 'km/h'" in lines
    assert f"{path}:3: voice: should be true or false, not 'maybe'" in lines
    assert any(line.startswith(f"{path}:4: colour: unknown key (known keys: device,")
               for line in lines)
    assert any(line.startswith(f"{path}:5: device: ") for line in lines)
    assert len(lines) == 5


def test_not_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\nunits = "km/h"\nvoice = \n')
    with pytest.raises(ConfigError, match=rf"^{path}:3: not valid TOML: "):
        load_config(path, environ={})


def test_the_environment_and_command_line_are_checked_the_same_way(tmp_path: Path) -> None:
    none = tmp_path / "none.toml"
    with pytest.raises(ConfigError, match=r"^RETROTREAD_BACKWARD_MAX: backward_max: 2.1 mph "
                       "is too high"):
        load_config(none, environ={"RETROTREAD_BACKWARD_MAX": "2.1"})
    with pytest.raises(ConfigError, match=r"^--backward-max: backward_max: 0.5 mph is too low"):
        load_config(none, environ={}, command_line={"backward_max": 0.5})


def test_config_command_prints_values_and_origins(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("RETROTREAD_CONFIG", str(path))
    monkeypatch.setenv("RETROTREAD_READY", "key")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"config file: {path}"
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert rows["device"].split()[1:] == ["sim:walking-pad", "file", "(config.toml:3)"]
    assert rows["backward_max"].split()[1:] == ["2.40", "km/h", "(1.49", "mph)", "file",
                                                "(config.toml:5)"]
    assert rows["ready"].split()[1:] == ["key", "environment", "(RETROTREAD_READY)"]
    assert rows["companion"].split()[1:] == ["auto", "(on", "for", "a", "real", "machine)",
                                             "default"]
    assert rows["password"].split()[1:] == ["***"] and "secret" not in out
    assert main(["config", "--path"]) == 0
    assert capsys.readouterr().out.strip() == str(path)


def test_a_bad_file_stops_run_with_status_2_before_anything_moves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[run]\nbackward_max = 3.0\n")
    monkeypatch.setenv("RETROTREAD_CONFIG", str(path))
    log = tmp_path / "s.jsonl"
    assert main(["run", "first-session", "--no-ui", "--log", str(log)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"{path}:2: backward_max: 3.0 mph is too high: a setting "
                                    "may only lower the backward ceiling (2.0 mph is the most)")
    assert not log.exists()
    assert main(["config"]) == 2
    # The command line cannot raise it either (nor rescue a bad file).
    assert main(["run", "first-session", "--no-ui", "--backward-max", "1.5"]) == 2


def test_the_file_sets_what_run_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The file's device and ceiling reach the plan (the same resolution as run)."""
    monkeypatch.setenv("RETROTREAD_CONFIG", str(write(
        tmp_path, '[run]\nunits = "km/h"\nbackward_max = 1.0\n')))
    assert main(["plan", "first-session"]) == 0
    capped = capsys.readouterr().out
    monkeypatch.setenv("RETROTREAD_CONFIG", str(tmp_path / "none.toml"))
    assert main(["plan", "first-session", "--units", "km/h"]) == 0
    default = capsys.readouterr().out
    assert capped != default
    # 1.0 mph (1.61 km/h, the FTMS step at or above it), on the machine's 0.1 km/h step
    assert "backward ceiling 1.60 km/h" in capped
    assert "backward ceiling 3.20 km/h" in default
    for mph in ("1.0", "2.0"):  # both ends of the documented range are accepted
        assert main(["plan", "first-session", "--backward-max", mph]) == 0


def test_the_files_mqtt_table_reaches_the_mqtt_settings(tmp_path: Path) -> None:
    from retrotread.mqtt import MqttSettings

    config = load_config(write(tmp_path, GOOD), environ={})
    settings = MqttSettings.from_sources(config_file=config.mqtt_config_file(), environ={})
    assert (settings.url, settings.username, settings.password) == (
        "mqtt://127.0.0.1:1", "walker", "secret")
    # Credentials only (no broker named anywhere): runs do not publish.
    only = load_config(write(tmp_path, '[mqtt]\nusername = "walker"\n'), environ={})
    assert only.mqtt and only.mqtt_config_file() is None
    named = load_config(tmp_path / "config.toml", environ={"RETROTREAD_MQTT": "mqtt://h"})
    assert named.mqtt_config_file() == tmp_path / "config.toml"


def test_an_oversized_config_file_is_refused_unparsed(tmp_path: Path) -> None:
    from retrotread.config import MAX_CONFIG_BYTES, load_config

    path = tmp_path / "config.toml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 10))
    with pytest.raises(ConfigError, match="larger than 64 KiB"):
        load_config(path=path)
