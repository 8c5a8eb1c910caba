"""Strategy tags against the venue's declared limit: the TradeLocker adapter declares 32
(docs/api-reference.md section 7.5), and the tags the engine mints fit any declared limit."""

from __future__ import annotations

import pytest

from engine.execution.accounts import AccountSession
from engine.execution.settings import AccountSettings
from engine.execution.tags import MIN_TAG_LENGTH, TAG_LENGTH, TagMint, strategy_tag
from engine.model.errors import ConfigError
from engine.tradelocker.venue import TradeLockerVenue
from engine.venue.paper import PaperVenue
from tests.fixtures.tradelocker import demo_venue


def test_the_tradelocker_adapter_declares_the_venues_32_characters() -> None:
    assert TradeLockerVenue.capabilities.max_tag_length == 32


@pytest.mark.parametrize("limit", [MIN_TAG_LENGTH, 16, 21, 22, 31, 32, 64])
def test_minted_tags_fit_the_declared_limit(limit: int) -> None:
    mint = TagMint(limit)
    tags = {mint.mint(f"sig-{i}", 1_700_000_000_000_000_000 + i) for i in range(200)}
    assert len(tags) == 200
    assert all(len(t) == min(limit, TAG_LENGTH) and t.startswith("s") for t in tags)
    assert mint.mint("sig-1", 5, attempt=1) != mint.mint("sig-1", 5)


def test_the_default_length_is_unchanged_so_earlier_runs_tags_still_match() -> None:
    # A restarted engine looks up an earlier run's orders by tag: the derivation must not drift.
    assert TagMint(32).mint("abc", 7) == TagMint().mint("abc", 7) == strategy_tag("abc", 7)
    assert len(strategy_tag("abc", 7)) == TAG_LENGTH == 22


def test_a_venue_whose_limit_leaves_too_little_hash_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="at most 8 characters"):
        TagMint(8)


def test_the_paper_venue_declares_a_limit_the_mint_fits() -> None:
    mint = TagMint(PaperVenue.capabilities.max_tag_length)
    assert len(mint.mint("x")) <= PaperVenue.capabilities.max_tag_length


def test_pre_validation_reads_the_limit_of_the_accounts_venue() -> None:
    venue = demo_venue("http://127.0.0.1:9/backend-api")  # never started: only its declaration
    session = AccountSession(AccountSettings("acct", "demo", acc_num=1), venue)
    assert session.max_tag_length == 32


@pytest.mark.parametrize("limit", [MIN_TAG_LENGTH, 16, 22, 32])
def test_the_mint_derives_the_same_tag_as_strategy_tag(limit: int) -> None:
    # TagMint.mint computes the tag itself (a frame less per order): the same bytes as the
    # documented derivation, for every length and attempt.
    mint = TagMint(limit)
    for key, ts, attempt in [("a", 0, 0), ("sig-9@acct2", 1_700_000_000_123_456_789, 1)]:
        assert mint.mint(key, ts, attempt) == strategy_tag(key, ts, attempt, min(limit, 22))
