"""The registry's own counters and gauges are written as text by the engine (prometheus-client's
per-sample formatting took 75 ms per scrape with 300 accounts' rate-limit gauges): the text must
be what prometheus-client itself writes for the same families, byte for byte, secrets masked."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from engine.observability.metrics import REDACTED, Metrics, Registry


def _reference(registry: Registry) -> str:
    """The registry's own metrics as prometheus-client renders their families."""

    class Own(Collector):
        def collect(self) -> Iterator:  # type: ignore[type-arg]
            for metric in list(registry._metrics.values()):
                yield metric.family()

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Own())
    return generate_latest(reg).decode()


def _ours(registry: Registry) -> str:
    return "".join(metric.text() for metric in list(registry._metrics.values()))


def test_the_registrys_own_text_is_prometheus_clients_own() -> None:
    registry = Registry(process=False)
    registry.forbid("tl-SECRETSECRETSECRET42")
    m = Metrics(registry=registry)
    assert _ours(registry) == _reference(registry)  # empty families: HELP and TYPE

    odd = 'odd "alias" \\ with\nnewline'
    for n, alias in enumerate(["a1", odd, "acct-tl-SECRETSECRETSECRET42", "z9"]):
        m.outcomes.inc(3.0 + n, account=alias, status="accepted")
        m.set_rate_uses(alias, [("PLACE_ORDER", 0.1 * n), ("QUOTES", 0.85)])
        m.health.set(alias, "auth", "ok", True)
        m.health.set(alias, "breaker", "open", False, "5 calls failed")
    m.dropped.inc(1_234_567)  # past a million: the exponent form
    m.undecided.set(float("inf"))
    plain = registry.counter("tl_plain", "a counter named without the suffix\nand a \\ in help")
    plain.inc(2.5)
    registry.set_build_info(hot_path="compiled")
    registry.gauge(
        "tl_pulled", "from a callback", ("account",), callback=lambda: [({"account": odd}, 7.0)]
    )
    ours = _ours(registry)
    assert ours == _reference(registry)
    assert "SECRETSECRET" not in ours
    assert REDACTED in ours

    # A secret learnt after the labels were cached: the callbacks' labels are checked again.
    registry.forbid("z9")
    ours = _ours(registry)
    assert ours == _reference(registry)
    assert 'account="z9",component' not in ours

    # And the whole render parses, the escaped alias read back intact.
    fams = {f.name: f for f in text_string_to_metric_families(m.render_prometheus())}
    assert {s.labels["account"] for s in fams["tl_pulled"].samples} == {odd}
    assert fams["tl_latency_records_dropped"].samples[0].value == 1_234_567
