"""Shared pytest configuration. Fixtures live in tests/fixtures/, one module per real component."""

import pytest

from tests.fixtures.shared import make_shared_dir, stop_shared_servers

pytest_plugins = [
    "tests.fixtures.sim",
    "tests.fixtures.kafka",
    "tests.fixtures.vault",
]


def pytest_configure(config: pytest.Config) -> None:
    make_shared_dir(config)  # before xdist starts its workers: they inherit the directory


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_shared_servers(config)  # the run's Kafka broker and OpenBao server, once all is done
