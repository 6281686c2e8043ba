"""The session core: one workout's logic as a pure state machine (no asyncio, no clock,
no I/O). The async driver (``retrotread.session``) and the plain loop
(``retrotread.plain_loop``) feed it the same way: ``SessionMachine.step(now,
observation) -> events``.

One object, :class:`SessionMachine`, written in parts that each fit in one sitting:

- ``types.py``: ``State``, the settings and the result, the values the machine is given
  and gives back.
- ``base.py``: ``MachineBase``, the machine's fields, how it emits, and the three
  transitions every part uses (pause, the safe stop, the ready gate).
- ``core.py``: ``SessionMachine``, the one entry (``step``), the state table, the start,
  the ticks: walking, turnarounds, countdowns, the finish.
- ``ending.py``: ``Ending``, every way out: a trigger, Ctrl-C, the safe stop, the last
  Stop, FINISHED.
- ``inputs.py``: ``Inputs``, what the treadmill and the link report: samples, statuses,
  the link lost and back.
- ``person.py``: ``PersonCommands``, the person's and the remotes' commands.
- ``notices.py``: ``PlanNotices``, what is said as the plan goes: segment cues,
  turnaround and speed-change notices.
- ``quiet.py``: ``QuietWindows``, ``quiet_until``: when ticks would change nothing (the
  plain loop skips them).
- ``view.py``: ``View``, ``snapshot``: what the person must know now, for every screen.
"""

from retrotread.machine.core import SessionMachine
from retrotread.machine.types import (
    ENDING,
    FIRST_TELEMETRY_WAIT_S,
    STANDING,
    STOP_REPEAT_S,
    TURNING,
    MachineSetup,
    ReadyGate,
    SegmentInfo,
    SessionResult,
    SessionSettings,
    State,
)

__all__ = [
    "ENDING",
    "FIRST_TELEMETRY_WAIT_S",
    "STANDING",
    "STOP_REPEAT_S",
    "TURNING",
    "MachineSetup",
    "ReadyGate",
    "SegmentInfo",
    "SessionMachine",
    "SessionResult",
    "SessionSettings",
    "State",
]
