"""``retrotread sim``: serve the simulated treadmill over FTMS/TCP (Direct Connect), or with
``--ble`` as a Bluetooth LE FTMS peripheral on a dongle driven by Bumble."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from retrotread.clock import LoopClock
from retrotread.ftms import codec
from retrotread.links.dircon import DirconServer, advertise_mdns
from retrotread.sim.treadmill import SimulatedTreadmill
from retrotread.treadmill import describe_request


def _make_sim(
    preset: str, noise_kmh: float, telemetry_hz: float, log_requests: bool
) -> SimulatedTreadmill:
    sim = SimulatedTreadmill(LoopClock(), preset, speed_noise_kmh=noise_kmh,
                             telemetry_interval_s=1.0 / telemetry_hz)
    if log_requests:
        def show(time_s: float, request: codec.ControlPointRequest) -> None:
            print(f"[{time_s:.3f}] control point: {describe_request(request)}", flush=True)

        sim.request_listeners.append(show)
    return sim


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(
    *, host: str = "127.0.0.1", port: int = 36866, preset: str = "generic",
    noise_kmh: float = 0.03, mdns: bool = False, telemetry_hz: float = 1.0,
    log_requests: bool = False,
) -> int:
    sim = _make_sim(preset, noise_kmh, telemetry_hz, log_requests)
    stop = _stop_on_signals()
    task = asyncio.ensure_future(sim.run())
    try:
        async with DirconServer(sim, host, port) as server, contextlib.AsyncExitStack() as stack:
            if mdns:
                await stack.enter_async_context(
                    advertise_mdns(server.port, name=f"retrotread sim {preset}",
                                   serial=sim.serial_number))
            print(f"retrotread sim: simulated treadmill ({preset}: {sim.preset.description}) "
                  f"serving FTMS over DIRCON on {host}:{server.port}", flush=True)
            print(f"  connect with: retrotread run PROFILE --device dircon://{host}:{server.port}",
                  flush=True)
            print("  Ctrl-C to stop", flush=True)
            await stop.wait()
    finally:
        sim.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return 0


async def serve_ble(
    *, transport: str | None = None, name: str = "retrotread sim", preset: str = "generic",
    noise_kmh: float = 0.03, telemetry_hz: float = 1.0, log_requests: bool = False,
) -> int:
    """Advertise the simulator as a BLE FTMS peripheral until SIGINT/SIGTERM.

    ``transport`` is a Bumble transport (``usb:0``, ``hci-socket:0``, ...); default
    ``$RETROTREAD_BLE_TRANSPORT`` or ``usb:0``. Needs Bumble (``retrotread[ble-sim]``).
    """
    from retrotread.sim.ble_peripheral import BlePeripheral  # needs bumble: import late

    sim = _make_sim(preset, noise_kmh, telemetry_hz, log_requests)
    stop = _stop_on_signals()
    task = asyncio.ensure_future(sim.run())
    try:
        async with BlePeripheral(sim, transport=transport, name=name) as peripheral:
            print(f"retrotread sim: simulated treadmill ({preset}: {sim.preset.description}) "
                  f"advertising FTMS over Bluetooth LE as {name!r}, address "
                  f"{peripheral.address} (controller {peripheral.transport_name})", flush=True)
            print(f"  connect with: retrotread run PROFILE --device 'ble:{name}'", flush=True)
            print("  Ctrl-C to stop", flush=True)
            await stop.wait()
    finally:
        sim.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return 0
