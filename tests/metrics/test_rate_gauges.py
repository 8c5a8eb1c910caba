"""The rate-limit gauges as the health pass feeds them (``Metrics.set_rate_uses``): each label key
built and checked for secrets once, an unchanged value not set again, a changed one seen, the
near-limit flag and its alert counter on crossings, and a secret learnt later still redacted."""

from __future__ import annotations

from typing import Any

from engine.observability.metrics import REDACTED, Metrics, Registry


class CountingRegistry(Registry):
    """A registry that counts the label checks it makes."""

    def __init__(self) -> None:
        super().__init__(process=False)
        self.checked: list[str] = []

    def safe_label(self, value: str) -> str:
        self.checked.append(value)
        return super().safe_label(value)


class CountingDict(dict[Any, float]):
    """A gauge's values that count how often each key is set."""

    def __init__(self) -> None:
        super().__init__()
        self.sets: dict[Any, int] = {}

    def __setitem__(self, key: Any, value: float) -> None:
        self.sets[key] = self.sets.get(key, 0) + 1
        super().__setitem__(key, value)


def test_values_follow_the_use_and_an_unchanged_value_is_not_set_again() -> None:
    registry = CountingRegistry()
    m = Metrics(registry=registry)
    util = m.rate_limit_utilisation.values = CountingDict()
    key = ("a1", "PLACE_ORDER")

    m.set_rate_uses("a1", [("PLACE_ORDER", 0.25), ("QUOTES", 0.0)])
    assert util == {key: 0.25, ("a1", "QUOTES"): 0.0}
    assert m.rate_limit_near.values[key] == 0.0  # the flag is exported from the first report
    checks = len(registry.checked)
    assert checks > 0

    for _ in range(5):  # the next passes: nothing changed, nothing set, no label checked again
        m.set_rate_uses("a1", [("PLACE_ORDER", 0.25), ("QUOTES", 0.0)])
    assert util.sets == {key: 1, ("a1", "QUOTES"): 1}
    assert len(registry.checked) == checks

    m.set_rate_uses("a1", [("PLACE_ORDER", 0.5), ("QUOTES", 0.0)])
    assert util[key] == 0.5
    assert util.sets == {key: 2, ("a1", "QUOTES"): 1}
    assert len(registry.checked) == checks  # a changed value reuses the checked key


def test_near_limit_flag_and_alerts_follow_each_crossing() -> None:
    m = Metrics(registry=Registry(process=False))
    key = ("a1", "PLACE_ORDER")
    for frac, near, alerts in [
        (0.5, 0.0, 0.0),
        (0.85, 1.0, 1.0),
        (0.95, 1.0, 1.0),  # still near: no second alert
        (0.4, 0.0, 1.0),
        (0.9, 1.0, 2.0),  # crossed again
    ]:
        m.set_rate_uses("a1", [("PLACE_ORDER", frac)])
        assert m.rate_limit_utilisation.values[key] == frac
        assert m.rate_limit_near.values[key] == near, frac
        assert m.rate_limit_alerts.values.get(key, 0.0) == alerts, frac
    # set_rate_limit (used / limit) is the same gauges.
    m.set_rate_limit("a1", "PLACE_ORDER", used=2, limit=10)
    assert m.rate_limit_utilisation.values[key] == 0.2
    assert m.rate_limit_near.values[key] == 0.0


def test_a_secret_in_an_alias_is_redacted_in_the_cached_label_even_when_learnt_later() -> None:
    registry = Registry(process=False)
    registry.forbid("hunter2-key")
    m = Metrics(registry=registry)
    m.set_rate_uses("acct-hunter2-key", [("PLACE_ORDER", 0.9)])
    m.set_rate_uses("acct-hunter2-key", [("PLACE_ORDER", 0.3)])  # from the cache
    assert m.rate_limit_utilisation.values == {(REDACTED, "PLACE_ORDER"): 0.3}

    # A secret the registry learns after the label was cached: the next report redacts it and
    # the series under the clear label is gone, its alert count carried over.
    m.set_rate_uses("late-s3cret-alias", [("PLACE_ORDER", 0.95)])
    assert ("late-s3cret-alias", "PLACE_ORDER") in m.rate_limit_utilisation.values
    registry.forbid("s3cret")
    m.set_rate_uses("late-s3cret-alias", [("PLACE_ORDER", 0.95)])  # same value, new secret
    text = m.render_prometheus()
    assert "s3cret" not in text
    assert "hunter2" not in text
    assert ("late-s3cret-alias", "PLACE_ORDER") not in m.rate_limit_near.values
    assert m.rate_limit_alerts.values[(REDACTED, "PLACE_ORDER")] == 2.0  # one per alias


def test_the_health_board_checks_an_unchanged_detail_once_until_a_secret_is_learnt() -> None:
    registry = CountingRegistry()
    m = Metrics(registry=registry)
    detail = "login failed for token-abc123"
    m.health.set("a1", "auth", "failed", False, detail)
    checks = len(registry.checked)
    since = m.health.account("a1")["auth"].since_ns
    for _ in range(3):
        m.health.set("a1", "auth", "failed", False, detail)
    assert len(registry.checked) == checks
    assert m.health.account("a1")["auth"].detail == detail

    registry.forbid("token-abc123")
    m.health.set("a1", "auth", "failed", False, detail)
    state = m.health.account("a1")["auth"]
    assert state.detail == REDACTED
    assert state.since_ns == since  # the same state all along: its age is kept
    m.health.set("a1", "auth", "failed", False, "the venue answered 401")
    assert m.health.account("a1")["auth"].detail == "the venue answered 401"
