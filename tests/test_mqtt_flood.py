"""A flood of remote commands over the real broker: bounded records, bounded log lines.

The finding (issue 16): 22,000 messages in 2 s made 12,018 session-log records, and every
garbage payload added a stderr line. Each command passed to the session is one record
(``Session.request`` emits one UserAction), so the handler's calls are the records.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from retrotread.events import UserCommand
from retrotread.mqtt import COMMAND_BURST, COMMANDS_PER_S, MqttBridge
from retrotread.ratelimit import SuppressedLog, TokenBucket, describe_counts
from tests.mosquitto import Broker
from tests.test_mqtt import Handler, _client, _prefix, _settings, _wait_until, running

pytestmark = pytest.mark.timeout(60)

FLOOD = 6000


async def test_a_flood_of_commands_and_garbage_stays_bounded(
        mosquitto_broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    prefix = _prefix()
    handler = Handler()
    bridge = MqttBridge(_settings(mosquitto_broker, prefix), command_handler=handler)
    payloads = [b"pause", b"jump", b"stop", b"\xff\xfe garbage", b'{"command": "skip"}',
                b"x" * 2000]
    caplog.set_level(logging.INFO, logger="retrotread.mqtt")
    started = time.monotonic()
    async with running(bridge), _client(mosquitto_broker, "phone") as phone:
        for i in range(FLOOD):
            await phone.publish(f"{prefix}/command", payloads[i % len(payloads)], qos=0)
        seen = -1  # wait until the bridge has looked at everything that arrived
        while seen != bridge.commands_received + bridge.commands_ignored:
            seen = bridge.commands_received + bridge.commands_ignored
            await asyncio.sleep(0.5)
        flood_s = time.monotonic() - started
        warnings = sum(r.levelno >= logging.WARNING for r in caplog.records)
        during = len(caplog.records)
        passed = len(handler.calls)
        looked_at = passed + bridge.commands_ignored
        # After the flood a person's stop still gets through (stop has its own bucket).
        await asyncio.sleep(1.0 / COMMANDS_PER_S)
        handler.calls.clear()
        await phone.publish(f"{prefix}/command", "stop", qos=1)
        await _wait_until(lambda: UserCommand.STOP in handler.commands, what="the stop")
    assert looked_at > FLOOD // 2, looked_at  # the flood did arrive
    # Records: at most a burst plus the refill, per bucket (stop and the others).
    bound = 2 * (COMMAND_BURST + COMMANDS_PER_S * flood_s) + 2
    assert passed <= bound, (passed, bound, flood_s)
    # Log lines: warnings (what stderr shows by default) are the first of each kind and one
    # summary per 30 s; info lines are one per command passed on, so bounded by the rate.
    assert warnings <= 4 + flood_s / 30, [r.getMessage() for r in caplog.records]
    assert during <= warnings + passed + 1
    summaries = [r.getMessage() for r in caplog.records if "command message(s)" in r.getMessage()]
    assert summaries, "the counts were never reported"
    assert "not a command" in summaries[-1] and "over the rate limit" in summaries[-1]
    print(f"\nflood: {looked_at} messages in {flood_s:.1f} s -> {passed} passed on, "
          f"{len(caplog.records)} log lines")


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=5)
    assert [bucket.take(0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert bucket.take(0.4) is False  # 0.8 of a token
    assert bucket.take(0.5) is True
    assert bucket.take(100.0) is True  # refilled, but never above the burst
    assert sum(bucket.take(100.0) for _ in range(10)) == 4


def test_suppressed_log_first_in_full_then_one_summary_per_period() -> None:
    log = SuppressedLog(period_s=30.0)
    assert log.note("garbage", 0.0) is True
    assert [log.note("garbage", t) for t in (1.0, 2.0)] == [False, False]
    assert log.note("rate", 3.0) is True
    assert log.note("rate", 4.0) is False
    assert log.due(20.0) is None
    assert log.due(31.0) == {"garbage": 2, "rate": 1}
    assert log.due(100.0) is None and log.flush() is None  # nothing new
    log.note("garbage", 101.0)
    assert log.flush() == {"garbage": 1}
    assert describe_counts({"a": 1, "b": 12000}) == "12,000 b, 1 a"
