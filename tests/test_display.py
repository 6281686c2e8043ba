"""The screen, the line printer, the keys and the sound cues."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

from retrotread.cues import CuePlayer
from retrotread.display import (
    KEY_HELP,
    EventPrinter,
    KeyReader,
    LiveDisplay,
    guess_level,
    key_to_command,
    keys_to_commands,
    render,
    words,
)
from retrotread.envelope import Direction
from retrotread.events import (
    Announcement,
    CommandReplied,
    CommandSent,
    LinkStateChanged,
    MachineStatusChanged,
    Outcome,
    SegmentStarted,
    SessionFinished,
    SessionSnapshot,
    SessionStarted,
    TelemetrySample,
    TurnaroundPhase,
    UserAction,
    UserCommand,
    WatchdogAction,
)

BACKWARD_SNAPSHOT = SessionSnapshot(
    time_s=1000.0, state="running", facing=Direction.BACKWARD, segment_index=1,
    segment_label="Backward", segment_elapsed_s=45.0, segment_duration_s=90.0,
    next_label="Forward", next_change_in_s=45.0, plan_elapsed_s=225.0, plan_total_s=900.0,
    target_kmh=1.61, measured_kmh=1.58, distance_m=402.336, heart_rate_bpm=112,
    backward_ceiling_kmh=3.21, banner="SIMULATED TREADMILL (no hardware)",
    last_announcement="Turning around soon, the belt will stop", countdown_s=None,
    link_ok=True,
)


def screen(renderable: object) -> str:
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# --------------------------------------------------------------------------- render
def test_render_backward_in_mph() -> None:
    text = screen(render(BACKWARD_SNAPSHOT))
    assert "BACKWARD" in text
    assert "FORWARD" not in text
    assert "SIMULATED TREADMILL" in text
    assert "target 1.0 mph (1.6 km/h)" in text
    assert "measured 1.0 mph (1.6 km/h)" in text
    assert "2: Backward" in text
    assert "next: Forward in 0:45" in text  # countdown to the next change
    assert "0:45 / 1:30" in text  # segment progress
    assert "elapsed 3:45" in text and "remaining 11:15" in text
    assert "0.25 mi (0.40 km)" in text
    assert "112 bpm" in text
    assert "2.0 mph (3.2 km/h)" in text  # backward ceiling
    assert "Turning around soon, the belt will stop" in text
    assert "link ok" in text
    assert KEY_HELP in text
    assert "━" in text  # progress bars drawn


def test_render_forward_in_kmh_without_heart_rate() -> None:
    snapshot = dataclasses.replace(BACKWARD_SNAPSHOT, facing=Direction.FORWARD,
                                   target_kmh=4.83, measured_kmh=None, heart_rate_bpm=None,
                                   segment_label="Forward", next_label=None,
                                   next_change_in_s=65.0, last_announcement=None)
    text = screen(render(snapshot, units="km/h"))
    assert "FORWARD" in text
    assert "BACKWARD" not in text
    assert "target 4.8 km/h (3.0 mph)" in text
    assert "measured --" in text
    assert "0.40 km (0.25 mi)" in text
    assert "bpm" not in text  # an unknown heart rate is never shown as a number
    assert "Heart rate  unknown" in text
    assert "last segment, ends in 1:05" in text


def test_render_turnaround_countdown_and_pause() -> None:
    countdown = dataclasses.replace(BACKWARD_SNAPSHOT, state="countdown", countdown_s=2.3)
    assert "STARTING IN 3" in screen(render(countdown))
    paused = dataclasses.replace(BACKWARD_SNAPSHOT, state="paused")
    assert "PAUSED" in screen(render(paused))
    ready = dataclasses.replace(BACKWARD_SNAPSHOT, state="waiting_ready")
    assert "Press READY (r) when you are ready" in screen(render(ready))
    turning = dataclasses.replace(BACKWARD_SNAPSHOT, state="turnaround")
    assert "Turnaround" in screen(render(turning))


def test_render_link_lost() -> None:
    text = screen(render(dataclasses.replace(BACKWARD_SNAPSHOT, link_ok=False)))
    assert "LINK LOST" in text
    assert "the belt may still be running" in text
    assert "link ok" not in text


def test_render_before_the_session_exists() -> None:
    assert "Connecting" in screen(render(None))


def test_guess_level() -> None:
    assert guess_level("Stopping the belt: no telemetry") == "alarm"
    assert guess_level("Turning around soon, the belt will stop") == "warning"
    assert guess_level("Safety key pulled: the workout is over.") == "alarm"
    assert guess_level("Hold the rails and turn around") == "warning"
    assert guess_level("Great work, halfway there") == "info"


def test_live_display_uses_the_announced_level() -> None:
    display = LiveDisplay(lambda: BACKWARD_SNAPSHOT,
                          console=Console(record=True, width=100, file=io.StringIO()))
    display(Announcement(1.0, "Turning around soon, the belt will stop", "warning"))
    rendered = display.render(BACKWARD_SNAPSHOT)
    assert "BACKWARD" in screen(rendered)


async def test_live_display_runs_until_cancelled() -> None:
    calls = 0

    def source() -> SessionSnapshot | None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("session not ready")  # a failing source costs one frame
        return BACKWARD_SNAPSHOT

    out = io.StringIO()
    display = LiveDisplay(source, console=Console(file=out, width=100, force_terminal=True),
                          refresh_hz=50)
    task = asyncio.ensure_future(display.run())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls >= 3
    assert "BACKWARD" in out.getvalue()


# --------------------------------------------------------------------------- printer
def printed(*events: object, units: str = "mph", **kwargs: object) -> list[str]:
    out = io.StringIO()
    printer = EventPrinter(out, units=units, **kwargs)  # type: ignore[arg-type]
    for event in events:
        printer(event)  # type: ignore[arg-type]
    return out.getvalue().splitlines()


def test_event_printer_lines() -> None:
    lines = printed(
        SessionStarted(0.0, "Beginner retro", None, "sim:generic", True, 3.21, 900.0,
                       300.0, 1000.0),
        SegmentStarted(12.3, 1, "Backward", Direction.BACKWARD, 1.609344, 90.0, "Forward"),
        Announcement(13.0, "Turning around soon...", "warning"),
        Announcement(13.5, "Halfway there"),
        CommandSent(14.0, 0x02, "SetTargetSpeed", 1.61, Direction.BACKWARD),
        CommandSent(14.1, 0x07, "StartOrResume", None, Direction.BACKWARD, "resume"),
        CommandReplied(14.2, 0x02, "SetTargetSpeed", "SUCCESS"),
        CommandReplied(14.3, 0x02, "SetTargetSpeed", None, "no response in 2 s"),
        WatchdogAction(15.0, "stale_telemetry", "stop", "no Treadmill Data for 3 s"),
        TurnaroundPhase(16.0, "countdown", Direction.FORWARD, 3.0),
        MachineStatusChanged(17.0, "TargetSpeedChanged", "1.61 km/h"),
        UserAction(18.0, UserCommand.TOGGLE_PAUSE, "key", True),
        LinkStateChanged(19.0, False, "BLE disconnect"),
        SessionFinished(20.0, Outcome.WATCHDOG, "no telemetry", 754.0, 300.0, 804.672, True),
        segment_count=9,
    )
    assert lines[0].startswith("[   0.0s] START Beginner retro on sim:generic (SIMULATED)")
    assert lines[1] == "[  12.3s] SEGMENT 2/9 Backward 1.0 mph for 1:30 (next: Forward)"
    assert lines[2] == "[  13.0s] ! Turning around soon..."
    assert lines[3] == "[  13.5s] Halfway there"
    assert lines[4] == "[  14.0s] -> Set Target Speed 1.61 km/h (1.0 mph) facing backward"
    assert lines[5] == "[  14.1s] -> Start Or Resume facing backward (resume)"
    # the successful reply prints nothing; a missing one does
    assert lines[6] == "[  14.3s] <- Set Target Speed: no reply (no response in 2 s)"
    assert lines[7] == "[  15.0s] !! WATCHDOG stale_telemetry: stop (no Treadmill Data for 3 s)"
    assert lines[8] == "[  16.0s] TURNAROUND to forward: countdown (3 s)"
    # (the machine's target-speed echo is not printed: a console press is a watchdog line)
    assert lines[9] == "[  18.0s] key: toggle pause ok"
    assert "LINK LOST (BLE disconnect): the belt may still be running" in lines[10]
    assert lines[11] == ("[  20.0s] FINISHED watchdog: no telemetry · 12:34 total, "
                         "5:00 backward, 0.50 mi · Stop sent")
    assert len(lines) == 12


def test_event_printer_segment_without_count_and_kmh() -> None:
    lines = printed(SegmentStarted(1.0, 0, "Warm-up", Direction.FORWARD, 3.2, 180.0,
                                   "Backward"), units="km/h")
    assert lines == ["[   1.0s] SEGMENT 1 Warm-up facing forward 3.2 km/h for 3:00 "
                     "(next: Backward)"]


def test_event_printer_throttles_telemetry() -> None:
    samples = [TelemetrySample(float(t), 1.6, t, t, None, 1.61, Direction.BACKWARD)
               for t in range(0, 61)]
    samples.insert(46, TelemetrySample(45.5, 0.0, 45, 45, None, 0.0, Direction.FORWARD))
    lines = printed(*samples)
    # every 30 s, and at once when the way the person faces changes (and back)
    assert [line[:9] for line in lines] == ["[   0.0s]", "[  30.0s]", "[  45.5s]",
                                            "[  46.0s]"]
    assert "speed 1.0 mph (target 1.0 mph) facing backward" in lines[0]
    with_hr = printed(TelemetrySample(0.0, 1.6, 10, 5, 120, 1.61, Direction.BACKWARD))
    assert "HR 120 bpm" in with_hr[0]


def test_words() -> None:
    assert words("SetTargetSpeed") == "Set Target Speed"
    assert words("StopOrPause") == "Stop Or Pause"


# --------------------------------------------------------------------------- keys
@pytest.mark.parametrize(("key", "command"), [
    (" ", UserCommand.TOGGLE_PAUSE),
    ("r", UserCommand.READY),
    ("R", UserCommand.READY),
    ("s", UserCommand.STOP),
    ("q", UserCommand.STOP),
    ("+", UserCommand.SPEED_UP),
    ("=", UserCommand.SPEED_UP),
    ("-", UserCommand.SPEED_DOWN),
    ("n", UserCommand.SKIP),
    ("x", None),
    ("\n", None),
    ("", None),
    ("rs", None),
])
def test_key_to_command(key: str, command: UserCommand | None) -> None:
    assert key_to_command(key) is command


def test_keys_to_commands_with_arrows() -> None:
    assert keys_to_commands("r\x1b[A\x1b[Bx s") == [
        UserCommand.READY, UserCommand.SPEED_UP, UserCommand.SPEED_DOWN,
        UserCommand.TOGGLE_PAUSE, UserCommand.STOP,
    ]


def test_key_reader_without_a_tty_does_nothing() -> None:
    calls: list[tuple[UserCommand, str]] = []

    def handler(command: UserCommand, source: str) -> bool:
        calls.append((command, source))
        return True

    with KeyReader(handler, stream=io.StringIO("r")) as reader:
        assert not reader.active
    assert calls == []


async def test_key_reader_not_a_tty_inside_a_loop() -> None:
    with KeyReader(lambda c, s: True, stream=io.StringIO("r")) as reader:
        assert not reader.active


class FdStream:
    """A stream over a raw file descriptor (what KeyReader needs of stdin)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals only")
