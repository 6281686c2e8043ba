"""Every quirk field is read and enforced, each with a test (issue 12, "Done when").

:data:`ENFORCED_BY` names the test that shows each field of :class:`Quirks` at work; a
new field without one fails :func:`test_every_quirk_field_has_a_test`. A user's own quirk
file (``$XDG_CONFIG_HOME/retrotread/quirks``) reaches the client as a bundled one does.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from retrotread.clock import LoopClock
from retrotread.errors import ControlPointTimeoutError
from retrotread.ftms import codec
from retrotread.links.loopback import LoopbackLink
from retrotread.profile import load_profile
from retrotread.quirks import Quirks
from retrotread.runner import connect_treadmill, machine_limits, running_simulator
from tests.workout_harness import check_invariants, run_on_sim

TESTS = Path(__file__).parent
PROFILES = TESTS.parent / "profiles"

ENFORCED_BY = {
    "request_control_before_every_command":
        "test_a_machine_that_drops_control_gets_request_control_before_every_command",
    "must_start_before_speed":
        "test_a_machine_that_needs_start_before_speed_gets_them_in_that_order",
    "ignores_pause": "test_a_machine_that_ignores_pause_gets_stop_at_turnarounds",
    "start_at_own_minimum": "test_informational_quirks_are_logged_and_the_speed_follows_start",
    "stops_on_disconnect": "test_informational_quirks_are_logged_and_the_speed_follows_start",
    "min_speed_kmh": "test_a_users_quirk_file_makes_the_speed_range_stricter",
    "increment_kmh": "test_a_users_quirk_file_makes_the_speed_range_stricter",
    "reply_timeout_s": "test_a_users_quirk_file_waits_longer_for_slow_replies",
}


def test_every_quirk_field_has_a_test() -> None:
    assert set(ENFORCED_BY) == set(Quirks.__dataclass_fields__)
    defined = set()
    for path in TESTS.glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined |= {node.name for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert set(ENFORCED_BY.values()) <= defined


@pytest.fixture
def user_quirks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own quirk directory, empty (platformdirs reads XDG_CONFIG_HOME)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    folder = tmp_path / "retrotread" / "quirks"
    folder.mkdir(parents=True)
    return folder


def quirk_file_for_generic(folder: Path, quirks: str) -> None:
    (folder / "generic.yaml").write_text(
        "id: my-generic\nmatch: {manufacturer: ^retrotread$, model: ^Simulated FTMS}\n"
        f"quirks: {{{quirks}}}\n", encoding="utf-8")


@pytest.mark.looptime(noop_cycles=1)
async def test_a_users_quirk_file_makes_the_speed_range_stricter(user_quirks: Path) -> None:
    clock = LoopClock()
    async with running_simulator(clock, "generic") as sim:
        plain = await connect_treadmill(lambda: LoopbackLink(sim), clock)
        assert (machine_limits(plain).min_kmh, machine_limits(plain).increment_kmh) == (0.5, 0.1)
        await plain.close()
        quirk_file_for_generic(user_quirks, "min_speed_kmh: 1.2, increment_kmh: 0.2")
        treadmill = await connect_treadmill(lambda: LoopbackLink(sim), clock)
        limits = machine_limits(treadmill)
        await treadmill.close()
    assert (limits.min_kmh, limits.increment_kmh) == (1.2, 0.2)
    # never looser than the machine: a lower floor or a finer step in a file is ignored
    quirk_file_for_generic(user_quirks, "min_speed_kmh: 0.3, increment_kmh: 0.05")
    async with running_simulator(clock, "generic") as sim:
        treadmill = await connect_treadmill(lambda: LoopbackLink(sim), clock)
        limits = machine_limits(treadmill)
        await treadmill.close()
    assert (limits.min_kmh, limits.increment_kmh) == (0.5, 0.1)


@pytest.mark.looptime(noop_cycles=1)
async def test_a_users_quirk_file_waits_longer_for_slow_replies(user_quirks: Path) -> None:
    clock = LoopClock()
    async with running_simulator(clock, "generic") as sim:
        sim.faults.reply_delay_s = 3.0  # longer than the default 2 s time-out
        plain = await connect_treadmill(lambda: LoopbackLink(sim), clock)
        with pytest.raises(ControlPointTimeoutError):
            await plain.request_control()
        await plain.close()
        quirk_file_for_generic(user_quirks, "reply_timeout_s: 4.0")
        treadmill = await connect_treadmill(lambda: LoopbackLink(sim), clock)
        assert treadmill.reply_timeout_s == 4.0
        await treadmill.request_control()  # answered after 3 s: in time
        assert treadmill.has_control
        await treadmill.close()


@pytest.mark.looptime(noop_cycles=1)
async def test_a_machine_that_drops_control_gets_request_control_before_every_command() -> None:
    run = await run_on_sim(load_profile(PROFILES / "first-session.yaml"),
                           preset="strict-control")
    assert run.session.treadmill.quirks.request_control_before_every_command
    requests = run.sim.requests
    commands = [i for i, r in enumerate(requests) if not isinstance(r, codec.RequestControl)]
    assert commands
    assert all(i > 0 and isinstance(requests[i - 1], codec.RequestControl) for i in commands)
    assert run.result.outcome.value == "completed"
    check_invariants(run)


@pytest.mark.looptime(noop_cycles=1)
async def test_informational_quirks_are_logged_and_the_speed_follows_start(
        caplog: pytest.LogCaptureFixture) -> None:
    """walking-pad: starts at its own minimum, stops when the link closes. Nothing changes
    for either (they are logged); the session sends its speed after every Start."""
    with caplog.at_level(logging.INFO, logger="retrotread.runner"):
        run = await run_on_sim(load_profile(PROFILES / "intervals.yaml"), preset="walking-pad")
    quirks = run.session.treadmill.quirks
    assert quirks.start_at_own_minimum and quirks.stops_on_disconnect
    assert "Start runs the belt at the machine's own minimum" in caplog.text
    assert "the belt stops by itself when the app disconnects" in caplog.text
    requests = run.sim.requests
    starts = [i for i, r in enumerate(requests) if isinstance(r, codec.StartOrResume)]
    assert starts
    for i in starts:  # a speed follows every Start before anything halts the belt
        after = next(r for r in requests[i + 1:]
                     if isinstance(r, codec.SetTargetSpeed | codec.StopOrPause))
        assert isinstance(after, codec.SetTargetSpeed), requests[i:i + 3]
    assert run.result.outcome.value == "completed"
    check_invariants(run)


def test_an_oversized_quirk_file_is_refused_unread(tmp_path) -> None:
    from retrotread.errors import QuirkFileError
    from retrotread.quirks import MAX_QUIRK_FILE_BYTES, load_quirk_file

    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * (MAX_QUIRK_FILE_BYTES // 10 + 10))
    with pytest.raises(QuirkFileError, match="larger than"):
        load_quirk_file(path)
