"""docs/config.md documents every config key with the default and the settings field the code
has: a key, default or field added on one side only fails here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from engine.app.config_keys import TABLES, documented_defaults

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| (?P<default>[^|]+?) \| `(?P<field>[^`]+)` \| .+ \|$")


def documented() -> dict[str, tuple[str, str]]:
    """``key`` -> (default, settings field) from the doc's key tables."""
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            assert m["key"] not in rows, f"docs/config.md documents {m['key']} twice"
            rows[m["key"]] = (m["default"].strip("`"), m["field"])
    return rows


def test_every_key_is_documented_with_its_default_and_field() -> None:
    doc = documented()
    code = {
        f"{table}.{name}": (default, f"{key.settings.__name__}.{key.field}")
        for table, keys in TABLES.items()
        for name, key in keys.items()
        for default in [documented_defaults()[f"{table}.{name}"]]
    }
    missing = sorted(set(code) - set(doc))
    stale = sorted(set(doc) - set(code))
    assert not missing, f"keys the config reads but docs/config.md does not list: {missing}"
    assert not stale, f"keys docs/config.md lists but the config does not read: {stale}"
    wrong = {k: (doc[k], code[k]) for k in code if doc[k] != code[k]}
    assert not wrong, f"documented (default, field) vs the code's: {wrong}"


def test_every_settings_field_is_filled_by_a_key() -> None:
    """A field added to a settings type without a key would be unreachable from the file."""
    named_by_table = {"alias", "name"}  # [accounts.<alias>], [groups.<name>], [logins.<name>]
    filled = {(key.settings, key.field) for keys in TABLES.values() for key in keys.values()}
    for settings in {key.settings for keys in TABLES.values() for key in keys.values()}:
        for f in dataclasses.fields(settings):
            if f.name not in named_by_table:
                assert (settings, f.name) in filled, (
                    f"{settings.__name__}.{f.name} has no config key: add one to TABLES in "
                    "engine/app/config.py and a row to docs/config.md"
                )