async def test_key_reader_reads_keys_from_a_pty() -> None:
    import termios

    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        got: list[tuple[UserCommand, str]] = []
        done = asyncio.Event()

        def handler(command: UserCommand, source: str) -> bool:
            got.append((command, source))
            if len(got) == 3:
                done.set()
            return True

        with KeyReader(handler, stream=FdStream(slave)) as reader:
            assert reader.active
            assert termios.tcgetattr(slave)[3] & termios.ICANON == 0  # cbreak
            os.write(master, b"r+q")
            await asyncio.wait_for(done.wait(), timeout=5)
        assert not reader.active
        assert termios.tcgetattr(slave) == before  # terminal restored
        assert got == [(UserCommand.READY, "key"), (UserCommand.SPEED_UP, "key"),
                       (UserCommand.STOP, "key")]
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals only")
def test_key_reader_on_a_tty_without_a_loop_does_nothing() -> None:
    import termios

    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        with KeyReader(lambda c, s: True, stream=FdStream(slave)) as reader:
            assert not reader.active
            assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


# --------------------------------------------------------------------------- cues
def test_cue_bell_for_warnings_and_alarms_only() -> None:
    out = io.StringIO()
    cues = CuePlayer(out=out)
    cues(Announcement(1.0, "Halfway there", "info"))
    assert out.getvalue() == ""
    cues(Announcement(2.0, "Turning around soon", "warning"))
    assert out.getvalue() == "\a"
    cues(Announcement(3.0, "Stopping the belt", "alarm"))
    assert out.getvalue() == "\a\a"
    cues(WatchdogAction(4.0, "x", "stop", "not an announcement"))
    assert out.getvalue() == "\a\a"


