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
from collections.abc import Callable
from typing import TextIO

from retrotread.events import Announcement, Event

log = logging.getLogger(__name__)

BELL = "\a"
LOUD_LEVELS = frozenset({"warning", "alarm"})
ESPEAK = "espeak-ng"


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
        except OSError as exc:
            self._process = None
            self._warn_once(f"cannot run {ESPEAK}: {exc}")

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
