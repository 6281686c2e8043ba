"""The session's async driver: the thin layer between the event loop and the core.

The workout's logic lives in :class:`retrotread.machine.SessionMachine` (pure). This
driver gives it what only asyncio can:

* ticks on absolute deadlines (10 Hz by default), skipping missed ones, keeping phase;
* the treadmill's telemetry, statuses and disconnects, fed the moment they arrive;
* one task that writes what the machine's control point hands out, one at a time, and
  reports how each command ended;
* a link keeper that reconnects after every drop, with back-off, as long as the machine
  wants the link (a belt may be running);
* a stall guard on the real clock (a sped-up demo's clock is not real time).

Every event the machine returns goes to the bus. The session ends when the machine says
FINISHED; an exception or a cancel is handed to the machine, which still sends its last
Stop (bounded) before it finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from retrotread.clock import Clock, sleep_until_or_woken
from retrotread.control_point import ControlPoint
from retrotread.envelope import Direction, Envelope
from retrotread.errors import RetrotreadError
from retrotread.events import (
    CommandReplied,
    CommandSent,
    Event,
    EventBus,
    Outcome,
    SessionSnapshot,
    UserAction,
    UserCommand,
)
from retrotread.ftms import codec
from retrotread.machine import (
    MachineSetup,
    SegmentInfo,
    SessionMachine,
    SessionResult,
    SessionSettings,
    State,
)
from retrotread.observations import (
    CommandFinished,
    Failed,
    HeartRateObserved,
    Interrupted,
    LinkLost,
    LinkUp,
    Observation,
    ReconnectFailed,
    ReconnectImpossible,
    Stalled,
    StatusObserved,
    TelemetryObserved,
    Tick,
    UserRequest,
)
from retrotread.plan import Plan
from retrotread.treadmill import CommandReply, StatusEvent, Telemetry, Treadmill, outcome_of
from retrotread.watchdog import CompanionRule, Trigger, Watchdog, WatchdogLimits

__all__ = ["ReconnectFactory", "SegmentInfo", "Session", "SessionResult", "SessionSettings",
           "State"]

log = logging.getLogger(__name__)

ReconnectFactory = Callable[[], Awaitable[Treadmill]]

CLOSING_SLACK_S = 10.0
"""Beyond the machine's own bounds for its last Stop, how long the driver waits before it
gives up on a machine that never finishes (a bug): the program must end."""


class Session:
    def __init__(
        self,
        *,
        plan: Plan,
        segments: list[SegmentInfo],
        envelope: Envelope,
        treadmill: Treadmill,
        clock: Clock,
        bus: EventBus,
        settings: SessionSettings | None = None,
        profile_name: str = "workout",
        profile_path: str | None = None,
        simulated: bool = False,
        reconnect: ReconnectFactory | None = None,
        watchdog_limits: WatchdogLimits | None = None,
        stall_clock: Clock | None = None,
    ) -> None:
        """``stall_clock``: the real clock, when ``clock`` runs faster than real time (a
        sped-up simulator demo). A stalled loop is a fact of real time: it is judged on
        this clock, against ``WatchdogLimits.stall_limit_s`` real seconds."""
        self.treadmill = treadmill
        self.clock = clock
        self.bus = bus
        self.reconnect = reconnect
        self.stall_clock = stall_clock or clock
        self.machine = SessionMachine(
            plan=plan, segments=segments, envelope=envelope, settings=settings,
            quirks=treadmill.quirks, watchdog_limits=watchdog_limits,
            setup=MachineSetup(profile_name=profile_name, profile_path=profile_path,
                               link_description=treadmill.link.description,
                               simulated=simulated, can_reconnect=reconnect is not None,
                               reply_timeout_s=treadmill.reply_timeout_s))
        self.treadmills: list[Treadmill] = [treadmill]
        """Every treadmill connection this session opened (the runner closes them all)."""
        self._wake_writer = asyncio.Event()
        self._ended = asyncio.Event()
        self._link_down = asyncio.Event()  # wakes the link keeper after every drop
        self._bind(treadmill)

    # ------------------------------------------------------------------ the core's view
    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def plan(self) -> Plan:
        return self.machine.plan

    @property
    def envelope(self) -> Envelope:
        return self.machine.envelope

    @property
    def settings(self) -> SessionSettings:
        return self.machine.settings

    @property
    def watchdog(self) -> Watchdog:
        return self.machine.watchdog

    @property
    def control(self) -> ControlPoint:
        return self.machine.control

    @property
    def facing(self) -> Direction:
        return self.machine.facing

    @property
    def floor_kmh(self) -> float:
        return self.machine.floor_kmh

    @property
    def safety_key_stopped(self) -> bool:
        return self.machine.safety_key_stopped

    @property
    def segment_index(self) -> int:
        return self.machine.segment_index

    @property
    def last_announcement(self) -> str | None:
        return self.machine.last_announcement

    @property
    def link_ok(self) -> bool:
        return self.machine.link_ok

    @property
    def companion_rule(self) -> CompanionRule | None:
        return self.machine.companion_rule

    @companion_rule.setter
    def companion_rule(self, rule: CompanionRule | None) -> None:
        self.machine.companion_rule = rule

    @property
    def external_heart_rate(self) -> bool:
        return self.machine.external_heart_rate

    @external_heart_rate.setter
    def external_heart_rate(self, value: bool) -> None:
        self.machine.external_heart_rate = value

    def belt_moving(self) -> bool:
        return self.machine.belt_moving()

    def snapshot(self, banner: str = "") -> SessionSnapshot:
        return self.machine.snapshot(self.clock.now(), banner)

    # ------------------------------------------------------------------ feeding the core
    def _publish(self, events: list[Event], *, wake_writer: bool = True) -> None:
        for event in events:
            self.bus.emit(event)
        if self.machine.finished:
            self._ended.set()
        if wake_writer:
            self._wake_writer.set()

    def _feed(self, observation: Observation, now: float | None = None) -> list[Event]:
        events = self.machine.step(self.clock.now() if now is None else now, observation)
        self._publish(events)
        return events

    def request(self, command: UserCommand, source: str = "key", *,
                confidence: float | None = None, latency_s: float | None = None) -> bool:
        """A person's (or a remote's) command. Returns whether it was accepted.
        ``confidence`` and ``latency_s`` (a recognizer's) go into the ``user`` record."""
        events = self._feed(UserRequest(command, source, confidence, latency_s))
        return any(isinstance(e, UserAction) and e.accepted for e in events)

    def interrupt(self, reason: str) -> None:
        """Ctrl-C, SIGTERM: a controlled stop; the session ends within
        ``interrupt_grace_s`` whatever the link's state (a second one: at once)."""
        self._feed(Interrupted(reason))

    def trigger(self, trigger: Trigger, outcome: Outcome = Outcome.WATCHDOG) -> None:
        """A reason to stop at once, from outside the core (a test, a tool)."""
        self.machine.trigger(self.clock.now(), trigger, outcome)
        self._publish(self.machine.drain())

    def emit_watchdog(self, trigger: Trigger) -> None:
        self.machine.emit_watchdog(self.clock.now(), trigger)
        self._publish(self.machine.drain())

    def announce(self, text: str, level: str = "info") -> None:
        self.machine.announce(self.clock.now(), text, level)
        self._publish(self.machine.drain())

    def observe_heart_rate(self, now: float, bpm: int | None) -> None:
        """A heart-rate reading from a strap (``external_heart_rate``)."""
        self._feed(HeartRateObserved(bpm), now)

    # ------------------------------------------------------------------ listeners
    def _bind(self, treadmill: Treadmill) -> None:
        """Listen to ``treadmill``; anything from a connection that was replaced since
        (a late notification, a second disconnect) is ignored."""

        def current() -> bool:
            return treadmill is self.treadmill

        def lost() -> None:
            if current():
                self._feed(LinkLost(treadmill.link.description))
                self._link_down.set()

        def telemetry(sample: Telemetry) -> None:
            if current():
                self._feed(TelemetryObserved(sample))

        def status(event: StatusEvent) -> None:
            if current():
                self._feed(StatusObserved(event))

        treadmill.on_telemetry(telemetry)
        treadmill.on_status(status)
        treadmill.on_command(self._on_command_reply)
        treadmill.on_command_sent(self._on_command_sent)
        treadmill.link.on_disconnect(lost)

    def _on_command_sent(self, time_s: float, request: codec.ControlPointRequest) -> None:
        speed = request.speed_kmh if isinstance(request, codec.SetTargetSpeed) else None
        self.bus.emit(CommandSent(time_s, int(request.op), type(request).__name__, speed,
                                  self.machine.facing))

    def _on_command_reply(self, reply: CommandReply) -> None:
        result = None
        if reply.response is not None:
            try:
                result = codec.ResultCode(reply.response.result).name
            except ValueError:
                result = f"0x{int(reply.response.result):02x}"
        self.bus.emit(CommandReplied(reply.time_s, int(reply.request.op),
                                     type(reply.request).__name__, result, reply.error))

    # ------------------------------------------------------------------ the tasks
    async def run(self) -> SessionResult:
        writer = asyncio.ensure_future(self._write_commands())
        guard = asyncio.ensure_future(self._stall_guard())
        keeper = asyncio.ensure_future(self._keep_link())
        cancelled = False
        try:
            await self._loop()
        except asyncio.CancelledError:
            cancelled = True
            self._fail(Outcome.INTERRUPTED, "cancelled")
        except RetrotreadError as exc:
            log.error("session failed: %s", exc)
            self._fail(Outcome.ERROR, str(exc))
        except Exception as exc:
            log.exception("session failed")
            self._fail(Outcome.ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            guard.cancel()
            if not self.machine.finished:
                await self._close_out()
            for task in (writer, guard, keeper):
                task.cancel()
            for task in (writer, guard, keeper):
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:
                    log.exception("session task failed")
        result = self.machine.result
        assert result is not None
        if cancelled:
            raise asyncio.CancelledError
        return result

    def _fail(self, outcome: Outcome, detail: str) -> None:
        try:
            self._feed(Failed(outcome, detail))
        except Exception:
            log.exception("the session core failed while ending")

    def _tick(self, now: float, dt: float) -> None:
        self._feed(Tick(), now)

    async def _loop(self) -> None:
        """Tick on absolute deadlines until the machine is finished."""
        clock = self.clock
        period = self.machine.period_s
        self._feed(Tick())  # the start: SessionStarted, Request Control
        t0 = last = clock.now()
        k = 0
        while not self.machine.finished:
            k += 1
            deadline = t0 + k * period
            now = clock.now()
            if deadline < now - period:  # fell behind: skip missed ticks, keep phase
                k += int((now - deadline) // period)
                deadline = t0 + k * period
            await clock.sleep_until(deadline)
            if self.machine.finished:
                return
            now = clock.now()
            self.watchdog.observe_tick(self.stall_clock.now())
            self._tick(now, now - last)
            last = now

    async def _close_out(self) -> None:
        """After an exception or a cancel: keep ticking (catching anything) until the
        machine has sent its last Stop and finished, within its own bounds."""
        settings = self.machine.settings
        hard = self.clock.now() + 2 * settings.reconnect_timeout_s + 2 * (
            self.treadmill.reply_timeout_s + 1.0) + 1.0 + CLOSING_SLACK_S
        while not self.machine.finished and self.clock.now() < hard:
            self._ended.clear()
            await sleep_until_or_woken(self.clock, self.clock.now() + self.machine.period_s,
                                       self._ended)
            try:
                self._feed(Tick())
            except Exception:
                log.exception("the session core failed while ending")
        if not self.machine.finished:
            self._publish(self.machine.abandon(self.clock.now()))

    async def _write_commands(self) -> None:
        """The one task that writes to the control point."""
        while True:
            self._wake_writer.clear()
            now = self.clock.now()
            request = self.machine.take_write(now)
            self._publish(self.machine.drain(), wake_writer=False)
            if request is None:
                due = self.machine.next_due_s()
                if due is None:
                    await self._wake_writer.wait()
                else:  # (never a busy loop: at least one pass of the event loop)
                    await sleep_until_or_woken(self.clock, max(due, now), self._wake_writer)
                continue
            error: BaseException | None = None
            try:
                await self.treadmill.command(request)
            except (RetrotreadError, OSError) as exc:
                error = exc
            self._feed(CommandFinished(outcome_of(self.clock.now(), request, error)))

    async def _stall_guard(self) -> None:
        """Stop the belt if the control loop stops ticking (judged on the real clock:
        see ``stall_clock``)."""
        clock = self.stall_clock
        allowed = self.watchdog.stall_limit_s()
        margin = allowed / 6
        while True:
            # Wake just after the moment a stall would be declared (not every tick).
            last = self.watchdog.last_tick_s
            due = (last if last is not None else clock.now()) + allowed + margin
            await clock.sleep_until(max(due, clock.now() + margin))
            trigger = self.watchdog.check_stall(clock.now())
            if trigger is not None:
                self._feed(Stalled(trigger))

    async def _keep_link(self) -> None:
        """After every drop, reconnect (with back-off, for as long as the machine wants
        the link) and hand the new connection to the machine, which sends Stop on it."""
        settings = self.machine.settings
        while True:
            await self._link_down.wait()
            self._link_down.clear()
            delay = settings.reconnect_backoff_s
            attempt = 0
            while self.machine.wants_reconnect:
                if self.reconnect is None:
                    self._feed(ReconnectImpossible())
                    return
                attempt += 1
                try:
                    treadmill = await asyncio.wait_for(self.reconnect(),
                                                       settings.reconnect_timeout_s)
                except (RetrotreadError, OSError, TimeoutError) as exc:
                    self._feed(ReconnectFailed(attempt, str(exc) or "timed out"))
                    await self.clock.sleep_until(self.clock.now() + delay)
                    delay = min(delay * 2, settings.reconnect_backoff_max_s)
                    continue
                self._adopt(treadmill)

    def _adopt(self, treadmill: Treadmill) -> None:
        self.treadmills.append(treadmill)
        self.treadmill = treadmill
        self._bind(treadmill)
        self._feed(LinkUp(treadmill.link.description, treadmill.quirks,
                          treadmill.link.is_connected))
