"""Machine captures: record what a real machine said (``doctor --dump``), play it back.

A *capture* holds, for one machine, only facts: its GATT table, the value of every
characteristic that was read, and a timed trace of what went over the link: the
machine's notifications and indications, and the client's writes. It names the model
and where the bytes came from. ``tests/fixtures/machines/`` keeps captures of real
treadmills, seeded from public traces; the file format is in docs/machine-captures.md.

* :class:`RecordingLink` wraps any :class:`~retrotread.gatt.Link` and records a capture
  while the real client uses it (``retrotread doctor --dump FILE.json``).
* :class:`ReplayLink` is a :class:`~retrotread.gatt.Link` that plays a capture back to
  the real client and codec: reads answer from the capture, and the machine's messages
  arrive at their recorded times (virtual time in tests) once the client has subscribed.
  Writes are accepted and kept in :attr:`ReplayLink.writes`; a replay does not react to
  them (the machine's answers, if any, are in the trace at the times they came).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrotread import gatt
from retrotread.clock import Clock
from retrotread.errors import CaptureFileError, GattError, LinkClosedError

log = logging.getLogger(__name__)

CAPTURE_FORMAT = "retrotread-machine-capture"
CAPTURE_VERSION = 1

NOTIFY = "notify"  # machine -> client (a notification or an indication)
WRITE = "write"  # client -> machine
_OPS = (NOTIFY, WRITE)


@dataclass(frozen=True)
class TraceEntry:
    """One message over the link, ``t_s`` seconds after the trace began."""

    t_s: float
    op: str
    uuid: str
    value: bytes
    reference: dict[str, Any] = field(default_factory=dict)
    """What an independent decoder (the source's own tool) made of these bytes, if known."""

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"t": round(self.t_s, 3), "op": self.op,
                                  "uuid": _short(self.uuid), "hex": self.value.hex(" ")}
        if self.reference:
            record["reference"] = self.reference
        return record


@dataclass
class MachineCapture:
    """Everything recorded from one machine (see the module docstring)."""

    services: tuple[gatt.Service, ...]
    reads: dict[str, bytes] = field(default_factory=dict)
    trace: list[TraceEntry] = field(default_factory=list)
    model: dict[str, str | None] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def entries(self, uuid: str, op: str = NOTIFY) -> list[TraceEntry]:
        uuid = gatt.normalize_uuid(uuid)
        return [e for e in self.trace if e.uuid == uuid and e.op == op]

    # ------------------------------------------------------------------ JSON
    def as_dict(self) -> dict[str, Any]:
        return {
            "format": CAPTURE_FORMAT,
            "version": CAPTURE_VERSION,
            "model": self.model,
            "source": self.source,
            "services": {
                _short(s.uuid): {_short(c.uuid): sorted(c.properties)
                                 for c in s.characteristics}
                for s in self.services
            },
            "reads": {_short(uuid): value.hex(" ") for uuid, value in self.reads.items()},
            "trace": [entry.as_dict() for entry in self.trace],
        }

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: Any, where: str = "capture") -> MachineCapture:
        def fail(message: str) -> CaptureFileError:
            return CaptureFileError(f"{where}: {message}")

        if not isinstance(data, dict) or data.get("format") != CAPTURE_FORMAT:
            raise fail(f"not a machine capture (expected \"format\": \"{CAPTURE_FORMAT}\")")
        if data.get("version") != CAPTURE_VERSION:
            raise fail(f"capture version {data.get('version')!r} is not supported "
                       f"(this retrotread reads version {CAPTURE_VERSION})")
        try:
            services = tuple(
                gatt.Service(gatt.normalize_uuid(s_uuid), tuple(
                    gatt.Characteristic(gatt.normalize_uuid(c_uuid), frozenset(props))
                    for c_uuid, props in chars.items()))
                for s_uuid, chars in data["services"].items())
            reads = {gatt.normalize_uuid(u): _hex(v, f"reads.{u}")
                     for u, v in data.get("reads", {}).items()}
            trace = []
            for i, e in enumerate(data.get("trace", [])):
                if e.get("op") not in _OPS:
                    raise ValueError(f"trace[{i}].op must be one of {', '.join(_OPS)}")
                trace.append(TraceEntry(float(e["t"]), e["op"], gatt.normalize_uuid(e["uuid"]),
                                        _hex(e["hex"], f"trace[{i}].hex"),
                                        dict(e.get("reference", {}))))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise fail(f"malformed ({type(exc).__name__}: {exc})") from exc
        if any(b.t_s < a.t_s for a, b in itertools.pairwise(trace)):
            raise fail("the trace is not in time order")
        return cls(services, reads, trace, dict(data.get("model") or {}),
                   dict(data.get("source") or {}))

    @classmethod
    def load(cls, path: Path) -> MachineCapture:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CaptureFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise CaptureFileError(f"{path}: not JSON: {exc}") from exc
        return cls.from_dict(data, str(path))


def _short(uuid: str) -> str:
    """``2acd`` for a SIG UUID, the full form otherwise (captures stay readable)."""
    if uuid.endswith(gatt.BASE_UUID_SUFFIX) and uuid.startswith("0000"):
        return uuid[4:8]
    return uuid


