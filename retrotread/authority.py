"""Who may do what: the one rule for every command source, in one file a reader audits.

Pure (no I/O, no clock). The session asks :func:`decide` for every command, whatever it
came from (a key, the companion page, the voice spotter, MQTT, a signal):

| command | key at the machine | companion page | voice | remote (MQTT), signal |
|---|---|---|---|---|
| stop, pause | yes | yes | yes | yes |
| speed up / down | yes | no | no | no |
| skip | yes | yes | no | yes |
| resume (after a pause) | yes | waits at the ready gate | no | waits at the ready gate |
| ready at a turnaround gate | yes | yes (a tap) | no | no |
| ready at the start or a resume gate | yes | no: hold START | no | no |
| start (a deliberate hold) | yes | yes (held 2 s) | no | no |

Only the person at the machine can put a stopped belt in motion: the keyboard of the
computer on the treadmill, or the paired companion page's 2-second hold-to-start (a tap
on the page can confirm a turnaround the person is already in, never start the workout
or end a pause). A remote resume leads to the ready gate and waits there for that person.
A spoken word can only ever stop or pause: a false detection must be harmless.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from retrotread.events import LOCAL_SOURCES, CommandSource, UserCommand


class Gate(enum.StrEnum):
    """Where a stopped belt is waiting for a person before it may move again."""

    NONE = "none"  # no gate is open (the belt is running, or nothing waits)
    START = "start"  # before the first start of the workout
    TURNAROUND = "turnaround"  # stopped for a turnaround, the person turning around
    RESUME = "resume"  # stopped by a pause; also where a remote resume leads


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    TO_GATE = "to_gate"  # accepted, but only as far as the ready gate: a person starts
    REFUSE = "refuse"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""


def source_of(source: str | CommandSource) -> CommandSource:
    """A source by name; anything unknown is treated as a remote (the least trusted)."""
    try:
        return CommandSource(source)
    except ValueError:
        return CommandSource.REMOTE


ANY_SOURCE = frozenset(CommandSource)
STOPPING = frozenset({UserCommand.STOP, UserCommand.PAUSE})


def decide(command: UserCommand, source: str | CommandSource, gate: Gate) -> Decision:
    """Whether ``command`` from ``source`` may be carried out while ``gate`` is open.

    ``TOGGLE_PAUSE`` must be resolved to PAUSE or RESUME first."""
    src = source_of(source)
    if command in STOPPING:
        return Decision(Verdict.ALLOW)
    if src is CommandSource.VOICE:
        return Decision(Verdict.REFUSE, "a spoken command can only stop or pause")
    if command in (UserCommand.SPEED_UP, UserCommand.SPEED_DOWN):
        if src is CommandSource.KEY:
            return Decision(Verdict.ALLOW)
        return Decision(Verdict.REFUSE, "speed changes are only taken from the local keyboard")
    if command is UserCommand.SKIP:
        return Decision(Verdict.ALLOW)
    local = src in LOCAL_SOURCES
    if command is UserCommand.RESUME:
        if src is CommandSource.KEY:
            return Decision(Verdict.ALLOW)
        return Decision(Verdict.TO_GATE, "only the person at the machine can restart the "
                                         "belt: waiting at the ready gate")
    if command is UserCommand.START:
        if local:
            return Decision(Verdict.ALLOW)
        return Decision(Verdict.REFUSE, "only the person at the machine can start the belt")
    if command is UserCommand.READY:
        if src is CommandSource.KEY:
            return Decision(Verdict.ALLOW)
        if src is CommandSource.COMPANION and gate is Gate.TURNAROUND:
            return Decision(Verdict.ALLOW)
        if src is CommandSource.COMPANION:
            return Decision(Verdict.REFUSE, "hold START on the page to start the belt")
        return Decision(Verdict.REFUSE, "only the person at the machine can start the belt")
    return Decision(Verdict.REFUSE, "unknown command")
