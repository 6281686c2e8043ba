"""Sound cues for a person who cannot see the console: the terminal bell and, on
request, speech through espeak-ng.

:class:`CuePlayer` is an event subscriber. It reacts to :class:`Announcement` events only,
must return at once (it runs inside the event bus, next to the control loop) and never
raises: a missing speech engine or a failing terminal costs the sound, not the workout.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TextIO

from retrotread.events import Announcement, Event

log = logging.getLogger(__name__)

BELL = "\a"
LOUD_LEVELS = frozenset({"warning", "alarm"})
ESPEAK = "espeak-ng"
WORDS_PER_S = 2.6  # espeak-ng's default rate (175 words a minute), for "speaking until"
SPEECH_PROBE_TIMEOUT_S = 5.0


def speech_problem(espeak: str | None = None) -> str | None:
    """Why spoken cues cannot be heard on this computer, or None when they can.

    Runs espeak-ng once on a silent utterance (amplitude 0): with no audio device it
    still exits 0 but reports the failure on stderr, which is what this reads. Blocks
    for about a tenth of a second: call it before the workout (or in a thread)."""
    espeak = espeak or shutil.which(ESPEAK)
    if espeak is None:
        return (f"{ESPEAK} is not installed, so nothing is spoken on this computer "
                f"(install it: apt install {ESPEAK})")
    try:
        done = subprocess.run([espeak, "-a", "0", "--", "."], capture_output=True,
                              timeout=SPEECH_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{ESPEAK} does not run: {exc}"
    errors = done.stderr.decode("utf-8", errors="replace")
    if done.returncode != 0 or "error" in errors.lower():
        lines = [line for line in errors.splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"exit status {done.returncode}"
        return f"no audio output: {ESPEAK} cannot play sound here ({why})"
    return None


class CuePlayer:
    """Rings the bell for warnings and alarms; speaks every announcement if ``voice``.

    ``speak`` replaces the speech engine (tests, other engines); it must not block.
    """

    def __init__(
        self,
        *,
        bell: bool = True,
        voice: bool = False,
        out: TextIO = sys.stdout,
        speak: Callable[[str], None] | None = None,
    ) -> None:
        self.bell = bell
        self.voice = voice
        self.out = out
        self._speak = speak
        self._espeak: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._warned = False
        self._until = 0.0  # time.monotonic() when the current utterance should end
        self.skipped = 0
        if voice and speak is None:
            self._espeak = shutil.which(ESPEAK)
            if self._espeak is None:
                self._warn_once(f"voice cues were asked for but {ESPEAK} is not installed; "
                                "announcements are shown on screen only "
                                f"(install it, e.g. `apt install {ESPEAK}`)")

    def __call__(self, event: Event) -> None:
        if not isinstance(event, Announcement):
            return
        if self.bell and event.level in LOUD_LEVELS:
            self._ring()
        if self.voice:
            self.say(event.text, urgent=event.level == "alarm")

    def _ring(self) -> None:
        try:
            self.out.write(BELL)
            self.out.flush()
        except (OSError, ValueError) as exc:
            self._warn_once(f"cannot ring the terminal bell: {exc}")

    def say(self, text: str, *, urgent: bool = False) -> None:
        """Speak ``text`` without waiting. At most one utterance at a time: while one is
        still running a new one is skipped, unless ``urgent`` (an alarm), which cuts the
        running one short."""
        if self._speak is not None:
            self._until = time.monotonic() + len(text.split()) / WORDS_PER_S + 0.3
            try:
                self._speak(text)
            except Exception as exc:  # a speech engine must never break the session
                self._warn_once(f"speech failed: {exc}")
            return
        if self._espeak is None:
            return
        if self._process is not None and self._process.poll() is None:
            if not urgent:
                self.skipped += 1
                return
            self._process.kill()
        try:
            self._process = subprocess.Popen(
                [self._espeak, "--", text],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._until = time.monotonic() + len(text.split()) / WORDS_PER_S + 0.3
        except OSError as exc:
            self._process = None
            self._warn_once(f"cannot run {ESPEAK}: {exc}")

    def speaking(self) -> bool:
        """Whether the host is speaking now (cheap: for a microphone that must not hear
        it, e.g. a voice-stop recognizer muting itself)."""
        return self.speaking_until() is not None

    def speaking_until(self) -> float | None:
        """``time.monotonic()`` at which the current utterance should be over, or None
        when nothing is being said. While espeak-ng still runs past the estimate, it is
        extended a little at a time, so the answer is never in the past."""
        now = time.monotonic()
        running = self._process is not None and self._process.poll() is None
        if running:
            return max(self._until, now + 0.2)
        if self._espeak is None and self._speak is not None and self._until > now:
            return self._until
        return None

    def close(self) -> None:
        """Stop any speech still running (optional; speech ends by itself anyway)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s", message)
