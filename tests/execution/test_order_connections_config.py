"""engine.order_connections_max: parsed into AdapterSettings, never below the warm minimum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.app.config import parse_config
from engine.model.errors import ConfigError
from tests.fixtures.engine import engine_config_data


def config_with(tmp_path: Path, **engine: Any) -> dict[str, Any]:
    return engine_config_data("http://127.0.0.1:1", tmp_path, **engine)


def test_the_maximum_is_read_with_the_warm_minimum(tmp_path: Path) -> None:
    cfg = parse_config(config_with(tmp_path, order_connections=3, order_connections_max=12))
    assert (cfg.adapter.order_connections, cfg.adapter.order_connections_max) == (3, 12)


def test_a_maximum_below_the_minimum_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(tmp_path, order_connections=4, order_connections_max=2))
    message = str(caught.value)
    assert "engine.order_connections_max (2) is below engine.order_connections (4)" in message
    assert "\n" not in message
