"""The command line teaches and refuses clearly: every option has help, every command a
description, and every bad option or value exits with status 2 in one line (README)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from retrotread.cli import build_parser, main

ROOT = Path(__file__).parent.parent


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    missing = []
    for name, sub in _subparsers(parser).items():
        if not sub.description:
            missing.append(f"{name}: no description")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:  # argparse.SUPPRESS: deliberately hidden (test hooks)
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


@pytest.mark.parametrize("argv", [
    ["run", "first-session", "--speedup", "5", "--device", "dircon://127.0.0.1:9"],
    ["run", "first-session", "--speedup", "0"],
    ["run", "first-session", "--speedup", "-2"],
    ["run", "first-session", "--speedup", "fast"],
    ["run", "first-session", "--device", "sim:bogus"],
    ["run", "first-session", "--backward-max", "2.5"],
    ["run", "first-session", "--hr-strap", "foo"],
    ["run", "first-session", "--hr-strap", "sim", "--device", "dircon://127.0.0.1:9"],
    ["run", "no-such-profile"],
    ["plan", "first-session", "--device", "sim:bogus"],
    ["plan", "first-session", "--backward-max", "2.5"],
    ["export", "no-such-session"],
    ["plot", "no-such-session", "-o", "x.png"],
])
def test_bad_options_exit_2_in_one_line(argv: list[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RETROTREAD_LOG_DIR", str(tmp_path / "sessions"))
    monkeypatch.setenv("RETROTREAD_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    status: int | str | None
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err and "Traceback" not in err
    assert not (tmp_path / "sessions").exists()  # refused before anything was written


def test_dev_alone_prints_its_usage_and_no_shell_line() -> None:
    out = subprocess.run([str(ROOT / "dev")], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("One entry point")
    assert all(line.startswith(("One entry", "  ./dev")) for line in lines), lines
