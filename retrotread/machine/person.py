"""Commands from people: the person at the machine (keys, the paired page, voice)
and remotes (MQTT, signals).

Who may do what is decided in :mod:`retrotread.authority`; this part carries it out.
No command from afar puts a stopped belt in motion: a remote resume only opens the
ready gate for the person at the machine.
"""

from __future__ import annotations

from retrotread import authority
from retrotread.authority import Gate, Verdict
from retrotread.envelope import describe_kmh
from retrotread.events import Outcome, UserCommand
from retrotread.machine.ending import Ending
from retrotread.machine.types import ENDING, Closing, Prep, State
from retrotread.watchdog import Act, Trigger


class PersonCommands(Ending):
    """The person's and the remotes' commands (authority decides, this carries out)."""

    def _tick_prep(self, now: float) -> None:
        """The start's next step (a READY while the start waits for it): core.py."""
        raise NotImplementedError

    def _gate(self) -> Gate:
        """Which ready gate is open now (what a READY or START would pass)."""
        if self.state is State.PAUSED or (
                self.state is State.WAITING_READY and self._gate_kind is Gate.RESUME):
            return Gate.RESUME
        if self.state in (State.WAITING_READY, State.HOLD):
            return self._gate_kind
        return Gate.NONE

    def _handle_user(self, now: float, command: UserCommand, source: str) -> tuple[bool, str]:
        active = self.state not in ENDING and self._closing is Closing.NO
        if command is UserCommand.TOGGLE_PAUSE:
            command = UserCommand.RESUME if self.state is State.PAUSED else UserCommand.PAUSE
        decision = authority.decide(command, source, self._gate())
        if decision.verdict is Verdict.REFUSE:
            return False, decision.reason
        if command is UserCommand.STOP:
            if not active:
                return False, "already stopping"
            self.trigger(now, Trigger("user_stop", Act.STOP, f"stop requested ({source})"),
                         Outcome.STOPPED_BY_USER)
            return True, ""
        if not active:
            return False, "the session is ending"
        if command is UserCommand.PAUSE:
            if self.state is not State.RUNNING:
                return False, f"cannot pause while {self.state.value}"
            self._enter_paused(now, f"paused ({source})")
            return True, ""
        if command is UserCommand.START and self.state is State.PAUSED:
            command = UserCommand.RESUME  # the deliberate hold ends the pause
        elif command is UserCommand.START:
            command = UserCommand.READY  # ... or passes the gate that is open
        if command is UserCommand.RESUME:
            if self.state is not State.PAUSED:
                return False, "not paused"
            self._resume_plan_s = self.plan_time_s
            self._turn_to = self.facing
            if decision.verdict is Verdict.TO_GATE:
                self._resume_gate(now, source)
                return True, decision.reason
            self._start_gate(now, after_pause=True)
            return True, ""
        if command is UserCommand.READY:
            if self.state in (State.WAITING_READY, State.HOLD):
                self._ready = True
                if self._prep is Prep.READY:
                    self._tick_prep(now)
                return True, ""
            return False, "nothing is waiting for ready"
        if command is UserCommand.SKIP:
            if self.state is not State.RUNNING:
                return False, f"cannot skip while {self.state.value}"
            return self._skip()
        if command in (UserCommand.SPEED_UP, UserCommand.SPEED_DOWN):
            return self._adjust_speed(now, command)
        return False, "unknown command"

    def _adjust_speed(self, now: float, command: UserCommand) -> tuple[bool, str]:
        if self.state is not State.RUNNING:
            return False, "speed can only be adjusted while walking"
        step = self.settings.user_step_kmh
        self.user_offset_kmh += step if command is UserCommand.SPEED_UP else -step
        base, _, _ = self.plan.setpoint_at(self.plan_time_s)
        wanted = base + self.user_offset_kmh
        ceiling = self.envelope.ceiling_kmh(self.facing)
        if wanted > ceiling:
            self.user_offset_kmh = ceiling - base
            self.announce(now, f"Already at the {self.facing.value} ceiling "
                          f"({describe_kmh(ceiling)}).", "warning")
            return False, "at the ceiling"
        if wanted < self.floor_kmh:
            self.user_offset_kmh = self.floor_kmh - base
            return False, "at the machine's lowest speed"
        return True, f"offset {self.user_offset_kmh:+.2f} km/h"

    def _resume_gate(self, now: float, source: str) -> None:
        """A resume from anyone but the person at the machine: the belt stays stopped at
        the ready gate until that person presses r or holds START on the page."""
        self.state = State.WAITING_READY
        self._gate_kind = Gate.RESUME
        self._ready = False
        self._gate_until = None
        self._stopped_at = now
        self._warned_long = True  # a pause, not a turnaround: no console time-out warning
        self.announce(now, f"Resume asked for ({source}). The belt starts only when you are "
                      "ready: press r, or hold START on the page.", "warning")

    def _skip(self) -> tuple[bool, str]:
        current = self.segment_index
        for step in self.plan.steps:
            if step.segment_index > current and step.start_s > self.plan_time_s:
                self.plan_time_s = step.start_s
                return True, f"skipped to {step.start_s:.0f} s of the plan"
        return False, "no further segment"
