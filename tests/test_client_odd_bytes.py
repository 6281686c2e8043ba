"""The FTMS client over the real simulator, fed the odd bytes real machines send.

The simulator is the server; the odd bytes are pushed through its real connection to the
client (the lowest level), and the client and codec do the rest. The FTMS facts behind
each case are in docs/ftms.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from retrotread import gatt
from retrotread.clock import LoopClock
from retrotread.errors import ControlPointTimeoutError
from retrotread.ftms import codec
from retrotread.links.loopback import LoopbackLink
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.treadmill import DecodeProblem, StatusEvent, Telemetry, Treadmill


def h(text: str) -> bytes:
    return bytes.fromhex(text)


class Client:
    """A connected client with everything it reported."""

    def __init__(self, sim: SimulatedTreadmill, treadmill: Treadmill) -> None:
        self.sim = sim
        self.treadmill = treadmill
        self.telemetry: list[Telemetry] = []
        self.status: list[StatusEvent] = []
        self.problems: list[DecodeProblem] = []
        treadmill.on_telemetry(self.telemetry.append)
        treadmill.on_status(self.status.append)
        treadmill.on_decode_problem(self.problems.append)

    async def push(self, uuid: str, raw: bytes) -> None:
        """The machine notifies ``raw`` on ``uuid``; wait until it is delivered."""
        self.sim.connections[0].notify(uuid, raw)
        await asyncio.sleep(0)
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[Client]:
    sim = SimulatedTreadmill(LoopClock(), "generic")
    sim.faults.telemetry_stopped = True  # only the bytes a test pushes
    task = asyncio.ensure_future(sim.run())
    treadmill = Treadmill(LoopbackLink(sim), LoopClock(), reply_timeout_s=1.0)
    try:
        await treadmill.connect()
        yield Client(sim, treadmill)
    finally:
        await treadmill.close()
        sim.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.looptime
async def test_not_available_values_reach_listeners_as_unknown() -> None:
    async with connected() as client:
        # speed 10.00 km/h; inclination, ramp angle and the three energies "not available"
        await client.push(gatt.TREADMILL_DATA, h("88 00 e8 03 ff 7f ff 7f ff ff ff ff ff"))
        [sample] = client.telemetry
        assert sample.data.speed_kmh == 10.0
        assert sample.data.inclination_pct is None
        assert sample.data.total_energy_kcal is None
        assert client.problems == []  # "not available" is a normal answer, not a problem


@pytest.mark.looptime
async def test_short_step_count_keeps_the_sample() -> None:
    async with connected() as client:
        # flag bit 13 (vendor step count) with no bytes left for it; speed 10.00 km/h
        await client.push(gatt.TREADMILL_DATA, h("00 20 e8 03"))
        [sample] = client.telemetry
        assert sample.data.speed_kmh == 10.0
        assert client.treadmill.latest is sample
        [problem] = client.problems
        assert not problem.dropped and "0x2000" in problem.message


@pytest.mark.looptime
@pytest.mark.parametrize("wire", ["02 03", "02 00", "02"])
async def test_stop_with_a_reserved_parameter_reaches_listeners_as_a_stop(wire: str) -> None:
    async with connected() as client:
        await client.push(gatt.FITNESS_MACHINE_STATUS, h(wire))
        [event] = client.status
        assert isinstance(event.status, codec.StoppedOrPausedByUser)
        assert event.status.action is codec.StopPause.STOP
        assert client.treadmill.last_status is event
        [problem] = client.problems
        assert not problem.dropped
        assert problem.raw == h(wire)
        assert client.treadmill.decode_errors == 0


@pytest.mark.looptime
async def test_every_status_with_a_short_parameter_reaches_listeners() -> None:
    async with connected() as client:
        with_parameter = [cls for cls in codec.STATUS_TYPES.values() if cls._fields]
        for cls in with_parameter:
            await client.push(gatt.FITNESS_MACHINE_STATUS, bytes([cls.op]))
        assert [type(event.status) for event in client.status] == with_parameter
        assert len(client.problems) == len(with_parameter)


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("request_", "malformed"),
    [
        (codec.SetTargetPower(power_w=100), "80 05 01 aa"),
        (codec.SpinDownControl(control=codec.SpinDown.START), "80 13 01 02 03"),
        (codec.StopOrPause(action=codec.StopPause.STOP), "80 08 01 00"),
    ],
)
async def test_a_malformed_response_is_not_taken_as_the_answer(
        request_: codec.ControlPointRequest, malformed: str) -> None:
    async with connected() as client:
        await client.treadmill.request_control()
        client.sim.faults.replies_lost = True  # only the malformed answer comes
        command = asyncio.ensure_future(client.treadmill.command(request_))
        await asyncio.sleep(0.1)
        await client.push(gatt.FITNESS_MACHINE_CONTROL_POINT, h(malformed))
        assert not command.done()
        with pytest.raises(ControlPointTimeoutError, match="no reply"):
            await command
        [problem] = client.problems
        assert problem.dropped and "malformed" in problem.message
        assert problem.characteristic == "Fitness Machine Control Point"
