"""Installed like a real tool: package data, bundled profiles by name, extras, declared
imports, and the built wheel in a fresh venv outside the clone running a workout."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

import retrotread
from retrotread.cli import main
from retrotread.progression import ProgressionRules, load_rules
from retrotread.quirks import default_quirk_dirs, load_quirks
from retrotread.resources import bundled_path, bundled_profiles, find_profile, list_profiles

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _normal(match.group(1))


def _imported_top_level_names(*folders: str) -> dict[str, set[str]]:
    """Every absolute import in the folders -> the files importing it."""
    names: dict[str, set[str]] = {}
    for path in [p for folder in folders for p in (ROOT / folder).rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [node.module]
            else:
                continue
            for name in found:
                names.setdefault(name.split(".")[0], set()).add(path.name)
    return names


@pytest.mark.parametrize("folders, groups", [
    (("retrotread",), ()),  # the program: core dependencies and extras
    (("tests", "benchmarks"), ("dev",)),  # and the dev group for the tests and benchmarks
])
def test_every_directly_imported_package_is_declared(folders: tuple[str, ...],
                                                     groups: tuple[str, ...]) -> None:
    project = PYPROJECT["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_requirement_name(r) for r in extra}
    for group in groups:
        declared |= {_requirement_name(r) for r in PYPROJECT["dependency-groups"][group]
                     if isinstance(r, str)}
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for name, files in sorted(_imported_top_level_names(*folders).items()):
        if name in sys.stdlib_module_names or name in ("retrotread", "tests", "benchmarks",
                                                       "__future__"):
            continue
        dists = {_normal(d) for d in distributions.get(name, [])}
        assert dists, f"{name} (imported by {sorted(files)}) is not installed here"
        if not dists & declared:
            missing.append(f"{name} ({'/'.join(sorted(dists))}) imported by {sorted(files)}")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)


def test_heavy_parts_are_extras_and_core_stays_core() -> None:
    project = PYPROJECT["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    assert {"bleak", "aiomqtt", "pydantic", "numpy", "garmin-fit-sdk"} <= core
    assert "matplotlib" not in core and "bumble" not in core
    extras = project["optional-dependencies"]
    assert [_requirement_name(r) for r in extras["plot"]] == ["matplotlib"]
    assert [_requirement_name(r) for r in extras["ble-sim"]] == ["bumble"]
    assert "dev" not in extras  # dev tools are a PEP 735 group
    assert "pytest" in {_requirement_name(r) for r in PYPROJECT["dependency-groups"]["dev"]}
    assert PYPROJECT["project"]["dynamic"] == ["version"]


def test_bundled_data_is_read_from_the_package() -> None:
    data = ROOT / "retrotread" / "data"
    assert bundled_path("profiles") == data / "profiles"
    assert {"first-session", "intervals"} <= set(bundled_profiles())
    assert data / "quirks" in default_quirk_dirs()
    assert {q.id for q in load_quirks(data / "quirks")} <= {q.id for q in load_quirks()}
    assert load_rules(None) == ProgressionRules()  # the bundled rules file, read as data
    # A clone shows the same folders at the top level (links into the package).
    assert (ROOT / "profiles").resolve() == data / "profiles"
    assert (ROOT / "hardware" / "quirks").resolve() == data / "quirks"


def test_a_profile_is_found_by_name_or_path(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = bundled_profiles()["first-session"]
    assert find_profile("first-session") == bundled
    assert find_profile("first-session.yaml") == bundled
    own = tmp_path / "first-session.yaml"  # a file of the same name in the current folder
    own.write_text(bundled.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert find_profile("first-session.yaml") == Path("first-session.yaml")


def test_an_unknown_profile_name_lists_the_bundled_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "first-sesion", "--no-ui"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "first-sesion: no such file, and no bundled profile" in err
    assert "first-session" in err
    assert main(["plan", "no/such/file.yaml"]) == 2
    assert capsys.readouterr().err.strip() == "no/such/file.yaml: no such file"


def test_profiles_command_lists_name_level_and_backward_minutes(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    rows = {row.name: row for row in list_profiles()}
    assert set(rows) == set(bundled_profiles())
    first = rows["first-session"]
    assert first.level == "beginner" and first.backward_min == pytest.approx(2.5)
    line = next(line for line in out.splitlines() if line.startswith("first-session "))
    assert line.split()[1:] == ["beginner", "13.0", "m", "2.5", "m", "First", "session"]
    assert main(["plan", "first-session"]) == 0  # plan takes names too


def _python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd, check=False)


def test_a_missing_extra_is_named_and_the_command_still_listed(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['matplotlib'] = None; sys.modules['bumble'] = None\n"
    listed = _python(hide + "from retrotread.cli import main; main(['--help'])")
    assert re.search(r"^\s+plot\s", listed.stdout, re.MULTILINE), listed.stdout
    plotted = _python(hide + "from retrotread.cli import main; import sys; "
                      f"sys.exit(main(['plot', 'first-session', '-o', '{tmp_path}/p.png']))")
    assert plotted.returncode == 1
    assert "retrotread plot needs matplotlib" in plotted.stderr
    assert "pip install 'retrotread[plot]'" in plotted.stderr
    assert "Traceback" not in plotted.stderr
    ble = _python(hide + "from retrotread.cli import main; import sys; "
                  "sys.exit(main(['sim', '--ble']))")
    assert ble.returncode == 1
    assert "pip install 'retrotread[ble-sim]'" in ble.stderr and "Traceback" not in ble.stderr


def test_python_dash_m_retrotread() -> None:
    result = subprocess.run([sys.executable, "-m", "retrotread", "--version"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0
    assert result.stdout.strip() == f"retrotread {retrotread.__version__}"


# --------------------------------------------------------------------------- the wheel
_NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                     "__pycache__", ".*_cache", ".hypothesis", "sessions")


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 240
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_built_wheel_runs_a_bundled_profile_in_a_fresh_venv(tmp_path: Path) -> None:
    """What `pipx install .` does: build the wheel from a clean copy of the tree, install
    it with only its core dependencies into a new venv outside the clone, and run a
    simulated workout by profile name from an unrelated folder. The dependencies come
    through pip's own cache or index (PyPI in CI)."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_NOT_SOURCE)  # no stale build/
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RETROTREAD_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = _run([*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheels"),
                  str(source)], tmp_path, env)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "wheels").glob("retrotread-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    installed = _run([*pip, "--python", str(venv / "bin" / "python"), "install", "-q",
                      str(wheel)], tmp_path, env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    program = str(venv / "bin" / "retrotread")

    listed = _run([program, "profiles"], work, env, 60)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^first-session\s+beginner\s", listed.stdout, re.MULTILINE)
    probe = _run([str(venv / "bin" / "python"), "-c",
                  "import retrotread, json; from retrotread.quirks import load_quirks; "
                  "print(json.dumps([retrotread.__file__, len(load_quirks())]))"], work, env, 60)
    where, quirk_files = json.loads(probe.stdout)
    assert Path(where).is_relative_to(venv) and quirk_files >= 4  # the installed copy's data

    # A bundled profile by name, from an unrelated folder. It runs in real time until the
    # log shows it moving, then gets Ctrl-C: the installed program must stop the belt,
    # write its log and exit 130. (A whole workout with --speedup 50 would be quicker,
    # but on a loaded 2-core machine --speedup shrinks the watchdog's real-time budget
    # until the stall and staleness checks are judged in real time: issue 13, item 6.)
    log = work / "session.jsonl"
    process = subprocess.Popen([program, "run", "first-session",
                                "--no-ui", "--log", str(log)], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            text = log.read_text(encoding="utf-8") if log.exists() else ""
            if text.count('"type": "telemetry"') + text.count('"type":"telemetry"') >= 4:
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, output[-3000:]
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert records[0]["type"] == "log_header"
    started = next(r for r in records if r["type"] == "session_started")
    assert started["profile_name"] == "First session"
    assert Path(started["profile_path"]).is_relative_to(venv)  # the bundled file
    assert sum(r["type"] == "telemetry" for r in records) >= 4
    finished = records[-1]
    assert finished["type"] == "session_finished"
    assert finished["outcome"] == "interrupted" and finished["stop_sent"] is True

    no_plot = _run([program, "plot", "first-session", "-o", str(work / "p.png")], work, env, 60)
    assert no_plot.returncode == 1
    assert "pip install 'retrotread[plot]'" in no_plot.stderr
    as_module = _run([str(venv / "bin" / "python"), "-m", "retrotread", "--version"], work,
                     env, 60)
    assert as_module.stdout.strip() == f"retrotread {retrotread.__version__}"


def test_plot_takes_a_bundled_profile_by_name(tmp_path: Path) -> None:
    # needs the plot extra (matplotlib), which ./dev and CI install
    out = tmp_path / "plan.png"
    assert main(["plot", "first-session", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
