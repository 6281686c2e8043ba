from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from retrotread.config import CONFIG_ENV, ENV_PREFIX, RUN_KEYS
from tests.mosquitto import Broker, in_ci, start_broker

# Tests never read the developer's own ~/.config/retrotread/config.toml or RETROTREAD_*
# run defaults (retrotread/config.py); a test that wants a config file sets its own.
os.environ[CONFIG_ENV] = os.path.join(os.sep, "nonexistent", "retrotread-tests.toml")
for _key in RUN_KEYS:
    os.environ.pop(ENV_PREFIX + _key.upper(), None)


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
