"""``retrotread sim --ble``: the simulator as a BLE FTMS peripheral on Bumble, without a radio.

Two virtual Bumble controllers share a ``LocalLink`` in this process: one carries the
:class:`BlePeripheral` with the simulator, the other a Bumble central that scans, connects,
discovers, reads, subscribes and drives the control point, over real HCI, L2CAP and ATT.
The simulator runs on the real loop clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

pytest.importorskip("bumble")

from bumble.controller import Controller
from bumble.core import UUID
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic as BumbleCharacteristic
from bumble.gatt_client import CharacteristicProxy
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from retrotread import gatt
from retrotread.clock import LoopClock
from retrotread.ftms import codec
from retrotread.sim import ble_peripheral
from retrotread.sim.ble_peripheral import BlePeripheral
from retrotread.sim.treadmill import MachineState, SimulatedTreadmill

pytestmark = pytest.mark.timeout(30)

PERIPHERAL_ADDRESS = "F0:F1:F2:F3:F4:F5"
CENTRAL_ADDRESS = "F1:F2:F3:F4:F5:F6"
STEP = 5.0  # seconds allowed for any one exchange


def _uuid(value: str) -> UUID:
    return UUID.from_16_bits(int(value[4:8], 16))


def _virtual_device(link: LocalLink, name: str, address: str) -> Device:
    controller = Controller(name, link=link, public_address=address)
    return Device(name=name, address=Address(address),
                  host=Host(controller, AsyncPipeSink(controller)))


@dataclass
class Rig:
    sim: SimulatedTreadmill
    peripheral: BlePeripheral
    central: Device


@contextlib.asynccontextmanager
async def rig(telemetry_interval_s: float = 0.1) -> AsyncIterator[Rig]:
    link = LocalLink()
    sim = SimulatedTreadmill(LoopClock(), "generic", telemetry_interval_s=telemetry_interval_s)
    task = asyncio.ensure_future(sim.run())
    peripheral = BlePeripheral(
        sim, device=_virtual_device(link, "retrotread sim", PERIPHERAL_ADDRESS),
        advertising_interval_ms=20)
    central = _virtual_device(link, "central", CENTRAL_ADDRESS)
    try:
        async with peripheral:
            await central.power_on()
            yield Rig(sim, peripheral, central)
    finally:
        sim.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _connect(rig: Rig) -> Connection:
    return await asyncio.wait_for(rig.central.connect(Address(PERIPHERAL_ADDRESS)), STEP)


def _find(peer: Peer, service: str, char: str) -> CharacteristicProxy[bytes]:
    services = peer.get_services_by_uuid(_uuid(service))
    assert services, f"service {service} not found"
    found = services[0].get_characteristics_by_uuid(_uuid(char))
    assert found, f"characteristic {char} not found"
    return found[0]


# =========================================================================== pure helpers
def test_advertising_payload_carries_ftms_uuid_service_data_and_name() -> None:
    adv, scan_response = ble_peripheral.advertising_data("retrotread sim")
    assert len(adv) <= 31 and len(scan_response) <= 31
    assert bytes.fromhex("020106") in adv  # flags: LE general discoverable, no BR/EDR
    assert bytes.fromhex("03032618") in adv  # complete list of 16-bit UUIDs: FTMS
    assert bytes.fromhex("0616261801" "0100") in adv  # service data: available, treadmill
    assert b"\x0f\x09retrotread sim" in adv
    assert scan_response == b"\x0f\x09retrotread sim"


def test_a_long_name_is_shortened_in_the_advertisement_only() -> None:
    name = "retrotread sim walking pad"
    adv, scan_response = ble_peripheral.advertising_data(name)
    assert len(adv) == 31
    assert bytes([0x08]) + name.encode()[:12] in adv  # shortened local name
    assert scan_response == bytes([len(name) + 1, 0x09]) + name.encode()


def test_a_very_long_name_is_shortened_everywhere() -> None:
    name = "retrotread simulated treadmill, second floor"
    adv, scan_response = ble_peripheral.advertising_data(name)
    assert len(adv) == 31 and len(scan_response) == 31
    assert scan_response[1] == 0x08 and name.encode().startswith(scan_response[2:])


def test_static_address_is_stable_and_random_static() -> None:
    address = ble_peripheral.static_address_for("retrotread:retrotread sim")
    assert address == ble_peripheral.static_address_for("retrotread:retrotread sim")
    assert int(address[:2], 16) & 0xC0 == 0xC0
    assert address != ble_peripheral.static_address_for("other")


def test_default_transport_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ble_peripheral.TRANSPORT_ENV, raising=False)
    assert ble_peripheral.default_transport() == "usb:0"
    monkeypatch.setenv(ble_peripheral.TRANSPORT_ENV, "hci-socket:1")
    assert ble_peripheral.default_transport() == "hci-socket:1"


# =========================================================================== over the LocalLink
async def test_central_sees_the_advertisement() -> None:
    async with rig() as r:
        seen: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def on_advertisement(advertisement: object) -> None:
            if not seen.done():
                seen.set_result(advertisement)

        r.central.on("advertisement", on_advertisement)
        await r.central.start_scanning(active=True)
        advertisement = await asyncio.wait_for(seen, STEP)
        await r.central.stop_scanning()
        data = advertisement.data  # type: ignore[attr-defined]
        raw = bytes(data)
        assert bytes.fromhex("0616261801" "0100") in raw
        assert bytes.fromhex("03032618") in raw
        assert str(advertisement.address) == PERIPHERAL_ADDRESS  # type: ignore[attr-defined]


async def test_central_discovers_reads_subscribes_and_drives_the_control_point() -> None:
    async with rig() as r:
        connection = await _connect(r)
        peer = Peer(connection)
        await asyncio.wait_for(peer.discover_services(), STEP)
        await asyncio.wait_for(peer.discover_characteristics(), STEP)

        # The GATT table mirrors sim.services, with the right properties.
        props = BumbleCharacteristic.Properties
        control = _find(peer, gatt.FITNESS_MACHINE_SERVICE, gatt.FITNESS_MACHINE_CONTROL_POINT)
        data = _find(peer, gatt.FITNESS_MACHINE_SERVICE, gatt.TREADMILL_DATA)
        speed_range = _find(peer, gatt.FITNESS_MACHINE_SERVICE, gatt.SUPPORTED_SPEED_RANGE)
        assert control.properties == props.WRITE | props.INDICATE
        assert data.properties == props.NOTIFY
        assert speed_range.properties == props.READ
        model = _find(peer, gatt.DEVICE_INFORMATION_SERVICE, gatt.MODEL_NUMBER)

        # Reads go to the simulator.
        decoded_range = codec.decode_speed_range(
            await asyncio.wait_for(peer.read_value(speed_range), STEP))
        assert decoded_range == r.sim.speed_range
        assert await asyncio.wait_for(peer.read_value(model), STEP) == r.sim.preset.model.encode()

        # Subscribe: Treadmill Data (notify), control point (indicate).
        replies: asyncio.Queue[codec.ControlPointResponse] = asyncio.Queue()
        speeds: list[float] = []
        at_target = asyncio.Event()
        assembler = codec.TreadmillDataAssembler()

        def on_data(value: bytes) -> None:
            record = assembler.feed(bytes(value))
            if record is not None and record.speed_kmh is not None:
                speeds.append(record.speed_kmh)
                if record.speed_kmh == pytest.approx(3.0, abs=0.005):
                    at_target.set()

        def on_reply(value: bytes) -> None:
            replies.put_nowait(codec.decode_control_point_response(bytes(value)))

        await asyncio.wait_for(peer.subscribe(data, on_data), STEP)
        await asyncio.wait_for(peer.subscribe(control, on_reply, prefer_notify=False), STEP)
        assert len(r.sim.connections) == 1
        assert r.sim.connections[0].subscriptions == {gatt.TREADMILL_DATA,
                                                      gatt.FITNESS_MACHINE_CONTROL_POINT}

        async def command(request: codec.ControlPointRequest) -> bytes:
            await asyncio.wait_for(
                peer.write_value(control, codec.encode_control_point(request),
                                 with_response=True), STEP)
            reply = await asyncio.wait_for(replies.get(), STEP)
            return codec.encode_control_point_response(reply)

        assert await command(codec.RequestControl()) == bytes.fromhex("800001")
        assert await command(codec.StartOrResume()) == bytes.fromhex("800701")
        assert await command(codec.SetTargetSpeed(speed_kmh=3.0)) == bytes.fromhex("800201")
        assert r.sim.state is MachineState.RUNNING

        # Treadmill Data (split into <= 20-byte notifications) converges to 3.00 km/h.
        await asyncio.wait_for(at_target.wait(), 8.0)  # 1 km/h per s from the 0.5 minimum
        assert speeds[0] < 3.0
        assert all(a <= b + 0.005 for a, b in itertools.pairwise(speeds))

        assert await command(codec.StopOrPause(action=codec.StopPause.STOP)) == \
            bytes.fromhex("800801")
        await asyncio.wait_for(connection.disconnect(), STEP)
        for _ in range(100):
            if not r.sim.connections:
                break
            await asyncio.sleep(0.01)
        assert r.sim.connections == []
        assert r.peripheral.central_count == 0


async def test_refusals_become_att_errors() -> None:
    from bumble.att import ATT_Error

    async with rig() as r:
        connection = await _connect(r)
        peer = Peer(connection)
        await asyncio.wait_for(peer.discover_services(), STEP)
        await asyncio.wait_for(peer.discover_characteristics(), STEP)
        control = _find(peer, gatt.FITNESS_MACHINE_SERVICE, gatt.FITNESS_MACHINE_CONTROL_POINT)
        # Writing to the control point before enabling indications: CCCD improperly configured.
        with pytest.raises(ATT_Error) as refused:
            await asyncio.wait_for(
                peer.write_value(control, bytes([0x00]), with_response=True), STEP)
        assert refused.value.error_code == gatt.ATT_CCCD_IMPROPERLY_CONFIGURED
        # Treadmill Data cannot be read.
        data = _find(peer, gatt.FITNESS_MACHINE_SERVICE, gatt.TREADMILL_DATA)
        with pytest.raises(ATT_Error):
            await asyncio.wait_for(peer.read_value(data), STEP)


async def test_a_dropped_link_detaches_and_advertising_resumes() -> None:
    async with rig() as r:
        connection = await _connect(r)
        disconnected = asyncio.Event()
        connection.on(connection.EVENT_DISCONNECTION, lambda *_: disconnected.set())
        for _ in range(100):
            if r.sim.connections:
                break
            await asyncio.sleep(0.01)
        assert len(r.sim.connections) == 1
        r.sim.drop_links()  # fault injection: the peripheral ends the link
        await asyncio.wait_for(disconnected.wait(), STEP)
        assert r.sim.connections == []
        # Advertising restarts on its own, so the central can come back.
        again = await _connect(r)
        for _ in range(100):
            if r.sim.connections:
                break
            await asyncio.sleep(0.01)
        assert len(r.sim.connections) == 1
        await asyncio.wait_for(again.disconnect(), STEP)


async def test_an_unopenable_controller_is_a_clear_link_error() -> None:
    from retrotread.errors import LinkError

    sim = SimulatedTreadmill(LoopClock(), "generic")
    with socket_closed_port() as port:
        peripheral = BlePeripheral(sim, transport=f"tcp-client:127.0.0.1:{port}")
        with pytest.raises(LinkError, match="cannot open the Bluetooth controller"):
            await peripheral.start()
    await peripheral.close()


@contextlib.contextmanager
def socket_closed_port() -> Iterator[int]:
    """A local TCP port nobody listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
