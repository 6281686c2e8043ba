"""The companion page in a real headless Chromium, against live simulated workouts.

One browser for the module. Workouts run in real time, sped up (``--speedup``), with the
control loop's real tick period kept at 100 ms (tests/companion_harness.py). Set
RETROTREAD_SCREENSHOTS=DIR to save the README's screenshots there.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrotread.events import CommandSource, UserAction, UserCommand
from retrotread.ftms import codec
from tests.companion_harness import LiveWorkout, browser, chromium_path
from tests.mosquitto import in_ci

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 1280, "height": 800}
SHOTS = os.environ.get("RETROTREAD_SCREENSHOTS")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if chromium_path() is None:
        if in_ci():
            pytest.fail("CI=true and chromium is not installed (scripts/install-chromium.sh)",
                        pytrace=False)
        pytest.skip("chromium is not installed (scripts/install-chromium.sh)")
    with browser() as chromium:
        yield chromium


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name))


def _companion_actions(live: LiveWorkout, command: UserCommand) -> list[UserAction]:
    return [e for e in list(live.events) if isinstance(e, UserAction)
            and e.command is command and e.source == CommandSource.COMPANION]


@pytest.mark.timeout(120)
def test_the_page_follows_a_workout_and_stop_reaches_the_wire(chromium: Any) -> None:
    with LiveWorkout(speedup=3.0) as live:
        phone = chromium.new_page(viewport=PHONE)
        tablet = chromium.new_page(viewport=TABLET)
        phone.goto(live.url)
        tablet.goto(live.url)
        face = phone.locator("#face-word")
        face.wait_for(state="visible")
        phone.wait_for_function("document.getElementById('face-word').textContent"
                                " === 'FORWARD'", timeout=15_000)
        # First turnaround: stopped, the word is already the new way; then the countdown.
        phone.wait_for_selector("body.turning", timeout=30_000)
        assert face.inner_text() == "BACKWARD"
        assert "turn around" in phone.inner_text("#phase-text").lower()
        _shot(phone, "companion-phone-turn-around.png")
        phone.wait_for_selector("#countdown:not([hidden])", timeout=15_000)
        numeral = phone.inner_text("#countdown-number")
        assert numeral in {"1", "2", "3"}
        _shot(phone, "companion-phone-countdown.png")
        _shot(tablet, "companion-tablet-countdown.png")
        # Mid-backward: walking, the word says BACKWARD, the numbers are live.
        phone.wait_for_selector("body.phase-running.backward", timeout=15_000)
        phone.wait_for_timeout(2500)
        assert face.inner_text() == "BACKWARD"
        assert phone.locator("#lost").is_hidden()
        assert re.fullmatch(r"\d+\.\d mph", phone.inner_text("#target-mph").replace("\n", ""))
        _shot(phone, "companion-phone-backward.png")
        _shot(tablet, "companion-tablet-backward.png")
        # Second turnaround: back to FORWARD.
        phone.wait_for_function("document.getElementById('face-word').textContent"
                                " === 'FORWARD'", timeout=30_000)
        # STOP on the page puts Stop on the simulator's wire.
        stops = live.stops_on_wire()
        pressed = time.monotonic()
        phone.click("#stop")
        deadline = time.monotonic() + 10
        while live.stops_on_wire() == stops and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.stops_on_wire() > stops, "STOP on the page did not reach the wire"
        assert time.monotonic() - pressed < 5
        assert _companion_actions(live, UserCommand.STOP)[0].accepted
        # The stop takes over the screen, then the page says the workout is over.
        phone.wait_for_selector("#ended:not([hidden])", timeout=10_000)
        assert "stop requested" in phone.inner_text("#ended-text").lower()
        assert phone.locator("#lost").is_hidden()


@pytest.mark.timeout(60)
def test_a_page_with_a_wrong_token_cannot_command(chromium: Any) -> None:
    with LiveWorkout(speedup=1.0, wait_for_first_page=False) as live:
        base = live.url.split("?")[0]
        page = chromium.new_page()
        assert page.goto(base).status == 401
        assert page.goto(base + "?t=not-the-token").status == 403
        assert "Wrong pairing token" in page.inner_text("body")
        # From the same origin, a WebSocket with a wrong token is refused; a STOP sent
        # on it goes nowhere.
        outcome = page.evaluate("""(url) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onopen = () => { ws.send(JSON.stringify({command: "stop"})); resolve("open"); };
            ws.onerror = () => resolve("refused");
        })""", base.replace("http", "ws") + "ws?t=not-the-token")
        assert outcome == "refused"
        page.wait_for_timeout(500)
        assert _companion_actions(live, UserCommand.STOP) == []
        assert live.stops_on_wire() == 0
        assert live.server is not None and live.server.pages == set()


@pytest.mark.timeout(90)
def test_hold_to_start_on_a_real_machine(chromium: Any) -> None:
    """The simulator run as a real machine (the session is told it is not simulated):
    the start gate waits; a tap on the start button sends nothing, a 2 s hold sends
    START from the companion."""
    with LiveWorkout(speedup=1.0, simulated=False) as live:
        page = chromium.new_page(viewport=PHONE)
        page.goto(live.url)
        page.wait_for_selector("body.phase-start_gate", timeout=15_000)
        button = page.locator("#hold-start")
        assert button.is_visible()
        assert "FORWARD" in page.inner_text("#phase-text")
        _shot(page, "companion-phone-start-gate.png")
        box = button.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.wait_for_timeout(400)  # a tap (even a long one) starts nothing
        page.mouse.up()
        page.wait_for_timeout(2500)
        assert _companion_actions(live, UserCommand.START) == []
        assert not any(isinstance(r, codec.StartOrResume) for r in live.wire())
        page.mouse.down()
        page.wait_for_timeout(2300)
        page.mouse.up()
        deadline = time.monotonic() + 5
        while not _companion_actions(live, UserCommand.START) and time.monotonic() < deadline:
            time.sleep(0.05)
        starts = _companion_actions(live, UserCommand.START)
        assert len(starts) == 1, "a 2 s hold must send START once"
        assert starts[0].accepted, starts  # START from the page passes the start gate
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
                isinstance(r, codec.StartOrResume) for r in live.wire()):
            time.sleep(0.1)
        assert any(isinstance(r, codec.StartOrResume) for r in live.wire())


@pytest.mark.timeout(90)
def test_connection_lost_shows_within_2_s_when_the_controller_dies(
        chromium: Any, tmp_path: Path) -> None:
    """`retrotread run --companion` as a person runs it; then the controller freezes."""
    profile = Path(__file__).parent.parent / "profiles" / "first-session.yaml"
    process = subprocess.Popen(
        [sys.executable, "-m", "retrotread.cli", "run", str(profile), "--speedup", "2",
         "--companion", "--companion-bind", "127.0.0.1:0", "--no-ui",
         "--log", str(tmp_path / "session.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        assert process.stdout is not None
        url = None
        printed: list[str] = []
        for line in process.stdout:
            printed.append(line)
            match = re.search(r"companion page: (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "".join(printed)
        token = url.split("t=")[1]
        page = chromium.new_page(viewport=PHONE)
        page.goto(url)
        page.wait_for_selector("body.phase-running", timeout=20_000)
        assert page.locator("#lost").is_hidden()
        process.send_signal(signal.SIGSTOP)  # the controller stops answering
        frozen = time.monotonic()
        page.wait_for_selector("#lost:not([hidden])", timeout=5_000)
        assert time.monotonic() - frozen <= 2.0
        assert page.evaluate("document.body.classList.contains('stale')")
        process.kill()
        process.wait(10)
        log_text = (tmp_path / "session.jsonl").read_text()
        assert token not in log_text  # the pairing token is never in the session log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
