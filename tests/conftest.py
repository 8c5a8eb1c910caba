"""Shared pytest configuration. Fixtures live in tests/fixtures/, one module per real component."""

pytest_plugins = [
    "tests.fixtures.sim",
    "tests.fixtures.kafka",
    "tests.fixtures.vault",
]
