from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mosquitto import Broker, in_ci, start_broker


@pytest.fixture(scope="session")
def shared_mosquitto_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Mosquitto broker (tests/mosquitto.py) for the whole test session.

    Skips when mosquitto is not installed, except in CI (CI=true), where it fails.
    """
    try:
        broker = start_broker(tmp_path_factory.mktemp("mosquitto"))
    except LookupError as exc:
        if in_ci():
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_broker(shared_mosquitto_broker: Broker) -> Iterator[Broker]:
    """The shared broker, running at the start of each test and restored after it, even
    when a test that stops it fails or times out before starting it again."""
    shared_mosquitto_broker.ensure_running()
    try:
        yield shared_mosquitto_broker
    finally:
        shared_mosquitto_broker.ensure_running()
