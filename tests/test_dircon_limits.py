"""The Direct Connect server against hostile clients, over real TCP on loopback.

Findings (issue 16): a client that announced a 4,096-byte frame and sent nothing was held
forever; there was no idle time-out and no connection cap; one warning per malformed
connection (20,273 lines in one attack). Time-outs are shortened here so the tests are
quick; the defaults are in retrotread/links/dircon.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from retrotread.links.dircon import DirconLink, DirconServer
from tests.test_dircon import DATA, FakeServer, raw_client

pytestmark = pytest.mark.timeout(60)

SHORT_S = 0.3
# A header announcing 4,096 bytes of a discover-services request (version 1, type 1).
HEADER_4096 = bytes([1, 1, 0, 0]) + (4096).to_bytes(2, "big")


@pytest.fixture
async def strict() -> AsyncIterator[DirconServer]:
    async with DirconServer(FakeServer(), port=0, idle_timeout_s=SHORT_S,
                            frame_timeout_s=SHORT_S, max_clients=4,
                            warning_period_s=3600.0) as server:
        yield server


async def closed_after(reader: asyncio.StreamReader, within_s: float = 5.0) -> float:
    """Seconds until the server closes the connection (EOF or reset)."""
    started = time.monotonic()
    async with asyncio.timeout(within_s):
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
    return time.monotonic() - started


async def test_announced_frame_never_sent_is_closed(strict: DirconServer) -> None:
    async with raw_client(strict.port) as (reader, writer):
        writer.write(HEADER_4096)
        await writer.drain()
        waited = await closed_after(reader)
    assert SHORT_S * 0.9 <= waited < SHORT_S + 2.0
    assert strict.timed_out == 1


async def test_frame_trickled_byte_by_byte_is_closed_in_time(strict: DirconServer) -> None:
    async with raw_client(strict.port) as (reader, writer):
        writer.write(HEADER_4096)

        async def trickle() -> None:
            for _ in range(100):  # one byte per 50 ms: each read is quick, the frame is not
                await asyncio.sleep(0.05)
                writer.write(b"\0")

        task = asyncio.ensure_future(trickle())
        try:
            waited = await closed_after(reader)
        finally:
            task.cancel()
    assert waited < SHORT_S + 2.0
    assert strict.timed_out == 1


async def test_silent_client_is_closed_but_a_subscribed_one_stays(
        strict: DirconServer) -> None:
    link = DirconLink("127.0.0.1", strict.port, request_timeout_s=2.0)
    await link.connect()
    try:
        seen: list[bytes] = []
        await link.subscribe(DATA, lambda value: seen.append(value))
        async with raw_client(strict.port) as (reader, _):
            waited = await closed_after(reader)
        assert SHORT_S * 0.9 <= waited < SHORT_S + 2.0
        await asyncio.sleep(SHORT_S * 3)  # quiet, but subscribed: still served
        assert await link.discover()
    finally:
        await link.close()
    assert strict.timed_out == 1


async def test_connection_cap_refuses_clearly_and_frees_up(
        strict: DirconServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="retrotread.links.dircon")
    links = [DirconLink("127.0.0.1", strict.port, request_timeout_s=2.0) for _ in range(4)]
    for link in links:
        await link.connect()
        await link.subscribe(DATA, lambda value: None)
    try:
        for _ in range(3):
            async with raw_client(strict.port) as (reader, _):
                assert await closed_after(reader) < 1.0
        assert strict.refused == 3
        refusals = [r.getMessage() for r in caplog.records if "refusing" in r.getMessage()]
        assert len(refusals) == 1
        assert "4 clients are connected, the most this server serves at once" in refusals[0]
        assert await links[0].discover()  # the served ones are unaffected
    finally:
        await links[-1].close()
    late = DirconLink("127.0.0.1", strict.port, request_timeout_s=2.0)
    for _ in range(50):  # the server notices the closed link
        if strict.client_count < 4:
            break
        await asyncio.sleep(0.02)
    await late.connect()
    try:
        assert await late.discover()
    finally:
        await late.close()
        for link in links[:-1]:
            await link.close()


async def test_malformed_connections_warn_once_then_in_a_summary(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="retrotread.links.dircon")
    async with DirconServer(FakeServer(), port=0, warning_period_s=3600.0) as server:
        for _ in range(200):
            async with raw_client(server.port) as (reader, writer):
                writer.write(b"\x07" * 6)  # version 7: not DIRCON
                await closed_after(reader)
        link = DirconLink("127.0.0.1", server.port, request_timeout_s=2.0)
        await link.connect()
        try:
            assert await link.discover()  # a clean client still works
        finally:
            await link.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "sent a malformed frame" in messages[0]
    assert messages[1] == ("DIRCON: 199 more client problem(s) since the last count: "
                           "199 malformed frame")