def _hex(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a hex string")
    try:
        return bytes.fromhex(text.replace("-", " "))
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from exc


# ====================================================================== recording
class RecordingLink(gatt.Link):
    """A link that passes everything through to ``inner`` and records a capture."""

    def __init__(self, inner: gatt.Link, clock: Clock) -> None:
        super().__init__()
        self.inner = inner
        self.clock = clock
        self.disconnected.set()
        inner.on_disconnect(self._mark_disconnected)
        self._t0: float | None = None
        self._services: tuple[gatt.Service, ...] = ()
        self._reads: dict[str, bytes] = {}
        self._trace: list[TraceEntry] = []

    @property
    def description(self) -> str:
        return self.inner.description

    def _now(self) -> float:
        now = self.clock.now()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def _record(self, op: str, uuid: str, value: bytes) -> None:
        self._trace.append(TraceEntry(self._now(), op, uuid, bytes(value)))

    async def connect(self) -> None:
        await self.inner.connect()
        self.disconnected = asyncio.Event()

    async def close(self) -> None:
        await self.inner.close()

    async def discover(self) -> tuple[gatt.Service, ...]:
        self._services = await self.inner.discover()
        return self._services

    async def read(self, uuid: str) -> bytes:
        value = await self.inner.read(uuid)
        self._reads[uuid] = bytes(value)
        return value

    async def write(self, uuid: str, data: bytes) -> None:
        self._record(WRITE, uuid, data)
        await self.inner.write(uuid, data)

    async def subscribe(self, uuid: str, handler: gatt.NotificationHandler) -> None:
        def recorded(value: bytes) -> None:
            self._record(NOTIFY, uuid, value)
            handler(value)

        await self.inner.subscribe(uuid, recorded)

    async def unsubscribe(self, uuid: str) -> None:
        await self.inner.unsubscribe(uuid)

    def capture(self, *, model: dict[str, str | None] | None = None,
                source: dict[str, Any] | None = None) -> MachineCapture:
        return MachineCapture(self._services, dict(self._reads), list(self._trace),
                              dict(model or {}), dict(source or {}))


# ====================================================================== replay
class ReplayLink(gatt.Link):
    """Plays a :class:`MachineCapture` to a client (see the module docstring).

    Playback starts once the client has subscribed to something and the connect
    procedure has run to its end (the next turn of the event loop); each recorded
    message is then delivered at its recorded time after the first, to the handler
    subscribed to its characteristic (messages for characteristics the client did not
    subscribe to are counted in :attr:`undelivered`). With ``speed`` above 1 the trace
    plays faster. When the trace is over the link stays up, silent, as a machine whose
    capture ended would look.
    """

    def __init__(self, capture: MachineCapture, *, name: str = "capture",
                 speed: float = 1.0) -> None:
        super().__init__()
        self.capture = capture
        self.speed = speed
        self._name = name
        self._connected = False
        self._handlers: dict[str, gatt.NotificationHandler] = {}
        self._player: asyncio.Task[None] | None = None
        self.writes: list[tuple[str, bytes]] = []
        self.delivered = 0
        self.undelivered = 0
        self.finished = asyncio.Event()
        self.disconnected.set()

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> ReplayLink:
        return cls(MachineCapture.load(path), name=Path(path).stem, **kwargs)

    @property
    def description(self) -> str:
        return f"replay:{self._name}"

    def _require(self) -> None:
        if not self._connected:
            raise LinkClosedError(f"{self.description}: the link is not connected")

    async def connect(self) -> None:
        self._connected = True
        self.disconnected = asyncio.Event()

    async def close(self) -> None:
        self._connected = False
        if self._player is not None:
            self._player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._player
        self._mark_disconnected()

    async def discover(self) -> tuple[gatt.Service, ...]:
        self._require()
        return self.capture.services

    def _characteristic(self, uuid: str) -> gatt.Characteristic | None:
        for service in self.capture.services:
            char = service.characteristic(uuid)
            if char is not None:
                return char
        return None

    async def read(self, uuid: str) -> bytes:
        self._require()
        if uuid not in self.capture.reads:
            raise GattError(f"{self.description}: {uuid[4:8]} was not read in the capture",
                            gatt.ATT_ATTRIBUTE_NOT_FOUND)
        return self.capture.reads[uuid]

    async def write(self, uuid: str, data: bytes) -> None:
        self._require()
        if self._characteristic(uuid) is None:
            raise GattError(f"{self.description}: no characteristic {uuid[4:8]}",
                            gatt.ATT_ATTRIBUTE_NOT_FOUND)
        self.writes.append((uuid, bytes(data)))

    async def subscribe(self, uuid: str, handler: gatt.NotificationHandler) -> None:
        self._require()
        self._handlers[uuid] = handler
        if self._player is None:
            self._player = asyncio.ensure_future(self._play(self.capture.trace))

    async def unsubscribe(self, uuid: str) -> None:
        self._handlers.pop(uuid, None)

    async def _play(self, trace: Iterable[TraceEntry]) -> None:
        await asyncio.sleep(0)  # let the connect procedure subscribe to the rest
        loop = asyncio.get_running_loop()
        start = loop.time()
        first: float | None = None
        for entry in trace:
            if entry.op != NOTIFY:
                continue
            if first is None:
                first = entry.t_s
            delay = start + (entry.t_s - first) / self.speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            handler = self._handlers.get(entry.uuid)
            if handler is None:
                self.undelivered += 1
                continue
            self.delivered += 1
            try:
                handler(entry.value)
            except Exception:  # as the real links do: a failing listener stops nothing
                log.exception("%s: notification handler for %s failed", self.description,
                              entry.uuid)
        self.finished.set()


def load_captures(directory: Path) -> dict[str, MachineCapture]:
    """Every ``*.json`` capture in ``directory`` by file stem (sorted)."""
    return {path.stem: MachineCapture.load(path)
            for path in sorted(Path(directory).glob("*.json"))}