def test_cue_bell_can_be_off() -> None:
    out = io.StringIO()
    CuePlayer(bell=False, out=out)(Announcement(1.0, "Stop", "alarm"))
    assert out.getvalue() == ""


def test_cue_voice_speaks_every_announcement() -> None:
    said: list[str] = []
    cues = CuePlayer(bell=False, voice=True, out=io.StringIO(), speak=said.append)
    cues(Announcement(1.0, "Halfway there"))
    cues(Announcement(2.0, "Turning around soon", "warning"))
    cues(TelemetrySample(3.0, 1.0, None, None, None, 1.0, Direction.FORWARD))
    assert said == ["Halfway there", "Turning around soon"]


def test_cue_voice_off_does_not_speak() -> None:
    said: list[str] = []
    CuePlayer(out=io.StringIO(), speak=said.append)(Announcement(1.0, "hi", "warning"))
    assert said == []


def test_cue_speech_failure_never_raises() -> None:
    def broken(text: str) -> None:
        raise OSError("no audio device")

    out = io.StringIO()
    cues = CuePlayer(voice=True, out=out, speak=broken)
    cues(Announcement(1.0, "Stop", "alarm"))
    assert out.getvalue() == "\a"


def test_cue_missing_espeak_warns_once(monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("retrotread.cues.shutil.which", lambda name: None)
    cues = CuePlayer(voice=True, out=io.StringIO())
    cues(Announcement(1.0, "one"))
    cues(Announcement(2.0, "two"))
    assert len([r for r in caplog.records if "espeak-ng" in r.getMessage()]) == 1


class FakeProcess:
    def __init__(self, args: list[str], **kwargs: object) -> None:
        self.args = args
        self.running = True
        self.killed = False
        FakeProcess.started.append(self)

    def poll(self) -> int | None:
        return None if self.running else 0

    def kill(self) -> None:
        self.killed = True
        self.running = False

    def wait(self) -> int:
        return 0

    started: list[FakeProcess] = []  # noqa: RUF012


def test_cue_espeak_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeProcess.started = []
    monkeypatch.setattr("retrotread.cues.shutil.which", lambda name: "/usr/bin/espeak-ng")
    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    cues = CuePlayer(bell=False, voice=True, out=io.StringIO())
    cues(Announcement(1.0, "first"))
    cues(Announcement(2.0, "second while first speaks"))  # skipped
    assert [p.args[-1] for p in FakeProcess.started] == ["first"]
    assert cues.skipped == 1
    cues(Announcement(3.0, "Stopping the belt", "alarm"))  # an alarm cuts in
    assert FakeProcess.started[0].killed
    assert [p.args[-1] for p in FakeProcess.started] == ["first", "Stopping the belt"]
    FakeProcess.started[1].running = False
    cues(Announcement(4.0, "after"))
    assert FakeProcess.started[-1].args == ["/usr/bin/espeak-ng", "--", "after"]
    cues.close()


def test_event_printer_prints_a_ramp_as_its_first_and_last_step() -> None:
    ramp = [CommandSent(10.0 + k / 10, 0x02, "SetTargetSpeed", 0.5 + k / 10,
                        Direction.FORWARD) for k in range(28)]
    lines = printed(*ramp, Announcement(20.0, "Halfway there"))
    assert lines == [
        "[  10.0s] -> Set Target Speed 0.50 km/h (0.3 mph) facing forward",
        "[  12.7s] -> Set Target Speed 3.20 km/h (2.0 mph) facing forward",
        "[  20.0s] Halfway there",
    ]
