"""``timeouts.close_wait_s``: read into PipelineSettings, handed to the pipeline; a bad value is a
one-line error naming the key."""

from __future__ import annotations

import pytest

from engine.app.config import parse_config
from engine.model.errors import ConfigError

BASE = {
    "logins": {
        "main": {
            "base_url": "https://demo.tradelocker.com",
            "server": "DEMO",
            "email": "env:TL_EMAIL",
            "password": "env:TL_PASSWORD",
        }
    },
    "accounts": {"a1": {"login": "main", "acc_num": 1}},
}


def test_close_wait_defaults_to_ten_seconds_and_is_read_from_timeouts() -> None:
    assert parse_config(dict(BASE)).pipeline.close_wait_s == 10.0
    cfg = parse_config({**BASE, "timeouts": {"close_wait_s": 2.5}})
    assert cfg.pipeline.close_wait_s == 2.5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "timeouts.close_wait_s must be a positive number, got 0"),
        ("5", "timeouts.close_wait_s must be a positive number, got '5'"),
        (7200, "timeouts.close_wait_s must be at most 3600.0 (an hour), got 7200"),
    ],
)
def test_a_bad_close_wait_names_the_key(value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "timeouts": {"close_wait_s": value}})
    assert str(info.value) == expected
