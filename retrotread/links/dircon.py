"""FTMS over TCP in Wahoo Direct Connect (DIRCON) framing: server, client link, mDNS.

* :class:`DirconServer` serves any :class:`~retrotread.gatt.GattServer` (the simulator)
  to DIRCON clients: our own :class:`DirconLink`, or apps such as Zwift / qdomyos-zwift.
* :class:`DirconLink` is the client-side :class:`~retrotread.gatt.Link`.
* :func:`advertise_mdns` announces a server as ``_wahoo-fitness-tnp._tcp``.

The pure framing lives in :mod:`retrotread.links.dircon_frame` and is re-exported here.
See ``docs/dircon.md`` for the wire format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid as _uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from retrotread import gatt
from retrotread.errors import CodecError, GattError, LinkClosedError, LinkError, LinkTimeoutError
from retrotread.links.dircon_frame import (
    DEFAULT_PORT,
    HEADER_LENGTH,
    MAX_DATA_LENGTH,
    PROTOCOL_VERSION,
    UUID_LENGTH,
    DirconMessage,
    FrameDecoder,
    MessageType,
    ResponseCode,
    decode_characteristic_list,
    decode_service_list,
    encode_characteristic_list,
    encode_message,
    encode_service_list,
    message_type_name,
    properties_from_byte,
    properties_to_byte,
    response_code_name,
    split_uuid,
    uuid_from_bytes,
    uuid_to_bytes,
)
from retrotread.ratelimit import SuppressedLog, describe_counts

if TYPE_CHECKING:
    from zeroconf import ServiceInfo

__all__ = [
    "DEFAULT_PORT",
    "HEADER_LENGTH",
    "MAX_DATA_LENGTH",
    "MDNS_SERVICE_TYPE",
    "PROTOCOL_VERSION",
    "DirconLink",
    "DirconMessage",
    "DirconServer",
    "FrameDecoder",
    "MessageType",
    "ResponseCode",
    "advertise_mdns",
    "build_service_info",
    "decode_characteristic_list",
    "decode_service_list",
    "encode_characteristic_list",
    "encode_message",
    "encode_service_list",
    "properties_from_byte",
    "properties_to_byte",
    "uuid_from_bytes",
    "uuid_to_bytes",
]

log = logging.getLogger(__name__)

MDNS_SERVICE_TYPE = "_wahoo-fitness-tnp._tcp.local."

#: ATT "Unlikely Error": what a client sees for DIRCON's generic / write-failed codes.
ATT_UNLIKELY_ERROR = 0x0E
#: ATT "Read Not Permitted".
ATT_READ_NOT_PERMITTED = 0x02

#: A client that stops reading gets dropped once this much is queued for it.
MAX_CLIENT_BACKLOG = 256 * 1024

_READ_CHUNK = 64 * 1024

#: A client that sent nothing for this long and subscribed to nothing is closed.
IDLE_TIMEOUT_S = 60.0
#: A frame must arrive whole within this long of its first byte (a header announcing
#: 4,096 bytes and then silence would otherwise hold the connection forever).
FRAME_TIMEOUT_S = 10.0
#: Connections served at once; one more is closed at once with a warning. A treadmill has
#: one or two clients; this only stops a flood from using up the process.
MAX_CLIENTS = 256
#: Warnings about misbehaving clients: the first of each kind in full, then one summary
#: line per this many seconds.
WARNING_SUMMARY_PERIOD_S = 60.0


def _set_socket_options(writer: asyncio.StreamWriter, *, keepalive: bool) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def _format_peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


# =========================================================================== server
class _Client:
    """One TCP client of a :class:`DirconServer` and its :class:`gatt.ServerConnection`."""

    def __init__(self, writer: asyncio.StreamWriter, peer: str) -> None:
        self.writer = writer
        self.peer = peer
        self.connection = gatt.ServerConnection(notify=self.notify, drop=self.drop)
        self.dispatching = False
        self._deferred: list[bytes] = []
        self._drain_task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return not self.writer.transport.is_closing()

    def send(self, frame: bytes) -> None:
        if not self.open:
            return
        self.writer.write(frame)
        backlog = self.writer.transport.get_write_buffer_size()
        if backlog > MAX_CLIENT_BACKLOG:
            log.warning("DIRCON client %s is not reading (%d bytes queued); dropping it",
                        self.peer, backlog)
            self.drop()
            return
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    def notify(self, uuid: str, value: bytes) -> None:
        """Called synchronously by the GattServer: queue a NOTIFICATION, never block."""
        if uuid not in self.connection.subscriptions or not self.open:
            return
        try:
            frame = encode_message(
                DirconMessage(MessageType.NOTIFICATION, 0, ResponseCode.SUCCESS,
                              uuid_to_bytes(uuid) + bytes(value))
            )
        except CodecError:
            log.exception("DIRCON: cannot send notification of %s to %s", uuid, self.peer)
            return
        if self.dispatching:
            # Pushed from inside a request (a control point write answering at once):
            # send it after the response, in the order BLE would deliver it.
            self._deferred.append(frame)
        else:
            self.send(frame)

    def flush_deferred(self) -> None:
        frames, self._deferred = self._deferred, []
        for frame in frames:
            self.send(frame)

    def drop(self) -> None:
        """Fault injection: the link drops (socket closed abruptly, no goodbye)."""
        self._deferred.clear()
        self.writer.transport.abort()


class DirconServer:
    """Serve a :class:`gatt.GattServer` over TCP in DIRCON framing.

    ``port=0`` picks a free port; :attr:`port` is the bound one after :meth:`start`.
    Use as ``async with DirconServer(sim, port=0) as server: ...``.
    """

    def __init__(
        self,
        server: gatt.GattServer,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        max_data_length: int = MAX_DATA_LENGTH,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        frame_timeout_s: float = FRAME_TIMEOUT_S,
        max_clients: int = MAX_CLIENTS,
        warning_period_s: float = WARNING_SUMMARY_PERIOD_S,
    ) -> None:
        self.gatt_server = server
        self.host = host
        self._port = port
        self._max_data_length = max_data_length
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.max_clients = max_clients
        self._warnings = SuppressedLog(warning_period_s)
        self.refused = 0  # connections closed at once: too many clients
        self.timed_out = 0  # connections closed for idling or a frame that never completed
        self._server: asyncio.Server | None = None
        self._clients: dict[_Client, asyncio.Task[Any]] = {}

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("DirconServer already started")
        try:
            self._server = await asyncio.start_server(self._handle_client, self.host, self._port)
        except OSError as exc:
            raise LinkError(
                f"cannot listen for DIRCON on {self.host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        log.info("DIRCON server listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self._report_warnings(final=True)
        for client in list(self._clients):
            client.writer.transport.abort()
        tasks = list(self._clients.values())
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        await server.wait_closed()

    async def __aenter__(self) -> DirconServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ per client
    def _warn(self, reason: str, message: str, *args: Any) -> None:
        """A warning about a client: the first of each reason in full, then counted."""
        if self._warnings.note(reason, asyncio.get_running_loop().time()):
            log.warning(message + " (more like it are counted, not logged one by one)", *args)
        self._report_warnings()

    def _report_warnings(self, *, final: bool = False) -> None:
        warnings = self._warnings
        counts = warnings.flush() if final else warnings.due(asyncio.get_running_loop().time())
        if counts:
            log.warning("DIRCON: %d more client problem(s) %s: %s", sum(counts.values()),
                        "since the last count" if final else
                        f"in the last {warnings.period_s:.0f} s", describe_counts(counts))

    def _read_timeout(self, client: _Client, decoder: FrameDecoder,
                      frame_started_s: float | None) -> tuple[float | None, str]:
        """How long the next read may wait, and what it means if it waits that long."""
        if frame_started_s is not None:
            elapsed = asyncio.get_running_loop().time() - frame_started_s
            return max(0.0, self.frame_timeout_s - elapsed), (
                f"sent {decoder.buffered} bytes of a frame and not the rest within "
                f"{self.frame_timeout_s:g} s")
        if client.connection.subscriptions:
            return None, ""  # listening to notifications: quiet is normal
        return self.idle_timeout_s, (
            f"sent nothing for {self.idle_timeout_s:g} s and subscribed to nothing")

    async def _handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = _format_peer(writer.get_extra_info("peername"))
        if len(self._clients) >= self.max_clients:
            self.refused += 1
            self._warn("refused: too many clients", "DIRCON: refusing client %s: %d clients "
                       "are connected, the most this server serves at once", peer,
                       self.max_clients)
            writer.transport.abort()
            return
        _set_socket_options(writer, keepalive=True)
        client = _Client(writer, peer)
        task = asyncio.current_task()
        assert task is not None
        self._clients[client] = task
        decoder = FrameDecoder(max_data_length=self._max_data_length)
        attached = False
        log.info("DIRCON client %s connected", peer)
        try:
            try:
                self.gatt_server.attach(client.connection)
                attached = True
            except Exception:
                log.exception("DIRCON: the GATT server refused client %s; closing it", peer)
                return
            frame_started_s: float | None = None
            while client.open:
                timeout_s, meaning = self._read_timeout(client, decoder, frame_started_s)
                try:
                    data = await asyncio.wait_for(reader.read(_READ_CHUNK), timeout_s)
                except TimeoutError:
                    self.timed_out += 1
                    self._warn("timed out", "DIRCON client %s %s; closing it", peer, meaning)
                    break
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                try:
                    messages = decoder.feed(data)
                except CodecError as exc:
                    self._warn("malformed frame", "DIRCON client %s sent a malformed frame "
                               "(%s); closing it", peer, exc)
                    break
                for message in messages:
                    self._serve(client, message)
                if not decoder.buffered:
                    frame_started_s = None
                elif frame_started_s is None or messages:
                    frame_started_s = asyncio.get_running_loop().time()
        finally:
            if decoder.buffered:
                log.info("DIRCON client %s went away mid-message (%d bytes pending)",
                         peer, decoder.buffered)
            writer.transport.abort()
            self._clients.pop(client, None)
            if attached:
                try:
                    self.gatt_server.detach(client.connection)
                except Exception:
                    log.exception("DIRCON: the GATT server failed to detach client %s", peer)
            log.info("DIRCON client %s disconnected", peer)

    def _serve(self, client: _Client, request: DirconMessage) -> None:
        if not client.open:
            return
        client.dispatching = True
        try:
            try:
                code, data = self._dispatch(client.connection, request)
            except Exception:
                log.exception(
                    "DIRCON: the GATT server failed on %s from %s",
                    message_type_name(request.message_type), client.peer,
                )
                code, data = ResponseCode.GENERIC_ERROR, b""
        finally:
            client.dispatching = False
        if code != ResponseCode.SUCCESS:
            log.debug("DIRCON %s from %s answered %s", message_type_name(request.message_type),
                      client.peer, response_code_name(code))
        try:
            frame = encode_message(
                DirconMessage(request.message_type, request.sequence, code, data),
                max_data_length=self._max_data_length,
            )
        except CodecError:
            log.exception("DIRCON: cannot encode the answer to %s", client.peer)
            frame = encode_message(
                DirconMessage(request.message_type, request.sequence,
                              ResponseCode.GENERIC_ERROR, b"")
            )
        client.send(frame)
        client.flush_deferred()

    def _find_characteristic(self, uuid: str) -> gatt.Characteristic | None:
        for service in self.gatt_server.services:
            char = service.characteristic(uuid)
            if char is not None:
                return char
        return None

    def _dispatch(
        self, connection: gatt.ServerConnection, request: DirconMessage
    ) -> tuple[ResponseCode, bytes]:
        kind = request.message_type
        data = request.data
        if kind == MessageType.DISCOVER_SERVICES:
            return ResponseCode.SUCCESS, encode_service_list(
                s.uuid for s in self.gatt_server.services
            )
        if kind == MessageType.DISCOVER_CHARACTERISTICS:
            if len(data) != UUID_LENGTH:
                return ResponseCode.GENERIC_ERROR, b""
            wanted = uuid_from_bytes(data)
            for service in self.gatt_server.services:
                if service.uuid == wanted:
                    return ResponseCode.SUCCESS, encode_characteristic_list(service)
            return ResponseCode.SERVICE_NOT_FOUND, bytes(data)
        if kind not in (MessageType.READ_CHARACTERISTIC, MessageType.WRITE_CHARACTERISTIC,
                        MessageType.ENABLE_NOTIFICATIONS):
            return ResponseCode.INVALID_MESSAGE_TYPE, b""

        if len(data) < UUID_LENGTH:
            return ResponseCode.GENERIC_ERROR, b""
        uuid, rest = split_uuid(data, message_type_name(kind))
        raw_uuid = bytes(data[:UUID_LENGTH])
        if self._find_characteristic(uuid) is None:
            return ResponseCode.CHARACTERISTIC_NOT_FOUND, raw_uuid
        try:
            if kind == MessageType.READ_CHARACTERISTIC:
                return ResponseCode.SUCCESS, raw_uuid + bytes(
                    self.gatt_server.read(connection, uuid))
            if kind == MessageType.WRITE_CHARACTERISTIC:
                self.gatt_server.write(connection, uuid, rest)
                return ResponseCode.SUCCESS, raw_uuid
            if len(rest) != 1:
                return ResponseCode.GENERIC_ERROR, raw_uuid
            self.gatt_server.set_subscription(connection, uuid, rest[0] != 0)
            return ResponseCode.SUCCESS, raw_uuid
        except GattError as exc:
            log.info("DIRCON %s %s refused: %s (ATT 0x%02X)",
                     message_type_name(kind), uuid, exc, exc.code)
            return _response_code_for(exc.code, kind), raw_uuid


def _response_code_for(att_code: int, kind: int) -> ResponseCode:
    if att_code == gatt.ATT_ATTRIBUTE_NOT_FOUND:
        return ResponseCode.CHARACTERISTIC_NOT_FOUND
    if att_code in (gatt.ATT_REQUEST_NOT_SUPPORTED, gatt.ATT_WRITE_NOT_PERMITTED,
                    ATT_READ_NOT_PERMITTED):
        return ResponseCode.OPERATION_NOT_SUPPORTED
    if kind == MessageType.WRITE_CHARACTERISTIC:
        return ResponseCode.WRITE_FAILED
    return ResponseCode.GENERIC_ERROR


# =========================================================================== client
class DirconLink(gatt.Link):
    """Client :class:`gatt.Link` to a DIRCON server (a trainer, a treadmill, our simulator).

    Requests are matched to responses by sequence number (1..255, wrapping, skipping
    numbers still in flight); notifications go to the handler given to ``subscribe``.
    Indications do not exist on DIRCON: ``subscribe`` enables notifications either way.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        request_timeout_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        max_data_length: int = MAX_DATA_LENGTH,
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._max_data_length = max_data_length
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, tuple[int, asyncio.Future[DirconMessage]]] = {}
        self._handlers: dict[str, gatt.NotificationHandler] = {}
        self._last_sequence = 0
        self._closed_reason = "not connected"
        self.disconnected.set()

    @property
    def description(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"dircon://{host}:{self.port}"

    # ------------------------------------------------------------------ life cycle
    async def connect(self) -> None:
        if self._writer is not None:
            raise LinkError(f"{self.description}: already connected")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout_s
            )
        except TimeoutError as exc:
            raise LinkTimeoutError(
                f"{self.description}: no TCP connection within {self.connect_timeout_s:g} s; "
                "is the machine on and on this network?"
            ) from exc
        except OSError as exc:
            raise LinkError(
                f"{self.description}: cannot connect: {exc.strerror or exc}; check the "
                "address and that DIRCON is enabled on the machine"
            ) from exc
        _set_socket_options(writer, keepalive=True)
        self._writer = writer
        self._handlers.clear()
        self.disconnected = asyncio.Event()
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read_loop(reader, writer), name=f"dircon-reader {self.description}"
        )
        log.info("%s: connected", self.description)

    async def close(self) -> None:
        task = self._reader_task
        self._lost("the link was closed")
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> DirconLink:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _lost(self, reason: str) -> None:
        """Tear down once: fail every pending request, close the socket, signal."""
        writer, self._writer = self._writer, None
        self._reader_task = None
        if writer is None:
            return
        self._closed_reason = reason
        writer.transport.abort()
        pending, self._pending = self._pending, {}
        for _, future in pending.values():
            if not future.done():
                future.set_exception(LinkClosedError(f"{self.description}: {reason}"))
        self._mark_disconnected()

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder(max_data_length=self._max_data_length)
        reason = "the peer closed the connection"
        try:
            while True:
                try:
                    data = await reader.read(_READ_CHUNK)
                except (ConnectionError, OSError) as exc:
                    reason = f"connection lost: {exc}"
                    break
                if not data:
                    if decoder.buffered:
                        reason = (f"the peer closed the connection in the middle of a message "
                                  f"({decoder.buffered} bytes of it received)")
                    break
                try:
                    messages = decoder.feed(data)
                except CodecError as exc:
                    log.warning("%s: malformed data from the server: %s", self.description, exc)
                    reason = f"protocol error: {exc}"
                    break
                for message in messages:
                    self._on_message(message)
        finally:
            if self._writer is writer:
                log.info("%s: %s", self.description, reason)
                self._lost(reason)

    def _on_message(self, message: DirconMessage) -> None:
        if message.message_type == MessageType.NOTIFICATION:
            self._on_notification(message)
            return
        entry = self._pending.get(message.sequence)
        if entry is None:
            log.warning("%s: unexpected response %r (no request with that sequence)",
                        self.description, message)
            return
        expected_type, future = entry
        if message.message_type != expected_type:
            log.warning("%s: response %r does not match the %s request with that sequence",
                        self.description, message, message_type_name(expected_type))
            return
        if not future.done():
            future.set_result(message)

    def _on_notification(self, message: DirconMessage) -> None:
        try:
            uuid, value = split_uuid(message.data, "NOTIFICATION")
        except CodecError as exc:
            log.warning("%s: ignoring malformed notification: %s", self.description, exc)
            return
        handler = self._handlers.get(uuid)
        if handler is None:
            log.debug("%s: notification for %s without a subscriber", self.description, uuid)
            return
        try:
            handler(value)
        except Exception:
            log.exception("%s: notification handler for %s failed", self.description, uuid)

    # ------------------------------------------------------------------ requests
    def _require(self) -> asyncio.StreamWriter:
        if self._writer is None or self._writer.transport.is_closing():
            raise LinkClosedError(f"{self.description}: the link is not connected "
                                  f"({self._closed_reason})")
        return self._writer

    def _allocate_sequence(self) -> int:
        for step in range(1, 256):
            candidate = (self._last_sequence + step - 1) % 255 + 1
            if candidate not in self._pending:
                self._last_sequence = candidate
                return candidate
        raise LinkError(f"{self.description}: 255 requests already in flight")

    async def _request(self, kind: MessageType, data: bytes, what: str) -> DirconMessage:
        writer = self._require()
        sequence = self._allocate_sequence()
        frame = encode_message(DirconMessage(kind, sequence, ResponseCode.SUCCESS, data),
                               max_data_length=self._max_data_length)
        future: asyncio.Future[DirconMessage] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = (kind, future)
        try:
            writer.write(frame)
            try:
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                self._lost(f"connection lost: {exc}")
                raise LinkClosedError(f"{self.description}: {what}: connection lost") from exc
            try:
                response = await asyncio.wait_for(future, self.request_timeout_s)
            except TimeoutError as exc:
                raise LinkTimeoutError(
                    f"{self.description}: no answer to {what} from {self.host} within "
                    f"{self.request_timeout_s:g} s"
                ) from exc
        finally:
            entry = self._pending.get(sequence)
            if entry is not None and entry[1] is future:
                del self._pending[sequence]
        if response.response_code != ResponseCode.SUCCESS:
            raise self._response_error(kind, what, response.response_code)
        return response

    def _response_error(self, kind: MessageType, what: str, code: int) -> LinkError:
        text = f"{self.description}: {what} failed: {response_code_name(code)}"
        if code in (ResponseCode.SERVICE_NOT_FOUND, ResponseCode.CHARACTERISTIC_NOT_FOUND):
            return GattError(text, gatt.ATT_ATTRIBUTE_NOT_FOUND)
        if code == ResponseCode.OPERATION_NOT_SUPPORTED:
            att = (gatt.ATT_WRITE_NOT_PERMITTED if kind == MessageType.WRITE_CHARACTERISTIC
                   else gatt.ATT_REQUEST_NOT_SUPPORTED)
            return GattError(text, att)
        if code in (ResponseCode.WRITE_FAILED, ResponseCode.GENERIC_ERROR):
            return GattError(text, ATT_UNLIKELY_ERROR)
        # INVALID_MESSAGE_TYPE or a code we do not know: the peer speaks something else.
        return LinkError(f"{text}; the server does not speak this DIRCON dialect")

    @staticmethod
    def _expect_uuid(response: DirconMessage, uuid: str, what: str) -> bytes:
        """Strip the echoed UUID from a response; the rest (a read value) is returned."""
        got, rest = split_uuid(response.data, f"{what} response")
        if got != uuid:
            raise CodecError(f"DIRCON {what} response is for {got}, not {uuid}")
        return rest

    async def discover(self) -> tuple[gatt.Service, ...]:
        response = await self._request(MessageType.DISCOVER_SERVICES, b"", "discover services")
        services: list[gatt.Service] = []
        for service_uuid in decode_service_list(response.data):
            what = f"discover characteristics of {service_uuid}"
            answer = await self._request(
                MessageType.DISCOVER_CHARACTERISTICS, uuid_to_bytes(service_uuid), what
            )
            service = decode_characteristic_list(answer.data)
            if service.uuid != service_uuid:
                raise CodecError(f"DIRCON {what}: the answer is for service {service.uuid}")
            services.append(service)
        return tuple(services)

    async def read(self, uuid: str) -> bytes:
        uuid = gatt.normalize_uuid(uuid)
        what = f"read {uuid}"
        response = await self._request(MessageType.READ_CHARACTERISTIC, uuid_to_bytes(uuid), what)
        return self._expect_uuid(response, uuid, what)

    async def write(self, uuid: str, data: bytes) -> None:
        uuid = gatt.normalize_uuid(uuid)
        what = f"write {uuid}"
        response = await self._request(
            MessageType.WRITE_CHARACTERISTIC, uuid_to_bytes(uuid) + bytes(data), what
        )
        if response.data:  # some servers answer with no data at all; accept that
            self._expect_uuid(response, uuid, what)

    async def subscribe(self, uuid: str, handler: gatt.NotificationHandler) -> None:
        uuid = gatt.normalize_uuid(uuid)
        self._require()
        # Register first: the first notification can arrive right after the response.
        previous = self._handlers.get(uuid)
        self._handlers[uuid] = handler
        try:
            await self._enable(uuid, True)
        except BaseException:
            if self._handlers.get(uuid) is handler:
                if previous is None:
                    del self._handlers[uuid]
                else:
                    self._handlers[uuid] = previous
            raise

    async def unsubscribe(self, uuid: str) -> None:
        uuid = gatt.normalize_uuid(uuid)
        self._require()
        self._handlers.pop(uuid, None)
        await self._enable(uuid, False)

    async def _enable(self, uuid: str, enabled: bool) -> None:
        what = f"{'enable' if enabled else 'disable'} notifications of {uuid}"
        response = await self._request(
            MessageType.ENABLE_NOTIFICATIONS, uuid_to_bytes(uuid) + bytes([int(enabled)]), what
        )
        if response.data:
            self._expect_uuid(response, uuid, what)


