"""DIRCON framing, server and client link, over real loopback sockets (port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrotread import gatt
from retrotread.errors import CodecError, GattError, LinkClosedError, LinkError, LinkTimeoutError
from retrotread.links import dircon
from retrotread.links.dircon import (
    DirconLink,
    DirconMessage,
    DirconServer,
    FrameDecoder,
    MessageType,
    ResponseCode,
    encode_message,
    uuid_from_bytes,
    uuid_to_bytes,
)

FTMS = gatt.FITNESS_MACHINE_SERVICE
DIS = gatt.DEVICE_INFORMATION_SERVICE
FEATURE = gatt.FITNESS_MACHINE_FEATURE  # read
DATA = gatt.TREADMILL_DATA  # notify
CONTROL = gatt.FITNESS_MACHINE_CONTROL_POINT  # write + indicate
STATUS = gatt.FITNESS_MACHINE_STATUS  # notify only: cannot be read
BROKEN = gatt.TRAINING_STATUS  # read, but the server raises a bug on it
NAME = gatt.MANUFACTURER_NAME  # read
UNKNOWN = gatt.uuid16(0x2A99)

FTMS_BYTES = bytes.fromhex("0000182600001000800000805f9b34fb")
TIMEOUT = 0.2
WAIT = 2.0


# =========================================================================== a small GATT server
class FakeServer(gatt.GattServer):
    """A dict of values, one notify characteristic, and a control point that answers a
    write at once (synchronously, from inside ``write``) with an indication."""

    def __init__(self) -> None:
        self.values = {FEATURE: b"\x01\x02\x03\x04", NAME: b"Retro", BROKEN: b"\x00"}
        self.connections: list[gatt.ServerConnection] = []
        self.detached: list[gatt.ServerConnection] = []
        self.writes: list[tuple[str, bytes]] = []
        r, w, n, i = gatt.READ, gatt.WRITE, gatt.NOTIFY, gatt.INDICATE
        self._services = (
            gatt.Service(FTMS, (
                gatt.Characteristic(FEATURE, frozenset({r})),
                gatt.Characteristic(DATA, frozenset({n})),
                gatt.Characteristic(CONTROL, frozenset({w, i})),
                gatt.Characteristic(STATUS, frozenset({n})),
                gatt.Characteristic(BROKEN, frozenset({r})),
            )),
            gatt.Service(DIS, (gatt.Characteristic(NAME, frozenset({r})),)),
        )

    @property
    def services(self) -> tuple[gatt.Service, ...]:
        return self._services

    def attach(self, connection: gatt.ServerConnection) -> None:
        self.connections.append(connection)

    def detach(self, connection: gatt.ServerConnection) -> None:
        connection.closed = True
        if connection in self.connections:
            self.connections.remove(connection)
        self.detached.append(connection)

    def read(self, connection: gatt.ServerConnection, uuid: str) -> bytes:
        if uuid == BROKEN:
            raise RuntimeError("a bug in the server")
        if uuid not in self.values:
            raise gatt_error_not_supported(uuid)
        return self.values[uuid]

    def write(self, connection: gatt.ServerConnection, uuid: str, data: bytes) -> None:
        if uuid != CONTROL:
            raise GattError(f"{uuid} cannot be written", gatt.ATT_WRITE_NOT_PERMITTED)
        if CONTROL not in connection.subscriptions:
            raise GattError("enable indications first", gatt.ATT_CCCD_IMPROPERLY_CONFIGURED)
        self.writes.append((uuid, data))
        connection.notify(CONTROL, bytes([0x80, data[0] if data else 0, 0x01]))

    def set_subscription(self, connection: gatt.ServerConnection, uuid: str, enabled: bool) -> None:
        if uuid not in (DATA, CONTROL, STATUS):
            raise GattError(f"{uuid} has no notifications", gatt.ATT_REQUEST_NOT_SUPPORTED)
        if enabled:
            connection.subscriptions.add(uuid)
        else:
            connection.subscriptions.discard(uuid)

    def push(self, uuid: str, value: bytes) -> None:
        for connection in list(self.connections):
            if uuid in connection.subscriptions:
                connection.notify(uuid, value)


def gatt_error_not_supported(uuid: str) -> GattError:
    return GattError(f"{uuid} cannot be read", gatt.ATT_REQUEST_NOT_SUPPORTED)


# =========================================================================== helpers
@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def server(fake: FakeServer) -> AsyncIterator[DirconServer]:
    async with DirconServer(fake, port=0) as srv:
        yield srv


@pytest.fixture
async def link(server: DirconServer) -> AsyncIterator[DirconLink]:
    client = DirconLink("127.0.0.1", server.port, request_timeout_s=1.0)
    await client.connect()
    yield client
    await client.close()


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll a server-side effect (detach, attach) that no event announces."""
    for _ in range(int(WAIT / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met within the wait")


async def read_frame(reader: asyncio.StreamReader) -> DirconMessage:
    async with asyncio.timeout(WAIT):
        header = await reader.readexactly(6)
        data = await reader.readexactly(int.from_bytes(header[4:6], "big"))
    messages = FrameDecoder().feed(header + data)
    assert len(messages) == 1
    return messages[0]


@contextlib.asynccontextmanager
async def raw_client(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[int]:
    """A hand-written peer that misbehaves on purpose."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for writer in writers:
            writer.transport.abort()
        await srv.wait_closed()


# =========================================================================== framing (pure)
def test_discover_services_request_vector() -> None:
    message = DirconMessage(MessageType.DISCOVER_SERVICES, 5, ResponseCode.SUCCESS, b"")
    assert encode_message(message) == bytes.fromhex("01 01 05 00 00 00")


def test_discover_characteristics_request_vector() -> None:
    message = DirconMessage(MessageType.DISCOVER_CHARACTERISTICS, 0x22, 0, uuid_to_bytes(FTMS))
    assert encode_message(message) == bytes.fromhex(
        "01 02 22 00 00 10  00 00 18 26 00 00 10 00 80 00 00 80 5f 9b 34 fb"
    )


def test_data_length_is_big_endian() -> None:
    frame = encode_message(DirconMessage(MessageType.READ_CHARACTERISTIC, 1, 0, bytes(0x0123)))
    assert frame[4:6] == b"\x01\x23"


def test_decode_hand_written_response_and_notification() -> None:
    response = bytes.fromhex("01 03 07 00 00 12") + FTMS_BYTES + b"\x34\x12"
    notification = bytes.fromhex("01 06 00 00 00 11") + FTMS_BYTES + b"\x2a"
    error = bytes.fromhex("01 04 09 04 00 00")
    assert FrameDecoder().feed(response + notification + error) == [
        DirconMessage(MessageType.READ_CHARACTERISTIC, 7, ResponseCode.SUCCESS,
                      FTMS_BYTES + b"\x34\x12"),
        DirconMessage(MessageType.NOTIFICATION, 0, ResponseCode.SUCCESS, FTMS_BYTES + b"\x2a"),
        DirconMessage(MessageType.WRITE_CHARACTERISTIC, 9, ResponseCode.CHARACTERISTIC_NOT_FOUND,
                      b""),
    ]


def test_uuid_bytes_are_in_written_order() -> None:
    assert uuid_to_bytes(FTMS) == FTMS_BYTES
    assert uuid_to_bytes("0x1826") == FTMS_BYTES
    assert uuid_from_bytes(FTMS_BYTES) == FTMS
    custom = "a026e005-0a7d-4ab3-97fa-f1500f9feb8b"
    assert uuid_to_bytes(custom).hex() == custom.replace("-", "")
    assert uuid_from_bytes(uuid_to_bytes(custom)) == custom


def test_uuid_errors_are_codec_errors() -> None:
    with pytest.raises(CodecError, match="16 bytes"):
        uuid_from_bytes(b"\x00" * 15)
    with pytest.raises(CodecError, match="not a UUID"):
        uuid_to_bytes("not-a-uuid")


def test_properties_byte_maps_indicate_to_notify() -> None:
    to_byte = dircon.properties_to_byte
    assert to_byte({gatt.READ}) == 0x01
    assert to_byte({gatt.WRITE}) == 0x02
    assert to_byte({gatt.NOTIFY}) == 0x04
    assert to_byte({gatt.WRITE, gatt.INDICATE}) == 0x06
    assert to_byte({gatt.READ, gatt.WRITE, gatt.NOTIFY, gatt.INDICATE}) == 0x07
    assert dircon.properties_from_byte(0x07) == {gatt.READ, gatt.WRITE, gatt.NOTIFY}


def test_characteristic_list_round_trip_vector() -> None:
    service = gatt.Service(FTMS, (gatt.Characteristic(CONTROL, frozenset({"write", "indicate"})),))
    data = dircon.encode_characteristic_list(service)
    assert data == FTMS_BYTES + uuid_to_bytes(CONTROL) + b"\x06"
    decoded = dircon.decode_characteristic_list(data)
    assert decoded == gatt.Service(
        FTMS, (gatt.Characteristic(CONTROL, frozenset({"write", "notify"})),)
    )
    with pytest.raises(CodecError, match="17-byte"):
        dircon.decode_characteristic_list(data + b"\x00")
    with pytest.raises(CodecError, match="16-byte"):
        dircon.decode_service_list(FTMS_BYTES + b"\x00")


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(CodecError, match="sequence 256"):
        encode_message(DirconMessage(1, 256, 0, b""))
    with pytest.raises(CodecError, match="limit"):
        encode_message(DirconMessage(4, 1, 0, bytes(dircon.MAX_DATA_LENGTH + 1)))


def test_decoder_coalesced_frames() -> None:
    messages = [
        DirconMessage(MessageType.DISCOVER_SERVICES, 1, 0, b""),
        DirconMessage(MessageType.READ_CHARACTERISTIC, 2, 0, FTMS_BYTES),
        DirconMessage(MessageType.NOTIFICATION, 0, 0, FTMS_BYTES + b"\xff" * 20),
    ]
    stream = b"".join(encode_message(m) for m in messages)
    assert FrameDecoder().feed(stream) == messages


def test_decoder_byte_by_byte() -> None:
    messages = [
        DirconMessage(MessageType.WRITE_CHARACTERISTIC, 200, 0, FTMS_BYTES + b"\x07\x01"),
        DirconMessage(MessageType.DISCOVER_SERVICES, 201, 0, b""),
    ]
    stream = b"".join(encode_message(m) for m in messages)
    decoder = FrameDecoder()
    got: list[DirconMessage] = []
    for index in range(len(stream)):
        got += decoder.feed(stream[index:index + 1])
        if index < 5:
            assert decoder.buffered == index + 1
    assert got == messages
    assert decoder.buffered == 0


def test_decoder_rejects_bad_version_and_stays_failed() -> None:
    decoder = FrameDecoder()
    with pytest.raises(CodecError, match="version 2"):
        decoder.feed(bytes.fromhex("02 01 01 00 00 00"))
    with pytest.raises(CodecError, match="already failed"):
        decoder.feed(bytes.fromhex("01 01 01 00 00 00"))


def test_decoder_rejects_oversized_length_before_it_arrives() -> None:
    decoder = FrameDecoder(max_data_length=64)
    with pytest.raises(CodecError, match="65 bytes"):
        decoder.feed(bytes.fromhex("01 04 01 00 00 41"))


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_fuzz_decoder_raises_only_codec_error(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder(max_data_length=128)
    try:
        for start in range(0, len(data), chunk):
            for message in decoder.feed(data[start:start + chunk]):
                assert len(message.data) <= 128
    except CodecError:
        pass


message_strategy = st.builds(
    DirconMessage,
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=200),
)


@given(st.lists(message_strategy, max_size=8), st.integers(min_value=1, max_value=50))
def test_encode_decode_round_trip_any_chunking(messages: list[DirconMessage], chunk: int) -> None:
    stream = b"".join(encode_message(m) for m in messages)
    decoder = FrameDecoder()
    got: list[DirconMessage] = []
    for start in range(0, len(stream), chunk):
        got += decoder.feed(stream[start:start + chunk])
    assert got == messages


# =========================================================================== client <-> server
async def test_discover_returns_every_service_with_mapped_properties(
    link: DirconLink, fake: FakeServer
) -> None:
    services = await link.discover()
    assert [s.uuid for s in services] == [FTMS, DIS]
    ftms = services[0]
    expected = [c.uuid for c in fake.services[0].characteristics]
    assert [c.uuid for c in ftms.characteristics] == expected
    control = ftms.characteristic(CONTROL)
    assert control is not None
    assert control.properties == {gatt.WRITE, gatt.NOTIFY}  # indicate travels as notify
    assert services[1].characteristics == (gatt.Characteristic(NAME, frozenset({gatt.READ})),)


async def test_read_write_and_control_point_reply(link: DirconLink, fake: FakeServer) -> None:
    assert link.description.startswith("dircon://127.0.0.1:")
    assert await link.read(FEATURE) == b"\x01\x02\x03\x04"
    assert await link.read("0x2a29") == b"Retro"

    replies: list[bytes] = []
    got_reply = asyncio.Event()

    def on_control(value: bytes) -> None:
        replies.append(value)
        got_reply.set()

    await link.subscribe(CONTROL, on_control)
    await link.write(CONTROL, b"\x00")
    async with asyncio.timeout(WAIT):
        await got_reply.wait()
    assert replies == [b"\x80\x00\x01"]
    assert fake.writes == [(CONTROL, b"\x00")]


async def test_subscribe_notify_unsubscribe(link: DirconLink, fake: FakeServer) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()
    await link.subscribe(DATA, received.put_nowait)
    (connection,) = fake.connections
    assert connection.subscriptions == {DATA}

    fake.push(DATA, b"\x01\x02")
    fake.push(DATA, b"\x03")
    async with asyncio.timeout(WAIT):
        assert await received.get() == b"\x01\x02"
        assert await received.get() == b"\x03"

    await link.unsubscribe(DATA)
    assert connection.subscriptions == set()
    # A notify for an unsubscribed uuid is not sent by the DIRCON server at all.
    connection.notify(DATA, b"\x09")
    assert await link.read(FEATURE) == b"\x01\x02\x03\x04"
    assert received.empty()


async def test_server_sends_only_subscribed_notifications_on_the_wire(
    server: DirconServer, fake: FakeServer
) -> None:
    async with raw_client(server.port) as (reader, writer):
        await eventually(lambda: len(fake.connections) == 1)
        (connection,) = fake.connections
        connection.notify(DATA, b"\x55")  # not subscribed: must not be sent
        writer.write(bytes.fromhex("01 05 01 00 00 11") + uuid_to_bytes(DATA) + b"\x01")
        assert await read_frame(reader) == DirconMessage(
            MessageType.ENABLE_NOTIFICATIONS, 1, ResponseCode.SUCCESS, uuid_to_bytes(DATA)
        )
        connection.notify(DATA, b"\x66")
        assert await read_frame(reader) == DirconMessage(
            MessageType.NOTIFICATION, 0, ResponseCode.SUCCESS, uuid_to_bytes(DATA) + b"\x66"
        )


async def test_reply_pushed_inside_write_goes_out_after_the_write_response(
    server: DirconServer,
) -> None:
    async with raw_client(server.port) as (reader, writer):
        writer.write(bytes.fromhex("01 05 01 00 00 11") + uuid_to_bytes(CONTROL) + b"\x01")
        assert (await read_frame(reader)).response_code == ResponseCode.SUCCESS
        writer.write(bytes.fromhex("01 04 02 00 00 11") + uuid_to_bytes(CONTROL) + b"\x07")
        assert await read_frame(reader) == DirconMessage(
            MessageType.WRITE_CHARACTERISTIC, 2, ResponseCode.SUCCESS, uuid_to_bytes(CONTROL)
        )
        assert await read_frame(reader) == DirconMessage(
            MessageType.NOTIFICATION, 0, ResponseCode.SUCCESS,
            uuid_to_bytes(CONTROL) + b"\x80\x07\x01",
        )


async def test_concurrent_requests_are_matched_by_sequence(link: DirconLink) -> None:
    uuids = [FEATURE, NAME] * 15
    values = await asyncio.gather(*(link.read(u) for u in uuids))
    assert values == [b"\x01\x02\x03\x04", b"Retro"] * 15


async def test_responses_out_of_order_reach_the_right_request() -> None:
    async def reverse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = [await read_frame(reader) for _ in range(3)]
        for request in reversed(requests):
            value = request.data[:16] + bytes([request.sequence])
            writer.write(encode_message(DirconMessage(request.message_type, request.sequence,
                                                      0, value)))
        await writer.drain()
        await reader.read()

    async with raw_server(reverse) as port:
        client = DirconLink("127.0.0.1", port, request_timeout_s=1.0)
        await client.connect()
        try:
            values = await asyncio.gather(client.read(FEATURE), client.read(NAME),
                                          client.read(DATA))
        finally:
            await client.close()
    assert values == [b"\x01", b"\x02", b"\x03"]


async def test_sequence_numbers_wrap_after_255() -> None:
    seen: list[int] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_frame(reader)
            seen.append(request.sequence)
            writer.write(encode_message(DirconMessage(request.message_type, request.sequence,
                                                      0, request.data)))

    async with raw_server(echo) as port:
        client = DirconLink("127.0.0.1", port, request_timeout_s=1.0)
        await client.connect()
        for _ in range(257):
            await client.read(FEATURE)
        await client.close()
    assert seen[:3] == [1, 2, 3]
    assert seen[254:] == [255, 1, 2]
    assert 0 not in seen


def test_sequence_allocation_skips_numbers_in_flight() -> None:
    client = DirconLink("127.0.0.1", 1)
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        client._last_sequence = 254
        client._pending = {255: (3, future), 1: (3, future)}
        assert client._allocate_sequence() == 2
        client._pending = {seq: (3, future) for seq in range(1, 256)}
        with pytest.raises(LinkError, match="in flight"):
            client._allocate_sequence()
    finally:
        loop.close()


# =========================================================================== errors
async def test_error_responses_raise_gatt_errors(link: DirconLink, fake: FakeServer) -> None:
    with pytest.raises(GattError, match="CHARACTERISTIC_NOT_FOUND") as not_found:
        await link.read(UNKNOWN)
    assert not_found.value.code == gatt.ATT_ATTRIBUTE_NOT_FOUND

    with pytest.raises(GattError, match="OPERATION_NOT_SUPPORTED") as cannot_read:
        await link.read(STATUS)
    assert cannot_read.value.code == gatt.ATT_REQUEST_NOT_SUPPORTED

    with pytest.raises(GattError, match="OPERATION_NOT_SUPPORTED") as cannot_write:
        await link.write(FEATURE, b"\x00")
    assert cannot_write.value.code == gatt.ATT_WRITE_NOT_PERMITTED

    with pytest.raises(GattError, match="WRITE_FAILED"):
        await link.write(CONTROL, b"\x00")  # indications not enabled yet

    with pytest.raises(GattError, match="OPERATION_NOT_SUPPORTED"):
        await link.subscribe(FEATURE, lambda value: None)
    assert FEATURE not in link._handlers

    # The link and the server are still fine.
    assert await link.read(NAME) == b"Retro"
    assert link.is_connected


async def test_server_bug_is_answered_generic_error(
    link: DirconLink, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="retrotread.links.dircon"),
        pytest.raises(GattError, match="GENERIC_ERROR"),
    ):
        await link.read(BROKEN)
    assert "a bug in the server" in caplog.text
    assert await link.read(FEATURE) == b"\x01\x02\x03\x04"


async def test_unknown_message_type_is_answered_code_1(server: DirconServer) -> None:
    async with raw_client(server.port) as (reader, writer):
        writer.write(bytes.fromhex("01 09 07 00 00 00"))
        assert await read_frame(reader) == DirconMessage(9, 7, ResponseCode.INVALID_MESSAGE_TYPE,
                                                         b"")
        # A notification is not a request either.
        writer.write(bytes.fromhex("01 06 08 00 00 10") + FTMS_BYTES)
        answer = await read_frame(reader)
        assert (answer.sequence, answer.response_code) == (8, ResponseCode.INVALID_MESSAGE_TYPE)
        # The connection keeps working.
        writer.write(bytes.fromhex("01 01 09 00 00 00"))
        answer = await read_frame(reader)
        assert answer.response_code == ResponseCode.SUCCESS
        assert answer.data == FTMS_BYTES + uuid_to_bytes(DIS)


async def test_unknown_service_and_short_requests(server: DirconServer) -> None:
    async with raw_client(server.port) as (reader, writer):
        writer.write(bytes.fromhex("01 02 01 00 00 10") + uuid_to_bytes(gatt.uuid16(0x1818)))
        answer = await read_frame(reader)
        assert answer.response_code == ResponseCode.SERVICE_NOT_FOUND
        writer.write(bytes.fromhex("01 03 02 00 00 03 00 00 18"))  # a read with no full UUID
        answer = await read_frame(reader)
        assert (answer.sequence, answer.response_code) == (2, ResponseCode.GENERIC_ERROR)


async def test_invalid_message_type_response_is_a_link_error() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_frame(reader)
        writer.write(encode_message(DirconMessage(request.message_type, request.sequence,
                                                  ResponseCode.INVALID_MESSAGE_TYPE, b"")))
        await reader.read()

    async with raw_server(refuse) as port:
        client = DirconLink("127.0.0.1", port, request_timeout_s=1.0)
        await client.connect()
        with pytest.raises(LinkError, match="INVALID_MESSAGE_TYPE") as info:
            await client.discover()
        assert not isinstance(info.value, GattError)
        await client.close()


async def test_request_times_out_against_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(silent) as port:
        client = DirconLink("127.0.0.1", port, request_timeout_s=TIMEOUT)
        await client.connect()
        with pytest.raises(LinkTimeoutError, match=rf"read {FEATURE} from 127\.0\.0\.1"):
            await client.read(FEATURE)
        assert client._pending == {}
        assert client.is_connected  # a lost answer is not a lost link
        await client.close()


async def test_peer_closing_mid_frame_fails_pending_and_disconnects() -> None:
    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_frame(reader)
        frame = encode_message(DirconMessage(request.message_type, request.sequence, 0,
                                             request.data + b"\x01\x02"))
        writer.write(frame[:10])
        await writer.drain()
        writer.close()

    async with raw_server(half_answer) as port:
        client = DirconLink("127.0.0.1", port, request_timeout_s=1.0)
        callbacks: list[str] = []
        client.on_disconnect(lambda: callbacks.append("lost"))
        await client.connect()
        with pytest.raises(LinkClosedError, match="middle of a message"):
            await client.read(FEATURE)
        assert client.disconnected.is_set()
        assert callbacks == ["lost"]
        for call in (client.read(FEATURE), client.write(CONTROL, b"\x00"), client.discover(),
                     client.subscribe(DATA, print), client.unsubscribe(DATA)):
            with pytest.raises(LinkClosedError):
                await call
        await client.close()
        await client.close()
        assert callbacks == ["lost"]


async def test_protocol_error_from_server_closes_the_link() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(bytes.fromhex("07 07 07 07 07 07"))
        await reader.read()

    async with raw_server(garbage) as port:
        client = DirconLink("127.0.0.1", port, request_timeout_s=1.0)
        await client.connect()
        with pytest.raises(LinkClosedError, match="protocol error"):
            await client.read(FEATURE)
        assert client.disconnected.is_set()


async def test_calls_before_connect_and_after_close_raise_link_closed(
    server: DirconServer,
) -> None:
    client = DirconLink("127.0.0.1", server.port, request_timeout_s=TIMEOUT)
    assert not client.is_connected
    with pytest.raises(LinkClosedError):
        await client.read(FEATURE)
    await client.close()  # closing a link never connected is fine
    await client.connect()
    assert client.is_connected
    with pytest.raises(LinkError, match="already connected"):
        await client.connect()
    await client.close()
    await client.close()
    assert client.disconnected.is_set()
    with pytest.raises(LinkClosedError, match="closed"):
        await client.read(FEATURE)


async def test_connect_refused_is_a_link_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: refused
        client = DirconLink("127.0.0.1", port, request_timeout_s=TIMEOUT)
        with pytest.raises(LinkError, match="cannot connect"):
            await client.connect()
    assert not client.is_connected


async def test_handler_exception_does_not_kill_the_reader(
    link: DirconLink, fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(value: bytes) -> None:
        raise ValueError("handler bug")

    received: asyncio.Queue[bytes] = asyncio.Queue()
    await link.subscribe(DATA, explode)
    await link.subscribe(STATUS, received.put_nowait)
    with caplog.at_level(logging.ERROR, logger="retrotread.links.dircon"):
        fake.push(DATA, b"\x01")
        fake.push(STATUS, b"\x02")
        async with asyncio.timeout(WAIT):
            assert await received.get() == b"\x02"
    assert "handler bug" in caplog.text
    assert await link.read(NAME) == b"Retro"


# =========================================================================== server robustness
async def test_client_disconnect_detaches(server: DirconServer, fake: FakeServer) -> None:
    client = DirconLink("127.0.0.1", server.port, request_timeout_s=1.0)
    await client.connect()
    await client.subscribe(DATA, lambda value: None)
    (connection,) = fake.connections
    await client.close()
    await eventually(lambda: connection in fake.detached)
    assert connection.closed
    assert server.client_count == 0
    fake.push(DATA, b"\x01")  # nobody left: nothing happens


async def test_drop_closes_the_socket_abruptly(
    server: DirconServer, link: DirconLink, fake: FakeServer
) -> None:
    await link.subscribe(DATA, lambda value: None)
    (connection,) = fake.connections
    connection.drop()
    async with asyncio.timeout(WAIT):
        await link.disconnected.wait()
    with pytest.raises(LinkClosedError):
        await link.read(FEATURE)
    await eventually(lambda: connection in fake.detached)
    # The server still accepts new clients.
    async with DirconLink("127.0.0.1", server.port, request_timeout_s=1.0) as again:
        assert await again.read(FEATURE) == b"\x01\x02\x03\x04"


async def test_bad_version_closes_only_that_connection(
    server: DirconServer, link: DirconLink, fake: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert await link.read(FEATURE) == b"\x01\x02\x03\x04"
    with caplog.at_level(logging.WARNING, logger="retrotread.links.dircon"):
        async with raw_client(server.port) as (reader, writer):
            await eventually(lambda: len(fake.connections) == 2)
            bad = fake.connections[1]
            peer = "127.0.0.1:{}".format(writer.get_extra_info("sockname")[1])
            writer.write(bytes.fromhex("02 01 01 00 00 00"))
            async with asyncio.timeout(WAIT):
                assert await reader.read() == b""  # the server closed it, no answer
            await eventually(lambda: bad in fake.detached)
    assert "version 2" in caplog.text
    assert peer in caplog.text
    assert link.is_connected
    assert await link.read(NAME) == b"Retro"
    async with DirconLink("127.0.0.1", server.port, request_timeout_s=1.0) as newcomer:
        assert len(await newcomer.discover()) == 2


async def test_client_vanishing_mid_frame_is_detached(
    server: DirconServer, fake: FakeServer
) -> None:
    async with raw_client(server.port) as (_, writer):
        await eventually(lambda: len(fake.connections) == 1)
        (connection,) = fake.connections
        writer.write(bytes.fromhex("01 03 01 00 00 10 00 00"))
        await writer.drain()
    await eventually(lambda: connection in fake.detached)


async def test_server_close_disconnects_clients(fake: FakeServer) -> None:
    srv = DirconServer(fake, port=0)
    await srv.start()
    assert srv.port != 0
    client = DirconLink("127.0.0.1", srv.port, request_timeout_s=1.0)
    await client.connect()
    assert await client.read(FEATURE) == b"\x01\x02\x03\x04"
    await srv.close()
    await srv.close()
    async with asyncio.timeout(WAIT):
        await client.disconnected.wait()
    assert len(fake.detached) == 1
    await client.close()


async def test_client_socket_options(server: DirconServer, link: DirconLink) -> None:
    sock = link._writer.get_extra_info("socket") if link._writer else None
    assert sock is not None
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=5),
       valid_start=st.booleans())
async def test_fuzz_random_bytes_never_crash_the_server(
    chunks: list[bytes], valid_start: bool
) -> None:
    fake = FakeServer()
    async with DirconServer(fake, port=0) as srv:
        async with raw_client(srv.port) as (_, writer):
            if valid_start:  # get past the version check so the payloads are exercised
                chunks = [b"\x01" + chunks[0], *chunks[1:]]
            for chunk in chunks:
                writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0)
        async with DirconLink("127.0.0.1", srv.port, request_timeout_s=1.0) as client:
            assert await client.read(FEATURE) == b"\x01\x02\x03\x04"
            assert len(await client.discover()) == 2
        assert srv.is_serving


# =========================================================================== mDNS
def test_mdns_service_info_is_built_without_network() -> None:
    info = dircon.build_service_info(
        36866, "Retrotread Sim", "RT-0001", mac_address="02-00-00-00-00-01",
        addresses=["192.168.1.20"], hostname="retro",
    )
    assert info.type == "_wahoo-fitness-tnp._tcp.local."
    assert info.name == "Retrotread Sim._wahoo-fitness-tnp._tcp.local."
    assert info.port == 36866
    assert info.server == "retro.local."
    assert info.parsed_addresses() == ["192.168.1.20"]
    assert info.properties == {
        b"serial-number": b"RT-0001",
        b"mac-address": b"02-00-00-00-00-01",
        b"ble-service-uuids": b"0x1826",
    }
