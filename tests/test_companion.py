"""The companion server over real TCP (aiohttp client), the dead-man rule in a real
workout, host speech and the run options."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from retrotread.companion import CompanionServer, parse_bind
from retrotread.companion.server import MAX_MESSAGE_BYTES, QUEUE_SIZE, Page
from retrotread.cues import CuePlayer, speech_problem
from retrotread.errors import RetrotreadError
from retrotread.events import Announcement, CommandSent, WatchdogAction
from retrotread.presentation import Narration
from retrotread.profile import load_profile_text
from retrotread.session import Session
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.watchdog import CompanionRule
from tests.companion_harness import SHORT_PROFILE
from tests.workout_harness import run_on_sim


async def _server(**kwargs: object) -> CompanionServer:
    server = CompanionServer(lambda: None, host="127.0.0.1", port=0, **kwargs)  # type: ignore[arg-type]
    await server.start()
    return server


async def test_pairing_token_is_required_and_never_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = await _server()
    assert len(server.token) >= 22  # 16 random bytes, URL-safe
    assert server.token != (await _server()).token
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/") as response:
                assert response.status == 401
            async with http.get(f"{base}/?t=nope") as response:
                assert response.status == 403
            async with http.get(f"{base}/?t={server.token}") as response:
                assert response.status == 200
                assert "companion.js" in await response.text()
            for bad in ("", "?t=nope"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{base}/ws{bad}")
                assert refused.value.status in (401, 403)
            async with http.ws_connect(f"{base}/ws?t={server.token}") as ws:
                first = json.loads((await ws.receive()).data)
                assert first["type"] == "state" and first["pages"] == 1
    finally:
        await server.close()
    assert server.token not in caplog.text


async def test_at_most_8_pages_and_bad_messages_are_dropped_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    server = await _server()
    url = f"http://127.0.0.1:{server.port}/ws?t={server.token}"
    try:
        async with aiohttp.ClientSession() as http:
            pages = [await http.ws_connect(url) for _ in range(8)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url)
            assert refused.value.status == 503
            ws = pages[0]
            with caplog.at_level(logging.WARNING):
                await ws.send_str("x" * (MAX_MESSAGE_BYTES + 1))
                await ws.send_str("{not json")
                await ws.send_str(json.dumps({"command": "faster"}))  # no such command
                await ws.send_str(json.dumps({"command": "stop", "id": 7}))
                ack = None
                while ack is None:
                    message = json.loads((await ws.receive(timeout=5)).data)
                    if message["type"] == "ack":
                        ack = message
            assert ack == {"type": "ack", "command": "stop", "accepted": False, "id": 7}
            assert server.dropped_messages == 3
            assert "oversized" in caplog.text and "malformed" in caplog.text
            for page in pages:
                await page.close()
    finally:
        await server.close()


def test_a_page_queue_drops_the_oldest() -> None:
    async def run() -> None:
        page = Page(ws=None)  # type: ignore[arg-type]
        for i in range(QUEUE_SIZE + 5):
            page.put(str(i))
        assert len(page.queue) == QUEUE_SIZE and page.dropped == 5
        assert page.queue[0] == "5" and page.queue[-1] == str(QUEUE_SIZE + 4)

    asyncio.run(run())


async def test_what_is_said_reaches_the_pages_at_once() -> None:
    narration = Narration()
    server = await _server(narration=narration)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"http://127.0.0.1:{server.port}/ws?t={server.token}") as ws:
            await ws.receive()  # the first state
            narration(Announcement(1.0, "Turning around soon", "warning"))
            while (message := json.loads((await ws.receive(timeout=5)).data))["type"] != "say":
                pass
            assert message == {"type": "say", "text": "Turning around soon", "level": "warning"}
    finally:
        await server.close()


def test_parse_bind() -> None:
    assert parse_bind("") == ("0.0.0.0", None)
    assert parse_bind("127.0.0.1") == ("127.0.0.1", None)
    assert parse_bind("192.168.1.5:9000") == ("192.168.1.5", 9000)
    assert parse_bind(":9000") == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    with pytest.raises(RetrotreadError):
        parse_bind("host:http")


async def test_the_next_port_is_used_when_the_default_is_taken() -> None:
    first = CompanionServer(lambda: None, host="127.0.0.1")
    await first.start()
    second = CompanionServer(lambda: None, host="127.0.0.1")
    await second.start()
    try:
        assert first.port is not None and second.port == first.port + 1
    finally:
        await first.close()
        await second.close()


@pytest.mark.looptime(noop_cycles=1)
async def test_companion_required_pauses_a_moving_belt_and_never_resumes() -> None:
    """--companion-required with no page: the belt is paused 3 s after it starts moving
    (announced), and nothing starts it again."""

    async def no_page(sim: SimulatedTreadmill, session: Session) -> None:
        session.companion_rule = CompanionRule()

    run = await run_on_sim(load_profile_text(SHORT_PROFILE, "t.yaml"), scenario=no_page)
    triggers = [e for e in run.of(WatchdogAction) if e.trigger == "companion_lost"]
    assert len(triggers) == 1 and triggers[0].action == "pause"
    assert any("Companion page lost" in a.text and a.level == "alarm"
               for a in run.of(Announcement))
    ops = [(c.time_s, c.op) for c in run.of(CommandSent)]
    starts = [t for t, op in ops if op == "StartOrResume"]
    pause = [t for t, op in ops if op == "StopOrPause" and t >= triggers[0].time_s]
    assert pause and pause[0] - triggers[0].time_s < 0.5
    assert not [t for t in starts if t > triggers[0].time_s]  # never resumed by itself
    assert 3.0 < triggers[0].time_s - starts[0] < 4.0


def test_host_speech_says_why_it_cannot_be_heard(tmp_path: Path) -> None:
    missing = speech_problem(str(tmp_path / "no-espeak"))
    assert missing is not None
    problem = speech_problem()  # the real espeak-ng, on this machine's audio (if any)
    if problem is not None:
        assert "espeak-ng" in problem


def test_speaking_until_covers_an_utterance() -> None:
    import time

    said: list[str] = []
    player = CuePlayer(bell=False, voice=True, speak=said.append)
    assert not player.speaking() and player.speaking_until() is None
    player(Announcement(0.0, "Turning around soon: the belt will stop.", "warning"))
    until = player.speaking_until()
    assert said and player.speaking() and until is not None
    assert until - time.monotonic() > 2.0  # seven words take a few seconds


def test_companion_required_without_the_page_is_bad_input(tmp_path: Path) -> None:
    profile = Path(__file__).parent.parent / "profiles" / "first-session.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "retrotread.cli", "run", str(profile), "--no-companion",
         "--companion-required", "--no-ui", "--log", str(tmp_path / "x.jsonl")],
        capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(Path(__file__).parent.parent), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert "--companion-required needs the companion page" in done.stderr
    assert "Traceback" not in done.stderr


async def test_silent_speech_is_told_on_the_terminal_and_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from retrotread.runner import speech_note_for

    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng here
    out = io.StringIO()
    note = await speech_note_for(True, out)
    assert note is not None and "espeak-ng is not installed" in note
    assert out.getvalue().startswith("WARNING: Spoken cues are OFF")
    assert await speech_note_for(False, io.StringIO()) is None  # --quiet: nothing to say
    server = await _server(speech_note=note)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"http://127.0.0.1:{server.port}/ws?t={server.token}") as ws:
            first = json.loads((await ws.receive(timeout=5)).data)
            assert first["speech_note"] == note
    finally:
        await server.close()


async def test_a_flooding_page_is_rate_limited_but_its_stop_still_goes_through(
        caplog: pytest.LogCaptureFixture) -> None:
    """A buggy or hostile page: of 300 commands at once only the page's rate is passed on
    (each passed command is acknowledged), the log gets a line per kind (not per
    message), and a STOP after the flood is still passed on (its own allowance)."""
    server = await _server()
    url = f"http://127.0.0.1:{server.port}/ws?t={server.token}"
    acks: list[dict[str, object]] = []
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url)
            with caplog.at_level(logging.WARNING):
                for _ in range(300):
                    await ws.send_str(json.dumps({"command": "pause"}))
                await ws.send_str(json.dumps({"command": "stop", "id": 1}))
                while not any(a.get("id") == 1 for a in acks):
                    message = json.loads((await ws.receive(timeout=10)).data)
                    if message["type"] == "ack":
                        acks.append(message)
            await ws.close()
    finally:
        await server.close()
    pauses = sum(1 for a in acks if a["command"] == "pause")
    assert 5 <= pauses <= 20, pauses  # the burst, plus what 2 per second refilled
    assert acks[-1]["command"] == "stop"  # not held back by the flood
    assert server.dropped_messages == 300 - pauses
    rate_lines = [r for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(rate_lines) <= 2