# =========================================================================== mDNS
def _local_ipv4_addresses() -> list[str]:
    import ifaddr  # a dependency of zeroconf

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                found.append(ip.ip)
    return found or ["127.0.0.1"]


def _default_mac_address() -> str:
    node = _uuid.getnode()
    return "-".join(f"{(node >> shift) & 0xFF:02X}" for shift in range(40, -8, -8))


def build_service_info(
    port: int,
    name: str,
    serial: str,
    *,
    mac_address: str | None = None,
    addresses: Sequence[str] | None = None,
    service_uuids: Sequence[int] = (0x1826,),
    hostname: str | None = None,
) -> ServiceInfo:
    """The DNS-SD record announcing a DIRCON server (no network access).

    ``addresses`` defaults to this host's non-loopback IPv4 addresses.
    """
    from zeroconf import ServiceInfo

    if addresses is None:
        addresses = _local_ipv4_addresses()
    host = hostname or socket.gethostname().split(".")[0] or "retrotread"
    properties = {
        "serial-number": serial,
        "mac-address": mac_address or _default_mac_address(),
        "ble-service-uuids": ",".join(f"0x{u:04X}" for u in service_uuids),
    }
    return ServiceInfo(
        MDNS_SERVICE_TYPE,
        f"{name}.{MDNS_SERVICE_TYPE}",
        port=port,
        properties=properties,
        server=f"{host}.local.",
        parsed_addresses=list(addresses),
    )


@contextlib.asynccontextmanager
async def advertise_mdns(
    port: int,
    name: str,
    serial: str,
    *,
    mac_address: str | None = None,
    addresses: Sequence[str] | None = None,
) -> AsyncIterator[ServiceInfo]:
    """Announce a DIRCON server on the local network for as long as the block runs."""
    from zeroconf.asyncio import AsyncZeroconf

    info = build_service_info(port, name, serial, mac_address=mac_address, addresses=addresses)
    azc = AsyncZeroconf()
    try:
        await azc.async_register_service(info)
        log.info("mDNS: announcing %s on port %d", info.name, port)
        yield info
    finally:
        with contextlib.suppress(Exception):
            await azc.async_unregister_service(info)
        await azc.async_close()
