"""The suite covers the whole protocol: "How to add a venue" (docs/architecture.md) promises that
a venue passing ``tests/venue_suite`` does everything the engine asks of one. That holds only while
every member of :class:`Venue` and :class:`QuoteSource` is exercised here; a member added to the
protocol without a case fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.venue.protocol import QuoteSource, Venue

SUITE = Path(__file__).parent


def _members(protocol: type) -> set[str]:
    names = {n for n in vars(protocol) if not n.startswith("_")}
    return names | {n for n in protocol.__annotations__ if not n.startswith("_")}


def _used_attributes() -> set[str]:
    used: set[str] = set()
    for path in SUITE.glob("*.py"):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute):
                used.add(node.attr)
    return used


def test_every_member_of_the_venue_protocol_is_exercised_by_the_suite() -> None:
    members = _members(Venue)
    assert {"place_order", "find_by_tag", "quotes", "route_for", "events"} <= members
    missing = members - _used_attributes()
    assert not missing, f"Venue members no suite case exercises: {sorted(missing)}"


def test_every_member_of_the_quote_source_protocol_is_exercised_by_the_suite() -> None:
    members = _members(QuoteSource)
    assert {"subscribe", "fresh", "quote_for_order", "poll_once"} <= members
    missing = members - _used_attributes()
    assert not missing, f"QuoteSource members no suite case exercises: {sorted(missing)}"


def test_the_suite_runs_on_every_implementation_the_section_names() -> None:
    from tests.venue_suite.conftest import IMPLEMENTATIONS

    section = (SUITE.parents[1] / "docs" / "architecture.md").read_text()
    assert "## How to add a venue" in section
    for name in IMPLEMENTATIONS:
        assert f"`{name}`" in section, f"the section does not name the suite's {name!r}"
