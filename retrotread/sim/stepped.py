"""The simulated treadmill and its FTMS client, stepped by a plain loop (no asyncio).

:class:`SteppedTreadmill` joins a :class:`~retrotread.sim.treadmill.SimulatedTreadmill`,
one in-process GATT connection to it and the sans-I/O
:class:`~retrotread.ftms.client.ClientProtocol`, all on a clock the caller moves
forward. A whole workout then runs as a loop::

    while not done:
        t = min(machine_next_due, stepped.next_due_s())
        for event in stepped.advance(t):
            ...  # Telemetry, StatusEvent, CommandOutcome, DecodeProblem, LinkLost
        for request in requests:
            stepped.write(t, request)

Everything happens at its own time, whatever the steps: a reply or a Treadmill Data
record due between two calls is delivered at its due time, so one jump of a second gives
the same events as ten steps of 0.1 s. The bytes are the simulator's real wire bytes
(split Treadmill Data, ATT "procedure already in progress", late and lost replies), and
the client decodes them as it does over a real link.

With ``telemetry_as_bytes=False`` the Treadmill Data records skip the wire: the client
takes the simulator's record as it is. Its values survive encoding and decoding unchanged
(tests/test_stepped_sim.py checks it), and encoding and decoding are most of the cost of
a step; control point and status still travel as bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from retrotread import gatt
from retrotread.errors import GattError, LinkClosedError
from retrotread.ftms import codec
from retrotread.ftms.client import (
    DEFAULT_REPLY_TIMEOUT_S,
    ClientProtocol,
    Event,
    LinkLost,
    Telemetry,
)
from retrotread.sim.presets import MachinePreset
from retrotread.sim.treadmill import MAX_NOTIFICATION_BYTES, SimulatedTreadmill
from retrotread.units import TIME_TOLERANCE_S

_SUBSCRIBED = (gatt.FITNESS_MACHINE_CONTROL_POINT, gatt.TREADMILL_DATA,
               gatt.FITNESS_MACHINE_STATUS)
"""What the client subscribes to on connecting (as :meth:`Treadmill.connect` does)."""

_DROPPED = ""
"""In the inbox instead of a characteristic: the link went down here."""

_NEVER = float("inf")


class SteppedClock:
    """The time a :class:`SteppedTreadmill` has reached; the simulator reads it."""

    __slots__ = ("now_s",)

    def __init__(self, start_s: float = 0.0) -> None:
        self.now_s = start_s

    def now(self) -> float:
        return self.now_s

    async def sleep_until(self, deadline: float) -> None:
        raise RuntimeError("a stepped clock does not sleep: call SteppedTreadmill.advance")


class _RecordsSimulator(SimulatedTreadmill):
    """A simulator that hands its Treadmill Data records over as values."""

    hand_over: Callable[[codec.TreadmillData], None]

    def broadcast_treadmill_data(self, record: codec.TreadmillData) -> None:
        if self.subscribed(gatt.TREADMILL_DATA):
            self.notifications_sent += 1
            self.hand_over(record)


class SteppedTreadmill:
    """A simulated treadmill with its client, advanced by :meth:`advance`.

    Commands go out one at a time, as on a real link: a request written while another
    waits for its answer is queued and sent when that one ends. Console actions and
    faults are the simulator's (``stepped.sim.pull_safety_key()``,
    ``stepped.sim.faults.replies_lost = True``, ``stepped.sim.drop_links()``); what they
    cause comes out of the next :meth:`advance`.
    """

    def __init__(
        self,
        preset: MachinePreset | str = "generic",
        *,
        start_s: float = 0.0,
        telemetry_interval_s: float = 1.0,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        speed_noise_kmh: float = 0.0,
        seed: int = 0,
        heart_rate: bool = True,
        max_notification_bytes: int = MAX_NOTIFICATION_BYTES,
        telemetry_as_bytes: bool = True,
    ) -> None:
        self.clock = SteppedClock(start_s)
        simulator = SimulatedTreadmill if telemetry_as_bytes else _RecordsSimulator
        self.sim = simulator(
            self.clock, preset, telemetry_interval_s=telemetry_interval_s,
            speed_noise_kmh=speed_noise_kmh, seed=seed, heart_rate=heart_rate,
            max_notification_bytes=max_notification_bytes)
        self.client = ClientProtocol(reply_timeout_s=reply_timeout_s)
        self.connection: gatt.ServerConnection | None = None
        self.feature = self.sim.feature
        self.speed_range = self.sim.speed_range
        # notifications not yet decoded, in order (and records, without the wire)
        self._inbox: list[tuple[str, bytes | codec.TreadmillData]] = []
        if isinstance(self.sim, _RecordsSimulator):
            inbox = self._inbox
            self.sim.hand_over = lambda record: inbox.append((gatt.TREADMILL_DATA, record))
        self._events: list[Event] = []  # decoded, not yet returned by advance()
        self._queue: deque[tuple[codec.ControlPointRequest, float | None]] = deque()
        self._retry_at_s = _NEVER  # a write refused as busy goes again then
        self._attach()

    # ------------------------------------------------------------------ state
    @property
    def now_s(self) -> float:
        return self.clock.now_s

    @property
    def latest(self) -> Telemetry | None:
        """The last complete Treadmill Data record."""
        return self.client.latest

    @property
    def has_control(self) -> bool:
        return self.client.has_control

    @property
    def connected(self) -> bool:
        return self.connection is not None

    # ------------------------------------------------------------------ the loop's calls
    def next_due_s(self) -> float:
        """When :meth:`advance` next has something to do: the simulator's next telemetry
        or reply, the outstanding command's reply deadline or busy retry, or now (events
        waiting)."""
        if self._events or self._inbox:
            return self.clock.now_s
        return self._due_s()

    def advance(self, now: float) -> list[Event]:
        """Run everything due up to ``now`` in time order; the events it made, each
        stamped with its own time (a time before the current one counts as the current
        one)."""
        self._run_until(now)
        events, self._events = self._events, []
        return events

    def idle_to(self, now: float) -> None:
        """:meth:`advance` to ``now`` when :meth:`next_due_s` has just said nothing is
        due by then (beyond the tolerance): only the clock moves, and nothing is asked
        again (most of a plain loop's iterations are such: a tick between samples)."""
        self.clock.now_s = max(now, self.clock.now_s)

    def write(self, now: float, request: codec.ControlPointRequest, *,
              timeout_s: float | None = None) -> None:
        """Send ``request`` at ``now`` (after the one outstanding, if any; ``timeout_s``:
        its own reply time-out). Its :class:`CommandOutcome`, and the status
        notifications it causes, come out of :meth:`advance`."""
        self._run_until(now)
        self._queue.append((request, timeout_s))
        self._send_queued(self.clock.now_s)

    def reconnect(self, now: float) -> bool:
        """Connect again at ``now`` (after a :class:`LinkLost`) and subscribe; False if
        the machine refuses (``sim.faults.refuse_connections``). Control must be
        requested again."""
        self._run_until(now)
        if self.connection is not None:
            old, self.connection = self.connection, None
            self.sim.detach(old)
            self._link_lost(self.clock.now_s)
        try:
            self._attach()
        except LinkClosedError:
            return False
        return True

    def _attach(self) -> None:
        inbox = self._inbox
        connection = gatt.ServerConnection(
            notify=lambda uuid, value: inbox.append((uuid, value)),
            drop=lambda: inbox.append((_DROPPED, b"")))
        self.sim.attach(connection)
        self.connection = connection
        for uuid in _SUBSCRIBED:
            self.sim.set_subscription(connection, uuid, True)

    # ------------------------------------------------------------------ inside
    def _due_s(self) -> float:
        due = self.sim.next_due_s()
        reply_deadline = self.client.next_due_s()
        if reply_deadline is not None and reply_deadline < due:
            due = reply_deadline
        retry_at = self._retry_at_s
        return retry_at if retry_at < due else due

    def _run_until(self, now: float) -> None:
        clock, sim, client, events = self.clock, self.sim, self.client, self._events
        self._deliver()  # what console actions and faults caused since the last call
        while True:
            due = self._due_s()
            if due > now + TIME_TOLERANCE_S:
                break
            t = clock.now_s = max(due, clock.now_s)
            sim.advance_to(t)
            self._deliver()  # an answer due at its deadline still counts
            if self._retry_at_s <= t:
                self._retry_at_s = _NEVER
                self._write(t, self.client.rewrite())
                self._deliver()
            timed_out = client.check_timeout(t)
            if timed_out is not None:
                events.append(timed_out)
                self._deliver()  # the next command may go
        clock.now_s = max(now, clock.now_s)

    def _deliver(self) -> None:
        """Decode the notifications the simulator sent, in order, at the current time;
        send the next queued command once none is outstanding."""
        inbox = self._inbox
        if not inbox and not self._queue:
            return
        now = self.clock.now_s
        receive, events = self.client.receive, self._events
        done = 0
        while True:
            while done < len(inbox):  # (a write below may add to the inbox)
                uuid, raw = inbox[done]
                done += 1
                if isinstance(raw, codec.TreadmillData):
                    events.append(self.client.receive_record(raw, now))
                elif uuid == _DROPPED:
                    self.connection = None
                    self._link_lost(now)
                else:
                    events.extend(receive(uuid, raw, now))
            if self._queue:
                self._send_queued(now)
            if done == len(inbox):
                break
        inbox.clear()

    def _link_lost(self, now: float) -> None:
        self._events.append(LinkLost(now))
        self._retry_at_s = _NEVER
        outcome = self.client.link_lost(now)
        if outcome is not None:
            self._events.append(outcome)

    def _send_queued(self, now: float) -> None:
        while self._queue and self.client.pending is None:
            request, timeout_s = self._queue.popleft()
            self._write(now, self.client.send(request, now, timeout_s=timeout_s))

    def _write(self, now: float, data: bytes) -> None:
        """Write the outstanding command's bytes to the control point at ``now``."""
        client = self.client
        connection = self.connection
        if connection is None:
            failed = client.fail(now, LinkClosedError("in-process: the link is not connected"))
        else:
            try:
                self.sim.write(connection, gatt.FITNESS_MACHINE_CONTROL_POINT, data)
            except GattError as exc:
                retry_at = client.write_refused(now, exc)
                if retry_at is not None:
                    self._retry_at_s = retry_at
                    return
                failed = client.fail(now, exc)
            else:
                client.written(now)
                return
        if failed is not None:
            self._events.append(failed)
